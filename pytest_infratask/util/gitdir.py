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
    found = _FOUND.get(path)
    if found is not None and found[0] == _COMMANDS[0]:
        _, root, git_dir = found
        if root is None:
            return None
        with contextlib.suppress(OSError):  # gone: look again
            return root, _read_head(git_dir)
    commands = _COMMANDS[0]
    for folder in [path, *path.parents]:
        dot_git = folder / ".git"
        try:
            mode = os.stat(dot_git).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            git_dir = dot_git
        elif stat.S_ISREG(mode):
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                continue
            git_dir = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        try:
            head = _read_head(git_dir)
        except OSError:
            return folder, None
        if path.is_absolute():
            _FOUND[path] = (commands, folder, git_dir)
        return folder, head
    if path.is_absolute():
        _FOUND[path] = (commands, None, path)
    return None


def git_dir(root: Path) -> Path | None:
    """The git directory of the repository at ``root`` (a linked work tree's own), as
    ``git_head`` found it; None when it holds none git could read (no ``HEAD``, no
    object store)."""
    if git_head(root) is None:
        return None
    found = _FOUND.get(root)
    if found is None or found[1] != root:
        return None
    where = found[2]
    if not (where / "HEAD").is_file():
        return None
    if not ((where / "objects").is_dir() or (where / "commondir").is_file()):
        return None
    return where


def _read_head(git_dir: Path) -> str | None:
    """The branch HEAD names, None when detached; OSError when it cannot be read."""
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref:") else None
