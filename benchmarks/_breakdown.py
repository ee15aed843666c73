"""Where a criterion's time goes: one in-process pytest run with timers on the plugin's
phases (no profiler, so no profiler overhead). Used by benchmark 1; also runnable alone:

    cd <dir with TASK-1.md> && python benchmarks/_breakdown.py plugin TASK-1.md
    cd <dir with test_steps.py> && \\
        python benchmarks/_breakdown.py plain test_steps.py -p no:infratask

Prints one JSON object: {phase: [seconds, calls]}; names in PATCHES that were not found
are listed under "_missing" (the phase is then absent, the run goes on).
"""

from __future__ import annotations

import functools
import importlib
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

# Every package-internal name this module times: (module, attribute, phase). The module
# is the one its callers look the name up in (``run.attempts.run_script``, not
# ``run.process``'s). The
# one place to update when the package's modules move.
PATCHES: tuple[tuple[str, str, str], ...] = (
    ("pytest_infratask.orchestrator.attempts", "run_script", "run_script (the command)"),
    ("pytest_infratask.guard.context", "SafetyContext.run", "safety checks (incl. bash -n)"),
    ("pytest_infratask.record.writeback", "write", "writeback.write"),
    ("pytest_infratask.record.git", "Tracker.track", "git tracking"),
    ("pytest_infratask.record.git", "Tracker.snapshots", "git tracking"),
    ("pytest_infratask.record.git", "Tracker.attribute", "git tracking"),
    ("pytest_infratask.record.git", "Tracker.stage", "git tracking"),
    ("pytest_infratask.record.git", "Tracker.conflicts", "git tracking"),
    ("pytest_infratask.items", "execute", "execute (whole criterion)"),
)

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


def instrument_plugin() -> list[str]:
    """Wrap every name in PATCHES with a timer; return the names not found."""
    missing = []
    for module_name, attribute, phase in PATCHES:
        *path, name = attribute.split(".")
        try:
            owner: Any = importlib.import_module(module_name)
            for part in path:
                owner = getattr(owner, part)
            setattr(owner, name, timed(phase, getattr(owner, name)))
        except (ImportError, AttributeError):
            missing.append(f"{module_name}:{attribute}")
    return missing


def main() -> int:
    mode, args = sys.argv[1], sys.argv[2:]
    missing: list[str] = []
    if mode == "plugin":
        missing = instrument_plugin()
    else:
        subprocess.run = timed("subprocess.run (the command)", subprocess.run)
    started = time.perf_counter()
    code = pytest.main(["-p", "no:cacheprovider", "-q", *args], plugins=[Protocol()])
    TOTALS["session"] = [time.perf_counter() - started, 1]
    print("BREAKDOWN " + json.dumps({**TOTALS, "_missing": missing}))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
