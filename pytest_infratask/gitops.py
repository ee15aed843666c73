"""Track, stage and commit a task's own changes with git, and nothing else.

Changes are attributed to a criterion by comparing the repository's dirty
paths (and their content) before and after its commands. Attributions persist
in the repository's git directory, not the work tree, so a task finished over
several runs still commits everything it changed and nothing someone else did.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .guard import git_head

Snapshot = dict[str, str]


class GitError(Exception):
    """A git operation failed; the message says what to do."""


def _repo(root: Path) -> Any:
    import git

    return git.Repo(root)


def _signature(path: Path) -> str:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except IsADirectoryError:
        return "dir"
    except FileNotFoundError:
        return "deleted"
    except OSError:
        return "unreadable"


@dataclass
class RepoTracker:
    """One repository a task works in."""

    root: Path
    name: str
    branch: str | None
    repo: Any = None
    before: Snapshot = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.repo = _repo(self.root)
        self.before = self.snapshot()

    def snapshot(self) -> Snapshot:
        """Every path that differs from HEAD (staged, unstaged or untracked), by content."""
        # No optional locks: a status refreshing the index would make another
        # worker's `git add` fail on index.lock.
        out = self.repo.git.status(
            "--porcelain=v1", "-z", "--untracked-files=all", env={"GIT_OPTIONAL_LOCKS": "0"}
        )
        paths: list[str] = []
        entries = out.split("\0")
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if len(entry) < 4:
                continue
            xy, path = entry[:2], entry[3:]
            paths.append(path)
            if "R" in xy or "C" in xy:
                paths.append(entries[i])  # the rename's source
                i += 1
        return {p: _signature(self.root / p) for p in paths}

    @property
    def state_file(self) -> Path:
        return Path(self.repo.git_dir) / "infratask" / "staged.json"

    def _load_state(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def remember(self, task_id: str, paths: Iterable[str]) -> None:
        with self.index_lock():  # other workers update the same file
            state = self._load_state()
            state[task_id] = sorted(set(state.get(task_id, [])) | set(paths))
            self.state_file.parent.mkdir(exist_ok=True)
            self.state_file.write_text(json.dumps(state, indent=1), encoding="utf-8")

    def remembered(self, task_id: str) -> list[str]:
        return list(self._load_state().get(task_id, []))

    def forget(self, task_id: str) -> None:
        with self.index_lock():
            state = self._load_state()
            if state.pop(task_id, None) is not None:
                self.state_file.write_text(json.dumps(state, indent=1), encoding="utf-8")

    def worktree_lock(self) -> contextlib.AbstractContextManager[object]:
        from .writeback import lock

        return lock(Path(self.repo.git_dir) / "worktree")

    def index_lock(self) -> contextlib.AbstractContextManager[object]:
        """Parallel runs (xdist workers, two terminals) share the repository's index,
        and git refuses a second writer outright; take turns instead."""
        from .writeback import lock

        return lock(Path(self.repo.git_dir) / "index")

    def stage(self, paths: Iterable[str]) -> None:
        paths = sorted(set(paths))
        if paths:
            with self.index_lock():
                self.repo.git.add("-A", "--", *paths)

    def commit(self, paths: list[str], message: str) -> str:
        """Commit exactly ``paths`` through a temporary index; hooks run as usual.

        The user's own staged work stays in the real index and out of the commit.
        """
        current = git_head(self.root)
        if current is None or current[1] != self.branch:
            raise GitError(
                f"{self.root} moved to branch {current[1] if current else None!r} during the run; "
                f"approved branch was {self.branch!r}: not committing"
            )
        with self.index_lock():
            return self._commit(paths, message)

    def _commit(self, paths: list[str], message: str) -> str:
        import git

        fd, index = tempfile.mkstemp(prefix="infratask-index-")
        os.close(fd)
        os.unlink(index)
        env = {"GIT_INDEX_FILE": index}
        try:
            g = self.repo.git
            if self.repo.head.is_valid():
                g.read_tree("HEAD", env=env)
            else:
                g.read_tree("--empty", env=env)
            g.add("-A", "--", *paths, env=env)
            if not g.diff("--cached", "--name-only", env=env).strip():
                return ""
            g.commit("-q", "-m", message, env=env)
            sha = str(self.repo.head.commit.hexsha)
            g.add("-A", "--", *paths)  # the real index now matches the new HEAD
            return sha
        except git.GitCommandError as exc:
            detail = (exc.stderr or exc.stdout or str(exc)).strip().splitlines()
            raise GitError(
                f"git commit failed in {self.root}: {detail[-1] if detail else exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(index)


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


@dataclass
class Tracker:
    """The repositories of one task; cheap no-op when nothing is in git."""

    repos: dict[Path, RepoTracker] = field(default_factory=dict)

    def repo_for(self, path: Path, names: dict[Path, str]) -> RepoTracker | None:
        head = git_head(path.resolve())
        if head is None:
            return None
        root, branch = head
        if root not in self.repos:
            self.repos[root] = RepoTracker(root, names.get(root, root.name), branch)
        return self.repos[root]

    def label(self, tracker: RepoTracker, path: str) -> str:
        return f"{tracker.name}:{path}" if len(self.repos) > 1 else path
