"""``run.py --profile``: cProfile the plugin where the benchmarks find it slow.

Profiles (a) a pytest run of a task of true-criteria, (b) ``--co`` over many task files,
(c) ``writeback.apply`` on a 10,000-criterion file, and prints the plugin's and its
parsers' hot spots. Profiled times are inflated by the profiler; compare them with
each other, not with the benchmark figures.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
from pathlib import Path

import _inputs as inputs
from _harness import PYTEST, heading, run

OURS = r"pytest_infratask|mistletoe|frontmatter|yaml/|subprocess.py|selectors"


def show(path: Path, title: str, lines: int = 14) -> None:
    print(f"-- {title}")
    stream = io.StringIO()
    stats = pstats.Stats(str(path), stream=stream)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"   profiled total {total:.2f} s; by cumulative time (plugin, parsers, subprocess):")
    stats.sort_stats("cumulative").print_stats(OURS, lines)
    _table(stream.getvalue())
    stream.seek(0)
    stream.truncate()
    print("   by own time (everything):")
    stats.sort_stats("tottime").print_stats(8)
    _table(stream.getvalue())


def _table(text: str) -> None:
    keep = False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            keep = True
        if keep and line.strip():
            print("   " + line.replace(str(Path(sys.prefix)), "<py>")
                  .replace(str(Path(__file__).resolve().parents[1]) + "/", ""))


def profile_all(root: Path, env: dict[str, str], criteria: int, files: int) -> None:
    heading("Profiles (cProfile)")
    folder = root / "profile"
    inputs.pytest_ini(folder)
    inputs.write_task(folder / "TASK-1.md", criteria)
    run([*PYTEST, "TASK-1.md"], folder, env)  # warm the bytecode cache
    inputs.write_task(folder / "TASK-1.md", criteria)
    out = folder / "criteria.prof"
    run([sys.executable, "-m", "cProfile", "-o", str(out), *PYTEST[1:], "TASK-1.md"],
        folder, env)
    show(out, f"pytest on a {criteria}-criterion task of `true` (write-back on)", 30)

    many = root / "profile-collect"
    inputs.pytest_ini(many)
    for i in range(files):
        inputs.write_task(many / f"TASK-{i:04d}.md", 10)
    out = root / "collect.prof"
    run([sys.executable, "-m", "cProfile", "-o", str(out), *PYTEST[1:], "--co"], many, env)
    show(out, f"pytest --co over {files} task files x 10 criteria")

    from pytest_infratask.read.taskfile import read_task
    from pytest_infratask.record.writeback import Change, apply, now_utc, progress_entry

    big = inputs.write_task(folder / "TASK-BIG.md", 10_000)
    task = read_task(big)
    text = big.read_text(encoding="utf-8")
    now = now_utc()
    change = Change(task.criteria[5000], [progress_entry(now, "tick")], now)
    out = root / "apply.prof"
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        apply(text, change)
    profiler.disable()
    profiler.dump_stats(str(out))
    show(out, "20 x writeback.apply() on a 10,000-criterion file (40,000 lines)", 10)
