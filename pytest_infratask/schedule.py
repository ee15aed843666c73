"""Order the collected items: tasks by dependencies then priority, criteria by line."""

from __future__ import annotations

import pytest

from pytest_infratask.compat import Scheduler, files_in_collection_order, keyword_selects
from pytest_infratask.core.settings import SETTINGS_KEY
from pytest_infratask.items import CriterionItem, TaskModule, VerifyItem, marker_name
from pytest_infratask.plan.dependencies import DependencyCycle, order_tasks


def order_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    _keyword_by_slug(config, items)

    modules: dict[TaskModule, list[pytest.Item]] = {}
    for item in items:
        if isinstance(item, CriterionItem | VerifyItem):
            modules.setdefault(item.task_module, []).append(item)
    if not modules:
        return
    wanted = config.stash[SETTINGS_KEY].task_ids
    if wanted:
        keep = {w.lower() for w in wanted}
        dropped = [i for m, its in modules.items() if m.task.id.lower() not in keep for i in its]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            gone = set(map(id, dropped))
            items[:] = [i for i in items if id(i) not in gone]
            modules = {m: its for m, its in modules.items() if m.task.id.lower() in keep}
    by_task = {m.task.id: m for m in modules}
    if len(by_task) < len(modules):
        return  # the same id twice: keep pytest's order rather than guess
    try:
        ordered = order_tasks([m.task for m in modules])
    except DependencyCycle as exc:
        raise pytest.UsageError(str(exc)) from None
    others = [i for i in items if not isinstance(i, CriterionItem | VerifyItem)]
    items[:] = others + [i for t in ordered for i in modules[by_task[t.id]]]


def _keyword_by_slug(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``-k build`` selects criteria whose names say "build", not every criterion of a
    build task: pytest also matches ``-k`` against marker names, and a task's type and
    labels are markers (for ``-m``). Criteria that ``-k`` would select only through
    those markers are deselected here, before pytest's own ``-k`` pass."""

    text = str(config.getoption("keyword", "") or "").strip()
    if not text:
        return
    dropped: list[pytest.Item] = []
    for item in items:
        if isinstance(item, CriterionItem | VerifyItem):
            module = item.task_module
            markers = {module.task_type, *(marker_name(label) for label in module.task.labels)}
            if keyword_selects(item, text, markers) is False:
                dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(map(id, dropped))
        items[:] = [i for i in items if id(i) not in gone]


def xdist_scheduler(config: pytest.Config, log: object) -> Scheduler | None:
    """Keep each task file on one worker, in order, without asking for ``--dist``."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling  # xdist is optional

    class TaskFileScheduling(LoadFileScheduling):  # type: ignore[misc]
        """Files are handed out in collection order: dependencies before dependents.

        xdist's default reorders files by their number of tests, which can queue a
        dependent ahead of its dependency on the same worker: the dependent would
        then wait for a task that cannot start until the wait gives up.
        """

        def schedule(self) -> None:
            with files_in_collection_order(self.config):
                super().schedule()

    return TaskFileScheduling(config, log)
