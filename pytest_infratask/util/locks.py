"""Locks between runs: private to the user, bounded in time, naming their holder.

Lock files live in a per-user directory under the temp dir that the plugin
creates with mode 0700 and whose owner it checks, so another user can neither
pre-create it (and make every run wait) nor read which repositories run.
A lock holder writes its PID into the lock file, so a run that has to wait
can say for whom; a wait has a limit, and going past it is an exception the
caller turns into a blocked outcome, never a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pytest_infratask.util.signals import deferred

LOCK_RETRY = 0.05  # seconds between tries for a lock another run holds


class LockDirError(Exception):
    """The lock directory is not private to this user; the message says what to do."""


class LockTimeout(Exception):
    """A lock stayed held by another run for longer than the wait limit."""

    def __init__(self, what: str, holder: str, waited: float) -> None:
        super().__init__(f"{what} is held by {holder}; gave up after waiting {waited:g}s")
        self.what = what
        self.holder = holder
        self.waited = waited


_DIR: Path | None = None


def lock_dir() -> Path:
    """``$TMPDIR/pytest-infratask-<uid>``, created 0700; refused if someone else owns it."""
    global _DIR
    name = os.path.join(tempfile.gettempdir(), f"pytest-infratask-{os.geteuid()}")
    if _DIR is not None and name == _DIR.as_posix():
        return _DIR  # checked once per process; TMPDIR changing is seen
    folder = Path(name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise LockDirError(
            f"lock directory {folder} is not a directory (a symlink or file is in its place); "
            "remove it, or set TMPDIR to a private directory"
        )
    if info.st_uid != os.geteuid():
        raise LockDirError(
            f"lock directory {folder} belongs to uid {info.st_uid}, not to you "
            f"(uid {os.geteuid()}): another user created it, so its locks cannot be trusted; "
            "have it removed, or set TMPDIR to a private directory"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)
    _DIR = folder
    return folder


def keyed_file(*parts: str, suffix: str) -> Path:
    """A file in the lock directory named after ``parts`` (a path, a run id...)."""
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    return lock_dir() / f"{key}{suffix}"


_TURNS = itertools.count(1)
_NONCE = os.urandom(6).hex()
_SLOT = 64


def _slot(text: str) -> bytes:
    """``text`` padded to the fixed width the lock and turn files hold. Overwritten in
    place, never truncated: on ext4 a truncate-then-write makes the close start the
    file's writeback (``auto_da_alloc``), 0.2 ms on every lock taken."""
    return text.encode("ascii").ljust(_SLOT)


class Lock:
    """An exclusive ``flock`` on a file in the lock directory, reentrant per process.

    ``what`` names the locked thing in messages (a repository, a task file).
    ``turns``: every holding (outermost acquire) also leaves a token of its own in a
    file beside the lock, so a holder can tell whether anyone held the lock since a
    turn of its own (``untouched_since``): what it saw of the locked thing then is
    still what is there, as far as lock holders go.
    """

    def __init__(self, path: Path, what: str, turns: bool = False) -> None:
        self.path = path
        self.what = what
        self.turns = turns
        self.turn = ""  # this holding's token ("" while not held, or without turns)
        self._previous = ""  # the token left by the holding before this one
        self.last = ""  # this process's last holding's token, kept after it ended
        self._fd: int | None = None
        self._depth = 0
        self._owner: int | None = None
        self._guard = threading.Lock()

    def untouched_since(self, turn: str) -> bool:
        """Whether this thread holds the lock and nobody held it since its turn ``turn``
        (this very holding, or the one just before it)."""
        return bool(turn) and self.held and turn in (self.turn, self._previous)

    def _take_turn(self) -> tuple[str, str]:
        """Leave this holding's token beside the lock; return it and the one before."""
        token = f"{os.getpid()}.{_NONCE}.{next(_TURNS)}"
        try:
            fd = os.open(
                self.path.with_name(self.path.name + ".turn"), os.O_RDWR | os.O_CREAT, 0o600
            )
        except OSError:
            return "", ""  # no token: nothing is taken as untouched
        try:
            previous = os.pread(fd, _SLOT, 0).decode("ascii", "replace").strip()
            os.pwrite(fd, _slot(token), 0)
        except OSError:
            return "", ""
        finally:
            os.close(fd)
        return token, previous

    def holder(self) -> str:
        """Who holds the lock, from the PID its holder wrote (best effort)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        return f"run PID {text}" if text.isdigit() else "another run"

    def acquire(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock, or raise holding nothing: each try takes and notes it in one
        stretch that no signal cuts (``signals.deferred``), and a signal raised as the
        stretch ends lets go of what it took."""
        started = time.monotonic()
        told = False
        while True:
            taken = False
            try:
                with deferred():
                    taken = self._try_take()
            except BaseException:
                if taken:
                    self.release()
                raise
            if taken:
                return
            waited = time.monotonic() - started
            if waited >= timeout:
                raise LockTimeout(self.what, self.holder(), timeout)
            if not told and on_wait is not None:
                on_wait(f"waiting for {self.holder()} to release {self.what}")
                told = True
            time.sleep(min(LOCK_RETRY, max(0.0, timeout - waited)))

    def _try_take(self) -> bool:
        """One try: False when another run holds the lock."""
        with self._guard:
            if self._depth and self._owner == threading.get_ident():
                self._depth += 1
                return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        try:
            os.pwrite(fd, _slot(str(os.getpid())), 0)
            turn, previous = self._take_turn() if self.turns else ("", "")
        except BaseException:
            os.close(fd)
            raise
        with self._guard:
            self._fd, self._depth, self._owner = fd, 1, threading.get_ident()
            self.turn, self._previous = turn, previous
        return True

    def release(self) -> None:
        with deferred(), self._guard:
            self._depth -= 1
            if self._depth:
                return
            fd, self._fd, self._owner = self._fd, None, None
            self.last, self.turn, self._previous = self.turn, "", ""
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.pwrite(fd, _slot(""), 0)
                os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return bool(self._depth) and self._owner == threading.get_ident()

    @contextlib.contextmanager
    def holding(
        self, timeout: float, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[None]:
        self.acquire(timeout, on_wait)
        try:
            yield
        finally:
            self.release()

    def __enter__(self) -> Lock:
        self.acquire(DEFAULT_WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


DEFAULT_WAIT = 3600.0
_LOCKS: dict[tuple[Path, str], Lock] = {}
_BY_FILE: dict[Path, Lock] = {}


def lock_for(path: Path, kind: str, what: str, turns: bool = False) -> Lock:
    """One lock object per locked path, kind and process: named once, then reused."""
    found = _LOCKS.get((path, kind))
    if found is None:
        name = keyed_file(os.path.realpath(path), *([kind] if kind else []), suffix=".lock")
        # one object per lock file, however the path was spelled: a second object
        # would wait for the first one in the same process
        found = _LOCKS[(path, kind)] = _BY_FILE.setdefault(name, Lock(name, what))
    found.turns = found.turns or turns
    return found
