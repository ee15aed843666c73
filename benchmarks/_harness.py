"""Timing machinery shared by the benchmarks: subprocess runs, interleaved repetitions,
figures for the summary table. Nothing here asserts a speed; it only measures and prints.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PYTEST = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q")
NO_PLUGIN = ("-p", "no:infratask")


class BenchError(RuntimeError):
    """A benchmarked command did not do what it was supposed to: its figure would lie."""


def make_env(pycache: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every benchmarked process.

    ``pycache`` given: bytecode (and pytest's rewritten-assertion cache) is written to that
    private prefix, so runs after the first are warm, as on a normal machine, without
    writing ``__pycache__`` into the checkout or site-packages. ``None``: bytecode writing
    is off (``PYTHONDONTWRITEBYTECODE=1``), so every run re-compiles and re-rewrites.
    """
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTHONPYCACHEPREFIX"):
        env.pop(name, None)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra or {})
    return env


LAST_CPU = [0.0]  # CPU seconds (user + sys, the process and its children) of the last run()
LAST_RSS = [0]  # peak resident set of the last run(peak=True), KiB; 0: not measured
# GNU time reports a child's own peak. os.wait4 cannot: a child spawned from this process
# (vfork, then exec) keeps this process's resident set as the floor of its ru_maxrss.
GNU_TIME = Path("/usr/bin/time")


def run(
    args: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    ok: Sequence[int] = (0,),
    peak: bool = False,
) -> tuple[float, str]:
    """Run one command; return (wall seconds, combined output). Unexpected exit: BenchError.

    Its CPU time is left in ``LAST_CPU``, from ``os.wait4``: the resource usage of exactly
    this child and the children it waited for. On a shared machine CPU time is far less
    disturbed by other processes than wall time, so it is printed next to it. ``peak``:
    run it under ``/usr/bin/time`` (if present) and leave its peak resident set in
    ``LAST_RSS``.
    """
    argv = list(args)
    rss_file = None
    if peak and GNU_TIME.is_file():
        fd, name = tempfile.mkstemp(prefix="rss-", suffix=".txt")
        os.close(fd)
        rss_file = Path(name)
        argv = [str(GNU_TIME), "-f", "%M", "-o", name, *argv]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    with proc.stdout:  # type: ignore[union-attr]  # stdout=PIPE
        output = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    LAST_RSS[0] = 0
    if rss_file is not None:
        text = rss_file.read_text(encoding="utf-8").split()
        rss_file.unlink()
        LAST_RSS[0] = int(text[-1]) if text and text[-1].isdigit() else 0
    if proc.returncode not in ok:
        tail = "\n".join(output.splitlines()[-25:])
        raise BenchError(f"{' '.join(args)} (in {cwd}) exited {proc.returncode}:\n{tail}")
    return elapsed, output


@dataclass
class Side:
    """One thing being timed: ``prepare`` (untimed), ``go`` (timed), ``check`` (untimed)."""

    name: str
    go: Callable[[], tuple[float, str]]
    prepare: Callable[[], None] | None = None
    check: Callable[[str], None] | None = None
    reps: int | None = None
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)

    @property
    def peak_mib(self) -> float:
        """The highest peak resident set of its timed runs, MiB (0: not measured)."""
        return max(self.rss, default=0) / 1024

    def describe(self) -> str:
        spread = f"; min {self.best:.3f}, max {max(self.times):.3f}" if len(self.times) > 1 else ""
        return (
            f"{self.median:8.3f} s  (median of {len(self.times)}{spread}; "
            f"cpu {self.cpu_median:.3f} s)"
        )


def measure(sides: Sequence[Side], reps: int, warmup: bool = True) -> None:
    """Time the sides interleaved (A B C A B C …) so drift on a shared machine hits all of
    them alike. One untimed warm-up run per side first (bytecode cache, page cache)."""
    if warmup:
        for side in sides:
            if side.prepare:
                side.prepare()
            _, out = side.go()
            if side.check:
                side.check(out)
    for rep in range(max(s.reps or reps for s in sides)):
        for side in sides:
            if rep >= (side.reps or reps):
                continue
            if side.prepare:
                side.prepare()
            elapsed, out = side.go()
            cpu, rss = LAST_CPU[0], LAST_RSS[0]
            if side.check:
                side.check(out)
            side.times.append(elapsed)
            side.cpu.append(cpu)
            side.rss.append(rss)


@dataclass
class Figure:
    section: str
    label: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None


FIGURES: list[Figure] = []


def figure(
    section: str, label: str, value: float, unit: str, target: str = "", met: bool | None = None
) -> Figure:
    fig = Figure(section, label, value, unit, target, met)
    FIGURES.append(fig)
    return fig


def fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:g} {unit}"


def summary_table() -> str:
    rows = [("benchmark", "figure", "value", "target", "")]
    for f in FIGURES:
        verdict = "" if f.met is None else ("meets" if f.met else "MISSES")
        rows.append((f.section, f.label, fmt(f.value, f.unit), f.target, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for n, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text), flush=True)
