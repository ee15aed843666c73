"""Hooks to extend pytest-infratask.

Implement them in a ``conftest.py`` or an installed plugin, like any pytest
hook. A ``firstresult`` hook stops at the first implementation that returns
something other than ``None``; the built-in implementations run last, so a
team's own answer always wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_infratask.clients.security import Rule
    from pytest_infratask.guard.context import SafetyCheck
    from pytest_infratask.handlers.base import Handler
    from pytest_infratask.read.model import Task
    from pytest_infratask.report.shape import Contract
    from pytest_infratask.run.outcome import Outcome


@pytest.hookspec(firstresult=True)
def pytest_infratask_task_type(task: Task, config: pytest.Config) -> str | None:
    """Return the type of ``task`` (``build``, ``deployment``, ``configuration``,
    ``verification``, ``generic`` or a type of your own), or ``None`` to leave
    the decision to the next implementation.

    The built-in implementation reads the labels by the table in the README.
    Map your own labels here, e.g. ``dns`` to ``configuration``.
    """


@pytest.hookspec(firstresult=True)
def pytest_infratask_handler(task_type: str, task: Task, config: pytest.Config) -> Handler | None:
    """Return the handler object that runs tasks of ``task_type``.

    A handler subclasses :class:`pytest_infratask.handlers.Handler`. It prepares
    the commands' environment, checks post-conditions after each criterion,
    verifies the task and contributes to the report. Return ``None`` for types
    you do not handle; unknown types fall back to the generic handler.
    """


def pytest_infratask_safety_checks(task: Task, config: pytest.Config) -> list[SafetyCheck]:
    """Return extra safety checks for ``task``.

    A check is a callable ``(target, safety) -> CheckResult`` run before any
    command of each criterion (and of the Verification section). Every
    implementation's checks are added after the built-in ones; a failing check
    blocks the criterion with its message and remediation.
    """
    return []


def pytest_infratask_security_rules(task: Task, config: pytest.Config) -> list[Rule]:
    """Return extra security rules applied to the rendered manifests of
    configuration tasks, beside the built-in policy set."""
    return []


def pytest_infratask_criterion_result(task: Task, outcome: Outcome, config: pytest.Config) -> None:
    """Called after each criterion ran (or was blocked, skipped or found done).

    ``outcome`` is plain data (status, message, commands, output, files). Use it
    to notify a chat channel, feed a dashboard or collect metrics.
    """


def pytest_infratask_task_finished(
    task: Task, contract: Contract, config: pytest.Config
) -> None:
    """Called once per task when its last criterion is done, with the final
    output contract (after verification and commit)."""


def pytest_infratask_frontmatter_keys(config: pytest.Config) -> list[str]:
    """Return frontmatter keys your handlers or hooks read, so they are not reported
    as unknown (misspelled) keys."""
    return []
