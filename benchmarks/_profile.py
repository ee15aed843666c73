"""``run.py --profile``: cProfile the plugin where the benchmarks find it slow.

Profiles (a) an in-process pytest run of a 200-criterion task of `true`, in a plain
directory and in a git repository, as ms per criterion, restricted to the plugin's own
functions and the process/OS calls it makes, and what grows per criterion from 200 to
2,000 criteria; (b) ``--co`` over many task files;
(c) ``writeback.apply`` on a 10,000-criterion file. Profiled times are inflated by the
profiler; compare them with each other, not with the benchmark figures.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import sys
from pathlib import Path

import _inputs as inputs
from _harness import PYTEST, BenchError, heading, run

OURS = r"pytest_infratask|mistletoe|frontmatter|yaml/|subprocess.py|selectors"
PROFILED_CRITERIA = 200
# Per criterion: the plugin's functions, and the calls that spawn processes or touch the
# file system (subprocess, os, GitPython's command runner, the posix built-ins).
PER_CRITERION = re.compile(
    r"pytest_infratask/|/subprocess\.py|/os\.py|/shutil\.py|/tempfile\.py|/git/cmd\.py"
    r"|_posixsubprocess|posix\.|method 'poll'|method 'select'|built-in method (?:_?io\.open"
    r"|select)"
)


def per_criterion(path: Path, title: str, criteria: int, lines: int = 30) -> None:
    """The top cumulative entries, as ms (and calls) per criterion, restricted to
    PER_CRITERION; the whole run's profiled time per criterion first, for scale."""
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{file}:{line}({func})" if file != "~" else func
        if PER_CRITERION.search(where):
            rows.append((cumulative, own, calls, _short(where)))
    rows.sort(reverse=True)
    print(f"-- {title}")
    print(
        f"   profiled total {total:.2f} s = {total * 1000 / criteria:.2f} ms per criterion "
        "(start-up included); plugin functions and process/OS calls by cumulative time:"
    )
    print(f"   {'cum ms/crit':>11s} {'own ms/crit':>11s} {'calls/crit':>10s}  function")
    for cumulative, own, calls, where in rows[:lines]:
        print(
            f"   {cumulative * 1000 / criteria:11.3f} {own * 1000 / criteria:11.3f} "
            f"{calls / criteria:10.2f}  {where}"
        )


GROWTH_CRITERIA = 2000


def _profiled_run(
    where: Path, env: dict[str, str], n: int, label: str, reset: bool = False
) -> Path:
    """``python -m cProfile -m pytest`` on a fresh n-criterion task in ``where``."""
    inputs.write_task(where / "TASK-1.md", n)
    if reset:
        inputs.git_reset(where, env)
    out = where / "criteria.prof"
    _, output = run(
        [sys.executable, "-m", "cProfile", "-o", str(out), *PYTEST[1:], "TASK-1.md"], where, env
    )
    if f"{n} passed" not in output or inputs.count_ticked(where / "TASK-1.md") != n:
        raise BenchError(f"profiled run in {label} did not pass and tick {n} criteria")
    return out


def growth(small: Path, n_small: int, big: Path, n_big: int, lines: int = 12) -> None:
    """What is not flat: the plugin's functions whose calls or own time per criterion
    grow from the small run to the large one (an O(N) step per criterion shows here)."""

    def table(path: Path, n: int) -> dict[tuple[str, int, str], tuple[float, float]]:
        stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        return {key: (calls / n, own * 1000 / n) for key, (_, calls, own, _, _) in stats.items()}

    before, after = table(small, n_small), table(big, n_big)
    rows = []
    for key, (calls, own) in after.items():
        file, line, func = key
        where = f"{file}:{line}({func})" if file != "~" else func
        if not PER_CRITERION.search(where):
            continue
        calls0, own0 = before.get(key, (0.0, 0.0))
        if own - own0 > 0.02 and (calls > 1.5 * calls0 or own > 1.5 * own0):
            rows.append((own - own0, own0, own, calls0, calls, _short(where)))
    rows.sort(reverse=True)
    print(
        f"-- what grows with the task: own ms and calls per criterion, {n_small} vs "
        f"{n_big} criteria (plain directory)"
    )
    if not rows:
        print("   nothing: every function's cost per criterion is flat")
    print(f"   {'own ms/crit':>19s} {'calls/crit':>19s}  function")
    for _, own0, own, calls0, calls, where in rows[:lines]:
        print(f"   {own0:8.3f} -> {own:8.3f} {calls0:8.1f} -> {calls:8.1f}  {where}")


def _short(where: str) -> str:
    where = where.replace(str(Path(__file__).resolve().parents[1]) + "/", "")
    where = re.sub(r"^.*/site-packages/", "", where)
    return re.sub(r"^.*/lib/python[\d.]+/", "", where)


def show(path: Path, title: str, lines: int = 14, cumulative: bool = True) -> None:
    print(f"-- {title}")
    stream = io.StringIO()
    stats = pstats.Stats(str(path), stream=stream)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"   profiled total {total:.2f} s", end="")
    if cumulative:
        print("; by cumulative time (plugin, parsers, subprocess):")
        stats.sort_stats("cumulative").print_stats(OURS, lines)
        _table(stream.getvalue())
        stream.seek(0)
        stream.truncate()
    else:
        print()
    print("   by own time (everything):")
    stats.sort_stats("tottime").print_stats(8 if cumulative else lines)
    _table(stream.getvalue())


def _table(text: str) -> None:
    keep = False
    for line in text.splitlines():
        if line.strip().startswith("ncalls"):
            keep = True
        if keep and line.strip():
            print(
                "   "
                + line.replace(str(Path(sys.prefix)), "<py>").replace(
                    str(Path(__file__).resolve().parents[1]) + "/", ""
                )
            )


def profile_all(root: Path, env: dict[str, str], criteria: int, files: int) -> None:
    heading("Profiles (cProfile)")
    del criteria  # the per-criterion profiles use PROFILED_CRITERIA in every mode
    n = PROFILED_CRITERIA
    folder = root / "profile"
    git_dir = root / "profile-git"
    for where in (folder, git_dir):
        inputs.pytest_ini(where)
        inputs.write_task(where / "TASK-1.md", n)
    gitenv = inputs.git_repo(git_dir, env)
    run([*PYTEST, "TASK-1.md"], folder, env)  # warm the bytecode cache
    for where, run_env, label in (
        (folder, env, "a plain directory"),
        (git_dir, gitenv, "a git repository"),
    ):
        out = _profiled_run(where, run_env, n, label, reset=where == git_dir)
        per_criterion(
            out,
            f"pytest on a {n}-criterion task of `true` in {label} (write-back on, in-process)",
            n,
        )
    for where, label in ((folder, "a plain directory"), (git_dir, "a git repository")):
        show(where / "criteria.prof", f"the same in {label}, every function", 12, False)
    grown = root / "profile-large"
    inputs.pytest_ini(grown)
    big_out = _profiled_run(grown, env, GROWTH_CRITERIA, "a plain directory")
    growth(folder / "criteria.prof", n, big_out, GROWTH_CRITERIA)

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
