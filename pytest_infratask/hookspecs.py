"""Hook specifications: the documented way to extend pytest-infratask.

Implement them in a ``conftest.py`` or an installed plugin, like any pytest hook;
implementations may take any subset of the arguments. The plugin's own answers are
implementations too, in the plugin ``infratask-builtin`` (``pytest_infratask.builtin``):
for a ``firstresult`` hook they run last, so a team's own answer always wins; for
a list hook they run first, so the built-in entries come before every team's. The
types the hooks take and return are the package's public API
(``pytest_infratask.Task``, ``TaskHandler``, ``SafetyCheck``, ``Rule``, ``Outcome``,
``Contract``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_infratask.clients.security import Rule
    from pytest_infratask.core.handler import TaskHandler
    from pytest_infratask.core.outcome import Outcome
    from pytest_infratask.core.shape import Contract
    from pytest_infratask.core.task import Task
    from pytest_infratask.guard.context import SafetyCheck


@pytest.hookspec(firstresult=True)
def pytest_infratask_task_type(task: Task, config: pytest.Config) -> str | None:
    """Return the type of a task file, or ``None`` to leave it to the next implementation.

    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: ``build``, ``deployment``, ``configuration``, ``verification``,
        ``generic`` or a type of your own; ``None`` to leave it to the next.

    The built-in implementation (last) reads the labels by the table in
    docs/task-types.md. Map your own labels here, e.g. ``dns`` to ``configuration``.
    The type becomes a marker of every item of the task (``-m dns``).
    """


@pytest.hookspec(firstresult=True)
def pytest_infratask_handler(
    task_type: str, task: Task, config: pytest.Config
) -> TaskHandler | None:
    """Return the handler that runs tasks of ``task_type``, or ``None``.

    :param task_type: What ``pytest_infratask_task_type`` decided.
    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: An object satisfying :class:`pytest_infratask.TaskHandler`, usually a
        :class:`pytest_infratask.Handler` subclass's ``MyHandler.create(task, config)``;
        ``None`` to leave the type to the next implementation.

    Called once per task at collection (once per worker under xdist); the
    ``infratask_handler`` fixture hands that instance to the task's run. A handler
    prepares the commands' environment, checks post-conditions after each criterion,
    verifies the task and adds fields to its contract. Anything else returned is a
    collection error naming the implementation. Types nobody handles fall back to
    the generic handler (the built-in implementation, last).
    """


@pytest.hookspec
def pytest_infratask_safety_checks(task: Task, config: pytest.Config) -> list[SafetyCheck]:
    """Return safety checks for a task; the run takes every implementation's, in call
    order: the built-in checks (``tryfirst``) before every team's.

    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: Callables ``(target, safety) -> CheckResult``, run before any command of
        each criterion and of the Verification section. The first failed check blocks
        the criterion with its message and remediation; nothing of it runs.
    """


@pytest.hookspec
def pytest_infratask_security_rules(task: Task, config: pytest.Config) -> list[Rule]:
    """Return security rules for the rendered manifests of configuration tasks; the run
    applies every implementation's, the built-in rules (``tryfirst``) first.

    :param task: The parsed task file.
    :param config: The pytest config.
    :returns: :class:`pytest_infratask.Rule` objects; a finding of severity ``high``
        fails the criterion, others are reported. The frontmatter's ``security.skip``
        names rule ids to leave out, of any implementation.
    """


@pytest.hookspec
def pytest_infratask_criterion_result(task: Task, outcome: Outcome, config: pytest.Config) -> None:
    """Called once per criterion and session, when its outcome is known: run, blocked,
    held back, found done, or a dry run's plan.

    :param task: The parsed task file.
    :param outcome: Plain data (status, message, commands, output, files), masked.
    :param config: The pytest config.

    Use it to notify a chat channel, feed a dashboard or collect metrics. Under xdist
    it runs on the worker that ran the criterion.
    """


@pytest.hookspec
def pytest_infratask_task_finished(task: Task, contract: Contract, config: pytest.Config) -> None:
    """Called once per task, at the end of its items, with its final output contract.

    :param task: The parsed task file.
    :param contract: The contract after verification, commit, push and reconcile,
        masked: what the per-task JSON file holds.
    :param config: The pytest config.
    """


@pytest.hookspec
def pytest_infratask_frontmatter_keys(config: pytest.Config) -> list[str]:
    """Return frontmatter keys your handlers or hooks read, so they are not reported
    as unknown (misspelled) keys.

    :param config: The pytest config.
    :returns: Key names. Every implementation's count; the built-in one returns
        Backlog.md's keys, the plugin's own and ini ``infratask_known_keys``.
    """
