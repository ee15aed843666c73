"""Fixtures every criterion item receives; override them in a conftest.py like any fixture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from pytest_infratask.core.settings import SETTINGS_KEY

# The plugin loads in every pytest run: the machinery below is imported inside the
# fixtures, which run only for task files.
if TYPE_CHECKING:
    from pytest_infratask.core.handler import TaskHandler
    from pytest_infratask.core.task import Task
    from pytest_infratask.guard.context import SafetyContext
    from pytest_infratask.items import TaskModule
    from pytest_infratask.orchestrator.taskrun import TaskRun


def _task_module(request: pytest.FixtureRequest) -> TaskModule:
    from pytest_infratask.items import TaskModule  # task machinery: for task files only

    node = request.node
    if not isinstance(node, TaskModule):
        raise pytest.UsageError(f"{request.fixturename} is only available to task file criteria")
    return node


@pytest.fixture(scope="module")
def infratask_task(request: pytest.FixtureRequest) -> Task:
    """The parsed task file (frontmatter, criteria, sections) the criterion belongs to."""
    return _task_module(request).task


@pytest.fixture(scope="module")
def infratask_handler(request: pytest.FixtureRequest) -> TaskHandler:
    """The handler for the task's type (build, deployment, configuration, verification,
    generic or a type added through ``pytest_infratask_handler``): the one instance
    collection built for the task in this process."""
    return _task_module(request).handler


@pytest.fixture(scope="module")
def infratask_safety(request: pytest.FixtureRequest, infratask_task: Task) -> SafetyContext:
    """The safety rules the task runs under: allowed roots and branches, the pinned
    kube context, protected targets, and the checks run before every command."""
    # task machinery: for task files only
    from pytest_infratask.core.schema import ALLOW_DIRECT_APPLY, ENVIRONMENT, KUBE_CONTEXT
    from pytest_infratask.guard.context import SafetyContext, default_roots

    config = request.config
    settings = config.stash[SETTINGS_KEY]
    # the built-in checks first (their hook implementations are tryfirst), then teams'
    lists = config.hook.pytest_infratask_safety_checks(task=infratask_task, config=config)
    roots, roots_from = default_roots(infratask_task.path, settings.roots, settings.ini_dir)
    return SafetyContext(
        roots=roots,
        roots_from=roots_from,
        branches=settings.branches,
        kube_context=infratask_task.value(KUBE_CONTEXT) or settings.kube_context or None,
        require_kube_context=settings.require_kube_context,
        protected=settings.protected,
        allow_protected=settings.allow_protected,
        allow_direct_apply=infratask_task.value(ALLOW_DIRECT_APPLY),
        production=(infratask_task.value(ENVIRONMENT) or "").lower() in ("prod", "production"),
        checks=[check for checks in lists for check in checks],
    )


@pytest.fixture(scope="module")
def infratask_run(
    request: pytest.FixtureRequest,
    infratask_task: Task,
    infratask_handler: TaskHandler,
    infratask_safety: SafetyContext,
) -> Iterator[TaskRun]:
    """The task's run: outcomes so far; finishing it verifies, commits and reports."""
    # task machinery: for task files only
    from pytest_infratask.items import AHEAD_KEY, RUN_KEY
    from pytest_infratask.orchestrator.taskrun import TaskRun, finish

    node = _task_module(request)
    run = TaskRun(
        task=infratask_task,
        task_type=node.task_type,
        handler=infratask_handler,
        safety=infratask_safety,
        settings=request.config.stash[SETTINGS_KEY],
        config=request.config,
        ahead=node.stash.get(AHEAD_KEY, False),
    )
    node.stash[RUN_KEY] = run
    try:
        yield run
    finally:
        finish(run)
