"""Which Markdown files are task files: decided for every file of every directory
pytest collects, so in constant work per file and without the task machinery, which
loads (``items``) only once a task file is found. A README beside a test suite costs
a few look-ups, not the plugin's start-up."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_infratask.core.settings import SETTINGS_KEY

if TYPE_CHECKING:
    from pytest_infratask.items import TaskModule

__all__ = ["SET_ASIDE", "collect_file", "is_task_file", "opted_dir"]

# Backlog.md keeps finished, archived and draft tasks here: history, not work to do.
SET_ASIDE = frozenset({"archive", "completed", "drafts"})

OPTED_DIRS_KEY = pytest.StashKey[dict[str, bool]]()
"""Per directory: whether a task file directly in it is opted in (see ``opted_dir``)."""
MODULES_KEY = pytest.StashKey[dict[str, "TaskModule | None"]]()
"""A directory's task-file nodes by file name, handed back when pytest collects that
directory again."""


def collect_file(file_path: Path, parent: pytest.Collector) -> TaskModule | None:
    """The task file's node; the same node (or the same no) again when pytest collects
    its directory once more, as it does for every file named on the command line (a
    file named twice runs twice): naming N files of one directory decides and builds N
    nodes, not N*N."""
    known = parent.stash.setdefault(MODULES_KEY, {})
    key = file_path.name  # the parent collects one directory
    if key in known:
        return known[key]
    module = None
    if is_task_file(file_path, parent):
        from pytest_infratask.items import TaskModule  # start-up: the first task file

        module = TaskModule.from_parent(parent, path=file_path)
    known[key] = module
    return module


def is_task_file(file_path: Path, parent: pytest.Collector) -> bool:
    """Opt-in: a file named on the command line, or a file matching ``infratask_files``
    below a directory named on the command line or listed in ``infratask_paths``,
    and not inside Backlog.md's ``archive/``, ``completed/`` or ``drafts/`` there.

    Constant work per file however many paths were named: pytest asks once for every
    file of a directory each time one of its files is named."""
    if file_path.suffix.lower() != ".md":
        return False
    if parent.session.isinitpath(file_path):
        return True
    settings = parent.config.stash[SETTINGS_KEY]
    named = any(fnmatch.fnmatch(file_path.name, p) for p in settings.files)
    if not named:
        from pytest_infratask.read.backlog import named_for_tree  # start-up: rarely asked

        if not named_for_tree(file_path):  # Backlog.md's task_prefix names it
            return False
    if str(file_path) in settings.opt_in_roots:
        return True
    memo = parent.config.stash.setdefault(OPTED_DIRS_KEY, {})
    return opted_dir(settings.opt_in_roots, memo, file_path.parent)


def opted_dir(roots: frozenset[str], memo: dict[str, bool], directory: Path) -> bool:
    """Whether a task file directly in ``directory`` is opted in: the directory is one
    of ``roots``, or it is not a set-aside folder and its parent is opted in. Each
    directory is decided once into ``memo``; later files find it in one look-up."""
    below: list[str] = []
    here = directory
    while True:
        key = str(here)
        verdict = memo.get(key)
        if verdict is not None:
            break
        if key in roots:
            verdict = True
        elif here.name.lower() in SET_ASIDE or here.parent == here:
            verdict = False
        if verdict is not None:
            memo[key] = verdict
            break
        below.append(key)
        here = here.parent
    for key in below:
        memo[key] = verdict
    return verdict
