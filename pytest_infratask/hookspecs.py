"""Hook specifications: the documented way to extend pytest-infratask.

Implement them in a ``conftest.py`` or an installed plugin, like any pytest hook;
implementations may take any subset of the arguments. A ``firstresult`` hook
stops at the first implementation that returns something other than ``None``;
the built-in implementations run last, so a team's own answer always wins. The
types they take and return are the package's public API (``pytest_infratask.Task``,
``Handler``, ``SafetyCheck``, ``Rule``, ``Outcome``, ``Contract``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_infratask.clients.security import Rule
    from pytest_infratask.core.outcome import Outcome
    from pytest_infratask.core.task import Task
    from pytest_infratask.guard.context import SafetyCheck
    from pytest_infratask.handlers.base import Handler
    from pytest_infratask.report.shape import Contract


@pytest.hookspec(firstresult=True)
def pytest_infratask_task_type(task: Task, config: pytest.Config) -> str | None:
    """Return the type of a task file, or ``None`` to leave it to the next implementation.

    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: ``build``, ``deployment``, ``configuration``, ``verification``,
        ``generic`` or a type of your own.

    The built-in implementation reads the labels by the table in the README. Map
    your own labels here, e.g. ``dns`` to ``configuration``. The type becomes a
    marker of every item of the task (``-m dns``).
    """


@pytest.hookspec(firstresult=True)
def pytest_infratask_handler(task_type: str, task: Task, config: pytest.Config) -> Handler | None:
    """Return the handler that runs tasks of ``task_type``, or ``None``.

    :param task_type: What ``pytest_infratask_task_type`` decided.
    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: A :class:`pytest_infratask.Handler`, usually ``MyHandler.create(task, config)``.

    A handler prepares the commands' environment, checks post-conditions after each
    criterion, verifies the task and adds fields to its contract. Types nobody
    handles fall back to the generic handler.
    """


def pytest_infratask_safety_checks(task: Task, config: pytest.Config) -> list[SafetyCheck]:
    """Return extra safety checks for a task; every implementation's are added after
    the built-in ones.

    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: Callables ``(target, safety) -> CheckResult``, run before any command of
        each criterion and of the Verification section. The first failed check blocks
        the criterion with its message and remediation; nothing of it runs.
    """
    return []


def pytest_infratask_security_rules(task: Task, config: pytest.Config) -> list[Rule]:
    """Return extra security rules for the rendered manifests of configuration tasks,
    applied beside the built-in ones.

    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: :class:`pytest_infratask.Rule` objects; a finding of severity ``high``
        fails the criterion, others are reported.
    """
    return []


def pytest_infratask_criterion_result(task: Task, outcome: Outcome, config: pytest.Config) -> None:
    """Called once per criterion and session, when its outcome is known: run, blocked,
    held back, found done, or a dry run's plan.

    :param task: The parsed task file.
    :param outcome: Plain data (status, message, commands, output, files), masked.
    :param config: The pytest config.

    Use it to notify a chat channel, feed a dashboard or collect metrics. Under xdist
    it runs on the worker that ran the criterion.
    """


def pytest_infratask_task_finished(task: Task, contract: Contract, config: pytest.Config) -> None:
    """Called once per task, at the end of its items, with its final output contract.

    :param task: The parsed task file.
    :param contract: The contract after verification, commit, push and reconcile,
        masked: what the per-task JSON file holds.
    :param config: The pytest config.
    """


def pytest_infratask_frontmatter_keys(config: pytest.Config) -> list[str]:
    """Return frontmatter keys your handlers or hooks read, so they are not reported
    as unknown (misspelled) keys.

    :param config: The pytest config.
    """
    return []
