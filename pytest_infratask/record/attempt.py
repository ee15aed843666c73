"""An attempt's starting state in one repository, and putting it back.

Git already holds the starting version of every path that is clean (HEAD, which the
index matches). What it does not hold is recorded before a criterion's first
command: each path that differs from HEAD (staged, unstaged, untracked) with its
work-tree content saved as a blob in the repository's object database, as
``git stash`` does, and its index entry. That record, ``Start``, is small plain data,
so a journal can hold it for a run that dies half way (``record.recovery``).

``GitView`` is the narrow interface an attempt needs (snapshot, diff, rollback), so
another view of a work tree (a filesystem overlay) could stand behind it instead.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypedDict, TypeVar

from pytest_infratask.record.native import Native, NativeUnavailable
from pytest_infratask.run.process import executable
from pytest_infratask.util.files import TMP_SUFFIX

Blob = tuple[int, str]
"""A git mode and object id."""

FILE, EXEC, LINK, GITLINK = 0o100644, 0o100755, 0o120000, 0o160000
UNSAVED = (0, "")
"""A file whose content cannot be read: it cannot be put back either."""
DIRECTORY = (GITLINK, "")
"""A directory where git sees a path (a submodule, a nested repository): left as is."""
DIFF_FILE_LIMIT = 1024 * 1024
DIFF_LIMIT = 256 * 1024


def blob_id(data: bytes) -> str:
    """The id git gives ``data`` as a blob."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def read_worktree(path: Path) -> tuple[Blob | None, bytes | None]:
    """A work-tree path's mode and blob id (None: absent) and its content, as git would
    store it: a symbolic link's target, a file's bytes; a directory is not saved."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    except OSError:
        return UNSAVED, None
    try:
        if stat.S_ISLNK(info.st_mode):
            data = os.fsencode(os.readlink(path))
            return (LINK, blob_id(data)), data
        if stat.S_ISREG(info.st_mode):
            data = path.read_bytes()
            return (EXEC if info.st_mode & stat.S_IXUSR else FILE, blob_id(data)), data
    except OSError:
        return UNSAVED, None
    return DIRECTORY if stat.S_ISDIR(info.st_mode) else UNSAVED, None


def signature(blob: Blob | None) -> str:
    """A path's state as one string, for comparing snapshots."""
    if blob is None:
        return "deleted"
    return "unreadable" if blob == UNSAVED else f"{blob[0]:o}:{blob[1]}"


def from_signature(text: str) -> Blob | None:
    if text == "deleted":
        return None
    mode, _, oid = text.partition(":")
    return (int(mode, 8), oid) if mode.isdigit() else UNSAVED


@dataclass(frozen=True)
class PathState:
    worktree: Blob | None
    index: Blob | None


BlobJson = list[int | str]
"""A ``Blob`` as JSON: ``[mode, oid]``."""


class StartJson(TypedDict):
    head: str | None
    paths: dict[str, list[BlobJson | None]]
    """Each path: its work tree blob, its index blob."""


@dataclass(frozen=True)
class Start:
    """A repository as an attempt found it: HEAD, and each path that differed from it."""

    head: str | None
    paths: dict[str, PathState] = field(default_factory=dict)

    def as_json(self) -> StartJson:
        return {
            "head": self.head,
            "paths": {p: [_pair(s.worktree), _pair(s.index)] for p, s in self.paths.items()},
        }

    @classmethod
    def from_json(cls, data: StartJson) -> Start:
        paths = {str(p): PathState(_blob(w), _blob(i)) for p, (w, i) in dict(data["paths"]).items()}
        return cls(data.get("head"), paths)


def _pair(blob: Blob | None) -> BlobJson | None:
    return None if blob is None else [blob[0], blob[1]]


def _blob(value: BlobJson | None) -> Blob | None:
    return None if value is None else (int(value[0]), str(value[1]))


@dataclass
class Undone:
    """What a rollback put back in one repository, and what it took away (a diff)."""

    files: list[str] = field(default_factory=list)
    diff: str = ""
    problems: list[str] = field(default_factory=list)


class View(Protocol):
    """What an attempt needs of a work tree: take its state, tell what changed since,
    put changed paths back. ``dirty`` is each path that differs from the base (HEAD),
    by ``signature``."""

    def snapshot(self, dirty: dict[str, str]) -> Start: ...

    def diff(self, start: Start, dirty: dict[str, str]) -> list[str]: ...

    def rollback(self, start: Start, paths: Iterable[str]) -> Undone: ...


T = TypeVar("T")


class _Git(Protocol):
    """What libgit2 (``Native``) and the git command (``GitCommand``) both do."""

    def head(self) -> str | None: ...

    def write_blob(self, data: bytes) -> str: ...

    def has_blob(self, oid: str) -> bool: ...

    def read_blob(self, oid: str) -> bytes: ...

    def index_entries(self, paths: list[str]) -> dict[str, Blob]: ...

    def tree_entries(self, commit: str | None, paths: list[str]) -> dict[str, Blob]: ...

    def set_index(self, entries: dict[str, Blob | None]) -> None: ...

    def changed_between(self, old: str, new: str) -> list[str]: ...


class GitView:
    """One repository's work tree and index as git sees them."""

    def __init__(
        self,
        root: Path,
        git_dir: Path,
        native: Native | None = None,
        command: GitCommand | None = None,
    ) -> None:
        self.root, self.git_dir = root, git_dir
        self.native = native or Native(root)
        self.git = command or GitCommand(root)

    def _either(self, call: Callable[[_Git], T]) -> T:
        """libgit2 in-process, else the git command (an index libgit2 cannot read)."""
        try:
            return call(self.native)
        except NativeUnavailable:
            return call(self.git)

    # -- snapshot -------------------------------------------------------------------------
    def snapshot(self, dirty: dict[str, str]) -> Start:
        """The starting state, from ``dirty`` (each path that differs from HEAD, by
        ``signature``): the content of each saved as a blob, and its index entry."""
        index = self._either(lambda g: g.index_entries(list(dirty)))
        paths = {
            path: PathState(self._saved(path, sig), index.get(path)) for path, sig in dirty.items()
        }
        return Start(self._either(lambda g: g.head()), paths)

    def _saved(self, path: str, sig: str) -> Blob | None:
        """The work tree's blob of ``path``, written to the object store if not in it."""
        blob = from_signature(sig)
        oid = blob[1] if blob is not None else ""
        if oid and not self._either(lambda g: g.has_blob(oid)):
            blob, data = read_worktree(self.root / path)
            if data is not None and blob is not None:
                self._either(lambda g: g.write_blob(data))
        return blob

    # -- diff -----------------------------------------------------------------------------
    def diff(self, start: Start, dirty: dict[str, str]) -> list[str]:
        """The paths whose work tree or index differ from ``start``; ``dirty`` is the
        status now (each path that differs from HEAD, by ``signature``)."""
        head = self._either(lambda g: g.head())
        candidates = set(start.paths) | set(dirty)
        old = start.head
        if head != old and head and old:
            candidates |= set(self._either(lambda g: g.changed_between(old, head)))
        both = sorted(set(start.paths) & set(dirty))
        index = self._either(lambda g: g.index_entries(both))
        changed = []
        for path in sorted(candidates):
            before = start.paths.get(path)
            if before is None or path not in dirty:
                changed.append(path)  # clean then and dirty now, or the other way round
            elif signature(before.worktree) != dirty[path] or before.index != index.get(path):
                changed.append(path)
        return changed

    # -- rollback -------------------------------------------------------------------------
    def rollback(self, start: Start, paths: Iterable[str]) -> Undone:
        """Put ``paths`` back as ``start`` had them: work tree and index. What is taken
        away is saved as blobs first and described in the returned diff."""
        paths = sorted(set(paths))
        undone = Undone(files=paths)
        if not paths:
            return undone
        taken = {p: self._save(p) for p in paths}
        clean = [p for p in paths if p not in start.paths]
        in_head = self._either(lambda g: g.tree_entries(start.head, clean)) if start.head else {}
        before = {p: start.paths[p].worktree for p in paths if p in start.paths}
        before.update({p: in_head.get(p) for p in clean})
        undone.diff = self._diff_text(before, taken)
        # from HEAD below, by git: its filters give the file as checked out
        states = {p: start.paths.get(p, PathState(None, None)) for p in paths if p not in in_head}
        index: dict[str, Blob | None] = {p: s.index for p, s in states.items()}
        # Removals first, deepest first, so a directory the attempt made where a file
        # was is gone before the file is written back.
        for path in sorted(states, key=lambda p: (states[p].worktree is not None, -p.count("/"))):
            problem = self._put(path, states[path].worktree)
            if problem:
                undone.problems.append(problem)
        try:
            if in_head:
                self.git.checkout(start.head or "", sorted(in_head))
            if index:
                self._either(lambda g: g.set_index(index))
        except (GitFailed, OSError) as exc:
            undone.problems.append(f"the index: {exc}")
        return undone

    def _save(self, path: str) -> Blob | None:
        blob, data = read_worktree(self.root / path)
        if data is not None:
            with contextlib.suppress(NativeUnavailable, GitFailed, OSError):
                self._either(lambda g: g.write_blob(data))
        return blob

    def _put(self, path: str, blob: Blob | None) -> str:
        """The work-tree side of one path; a problem, or ""."""
        full = self.root / path
        if blob == UNSAVED:
            return f"{path}: it could not be read when the attempt began, so it is not put back"
        if blob is not None and blob[0] == GITLINK:
            return ""  # a directory (a submodule): beyond what an attempt puts back
        try:
            if blob is None:
                _remove(full, self.root)
                return ""
            data = self._either(lambda g: g.read_blob(blob[1]))
            full.parent.mkdir(parents=True, exist_ok=True)
            _replace(full, data, blob[0])
        except (OSError, NativeUnavailable, GitFailed) as exc:
            return f"{path}: {exc}"
        return ""

    def _content(self, blob: Blob | None) -> bytes:
        if blob is None or not blob[1]:
            return b""
        with contextlib.suppress(NativeUnavailable, GitFailed):
            return bytes(self._either(lambda g: g.read_blob(blob[1])))
        return b""

    def _diff_text(self, before: dict[str, Blob | None], after: dict[str, Blob | None]) -> str:
        """A unified diff from each path's starting version to the attempt's."""
        parts = []
        for path in sorted(after):
            old, new = before.get(path), after[path]
            kept = f" (its version: git cat-file -p {new[1][:12]})" if new and new[1] else ""
            parts.append(
                f"diff {path}{kept}\n" + unified(path, self._content(old), self._content(new))
            )
            if sum(map(len, parts)) > DIFF_LIMIT:
                break
        return "".join(parts)


def unified(path: str, old: bytes, new: bytes) -> str:
    """A unified diff of one path's two versions (a note when too large or binary)."""
    if len(old) > DIFF_FILE_LIMIT or len(new) > DIFF_FILE_LIMIT:
        return f"{path}: {len(old)} bytes, then {len(new)} bytes (too large to show)\n"
    if b"\0" in old[:8192] or b"\0" in new[:8192]:
        return f"Binary file {path} differs\n"
    lines = difflib.unified_diff(
        old.decode("utf-8", "replace").splitlines(keepends=True),
        new.decode("utf-8", "replace").splitlines(keepends=True),
        f"a/{path}",
        f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole (a temp file renamed over it), as ``mode`` says."""
    if path.is_dir() and not path.is_symlink():
        # The attempt put a directory where a file was: all of it is the attempt's.
        shutil.rmtree(path)
    if mode == LINK:
        tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(os.fsdecode(data), tmp)
        os.replace(tmp, path)
        return
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(fd, (0o777 if mode == EXEC else 0o666) & ~_umask())
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def _remove(path: Path, root: Path) -> None:
    """Remove a file the attempt made, and the directories it leaves empty. Gone already
    (a directory it made where a file was, put back first) is done."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if path.is_dir() and not path.is_symlink():
            return  # a directory (a nested repository) stays
        path.unlink()
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:
            return


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


class GitFailed(Exception):
    """A git command failed; the message is git's reason (see ``reason``)."""


def reason(said: str) -> str:
    """git's own reason in what it printed: its ``fatal:``/``error:`` line, else its
    last line ("" for nothing)."""
    lines = [line.strip() for line in said.strip().splitlines() if line.strip()]
    found = next((line for line in lines if line.startswith(("fatal:", "error:"))), None)
    return found or (lines[-1] if lines else "")


def _failed(args: tuple[str, ...], done: subprocess.CompletedProcess[bytes]) -> GitFailed:
    said = reason(done.stderr.decode("utf-8", "replace"))
    return GitFailed(said or f"git {args[0]}: exit {done.returncode}")


class GitCommand:
    """The same reads and writes through the git command."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(
        self, *args: str, data: bytes | None = None, env: dict[str, str] | None = None
    ) -> bytes:
        """git's output; ``GitFailed`` with its reason. ``env`` is added to the run's."""
        done = self._ran(*args, data=data, env=env)
        if done.returncode:
            raise _failed(args, done)
        return done.stdout

    def _ran(
        self, *args: str, data: bytes | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        extra = {"GIT_LITERAL_PATHSPECS": "1", "GIT_OPTIONAL_LOCKS": "0", **(env or {})}
        return subprocess.run(
            [executable("git", os.environ), "-C", str(self.root), *args],
            input=data if data is not None else b"",
            capture_output=True,
            env={**os.environ, **extra},
            check=False,
        )

    def status_paths(self) -> list[str]:
        """As ``Native.status_paths``: the paths ``git status`` lists, both sides of a
        rename."""
        out = self.run("status", "--porcelain=v1", "-z", "--untracked-files=all")
        entries = [os.fsdecode(e) for e in out.split(b"\0")]
        paths: list[str] = []
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if len(entry) < 4:
                continue
            paths.append(entry[3:])
            if "R" in entry[:2] or "C" in entry[:2]:
                paths.append(entries[i])  # the rename's source
                i += 1
        return paths

    def add(self, paths: list[str], env: dict[str, str] | None = None) -> None:
        """``git add -A`` of ``paths``; one gone from the work tree is dropped from the
        index instead (deleted, or the source of a ``git mv``), present there or not."""
        kept = [p for p in paths if os.path.lexists(self.root / p)]
        gone = [p for p in paths if p not in kept]
        if kept:
            self.run("add", "-A", "--", *kept, env=env)
        if gone:
            self.run("rm", "-q", "-r", "--cached", "--ignore-unmatch", "--", *gone, env=env)

    def born(self) -> bool:
        """Whether HEAD names a commit (False: its branch has none yet). ``GitFailed``
        when git could not say: a commit built on the empty tree then would drop every
        other file of the repository (a git killed by the run's own interrupt)."""
        args = ("rev-parse", "-q", "--verify", "HEAD")
        done = self._ran(*args)
        if done.returncode not in (0, 1) or (done.returncode == 1 and done.stderr.strip()):
            raise _failed(args, done)
        return done.returncode == 0

    def head(self) -> str | None:
        try:
            return self.run("rev-parse", "--verify", "-q", "HEAD").decode().strip() or None
        except GitFailed:
            return None

    def write_blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", data=data).decode().strip()

    def has_blob(self, oid: str) -> bool:
        try:
            self.run("cat-file", "-e", oid)
        except GitFailed:
            return False
        return True

    def read_blob(self, oid: str) -> bytes:
        return self.run("cat-file", "blob", oid)

    def index_entries(self, paths: list[str]) -> dict[str, Blob]:
        if not paths:
            return {}
        out = self.run("ls-files", "-s", "-z", "--", *paths)
        return {p: b for p, b in _entries(out, stage=True) if p in set(paths)}

    def tree_entries(self, commit: str | None, paths: list[str]) -> dict[str, Blob]:
        if commit is None or not paths:
            return {}
        out = self.run("ls-tree", "-r", "-z", commit, "--", *paths)
        return {p: b for p, b in _entries(out, stage=False) if p in set(paths)}

    def set_index(self, entries: dict[str, Blob | None]) -> None:
        lines = b"".join(
            (f"{b[0]:o} {b[1]}" if b else f"0 {'0' * 40}").encode() + b"\t" + os.fsencode(p) + b"\0"
            for p, b in entries.items()
        )
        self.run("update-index", "-z", "--index-info", data=lines)

    def checkout(self, commit: str, paths: list[str]) -> None:
        self.run("checkout", "-q", commit, "--", *paths)

    def changed_between(self, old: str, new: str) -> list[str]:
        out = self.run("diff", "--name-only", "-z", "--no-renames", old, new)
        return [os.fsdecode(p) for p in out.split(b"\0") if p]


def _entries(out: bytes, stage: bool) -> Iterator[tuple[str, Blob]]:
    """``ls-files -s -z`` (mode oid stage) or ``ls-tree -z`` (mode type oid) lines."""
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        fields = meta.decode().split()
        oid = fields[1] if stage else fields[2]
        if stage and fields[2] != "0":
            continue
        yield os.fsdecode(path), (int(fields[0], 8), oid)
