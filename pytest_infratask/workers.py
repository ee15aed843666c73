"""Coordinate xdist workers through the file system: a task whose dependency runs
on another worker waits for it to finish instead of running early.

Workers share nothing but the disk, so a finished task leaves a marker keyed by
the run's id (the same on every worker of one ``pytest -n`` run) in the lock
directory, outside the user's tree.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from .locks import keyed_file

T = TypeVar("T")
SESSION_TASKS = pytest.StashKey[frozenset[Path]]()


def run_id(config: pytest.Config) -> str | None:
    """The xdist run id on a worker; None in a plain (sequential) run."""
    workerinput = getattr(config, "workerinput", None)
    return str(workerinput.get("testrunuid")) if workerinput else None


def _marker(path: Path, run: str) -> Path:
    return keyed_file(str(path.resolve()), run, suffix=".done")


def mark_finished(config: pytest.Config, path: Path) -> None:
    run = run_id(config)
    if run is not None:
        _marker(path, run).touch()


def remember_session(config: pytest.Config, items: Sequence[pytest.Item]) -> None:
    """On a worker: the task files this run executes (on any worker), after every
    deselection. Only those can ever leave a marker, so only those are waited for."""
    if run_id(config) is None or "pytest_infratask.collect" not in sys.modules:
        return
    from .collect import CriterionItem

    config.stash[SESSION_TASKS] = frozenset(
        item.path.resolve() for item in items if isinstance(item, CriterionItem)
    )


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
