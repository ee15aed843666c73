"""locks.py: a private lock directory, locks that name their holder and give up in time."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from helpers import DEADLINE

from pytest_infratask.util import locks, signals

SEED = int(os.environ.get("INFRATASK_SEED", "20261125"))
ROUNDS = 3000


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(locks, "_DIR", None)
    return tmp_path


def test_the_directory_is_created_private(private_tmp: Path) -> None:
    folder = locks.lock_dir()
    assert folder == private_tmp / f"pytest-infratask-{os.geteuid()}"
    info = folder.stat()
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.geteuid()


def test_an_own_directory_left_open_is_closed_again(private_tmp: Path) -> None:
    folder = private_tmp / f"pytest-infratask-{os.geteuid()}"
    folder.mkdir()
    folder.chmod(0o777)
    assert locks.lock_dir() == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_symlink_in_its_place_is_refused(private_tmp: Path) -> None:
    (private_tmp / "elsewhere").mkdir()
    (private_tmp / f"pytest-infratask-{os.geteuid()}").symlink_to(private_tmp / "elsewhere")
    with pytest.raises(locks.LockDirError, match=r"not a directory.*set TMPDIR"):
        locks.lock_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_directory_of_another_user_is_refused(private_tmp: Path) -> None:
    folder = private_tmp / f"pytest-infratask-{os.geteuid()}"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4242, 4242)
    with pytest.raises(locks.LockDirError, match="belongs to uid 4242, not to you"):
        locks.lock_dir()


def test_reentrant_in_one_process_and_named_by_the_holder(private_tmp: Path) -> None:
    lock = locks.lock_for(private_tmp / "thing", "kind", "the thing")
    (private_tmp / "link").symlink_to(private_tmp)
    assert locks.lock_for(private_tmp / "link" / "thing", "kind", "other") is lock
    with lock.holding(1), lock.holding(1):
        assert lock.held
        assert lock.path.read_text().strip() == str(os.getpid())
        assert lock.holder() == f"run PID {os.getpid()}"
    assert not lock.held
    assert lock.path.read_text().strip() == "", "the holder's PID is blanked on release"
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600


def test_a_wait_past_the_limit_raises_naming_the_holder(private_tmp: Path) -> None:
    lock = locks.lock_for(private_tmp / "thing", "", "the thing")
    script = (
        "import fcntl, os, sys\n"
        f"fd = os.open({str(lock.path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "os.write(fd, str(os.getpid()).encode())\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        told: list[str] = []
        with pytest.raises(locks.LockTimeout) as info:
            lock.acquire(0.2, told.append)
        assert str(info.value) == (
            f"the thing is held by run PID {holder.pid}; gave up after waiting 0.2s"
        )
        assert told == [f"waiting for run PID {holder.pid} to release the thing"]
    finally:
        holder.communicate("", timeout=DEADLINE)
    with lock.holding(DEADLINE):  # released by its holder: free again
        assert lock.held


def _free(path: Path) -> bool:
    """Whether no open file holds the lock (a second descriptor could take it)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_an_interrupt_anywhere_leaves_the_lock_known_or_free(private_tmp: Path) -> None:
    """Ctrl-C or SIGTERM (raised by the run as KeyboardInterrupt) landing at any moment
    of taking or letting go: afterwards the lock is either held and known to be, or
    free; never held by a descriptor nobody will close, which would make the run's
    own cleanup wait for it forever."""
    lock = locks.lock_for(private_tmp / "thing", "", "the thing", turns=True)
    rng = random.Random(SEED)
    armed, stop = threading.Event(), threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def sender() -> None:
        while armed.wait() and not stop.is_set():
            armed.clear()
            time.sleep(rng.uniform(0, 0.0003))  # anywhere in the loop below
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, signals.deferrable(interrupt))
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    try:
        for n in range(ROUNDS):
            try:
                armed.set()
                while True:
                    lock.acquire(DEADLINE)
                    lock.release()
            except KeyboardInterrupt:
                pass
            while lock.held:
                lock.release()
            if not _free(lock.path):
                pytest.fail(f"interrupt {n + 1}: the lock is held by a descriptor nobody knows of")
    finally:
        stop.set()
        armed.set()
        thread.join(DEADLINE)
        signal.signal(signal.SIGTERM, previous)


def test_a_handler_set_by_another_plugin_waits_for_the_stretch_too() -> None:
    """pytest-timeout's SIGALRM, made deferrable as an item starts: it fires inside a
    stretch, and is raised as the stretch ends, with the body done."""
    done: list[str] = []

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError("timed out")

    previous = signal.signal(signal.SIGALRM, expired)
    try:
        signals.defer_current(signal.SIGALRM)
        signals.defer_current(signal.SIGALRM)  # once: not wrapped twice
        assert signal.getsignal(signal.SIGALRM).__wrapped__ is expired  # type: ignore[union-attr]
        with pytest.raises(TimeoutError), signals.deferred():
            os.kill(os.getpid(), signal.SIGALRM)
            for _ in range(1000):  # the handler would have run here, undeferred
                done.append("")
            done.append("whole")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert done[-1] == "whole"
