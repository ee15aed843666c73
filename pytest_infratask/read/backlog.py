"""A Backlog.md tree as Backlog.md reads it: its ``config.yml`` and its task ids.

Backlog.md keeps ``config.yml`` beside ``tasks/``; ``task_prefix`` names its task
files (``back-12 - Title.md``) and ids, and the last of ``statuses`` is the status a
finished task has. Ids compare as Backlog.md compares them: a bare number takes the
tree's prefix, prefixes match whatever their case, and leading zeros of a numeric
segment are cosmetic (``task-7.01`` is ``TASK-7.1``).
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PREFIX = "task"
CONFIG = "config.yml"
_NUMERIC = re.compile(r"^(?:([A-Za-z]+)-)?([0-9]+(?:\.[0-9]+)*)$")
_LEGACY = re.compile(r"^[A-Za-z]+-[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FILE_ID = re.compile(r"^([A-Za-z]+-[0-9]+(?:\.[0-9]+)*)(?![0-9]|\.[0-9])")


@dataclass(frozen=True)
class Tree:
    """What a Backlog.md ``config.yml`` says about the tasks beside it."""

    root: Path
    prefix: str = DEFAULT_PREFIX
    statuses: tuple[str, ...] = ()

    @property
    def done_status(self) -> str | None:
        return done_of(self.statuses)

    def file_pattern(self) -> str:
        return f"{self.prefix.lower()}-*.md"


def done_of(statuses: tuple[str, ...]) -> str | None:
    """Backlog.md's terminal status (``getTerminalStatus``): the last one configured."""
    return statuses[-1] if statuses and statuses[-1].strip() else None


def tree_of(task_file: Path) -> Tree | None:
    """The Backlog.md tree a task file belongs to (``tasks/``, ``completed/``,
    ``drafts/`` or ``archive/tasks/`` beside a ``config.yml``), or None."""
    config = config_of_dir(str(task_file.parent))
    if config is None:
        return None
    try:
        info = os.stat(config)
    except OSError:
        return None
    return read_config(config, info.st_mtime_ns, info.st_size)


def named_for_tree(task_file: Path) -> bool:
    """Whether the file is named as its Backlog.md tree names task files
    (``back-12 - Title.md`` under ``task_prefix: "back"``)."""
    tree = tree_of(task_file)
    return tree is not None and fnmatch.fnmatch(task_file.name.lower(), tree.file_pattern())


@functools.lru_cache(maxsize=4096)
def config_of_dir(directory: str) -> str | None:
    """Per directory, once: collection asks for every file of every directory."""
    here = Path(directory)
    for candidate in (here.parent, here.parent.parent):
        if (candidate / CONFIG).is_file() and (candidate / "tasks").is_dir():
            return str(candidate / CONFIG)
    return None


@functools.lru_cache(maxsize=256)
def read_config(config_path: str, mtime_ns: int = 0, size: int = 0) -> Tree:
    """A ``config.yml``, read once per path and version (its modification time and
    size). An unreadable one reads as the defaults, as Backlog.md's own reader falls
    back to them."""
    del mtime_ns, size  # the cache's key only
    import yaml  # only a Backlog.md tree needs it here

    path = Path(config_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        data = None
    if not isinstance(data, dict):
        return Tree(path.parent)
    prefix = str(data.get("task_prefix") or DEFAULT_PREFIX).strip().strip("'\"")
    statuses = data.get("statuses")
    return Tree(
        path.parent,
        prefix if _PREFIX.match(prefix) else DEFAULT_PREFIX,
        tuple(str(s) for s in statuses) if isinstance(statuses, list) else (),
    )


def is_task_id(text: str) -> bool:
    """Backlog.md's ``isValidTaskId``: ``12``, ``task-12.3``, ``BACK-7``, ``task-epic-11.4``."""
    text = text.strip()
    return bool(_NUMERIC.match(text) or _LEGACY.match(text))


def resolve(dependency: str, prefix: str = DEFAULT_PREFIX) -> str:
    """A dependency as written, made a full id: a bare number takes the tree's prefix;
    anything else stays as written (``task-epic-11.139.4`` keeps its whole body)."""
    text = dependency.strip()
    numeric = _NUMERIC.match(text)
    if numeric and numeric[1] is None:
        return f"{prefix}-{text}"
    return text


def file_id(name: str) -> str | None:
    """The numeric id a file name starts with (``task-12.1 - Title.md``), if any."""
    found = _FILE_ID.match(name)
    return found[1] if found else None


def id_key(task_id: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The identity two spellings of one id share (Backlog.md's ``canonicalTaskId``)."""
    text = task_id.strip()
    numeric = _NUMERIC.match(text)
    if numeric is None:
        return text.casefold()
    segments = ".".join(s.lstrip("0") or "0" for s in numeric[2].split("."))
    return f"{(numeric[1] or prefix).casefold()}-{segments}"
