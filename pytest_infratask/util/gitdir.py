"""Where a path's git repository is and which branch it is on, read without spawning git."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

# Per folder: the commands started when it was looked up, its repository root (None:
# in none) and git directory.
_FOUND: dict[Path, tuple[int, Path | None, Path]] = {}
_COMMANDS = [0]


def command_started() -> None:
    """A task's command is starting (``run.process``): it may make or remove a ``.git``,
    so what ``git_head`` remembers is looked up again after it."""
    _COMMANDS[0] += 1


def git_head(path: Path) -> tuple[Path, str | None] | None:
    """Repository root and branch (None when detached), read without spawning git.

    Where a folder's repository is (or that it is in none) is remembered until the
    next command starts, so a criterion's checks and tracking walk up to / once, not
    three times; a ``.git`` made or removed by something else in the moments between
    them is seen from the next criterion on. HEAD is read on every call, so a branch
    switch is seen at once.
    """
    located = _located(path)
    if located is not None:
        with contextlib.suppress(OSError):
            return located[0], _read_head(located[1])
        located = _located(path, again=True)  # gone: look again
    if located is None:
        return None
    try:
        return located[0], _read_head(located[1])
    except OSError:
        return located[0], None


def git_dir(root: Path) -> Path | None:
    """The git directory of the repository at ``root`` (a linked work tree's own);
    None when ``root`` is not a repository's root, or holds none git could read (no
    ``HEAD``, no object store)."""
    located = _located(root)
    if located is None or located[0] != root:
        return None
    where = located[1]
    if not (where / "HEAD").is_file():
        return None
    if not ((where / "objects").is_dir() or (where / "commondir").is_file()):
        return None
    return where


def _located(path: Path, again: bool = False) -> tuple[Path, Path] | None:
    """The root and git directory of ``path``'s repository (None: in none), as
    remembered since the last command started unless ``again``."""
    found = _FOUND.get(path)
    if not again and found is not None and found[0] == _COMMANDS[0]:
        _, root, where = found
        return None if root is None else (root, where)
    commands = _COMMANDS[0]
    for folder in [path, *path.parents]:
        dot_git = folder / ".git"
        try:
            mode = os.stat(dot_git).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            where = dot_git
        elif stat.S_ISREG(mode):
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                continue
            where = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        if path.is_absolute():
            _FOUND[path] = (commands, folder, where)
        return folder, where
    if path.is_absolute():
        _FOUND[path] = (commands, None, path)
    return None


def _read_head(git_dir: Path) -> str | None:
    """The branch HEAD names, None when detached; OSError when it cannot be read."""
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref:") else None
