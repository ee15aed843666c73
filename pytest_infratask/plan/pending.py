"""The task scanner: which tasks are pending, in which order, and which can start now."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_infratask.core.settings import DEFAULT_FILES
from pytest_infratask.plan.dependencies import dependency_states, order_tasks
from pytest_infratask.plan.tasktype import type_from_labels
from pytest_infratask.read.backlog import named_for_tree
from pytest_infratask.read.taskfile import TaskFileError, read_task


@dataclass(frozen=True)
class PendingTask:
    order: int
    id: str
    title: str
    priority: str
    type: str
    open_criteria: int
    total_criteria: int
    ready: bool
    waiting_for: list[str]
    path: str


def find_task_files(paths: Iterable[Path], patterns: Sequence[str] = DEFAULT_FILES) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*.md")
                if any(fnmatch.fnmatch(p.name, pattern) for pattern in patterns)
                or named_for_tree(p)
            )
    return list(dict.fromkeys(found))


def pending_tasks(paths: Iterable[Path]) -> tuple[list[PendingTask], list[TaskFileError]]:
    """Pending tasks in execution order (dependencies, then priority), and unreadable files."""
    files = find_task_files(paths)
    tasks, errors = [], []
    seen: dict[str, Path] = {}
    for path in files:
        try:
            task = read_task(path)
        except TaskFileError as exc:
            errors.append(exc)
            continue
        first = seen.setdefault(task.id.lower(), task.path)
        if first != task.path:  # ordering would silently drop one of them
            errors.append(
                TaskFileError(path, _id_line(path), f"duplicate task id {task.id} (also {first})")
            )
            continue
        tasks.append(task)
    pending = [t for t in order_tasks(tasks) if any(not c.done for c in t.criteria)]
    dirs = sorted({p.parent for p in files})
    result = []
    for order, task in enumerate(pending, start=1):
        waiting = [s.describe() for s in dependency_states(task, dirs) if not s.satisfied]
        result.append(
            PendingTask(
                order=order,
                id=task.id,
                title=task.title,
                priority=task.priority,
                type=type_from_labels(task),
                open_criteria=sum(1 for c in task.criteria if c.open),
                total_criteria=len(task.criteria),
                ready=not waiting,
                waiting_for=waiting,
                path=str(task.path),
            )
        )
    return result, errors


def _id_line(path: Path) -> int:
    """The frontmatter line that sets ``id``; 1 when the id comes from the file name."""
    try:
        lines = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError:
        return 1
    for number, line in enumerate(lines[1:], start=2):
        if line.strip() in ("---", "..."):
            break
        if re.match(r"id[ \t]*:", line):
            return number
    return 1


def as_rows(tasks: Sequence[PendingTask]) -> list[dict[str, object]]:
    return [asdict(t) for t in tasks]


def table(tasks: Sequence[PendingTask]) -> str:
    header = ("#", "ID", "PRIORITY", "TYPE", "OPEN", "STATE", "TITLE")
    rows = [
        (
            str(t.order),
            t.id,
            t.priority,
            t.type,
            f"{t.open_criteria}/{t.total_criteria}",
            "ready" if t.ready else "; ".join(t.waiting_for),
            t.title,
        )
        for t in tasks
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    return "\n".join(lines)
