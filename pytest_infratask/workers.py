"""Coordinate xdist workers through the file system: a task whose dependency runs
on another worker waits for it to finish instead of running early.

Workers share nothing but the disk, so a finished task leaves a marker keyed by
the run's id (the same on every worker of one ``pytest -n`` run) in the lock
directory, outside the user's tree.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from pytest_infratask import compat
from pytest_infratask.compat import WorkerData
from pytest_infratask.util.locks import keyed_file

T = TypeVar("T")
SESSION_TASKS = pytest.StashKey[frozenset[Path]]()


def worker_input(config: pytest.Config) -> WorkerData | None:
    """What the xdist controller handed this worker; None on the controller and in a
    run without xdist. xdist keeps it on the worker's config, the one place to read it."""
    return compat.worker_input(config)


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is an xdist worker (xdist's ``is_xdist_worker`` wants a
    session or request; hooks that run before either have only the config)."""
    return worker_input(config) is not None


def worker_output(config: pytest.Config) -> WorkerData | None:
    """What this worker hands back to the controller; None off a worker."""
    return compat.worker_output(config)


def run_id(config: pytest.Config) -> str | None:
    """The xdist run id on a worker; None in a plain (sequential) run."""
    given = worker_input(config)
    return str(given.get("testrunuid")) if given else None


def _marker(path: Path, run: str) -> Path:
    return keyed_file(str(path.resolve()), run, suffix=".done")


def mark_finished(config: pytest.Config, path: Path) -> None:
    run = run_id(config)
    if run is not None:
        _marker(path, run).touch()


def remember_session(config: pytest.Config, task_files: Iterable[Path]) -> None:
    """On a worker: the task files this run executes (on any worker), after every
    deselection. Only those can ever leave a marker, so only those are waited for."""
    if run_id(config) is not None:
        config.stash[SESSION_TASKS] = frozenset(path.resolve() for path in task_files)


def forget_run(run: str, paths: Sequence[Path]) -> None:
    """On the controller, once every worker is down: remove the run's markers."""
    for path in paths:
        with contextlib.suppress(OSError):
            _marker(path, run).unlink()


def wait_for(
    config: pytest.Config,
    paths: Sequence[Path],
    check: Callable[[], T],
    settled: Callable[[T], bool],
    timeout: float,
    interval: float = 0.1,
) -> T:
    """Re-run ``check`` until ``settled`` or every task in ``paths`` finished this run."""
    result = check()
    run = run_id(config)
    session = config.stash.get(SESSION_TASKS, None)
    if session is not None:  # a task outside this run will not finish while we wait
        paths = [p for p in paths if p.resolve() in session]
    if run is None or not paths:
        return result
    deadline = time.monotonic() + timeout
    while not settled(result) and time.monotonic() < deadline:
        if all(_marker(p, run).exists() for p in paths):
            return check()
        time.sleep(interval)
        result = check()
    return result
