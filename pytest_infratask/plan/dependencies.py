"""Task order across files, and the state of the tasks a task depends on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_infratask.core.task import Task
from pytest_infratask.read.backlog import file_id, id_key, tree_of
from pytest_infratask.read.taskfile import TaskFileError, read_task

PRIORITY_RANK = {"critical": 0, "urgent": 0, "high": 1, "medium": 2, "normal": 2, "low": 3}
DONE_STATUSES = frozenset({"done", "completed", "complete", "closed", "resolved"})


class DependencyCycle(Exception):
    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__("task dependency cycle: " + " -> ".join(cycle))
        self.cycle = list(cycle)


def order_tasks(tasks: Sequence[Task]) -> list[Task]:
    """Dependencies first, then priority, then the order given; cycles are errors."""
    by_id = {id_key(t.id): t for t in tasks}  # ids match as Backlog.md matches them
    position = {id_key(t.id): i for i, t in enumerate(tasks)}
    result: list[Task] = []
    state: dict[str, int] = {}

    def key(task: Task) -> tuple[int, int]:
        return (PRIORITY_RANK.get(task.priority, 2), position[id_key(task.id)])

    def visit(task: Task, trail: list[str]) -> None:
        key_id = id_key(task.id)
        if state.get(key_id) == 2:
            return
        if state.get(key_id) == 1:
            start = [id_key(t) for t in trail].index(key_id)
            raise DependencyCycle([*trail[start:], task.id])
        state[key_id] = 1
        deps = sorted((by_id[k] for k in map(id_key, task.dependencies) if k in by_id), key=key)
        for dep in deps:
            visit(dep, [*trail, task.id])
        state[key_id] = 2
        result.append(task)

    for task in sorted(tasks, key=key):
        visit(task, [])
    return result


@dataclass(frozen=True)
class DependencyState:
    task_id: str
    found: bool
    open_count: int = 0
    total: int = 0
    status: str = ""
    path: Path | None = None
    done_status: str | None = None
    """The tree's own finished status (the last of Backlog.md's ``statuses``)."""

    @property
    def satisfied(self) -> bool:
        if not self.found:
            return False
        if self.total:
            return self.open_count == 0
        status = self.status.strip().lower()
        return status in DONE_STATUSES or status == (self.done_status or "").strip().lower()

    def describe(self) -> str:
        if not self.found:
            return f"dependency {self.task_id} not found"
        if self.total:
            return f"waiting for {self.task_id} ({self.open_count} of {self.total} criteria open)"
        return f"waiting for {self.task_id} (status {self.status or 'unset'})"


def find_task_file(task_id: str, dirs: Iterable[Path]) -> Task | None:
    """Look beside the task and in the configured dirs; file names may carry a title."""

    lowered, wanted = task_id.lower(), id_key(task_id)

    def named_for_it(name: str) -> bool:
        if name.lower().startswith(lowered):
            return True
        numbered = file_id(name)  # task-07 - Title.md for task-7
        return numbered is not None and id_key(numbered) == wanted

    for folder in dirs:
        if not folder.is_dir():
            continue
        candidates = sorted(p for p in folder.glob("*.md") if named_for_it(p.name))
        for path in candidates:
            try:
                task = read_task(path)
            except (TaskFileError, OSError):
                continue
            if id_key(task.id) == wanted:
                return task
    return None


def dependency_states(task: Task, extra_dirs: Sequence[Path]) -> list[DependencyState]:
    dirs = [task.path.parent, *extra_dirs]
    states = []
    for dep in task.dependencies:
        found = find_task_file(dep, dirs)
        if found is None:
            states.append(DependencyState(dep, False))
            continue
        states.append(
            DependencyState(
                dep,
                True,
                open_count=sum(1 for c in found.criteria if not c.done),
                total=len(found.criteria),
                status=found.status,
                path=found.path,
                done_status=tree.done_status if (tree := tree_of(found.path)) else None,
            )
        )
    return states
