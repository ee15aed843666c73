"""The plugin's own hook implementations, registered as the plugin ``infratask-builtin``.

Built-in safety checks, security rules and frontmatter keys come from here the way a
team's come from its ``conftest.py``: the run takes the whole list from the hook call.
They run first (``tryfirst``), so the first failed check that blocks a criterion is a
built-in one when both would; the built-in type and handler run last (``trylast``),
so a team's own answer wins. Imports are inside the functions: the plugin loads in
every pytest run, task files or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_infratask.clients.security import Rule
    from pytest_infratask.core.handler import TaskHandler
    from pytest_infratask.core.task import Task
    from pytest_infratask.guard.context import SafetyCheck

NAME = "infratask-builtin"


@pytest.hookimpl(trylast=True)
def pytest_infratask_task_type(task: Task) -> str:
    from pytest_infratask.plan.tasktype import type_from_labels  # start-up: per task file

    return type_from_labels(task)


@pytest.hookimpl(trylast=True)
def pytest_infratask_handler(task_type: str, task: Task, config: pytest.Config) -> TaskHandler:
    from pytest_infratask.handlers import builtin_handler  # start-up: per task

    return builtin_handler(task_type).create(task, config)


@pytest.hookimpl(tryfirst=True)
def pytest_infratask_safety_checks() -> list[SafetyCheck]:
    from pytest_infratask.guard.checks import BUILTIN_CHECKS  # start-up: per task

    return list(BUILTIN_CHECKS)


@pytest.hookimpl(tryfirst=True)
def pytest_infratask_security_rules() -> list[Rule]:
    from pytest_infratask.clients.security import BUILTIN_RULES  # start-up: per task

    return list(BUILTIN_RULES)


@pytest.hookimpl(tryfirst=True)
def pytest_infratask_frontmatter_keys(config: pytest.Config) -> list[str]:
    """Backlog.md's keys, the plugin's and its handlers', and ini ``infratask_known_keys``."""
    from pytest_infratask.core.schema import KNOWN_KEYS  # start-up: per task file
    from pytest_infratask.core.settings import SETTINGS_KEY

    return [*sorted(KNOWN_KEYS), *config.stash[SETTINGS_KEY].known_keys]
