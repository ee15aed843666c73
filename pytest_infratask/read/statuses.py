"""The board statuses a Backlog.md project configures, for ``--infratask-status``.

Backlog.md keeps its statuses in the project's config file (``backlog/config.yml``,
``.backlog/config.yml``, another backlog folder's ``config.yml``, or
``backlog.config.yml`` at the project root) as ``statuses: ["To Do", "In Progress",
"Done"]``. The last one is the terminal status (Backlog.md's ``getTerminalStatus``:
the one ``cleanup`` moves to ``completed/``); "in progress" is the status its board
shows criteria progress for, matched as Backlog.md matches status names (case and
spaces ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_infratask.core.schema import STATUS
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.task import Task
from pytest_infratask.read.backlog import CONFIG as FOLDER_CONFIG
from pytest_infratask.read.backlog import done_of, read_config

DEFAULT_STATUSES = ("To Do", "In Progress", "Done")
"""Backlog.md's statuses when no config file names any."""
IN_PROGRESS = "In Progress"
ROOT_CONFIG = "backlog.config.yml"


@dataclass(frozen=True)
class BoardStatuses:
    """What a task's ``status:`` becomes while it runs and once it is done."""

    in_progress: str | None
    """None when the config has no status matching "In Progress": left alone then."""
    done: str
    config: Path | None
    """The config file the statuses came from; None for Backlog.md's defaults."""


def keeps_status(task: Task, settings: Settings) -> bool:
    """Whether the run writes the task's ``status``: asked to, allowed to write the
    file, and the file has the key (none is added)."""
    return settings.status and settings.writeback and STATUS.name in task.meta


def board_statuses(task_file: Path) -> BoardStatuses:
    """The statuses of the Backlog.md project ``task_file`` belongs to."""
    config = config_file(task_file.resolve().parent)
    statuses = _configured(config) if config is not None else ()
    return statuses_of(statuses or DEFAULT_STATUSES, config)


def statuses_of(statuses: tuple[str, ...], config: Path | None = None) -> BoardStatuses:
    wanted = _normal(IN_PROGRESS)
    active = next((s for s in statuses if _normal(s) == wanted), None)
    return BoardStatuses(active, done_of(statuses) or DEFAULT_STATUSES[-1], config)


def config_file(folder: Path) -> Path | None:
    """The nearest Backlog.md config at or above ``folder``: a backlog folder's
    ``config.yml`` (beside its ``tasks/``), or the project root's ``backlog.config.yml``."""
    for place in (folder, *folder.parents):
        if (place / "tasks").is_dir() and (place / FOLDER_CONFIG).is_file():
            return place / FOLDER_CONFIG
        if (place / ROOT_CONFIG).is_file():
            return place / ROOT_CONFIG
    return None


def _configured(config: Path) -> tuple[str, ...]:
    """The config's ``statuses`` (non-empty names), read as the tree's reader reads it."""
    info = config.stat()
    found = read_config(str(config), info.st_mtime_ns, info.st_size).statuses
    return tuple(name for name in (s.strip() for s in found) if name)


def _normal(status: str) -> str:
    return "".join(status.lower().split())
