"""Where a criterion's time goes: one in-process pytest run with timers on the plugin's
phases (no profiler, so no profiler overhead). Used by benchmark 1; also runnable alone:

    cd <dir with TASK-1.md> && python benchmarks/_breakdown.py plugin TASK-1.md
    cd <dir with test_steps.py> && \\
        python benchmarks/_breakdown.py plain test_steps.py -p no:infratask

Prints one JSON object: {phase: [seconds, calls]}.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

TOTALS: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TOTALS[name][0] += time.perf_counter() - started
            TOTALS[name][1] += 1

    return wrapper


class Protocol:
    """Times each item's whole runtest protocol (setup, call, teardown, reporting)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Any:
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            TOTALS["item protocol"][0] += time.perf_counter() - started
            TOTALS["item protocol"][1] += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        started = time.perf_counter()
        try:
            return (yield)
        finally:
            TOTALS["collection"][0] += time.perf_counter() - started
            TOTALS["collection"][1] += 1


def instrument_plugin() -> None:
    from pytest_infratask.guard.context import SafetyContext
    from pytest_infratask.record import writeback
    from pytest_infratask.record.git import Tracker
    from pytest_infratask.run import attempts
    from pytest_infratask.run.taskrun import TaskRun

    attempts.run_script = timed("run_script (the command)", attempts.run_script)
    SafetyContext.run = timed("safety checks (incl. bash -n)", SafetyContext.run)
    writeback.write = timed("writeback.write", writeback.write)
    for method in ("track", "snapshots", "attribute", "stage", "conflicts"):
        setattr(Tracker, method, timed("git tracking", getattr(Tracker, method)))
    TaskRun.execute = timed("TaskRun.execute (whole criterion)", TaskRun.execute)


def main() -> int:
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "plugin":
        instrument_plugin()
    else:
        subprocess.run = timed("subprocess.run (the command)", subprocess.run)
    started = time.perf_counter()
    code = pytest.main(["-p", "no:cacheprovider", "-q", *args], plugins=[Protocol()])
    TOTALS["session"] = [time.perf_counter() - started, 1]
    print("BREAKDOWN " + json.dumps(TOTALS))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
