"""Track, stage and commit a task's own changes with git, and nothing else.

Changes are attributed to a criterion by comparing the repository's dirty
paths (and their content) before and after its commands. Attributions persist
in the repository's git directory, not the work tree, so a task finished over
several runs still commits everything it changed and nothing someone else did.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn, cast

from pytest_infratask.core.handler import Includes
from pytest_infratask.record.attempt import (
    GitCommand,
    GitFailed,
    GitView,
    View,
    read_worktree,
    reason,
    signature,
)
from pytest_infratask.record.native import Native, NativeUnavailable, in_process
from pytest_infratask.record.overlay import Claims
from pytest_infratask.record.recovery import writing
from pytest_infratask.record.writeback import TMP_SUFFIX
from pytest_infratask.run.process import executable
from pytest_infratask.util.files import atomic_write
from pytest_infratask.util.gitdir import git_dir, git_head
from pytest_infratask.util.locks import Lock, lock_for

if TYPE_CHECKING:
    from git import GitCommandError, Repo

Snapshot = dict[str, str]
FileStamp = tuple[int, int, int, int] | None

REUSE_WINDOW = 1.0
"""Seconds a criterion's closing status stays the next one's opening status (see
``RepoTracker.current``): the longest time an edit from outside the plugin made
between two criteria can be taken for the second one's."""

# Per repository root: how many times a turn on it began in this process (any task).
_ENTRIES: dict[Path, int] = {}


class GitError(Exception):
    """A git operation failed; the message says what to do."""


def _repo(root: Path) -> Repo:
    import git  # GitPython takes ~60 ms to import; tasks outside git never need it

    name = git.Git.git_exec_name
    if name != git.Git.GIT_PYTHON_GIT_EXECUTABLE:  # the user's choice (env or refresh)
        return git.Repo(root)
    # git by absolute path: GitPython would search PATH on every call
    path = executable(name, os.environ)
    # Per GitPython import too: one imported again (pytester's inline runs) has its own
    # exception classes, which the callers' ``except git.GitCommandError`` names.
    kind = _REPO_KINDS.get((path, git.Repo))
    if kind is None:
        wrapper = type("Git", (git.Git,), {"GIT_PYTHON_GIT_EXECUTABLE": path, "__slots__": ()})
        kind = cast("type[Repo]", type("Repo", (git.Repo,), {"GitCommandWrapperType": wrapper}))
        _REPO_KINDS[(path, git.Repo)] = kind
    return kind(root)


_REPO_KINDS: dict[tuple[str, type[Repo]], type[Repo]] = {}


def _signature(path: Path) -> str:
    """A work-tree path's state: its mode and blob id, as git would store it."""
    return signature(read_worktree(path)[0])


class RepoHistory:
    """What a repository's history and its upstream say (commits, refs, the task's
    commit) and the push: the part of a tracked repository the task's end reads."""

    root: Path
    branch: str | None

    @property
    def repo(self) -> Repo:
        """GitPython's view of the repository."""
        raise NotImplementedError

    def _git(self, *args: str) -> str:
        import git

        try:
            return str(self.repo.git.execute(["git", *args], env=NO_PROMPT)).strip()
        except git.GitCommandError:
            return ""

    def upstream(self) -> Upstream | None:
        """The branch's upstream as ``git push`` would use it; None when it has none."""
        if not self.branch:
            return None
        remote = self._git("config", f"branch.{self.branch}.remote")
        ref = self._git("config", f"branch.{self.branch}.merge")
        if not remote or not ref:
            return None
        url = self._git("remote", "get-url", remote) if remote != "." else str(self.root)
        tracking = self._git("rev-parse", "--symbolic-full-name", "@{upstream}")
        return Upstream(remote, url or remote, ref, tracking)

    def head(self) -> str | None:
        return self._git("rev-parse", "--verify", "-q", "HEAD") or None

    def resolve(self, ref: str) -> str | None:
        return self._git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}") or None

    def contains(self, newer: str, older: str) -> bool:
        """Whether commit ``older`` is ``newer`` or one of its ancestors."""
        import git

        if newer == older:
            return True
        try:
            self.repo.git.merge_base("--is-ancestor", older, newer)
        except git.GitCommandError:
            return False
        return True

    def on_upstream(self, sha: str, upstream: Upstream) -> bool:
        remote_head = self.resolve(upstream.tracking) if upstream.tracking else None
        return remote_head is not None and self.contains(remote_head, sha)

    def fetch(self, upstream: Upstream) -> None:
        """Update the upstream's tracking ref (a revision Flux applied may be newer)."""
        self._git("fetch", "-q", upstream.remote, f"{upstream.ref}:{upstream.tracking}")

    def task_commit(self, task_id: str, depth: int = 500) -> str | None:
        """The newest commit on HEAD whose ``Infratask-Task`` trailer names the task."""
        out = self._git(
            "log",
            f"-n{depth}",
            "--format=%H %(trailers:key=Infratask-Task,valueonly,separator=%x2C)",
            "HEAD",
        )
        for line in out.splitlines():
            sha, _, ids = line.partition(" ")
            if task_id in (i.strip() for i in ids.split(",")):
                return sha
        return None

    def push(self, upstream: Upstream) -> str:
        """Push HEAD to the upstream branch; never forced. Returns the pushed commit."""
        import git

        current = git_head(self.root)
        if current is None or current[1] != self.branch:
            raise GitError(
                f"{self.root} moved to branch {current[1] if current else None!r} during the run; "
                f"approved branch was {self.branch!r}: not pushing"
            )
        sha = self.head() or ""
        try:
            self.repo.git.push(upstream.remote, f"HEAD:{upstream.ref}", env=NO_PROMPT)
        except git.GitCommandError as exc:
            text = (exc.stderr or exc.stdout or str(exc)).strip()
            text = text.removeprefix("stderr:").strip().strip("'").strip()
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            said = [ln for ln in lines if ln.startswith(("!", "error:", "remote:", "fatal:"))]
            raise GitError(
                f"git push {upstream.remote} HEAD:{upstream.ref} failed: "
                + ("; ".join(said or lines[-2:]) or f"exit code {exc.status}")
            ) from None
        return sha


class _Kept(NamedTuple):
    """A status kept to open the next criterion with, and what it is valid for."""

    turn: str
    """The lock turn it was taken in."""
    entry: int
    """The turn entry it is offered for."""
    stamp: FileStamp
    """The index's, then."""
    taken: float
    snapshot: Snapshot


@dataclass
class RepoTracker(RepoHistory):
    """One repository a task works in: its work tree and index as the task changes them."""

    root: Path
    name: str
    branch: str | None
    # The state when the task first held the repository (None until then): taken
    # under the lock, so another task's criterion half-done is never part of it.
    before: Snapshot | None = None
    # A status to open the next criterion with; and what ``current`` last returned,
    # with when it was taken.
    _kept: _Kept | None = field(default=None, repr=False)
    _opened: tuple[float, Snapshot] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.native = Native(self.root)
        found = git_dir(self.root)
        if found is None:  # GitPython's view, made now, says why it cannot be read
            found = Path(self.repo.git_dir)
        self.git_dir = found
        self.cli = GitCommand(self.root)
        self.view: View = GitView(self.root, self.git_dir, self.native, self.cli)

    @functools.cached_property
    def repo(self) -> Repo:
        """GitPython's view, made at first use (status and staging go through libgit2)."""
        return _repo(self.root)

    @property
    def attempts_dir(self) -> Path:
        """Where the journals of attempts under way live (``record.recovery``)."""
        return self.git_dir / "infratask" / "attempts"

    def keep(self, snapshot: Snapshot, entry: int, taken: float | None = None) -> None:
        """Offer ``snapshot`` (taken under the lock, at ``taken`` or now) as the state at
        turn entry ``entry``."""
        turn, when = self.worktree_lock().turn, time.monotonic() if taken is None else taken
        self._kept = _Kept(turn, entry, self._index_stamp(), when, snapshot) if turn else None

    def carry(self, entry: int) -> None:
        """Nothing of the plugin's changed the work tree since ``current``: what it
        returned opens turn entry ``entry`` too, as old as it was."""
        if self._opened is not None:
            taken, snapshot = self._opened
            self.keep(snapshot, entry, taken)

    def drop(self) -> None:
        """Forget the kept snapshot: something it cannot account for changed."""
        self._kept = None

    def restamp(self) -> None:
        """The index changed only by staging the task file, whose entry no
        attribution reads: the kept snapshot still holds."""
        if self._kept is not None:
            self._kept = self._kept._replace(stamp=self._index_stamp())

    def current(self) -> Snapshot:
        """The state before a criterion's commands: one ``git status`` per criterion
        boundary, not two. The previous criterion's closing snapshot is reused when
        nothing the plugin can see changed since: nobody else held the repository
        (another run, another task of this run, this task's own later turns), the
        index is as it was (no commit, checkout or staging outside the task file) and
        less than ``REUSE_WINDOW`` passed; else a fresh one is taken.
        """
        kept, self._kept = self._kept, None
        if not (
            kept is not None
            and self.worktree_lock().untouched_since(kept.turn)
            and _ENTRIES.get(self.root) == kept.entry
            and time.monotonic() - kept.taken <= REUSE_WINDOW
            and self._index_stamp() == kept.stamp
        ):
            kept = _Kept("", 0, None, time.monotonic(), self.snapshot())
        self._opened = (kept.taken, kept.snapshot)
        return kept.snapshot

    def _index_stamp(self) -> FileStamp:
        return _stamp(self.git_dir / "index")

    def snapshot(self) -> Snapshot:
        """Every path that differs from HEAD (staged, unstaged or untracked), by content."""
        paths = None
        if in_process():
            with contextlib.suppress(NativeUnavailable):
                paths = self.native.status_paths()
        if paths is None:
            paths = self.cli.status_paths()
        return {p: _signature(self.root / p) for p in paths}

    @property
    def state_file(self) -> Path:
        return self.git_dir / "infratask" / "staged.json"

    def _load_state(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def remember(self, task_id: str, paths: Iterable[str]) -> None:
        with self.index_lock():  # other workers update the same file
            state = self._load_state()
            known = state.get(task_id, [])
            wanted = sorted(set(known) | set(paths))
            if wanted == known:
                return  # nothing new (the task file after its first tick): no rewrite
            state[task_id] = wanted
            self.state_file.parent.mkdir(exist_ok=True)
            atomic_write(self.state_file, json.dumps(state, indent=1))

    def remembered(self, task_id: str) -> list[str]:
        return list(self._load_state().get(task_id, []))

    def forget(self, task_id: str) -> None:
        with self.index_lock():
            state = self._load_state()
            if state.pop(task_id, None) is not None:
                atomic_write(self.state_file, json.dumps(state, indent=1))

    @property
    def claims(self) -> Claims:
        """Who applied which paths from an overlay (``record.overlay``)."""
        return Claims(self.git_dir / "infratask" / "claims.json", self.index_lock())

    def worktree_lock(self) -> Lock:
        """Held while anything of the plugin's changes the work tree: commands,
        task-file writes, commits. What changes meanwhile is then the holder's."""
        return lock_for(self.git_dir, "worktree", f"repository {self.root}", turns=True)

    def index_lock(self) -> Lock:
        """Parallel runs (xdist workers, two terminals) share the repository's index,
        and git refuses a second writer outright; take turns instead."""
        return lock_for(self.git_dir, "index", f"the git index of {self.root}")

    def stage(self, paths: Iterable[str]) -> None:
        paths = sorted(set(paths))
        if paths:
            with self.index_lock(), writing(self.git_dir):
                try:
                    self._add(paths)
                except Exception as exc:
                    _reraised(exc, f"git add failed in {self.root}")

    def _add(self, paths: list[str], env: dict[str, str] | None = None) -> None:
        """``git add -A`` the paths (see ``GitCommand.add``): in-process where libgit2 does
        what git would, for the real index (``env`` names another)."""
        if env is None and in_process():
            try:
                self.native.add(paths)
            except NativeUnavailable:
                pass
            else:
                return
        self.cli.add(paths, env)

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
        with self.worktree_lock(), self.index_lock(), writing(self.git_dir):
            return self._commit(paths, message)

    def _commit(self, paths: list[str], message: str) -> str:
        import git

        fd, index = tempfile.mkstemp(prefix="infratask-index-")
        os.close(fd)
        os.unlink(index)
        env = {"GIT_INDEX_FILE": index}
        try:
            g = self.repo.git
            if self.cli.born():
                g.read_tree("HEAD", env=env)
            else:
                g.read_tree("--empty", env=env)
            self._add(paths, env)
            if not g.diff("--cached", "--name-only", env=env).strip():
                return ""
            g.commit("-q", "-m", message, env=env)
            sha = self.cli.run("rev-parse", "--verify", "HEAD").decode().strip()
            self._add(paths)  # the real index now matches the new HEAD
            return sha
        except GitFailed as exc:
            raise GitError(f"git commit failed in {self.root}: {exc}") from None
        except git.GitCommandError as exc:
            raise GitError(f"git commit failed in {self.root}: {_detail(exc)}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(index)


NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
"""A push must fail with a message, never wait for a password nobody will type."""


@dataclass(frozen=True)
class Upstream:
    """Where a branch pushes: remote name and URL, the branch there, its tracking ref."""

    remote: str
    url: str
    ref: str
    tracking: str

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/")


def includes(repo: RepoTracker, upstream: Upstream | None) -> Includes:
    """``Published.includes`` for ``repo``: a commit unknown here may be one someone
    pushed after the task, so the upstream is fetched once to see whether it builds
    on the task's commit."""
    fetched: set[str] = set()

    def check(newer: str, older: str) -> bool:
        if repo.contains(newer, older):
            return True
        if newer in fetched or upstream is None or repo.resolve(newer):
            return False
        fetched.add(newer)
        repo.fetch(upstream)
        return repo.contains(newer, older)

    return check


def _reraised(exc: Exception, what: str) -> NoReturn:
    """``exc`` raised again; a git command's error (GitPython's is imported once one
    came) as a ``GitError``: ``what``, and git's own reason."""
    if isinstance(exc, GitFailed):
        raise GitError(f"{what}: {exc}") from None
    import git

    if isinstance(exc, git.GitCommandError):
        raise GitError(f"{what}: {_detail(exc)}") from None
    raise exc


def _detail(exc: GitCommandError) -> str:
    """git's own reason (``reason``) in what GitPython kept of its output."""
    kept = str(exc.stderr or exc.stdout or exc).splitlines()
    said = "\n".join(line.strip().strip("'").removeprefix("stderr: '") for line in kept)
    return reason(said) or str(exc)


def _stamp(path: Path) -> FileStamp:
    """A file's identity and last change, as far as ``stat`` tells (None: missing)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)


class Mark(NamedTuple):
    """Where a task's repositories stood between two turns (``Tracker.mark``)."""

    turns: dict[Path, str]
    task_file: FileStamp


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


Files = dict[Path, list[str]]


@dataclass
class Tracker:
    """The repositories one task works in; a cheap no-op when nothing is in git."""

    task_id: str
    task_file: Path
    repos: dict[Path, RepoTracker] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # The plugin's own output (report directories and files) is never a task's change.
    ignored: tuple[Path, ...] = ()
    on_entry: list[Callable[[RepoTracker], None]] = field(default_factory=list)
    """Called on each turn on a repository, before its state is read: what a run that
    died there left is settled first (``record.undo``)."""
    _kept: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _held: set[Path] = field(default_factory=set)
    _owed: set[Path] = field(default_factory=set)
    """Repositories whose index does not hold the task file as written yet (``stage``)."""

    def track(self, paths: Iterable[Path], names: dict[Path, str]) -> None:
        """Record a repository's state before the task's first command in it."""
        for path in paths:
            if not path.is_dir():
                continue
            head = git_head(path.resolve())
            if head is None or head[0] in self.repos:
                continue
            root, branch = head
            try:
                self.repos[root] = RepoTracker(root, names.get(root, root.name), branch)
            except Exception as exc:  # a broken repository must not hide the task's result
                self.warnings.append(f"{path}: {exc}")

    def turns(
        self, timeout: float, on_wait: Callable[[str], None] | None = None, keep: bool = False
    ) -> contextlib.ExitStack:
        """Hold every repository's work-tree lock: what changes while a criterion runs
        is attributed to it, so criteria of parallel runs in one repository take turns.

        ``keep`` holds them on until ``release`` (the task's end): a task that commits
        has the repository to itself from its first command to its commit, so no other
        task's changes, commits or progress lines land in between. Raises
        ``LockTimeout`` when another run holds one past ``timeout``.
        """
        stack = contextlib.ExitStack()
        try:
            for root in sorted(self.repos):
                repo = self.repos[root]
                stack.enter_context(repo.worktree_lock().holding(timeout, on_wait))
                if keep and root not in self._held:
                    self._kept.enter_context(repo.worktree_lock().holding(timeout))
                    self._held.add(root)
                entry = _ENTRIES[root] = _ENTRIES.get(root, 0) + 1
                for settle in self.on_entry:
                    settle(repo)
                if repo.before is None:
                    repo.before = repo.snapshot()
                    repo.keep(repo.before, entry)  # also this criterion's opening state
        except BaseException:
            stack.close()
            raise
        return stack

    def release(self) -> None:
        """Let go of the repositories held since the task's first command, and of the
        paths the task applied from overlays: the task is over."""
        self._kept.close()
        self._held.clear()
        for repo in self.repos.values():
            with contextlib.suppress(OSError):
                repo.claims.release(self.task_id)

    def snapshots(self) -> dict[Path, Snapshot]:
        """Each repository's state right before a criterion's commands (under its turn)."""
        return {root: repo.current() for root, repo in self.repos.items()}

    def drop(self) -> None:
        """Take each repository's next state afresh."""
        for repo in self.repos.values():
            repo.drop()

    def carry(self) -> None:
        """The states ``snapshots`` returned open each repository's next turn too:
        the commands in between change only their overlays, never the work tree."""
        for root, repo in self.repos.items():
            repo.carry(_ENTRIES.get(root, 0) + 1)

    def attribute(self, before: dict[Path, Snapshot], unchanged: bool = False) -> Files:
        """The paths that changed since ``before``, per repository (the task file aside).
        ``unchanged``: nothing was written since (an overlay's attempt that wrote
        nothing), so no status is taken."""
        if unchanged:
            self.carry()
            return {}
        result: Files = {}
        for root, repo in self.repos.items():
            after = repo.snapshot()
            repo.keep(after, _ENTRIES.get(root, 0) + 1)  # the next turn's opening state
            paths = self.task_paths(root, changed(before.get(root, {}), after))
            if paths:
                result[root] = paths
        return result

    def task_paths(
        self, root: Path, paths: Iterable[str], task_file: Path | None = None
    ) -> list[str]:
        """``paths`` without the task file (the plugin writes it too) and the plugin's
        own output: what a criterion's commands changed."""
        task_file = (task_file or self.task_file).resolve()
        return [
            p
            for p in paths
            if (root / p).resolve() != task_file and not self.is_own_output(root / p)
        ]

    def is_own_output(self, path: Path) -> bool:
        """A report file or a write-back temp file: the plugin's, never a task's."""
        if path.name.endswith(TMP_SUFFIX):
            return True
        full = path.absolute()
        return any(full == own or own in full.parents for own in self.ignored)

    def conflicts(self, files: Files, ours: Iterable[str]) -> list[str]:
        """Changed paths that were already dirty when the task started and are not ours."""
        clashes = []
        for root, paths in files.items():
            repo = self.repos[root]
            mine = set(repo.remembered(self.task_id)) | set(ours)
            before = repo.before or {}
            clashes += [self.label(repo, p) for p in paths if p in before and p not in mine]
        return clashes

    def stage(self, files: Files, with_task_file: bool, defer: bool = False) -> list[str]:
        """Stage a passing criterion's files (and the task file); returns the problems,
        which fail the criterion: a change left out of the index is left out of the commit.

        The paths are remembered first, so a later ``--infratask-commit`` still holds
        them even when ``git add`` failed here. ``defer``: the task file alone (its
        tick and progress line) waits for the next staging in its repository or for
        ``stage_owed`` at the task's end, so a criterion that changed no file writes
        no index.
        """
        task_file = self.task_file.resolve()
        problems = []
        for root, repo in self.repos.items():
            paths = list(files.get(root, []))
            if paths:
                repo.drop()  # staging may take a path out of the status
            if with_task_file and root in task_file.parents:
                own = str(task_file.relative_to(root))
                if defer and not paths:  # alone, it waits (remembered for a commit)
                    if root not in self._owed:
                        problems += _staged(repo, self.task_id, [own], index=False)
                    self._owed.add(root)
                    continue
                paths.append(own)
            if paths:
                self._owed.discard(root)
                problems += _staged(repo, self.task_id, paths)
        return problems

    def stage_owed(self) -> list[str]:
        """Stage the task file where ``stage`` deferred it (the task's end)."""
        return self.stage({}, with_task_file=True) if self._owed else []

    def commit(self, message: str) -> dict[str, str]:
        """Commit the task's own paths in each repository it changed."""
        commits: dict[str, str] = {}
        for repo in self.repos.values():
            paths = repo.remembered(self.task_id)
            if not paths:
                continue
            sha = repo.commit(paths, message)
            if sha:
                commits[repo.name] = sha
                repo.forget(self.task_id)
            repo.claims.release(self.task_id)
        return commits

    def repo_for(self, path: Path) -> RepoTracker | None:
        path = path.resolve()
        for root in sorted(self.repos, key=lambda r: len(r.parts), reverse=True):
            if path == root or root in path.parents:
                return self.repos[root]
        return None

    def pending(self, repo: RepoTracker, task_id: str) -> list[str]:
        """The task's remembered paths that still differ from HEAD (its file aside)."""
        task_file = self.task_file.resolve()
        dirty = repo.snapshot()
        return [
            p
            for p in repo.remembered(task_id)
            if p in dirty and (repo.root / p).resolve() != task_file
        ]

    def labels(self, files: Files) -> list[str]:
        return [self.label(self.repos[root], p) for root, paths in files.items() for p in paths]

    def label(self, tracker: RepoTracker, path: str) -> str:
        return f"{tracker.name}:{path}" if len(self.repos) > 1 else path


def mark(tracker: Tracker) -> Mark:
    """Where a task's repositories stand between turns: ``untouched`` tells, in the
    next turn, that nothing of the plugin's changed them in between. A repository held
    on (``turns(keep=True)``) has no mark: its nested turns leave no token."""
    turns = {}
    for root, repo in tracker.repos.items():
        lock = repo.worktree_lock()
        turns[root] = "" if lock.held else lock.last
    return Mark(turns, _stamp(tracker.task_file))


def same_file(tracker: Tracker, since: Mark) -> bool:
    """Whether the task file is the file it was at ``since`` (the same inode: written in
    place since, not replaced by a whole-file write or an editor)."""
    now = _stamp(tracker.task_file)
    return now is not None and since.task_file is not None and now[0] == since.task_file[0]


def untouched(tracker: Tracker, since: Mark) -> bool:
    """Whether the turn held now is the first on each repository since ``since``
    (this process's or another's: no attempt, rollback or commit changed them), and
    the task file (whose progress lines a blocked criterion writes without a turn)
    is as it was."""
    return (
        since.turns.keys() == tracker.repos.keys()
        and _stamp(tracker.task_file) == since.task_file
        and all(
            repo.worktree_lock().untouched_since(since.turns[root])
            for root, repo in tracker.repos.items()
        )
    )


def _staged(repo: RepoTracker, task_id: str, paths: list[str], index: bool = True) -> list[str]:
    """Remember ``paths`` as the task's in ``repo`` (a later commit holds them) and,
    with ``index``, stage them: the problems (none when done)."""
    try:
        repo.remember(task_id, paths)
        if index:
            repo.stage(paths)
    except Exception as exc:
        repo.drop()
        return [f"could not stage in {repo.name}: {exc}"]
    if index:
        repo.restamp()
    return []
