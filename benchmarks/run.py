"""pytest-infratask benchmarks: ``python benchmarks/run.py [--quick]``.

Speed is measured, never asserted: each benchmark times the plugin and a baseline in
the same run, on inputs generated in a temporary directory, and prints absolute
seconds and the ratio. See benchmarks/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _inputs as inputs
from _harness import (
    NO_PLUGIN,
    PYTEST,
    BenchError,
    Side,
    figure,
    heading,
    make_env,
    measure,
    run,
    summary_table,
)


@dataclass(frozen=True)
class Config:
    quick: bool
    root: Path
    warm_env: dict[str, str]
    cold_env: dict[str, str]
    # sizes and repetitions
    criteria: int
    criteria_reps: int
    ansible_criteria: int
    ansible_reps: int
    startup_reps: int
    collect_files: int
    collect_reps: int
    large_criteria: int
    write_reps: int
    k_reps: int
    par_files: int
    par_criteria: int
    par_reps: int
    flat_big: int
    flat_reps: dict[int, int]  # repetitions by N; key 0: every N not listed


def make_config(quick: bool, root: Path) -> Config:
    pycache = root / "pycache"
    return Config(
        quick=quick,
        root=root,
        warm_env=make_env(pycache),
        cold_env=make_env(None),
        criteria=50 if quick else 200,
        criteria_reps=2 if quick else 5,
        ansible_criteria=10 if quick else 100,
        ansible_reps=1,
        startup_reps=3 if quick else 15,
        collect_files=100 if quick else 1000,
        collect_reps=1 if quick else 3,
        large_criteria=10_000,
        write_reps=10 if quick else 50,
        k_reps=1 if quick else 3,
        par_files=8 if quick else 16,
        par_criteria=10 if quick else 20,
        par_reps=1 if quick else 3,
        flat_big=10_000,
        flat_reps={0: 3, 1000: 1, 10_000: 1} if quick else {0: 5, 1000: 3, 10_000: 1},
    )


# Commands outside the sandbox: the plugin pointed at a bubblewrap that is not there.
UNSANDBOXED = ("-o", "infratask_bwrap=/nonexistent/bwrap")


def ms(seconds: float) -> float:
    return seconds * 1000.0


def expect(out: str, needle: str, what: str) -> None:
    if needle not in out:
        tail = "\n".join(out.splitlines()[-15:])
        raise BenchError(f"{what}: expected {needle!r} in the output:\n{tail}")


# --------------------------------------------------------------------------- 1
def bench_criteria(cfg: Config) -> None:
    n = cfg.criteria
    heading(f"1. Per criterion: {n} criteria running `true`")
    base = cfg.root / "criteria"
    text, one = inputs.task_text("TASK-1", n), inputs.task_text("TASK-0", 1)
    env = cfg.warm_env

    def plugin_side(
        name: str,
        where: Path,
        extra: tuple[str, ...],
        writes: bool,
        size: int = n,
        run_env: dict[str, str] = env,
        reset: Callable[[], None] | None = None,
    ) -> Side:
        """pytest on a fresh copy of the task (``size`` criteria) in ``where``."""
        task = where / ("TASK-1.md" if size == n else "TASK-0.md")
        content = text if size == n else one

        def prepare() -> None:
            task.write_text(content, encoding="utf-8")  # a fresh copy every repetition
            if reset:
                reset()

        def check(out: str) -> None:
            expect(out, f"{size} passed", name)
            ticked, logged = inputs.count_ticked(task), inputs.count_log_lines(task)
            want = (size, size + 1) if writes else (0, 1)
            if (ticked, logged) != want:
                raise BenchError(f"{name}: {ticked} ticks / {logged} log lines, wanted {want}")

        return Side(name, lambda: run([*PYTEST, *extra, task.name], where, run_env), prepare, check)

    plugin_dir, nowb_dir = base / "plugin", base / "nowb"
    for where in (plugin_dir, nowb_dir):
        inputs.pytest_ini(where)
    writeback = plugin_side("plugin (write-back)", plugin_dir, (), True)
    no_writeback = plugin_side(
        "plugin --infratask-no-writeback", nowb_dir, ("--infratask-no-writeback",), False
    )

    # The same task with the commands outside the sandbox: bubblewrap pointed nowhere.
    unsandboxed_dir = base / "unsandboxed"
    inputs.pytest_ini(unsandboxed_dir)
    unsandboxed = plugin_side("plugin, commands not sandboxed", unsandboxed_dir, UNSANDBOXED, True)

    plain_dir = base / "plain"
    inputs.pytest_ini(plain_dir)
    inputs.plain_tests(plain_dir / "test_steps.py", n)
    inputs.plain_tests(plain_dir / "test_one.py", 1)
    plain = Side(
        "pytest, plain tests (-p no:infratask)",
        lambda: run([*PYTEST, *NO_PLUGIN, "test_steps.py"], plain_dir, env),
        check=lambda out: expect(out, f"{n} passed", "plain pytest"),
    )

    floor_dir = base / "floor"
    floor_dir.mkdir(parents=True)
    inputs.bash_floor(floor_dir / "floor.sh", n)
    floor = Side("bash script (floor)", lambda: run(["bash", "floor.sh"], floor_dir, env))

    # The usual place of a task file: inside a git repository, where the plugin also
    # attributes each criterion's changes (git status) and stages them.
    git_dir = base / "git"
    inputs.pytest_ini(git_dir)
    (git_dir / "TASK-1.md").write_text(text, encoding="utf-8")
    (git_dir / "TASK-0.md").write_text(one, encoding="utf-8")
    gitenv = inputs.git_repo(git_dir, env)

    def reset() -> None:  # both task files as committed, nothing staged
        (git_dir / "TASK-1.md").write_text(text, encoding="utf-8")
        (git_dir / "TASK-0.md").write_text(one, encoding="utf-8")
        inputs.git_reset(git_dir, gitenv)

    in_git = plugin_side(
        "plugin (write-back), task in a git repo", git_dir, (), True, run_env=gitenv, reset=reset
    )

    # The same with one criterion: start-up, subtracted for the cost after start-up.
    startup = [
        plugin_side("  1 criterion: plugin (write-back)", plugin_dir, (), True, 1),
        plugin_side(
            "  1 criterion: plugin --infratask-no-writeback",
            nowb_dir,
            ("--infratask-no-writeback",),
            False,
            1,
        ),
        Side(
            "  1 test: pytest, plain tests",
            lambda: run([*PYTEST, *NO_PLUGIN, "test_one.py"], plain_dir, env),
            check=lambda out: expect(out, "1 passed", "plain pytest"),
        ),
        plugin_side(
            "  1 criterion: plugin in a git repo", git_dir, (), True, 1, run_env=gitenv, reset=reset
        ),
        plugin_side("  1 criterion: plugin, not sandboxed", unsandboxed_dir, UNSANDBOXED, True, 1),
    ]

    sides = [writeback, no_writeback, plain, floor, in_git, unsandboxed]
    print(
        f"timing: interleaved, one untimed warm-up each, median of {cfg.criteria_reps}; "
        f"'after start-up' = (run of {n} - run of 1) / {n - 1}",
        flush=True,
    )
    measure(sides + startup, cfg.criteria_reps)

    def after(side: Side, first: Side) -> float:
        """ms per criterion after start-up: the run of n minus the run of 1."""
        return ms(side.median - first.median) / (n - 1)

    def cpu_after(side: Side, first: Side) -> float:
        return ms(side.cpu_median - first.cpu_median) / (n - 1)

    pairs = {
        writeback.name: startup[0],
        no_writeback.name: startup[1],
        plain.name: startup[2],
        in_git.name: startup[3],
        unsandboxed.name: startup[4],
    }
    for side in sides:
        first = pairs.get(side.name)
        extra = (
            f"; after start-up {after(side, first):6.2f} ms (cpu {cpu_after(side, first):.2f})"
            if first
            else ""
        )
        print(
            f"  {side.name:46s} {side.describe()}  = {ms(side.median) / n:6.2f} ms/criterion{extra}"
        )
    for side in startup:
        print(f"  {side.name:46s} {side.describe()}")

    ansible: Side | None = None
    playbook_bin = inputs.ansible_playbook()
    if playbook_bin is None:
        print(
            "  ansible-playbook: skipped: ansible-playbook not installed "
            "(pip install -e '.[bench]')"
        )
    else:
        an = cfg.ansible_criteria
        adir = base / "ansible"
        adir.mkdir(parents=True)
        inputs.playbook(adir / "play.yml", an)
        inputs.playbook(adir / "warm.yml", 1)
        aenv = {**env, **inputs.ansible_env(adir / "home")}
        argv = [str(playbook_bin), "-i", "localhost,"]
        run([*argv, "warm.yml"], adir, aenv)  # warm-up on a one-task playbook
        ansible = Side(
            f"ansible-playbook ({an} `command: true` tasks)",
            lambda: run([*argv, "play.yml"], adir, aenv),
            check=lambda out: expect(out, f"ok={an} ", "ansible-playbook"),
        )
        measure([ansible], cfg.ansible_reps, warmup=False)
        print(
            f"  {ansible.name:44s} {ansible.describe()}  = "
            f"{ms(ansible.median) / an:6.2f} ms/criterion"
        )

    per = {s.name: ms(s.median) / n for s in sides}
    s = "1 per criterion"
    figure(s, "plugin, ms/criterion", per[writeback.name], "ms")
    figure(s, "plugin --infratask-no-writeback, ms/criterion", per[no_writeback.name], "ms")
    figure(s, "plain pytest tests, ms/criterion", per[plain.name], "ms")
    figure(s, "bash script (floor), ms/criterion", per[floor.name], "ms")
    figure(s, "plugin in a git repo, ms/criterion", per[in_git.name], "ms")
    figure(s, "plugin, ms/criterion after start-up", after(writeback, startup[0]), "ms")
    figure(s, "plain pytest, ms/test after start-up", after(plain, startup[2]), "ms")
    figure(s, "plugin in a git repo, ms/criterion after start-up", after(in_git, startup[3]), "ms")
    wb_cost = (writeback.median - no_writeback.median) / n
    figure(s, "write-back cost, ms/criterion", ms(wb_cost), "ms")
    sandbox_cost = (writeback.median - unsandboxed.median) / n
    sandbox_ratio = writeback.median / unsandboxed.median
    sandbox_marginal = after(writeback, startup[0]) / after(unsandboxed, startup[4])
    figure(s, "sandbox cost, ms/criterion", ms(sandbox_cost), "ms")
    figure(s, "sandboxed / not sandboxed, whole run", sandbox_ratio, "x")
    figure(s, "sandboxed / not sandboxed, after start-up", sandbox_marginal, "x")

    ratios = [  # (label, plugin side, its 1-criterion run, target)
        ("(a) plugin / plain pytest, plain dir, write-back", writeback, startup[0], 1.2),
        ("(b) plugin / plain pytest, git repo, write-back", in_git, startup[3], 1.5),
        ("(c) plugin --no-writeback / plain pytest", no_writeback, startup[1], 1.2),
    ]
    print()
    for label, side, first, target in ratios:
        whole = side.median / plain.median
        marginal = after(side, first) / after(plain, startup[2])
        cpu_whole = side.cpu_median / plain.cpu_median
        cpu_marginal = cpu_after(side, first) / cpu_after(plain, startup[2])
        print(
            f"  {label:50s} {whole:5.2f}x whole run (cpu {cpu_whole:.2f}x); "
            f"{marginal:5.2f}x after start-up (cpu {cpu_marginal:.2f}x)  "
            f"(target <= {target})"
        )
        figure(s, label, whole, "x", f"<= {target}", whole <= target)
        figure(
            s, f"{label[:4]}... after start-up", marginal, "x", f"<= {target}", marginal <= target
        )
        figure(s, f"{label[:4]}... cpu time, whole run", cpu_whole, "x")
    git_vs_dir = in_git.median / writeback.median
    print(f"  {'plugin: git repo / plain dir':50s} {git_vs_dir:5.2f}x whole run (must not triple)")
    print(
        f"  {'plugin / bash floor':50s} {writeback.median / floor.median:5.2f}x "
        f"(cpu {writeback.cpu_median / floor.cpu_median:.2f}x)"
    )
    print(
        f"  {'write-back cost':50s} {ms(wb_cost):5.2f} ms/criterion "
        "(write-back run minus --infratask-no-writeback run)"
    )
    print(
        f"  {'sandbox cost':50s} {ms(sandbox_cost):5.2f} ms/criterion; sandboxed / not "
        f"sandboxed {sandbox_ratio:.2f}x whole run, {sandbox_marginal:.2f}x after start-up "
        f"(cpu {writeback.cpu_median / unsandboxed.cpu_median:.2f}x)"
    )
    figure(s, "plugin: git repo / plain dir", git_vs_dir, "x", "< 3", git_vs_dir < 3)
    figure(s, "plugin / bash floor", writeback.median / floor.median, "x")
    if ansible is not None:
        per_ansible = ms(ansible.median) / cfg.ansible_criteria
        figure(s, "ansible-playbook, ms/criterion", per_ansible, "ms")
        figure(
            s, "plugin / ansible-playbook (per criterion)", per[writeback.name] / per_ansible, "x"
        )
        print(
            f"  {'plugin / ansible-playbook':50s} {per[writeback.name] / per_ansible:5.2f}x "
            "(per criterion)"
        )
    else:
        figure(s, "ansible-playbook: skipped: ansible-playbook not installed", 0, "-")
    breakdown(cfg, n, plugin_dir, text, plain_dir)


def breakdown(cfg: Config, n: int, plugin_dir: Path, text: str, plain_dir: Path) -> None:
    """One extra, instrumented run of each (benchmarks/_breakdown.py): where the time goes."""
    script = str(Path(__file__).resolve().parent / "_breakdown.py")
    (plugin_dir / "TASK-1.md").write_text(text, encoding="utf-8")
    _, out = run([sys.executable, script, "plugin", "TASK-1.md"], plugin_dir, cfg.warm_env)
    plugin = json.loads(out.split("BREAKDOWN ", 1)[1].splitlines()[0])
    _, out = run(
        [sys.executable, script, "plain", "test_steps.py", *NO_PLUGIN], plain_dir, cfg.warm_env
    )
    plain = json.loads(out.split("BREAKDOWN ", 1)[1].splitlines()[0])
    print("  where the time goes (one instrumented in-process run each, ms per criterion):")
    if plugin.get("_missing"):
        print(
            "    not timed, not found (update PATCHES in benchmarks/_breakdown.py): "
            + ", ".join(plugin["_missing"])
        )
    order = [
        "session",
        "collection",
        "item protocol",
        "execute (whole criterion)",
        "run_script (the command)",
        "safety checks (incl. bash -n)",
        "writeback.write",
        "git tracking",
        "subprocess.run (the command)",
    ]
    print(f"    {'phase':40s} {'plugin':>8s} {'plain':>8s}")
    for phase in order:
        a, b = plugin.get(phase), plain.get(phase)
        if a is None and b is None:
            continue
        fa = f"{ms(a[0]) / n:8.2f}" if a else f"{'':8s}"
        fb = f"{ms(b[0]) / n:8.2f}" if b else f"{'':8s}"
        print(f"    {phase:40s} {fa} {fb}")
    execute = plugin.get("execute (whole criterion)", [0, 0])[0]
    parts = sum(plugin.get(k, [0, 0])[0] for k in order[4:8])
    protocol = plugin.get("item protocol", [0, 0])[0]
    print(f"    {'execute, other (bookkeeping, masking)':40s} {ms(execute - parts) / n:8.2f}")
    print(
        f"    {'item protocol minus execute (pytest)':40s} {ms(protocol - execute) / n:8.2f} "
        f"{ms(plain['item protocol'][0] - plain['subprocess.run (the command)'][0]) / n:8.2f}"
    )
    s = "1 per criterion"
    for key, label in (
        ("run_script (the command)", "breakdown: command (run_script)"),
        ("safety checks (incl. bash -n)", "breakdown: safety checks"),
        ("writeback.write", "breakdown: writeback.write"),
    ):
        if key in plugin:
            figure(s, label + ", ms/criterion", ms(plugin[key][0]) / n, "ms")
    if "subprocess.run (the command)" in plain:
        figure(
            s,
            "breakdown: plain subprocess.run, ms/criterion",
            ms(plain["subprocess.run (the command)"][0]) / n,
            "ms",
        )


# --------------------------------------------------------------------------- 2
IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(code: str, env: dict[str, str], cwd: Path) -> list[tuple[int, int, int, str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            rows.append((int(m[1]), int(m[2]), len(m[3]) - 1, m[4]))  # depth 0 = top level
    return rows


def best_importtime(
    code: str, root_module: str, cfg: Config, reps: int
) -> list[tuple[int, int, int, str]]:
    cwd = cfg.root
    importtime(code, cfg.warm_env, cwd)  # warm the bytecode cache
    runs = [importtime(code, cfg.warm_env, cwd) for _ in range(reps)]
    return min(runs, key=lambda rows: next(c for _, c, _, name in rows if name == root_module))


def bench_startup(cfg: Config) -> None:
    heading("2. Import and startup cost")
    reps = 3 if cfg.quick else 7
    rows = best_importtime("import pytest_infratask.plugin", "pytest_infratask.plugin", cfg, reps)
    total = next(c for _, c, _, name in rows if name == "pytest_infratask.plugin")
    pytest_cum = next(c for _, c, _, name in rows if name == "pytest")
    ours = [(s, name) for s, _, _, name in rows if name.startswith("pytest_infratask")]
    own = sum(s for s, _ in ours)
    print(f"python -X importtime -c 'import pytest_infratask.plugin'  (best of {reps}, warm)")
    print(f"  total                          {total:8,} us  (pytest itself: {pytest_cum:,} us)")
    print(f"  on top of pytest               {total - pytest_cum:8,} us")
    print(
        f"  our {len(ours)} modules, self time     {own:8,} us: "
        + ", ".join(
            f"{name.removeprefix('pytest_infratask.')} {s:,}"
            for s, name in sorted(ours, reverse=True)
        )
    )
    print("  heaviest imports (self time):")
    for s, c, _, name in sorted(rows, reverse=True)[:8]:
        print(f"    {s:8,} us self  {c:8,} us cumulative  {name}")
    # What the first collected task file adds: the modules the plugin imports lazily.
    # mistletoe comes in only for a file the outline scanner steps aside for.
    lazy_code = (
        "import pytest, pytest_infratask.plugin\n"
        "import pytest_infratask.items, pytest_infratask.read.taskfile\n"
        "import frontmatter.default_handlers"
    )
    lazy_rows = best_importtime(lazy_code, "pytest_infratask.items", cfg, reps)
    start = next(i for i, r in enumerate(lazy_rows) if r[3] == "pytest_infratask.plugin") + 1
    top = [r for r in lazy_rows[start:] if r[2] == 0]
    lazy_total = sum(c for _, c, _, _ in top)
    print(
        f"  imported lazily when the first task file is collected: {lazy_total:,} us: "
        + ", ".join(f"{name} {c:,}" for _, c, _, name in top)
    )
    mist_rows = best_importtime(
        lazy_code + "\nimport mistletoe.block_token", "mistletoe.block_token", cfg, reps
    )
    mist = next((c for _, c, _, name in mist_rows if name == "mistletoe.block_token"), 0)
    print(
        f"  and for a file using Markdown the scanner does not read: mistletoe "
        f"{mist:,} us (most of it a set of all Unicode punctuation, built at import)"
    )

    empty = cfg.root / "empty"
    inputs.pytest_ini(empty)
    sides = []
    for label, env in (("warm", cfg.warm_env), ("cold", cfg.cold_env)):
        for plugin in (True, False):
            extra = () if plugin else NO_PLUGIN
            name = f"{'with plugin' if plugin else '-p no:infratask'}, {label}"
            sides.append(
                Side(name, lambda e=env, x=extra: run([*PYTEST, *x, "--co"], empty, e, ok=(5,)))
            )
    measure(sides, cfg.startup_reps)
    print(
        f"pytest --co -q in an empty directory (exit 5: no tests), interleaved, "
        f"{cfg.startup_reps} runs each; best of them used (the overhead is small against "
        "the noise)"
    )
    print(
        "  warm = bytecode cache on; cold = PYTHONDONTWRITEBYTECODE=1 (this machine's "
        "default): every run compiles and assertion-rewrites the plugin's modules again"
    )
    for side in sides:
        print(
            f"  {side.name:28s} best {side.best:.3f} s, cpu best {min(side.cpu):.3f} s; "
            f"{side.describe().strip()}"
        )
    s = "2 import/startup"
    figure(s, "import pytest_infratask.plugin (total)", total, "us")
    figure(s, "... on top of pytest", total - pytest_cum, "us")
    figure(s, "... our modules' self time", own, "us")
    figure(s, "lazy imports at first task file", lazy_total, "us")
    figure(s, "mistletoe import (files outside the scanner's subset)", mist, "us")
    for label, (w, wo) in (("warm", sides[:2]), ("cold", sides[2:])):
        ratio = w.best / wo.best
        print(
            f"  {label}: with / without plugin  {ratio:.3f}x  "
            f"({ms(w.best - wo.best):+.0f} ms, best of {cfg.startup_reps}); cpu time "
            f"{min(w.cpu) / min(wo.cpu):.3f}x ({ms(min(w.cpu) - min(wo.cpu)):+.0f} ms)"
        )
        figure(s, f"empty --co with / without plugin, cpu ({label})", min(w.cpu) / min(wo.cpu), "x")
        figure(
            s,
            f"empty --co with / without plugin ({label})",
            ratio,
            "x",
            "~1.0",
            ratio <= 1.05 if label == "warm" else None,
        )
        figure(s, f"empty --co plugin overhead ({label})", ms(w.best - wo.best), "ms")

    # Which modules the plugin makes pytest import when there is no task file at all.
    diff_reps = 1 if cfg.quick else 3
    print(
        "modules imported only with the plugin, pytest --co -q in the empty directory "
        f"(python -X importtime, best of {diff_reps}):"
    )
    for label, env in (("warm", cfg.warm_env), ("cold", cfg.cold_env)):
        extra_mods = plugin_only_modules(empty, env, diff_reps)
        total_self = sum(v for v in extra_mods.values())
        ours = [m for m in extra_mods if m.startswith("pytest_infratask")]
        print(
            f"  {label}: {len(extra_mods)} modules, {total_self:,} us self time; "
            f"heaviest: "
            + ", ".join(
                f"{m} {v:,}" for m, v in sorted(extra_mods.items(), key=lambda kv: -kv[1])[:6]
            )
        )
        unneeded = [
            m for m in ours if m.removeprefix("pytest_infratask.").split(".")[0] in NOT_AT_STARTUP
        ]
        if unneeded:
            print(f"    not needed without task files, imported anyway: {', '.join(unneeded)}")
        figure(s, f"modules the plugin adds to an empty run ({label})", total_self, "us")


# Modules the plugin says it imports lazily ("the plugin loads in every pytest run").
NOT_AT_STARTUP = {
    "items",
    "schedule",
    "read",
    "plan",
    "guard",
    "run",
    "record",
    "finish",
    "clients",
    "handlers",
}


def plugin_only_modules(cwd: Path, env: dict[str, str], reps: int) -> dict[str, int]:
    def modules(extra: tuple[str, ...]) -> dict[str, int]:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", *PYTEST[1:], *extra, "--co"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        found = {}
        for line in proc.stderr.splitlines():
            m = IMPORT_LINE.match(line)
            if m:
                found[m[4]] = int(m[1])
        return found

    best: dict[str, int] | None = None
    for _ in range(reps):
        without = modules(NO_PLUGIN)
        with_plugin = modules(())
        diff = {k: v for k, v in with_plugin.items() if k not in without}
        if best is None or sum(diff.values()) < sum(best.values()):
            best = diff
    return best or {}


# --------------------------------------------------------------------------- 3
def bench_collection(cfg: Config) -> None:
    files, per = cfg.collect_files, 10
    heading(
        f"3. Collection: {files} task files x {per} criteria vs {files} Python modules "
        f"x {per} tests (--co -q)"
    )
    tasks = cfg.root / "collect-tasks"
    mods = cfg.root / "collect-python"
    inputs.pytest_ini(tasks)
    inputs.pytest_ini(mods)
    for i in range(files):
        inputs.write_task(tasks / f"TASK-{i:04d}.md", per)
        inputs.python_module(mods / f"test_mod_{i:04d}.py", per)
    want = f"{files * per} tests collected"
    sides = [
        Side(
            "task files (plugin)",
            lambda: run([*PYTEST, "--co", "."], tasks, cfg.warm_env),
            check=lambda out: expect(out, want, "task collection"),
        ),
        Side(
            "Python modules (-p no:infratask)",
            lambda: run([*PYTEST, *NO_PLUGIN, "--co", "."], mods, cfg.warm_env),
            check=lambda out: expect(out, want, "python collection"),
        ),
    ]
    if not cfg.quick:
        sides += [
            Side(
                "task files, cold",
                lambda: run([*PYTEST, "--co", "."], tasks, cfg.cold_env),
                check=lambda out: expect(out, want, "task collection"),
            ),
            Side(
                "Python modules, cold",
                lambda: run([*PYTEST, *NO_PLUGIN, "--co", "."], mods, cfg.cold_env),
                check=lambda out: expect(out, want, "python collection"),
            ),
        ]
    measure(sides, cfg.collect_reps)
    print(
        f"interleaved, one untimed warm-up each, median of {cfg.collect_reps}; "
        "cold = PYTHONDONTWRITEBYTECODE=1 (Python modules re-compiled and rewritten)"
    )
    items = files * per
    for side in sides:
        print(f"  {side.name:34s} {side.describe()}  = {side.median / items * 1e6:6.1f} us/item")
    ratio = sides[0].median / sides[1].median
    cpu_ratio = sides[0].cpu_median / sides[1].cpu_median
    print(
        f"  task files / Python modules     {ratio:6.2f}x  (cpu time {cpu_ratio:.2f}x)  "
        "(target <= 1.0; warm)"
    )
    if len(sides) == 4:
        cold_ratio = sides[2].median / sides[3].median
        print(
            f"  task files / Python modules     {cold_ratio:6.2f}x  "
            f"(cpu time {sides[2].cpu_median / sides[3].cpu_median:.2f}x)  (cold)"
        )
    s = "3 collection"
    figure(s, f"{files} task files --co", sides[0].median, "s")
    figure(s, f"{files} Python modules --co", sides[1].median, "s")
    figure(s, "(e) task files / Python modules (warm)", ratio, "x", "<= 1.0", ratio <= 1.0)
    figure(s, "task files / Python modules, cpu time (warm)", cpu_ratio, "x")
    if len(sides) == 4:
        figure(s, "task files / Python modules (cold)", cold_ratio, "x")


# --------------------------------------------------------------------------- 4
def bench_large(cfg: Config) -> None:
    big = cfg.large_criteria
    heading(
        f"4. Large files: ticking one criterion in a {big:,}-criterion file vs a 10-criterion file"
    )
    from pytest_infratask.read.taskfile import read_task
    from pytest_infratask.record.writeback import Change, apply, now_utc, progress_entry, write

    folder = cfg.root / "large"
    inputs.pytest_ini(folder)
    results = {}
    for size in (10, big):
        path = inputs.write_task(folder / f"TASK-{size}.md", size)
        original = path.read_bytes()
        started = time.perf_counter()
        task = read_task(path)
        parse = time.perf_counter() - started
        results[size] = dict(
            path=path,
            original=original,
            parse=parse,
            middle=size // 2,
            run=[],
            first=[],
            apply=[],
            lines=original.count(b"\n") + 1,
        )
    rounds = max(3, cfg.write_reps // 10)
    for _ in range(rounds):  # interleaved; a fresh copy, at rest on disk, for every round
        for size, r in results.items():
            path = r["path"]
            path.write_bytes(r["original"])
            os.sync()  # the copy at rest, as a task file is when a run starts
            task = read_task(path)
            # as a run ticks: the file read once, then one criterion after another
            for criterion in task.criteria[:10]:
                now = now_utc()
                change = Change(criterion, [progress_entry(now, "benchmark tick")], now)
                started = time.perf_counter()
                write(path, change, task.layout)
                r["run"].append(time.perf_counter() - started)
            if inputs.count_ticked(path) != min(size, 10):
                raise BenchError(f"write() did not tick {min(size, 10)} boxes in {path.name}")
            path.write_bytes(r["original"])
            os.sync()
            task = read_task(path)
            criterion = task.criteria[r["middle"]]
            now = now_utc()
            change = Change(criterion, [progress_entry(now, "benchmark tick")], now)
            started = time.perf_counter()
            write(path, change, task.layout)
            r["first"].append(time.perf_counter() - started)
            text = r["original"].decode("utf-8")
            started = time.perf_counter()
            apply(text, change)
            r["apply"].append(time.perf_counter() - started)
            if inputs.count_ticked(path) != 1:
                raise BenchError(f"write() did not tick exactly one box in {path.name}")
    print(
        f"in-process writeback.write(path, Change(criterion, [entry], now), task.layout); "
        f"{rounds} rounds, interleaved, each on a fresh copy synced to disk"
    )
    print(
        "  in a run: the file read once, then 10 criteria ticked one after another "
        "(median tick); first tick: the middle criterion, first write after reading"
    )
    for size, r in results.items():
        print(
            f"  {size:>6,} criteria ({r['lines']:>6,} lines, {len(r['original']):>8,} bytes): "
            f"tick in a run {ms(statistics.median(r['run'])):6.2f} ms; "
            f"first tick {ms(statistics.median(r['first'])):6.2f} ms; "
            f"apply() alone (re-finds everything, no I/O) "
            f"{ms(statistics.median(r['apply'])):6.2f} ms; read_task {ms(r['parse']):7.1f} ms"
        )
    w_small, w_big = (statistics.median(results[k]["run"]) for k in (10, big))
    f_small, f_big = (statistics.median(results[k]["first"]) for k in (10, big))
    a_small, a_big = (statistics.median(results[k]["apply"]) for k in (10, big))
    ratio = w_big / w_small
    print(f"  tick in a run {big:,} / 10        {ratio:6.2f}x  (target <= 2)")
    print(f"  first tick {big:,} / 10           {f_big / f_small:6.2f}x")
    print(f"  apply() {big:,} / 10              {a_big / a_small:6.1f}x")
    s = "4 large files"
    figure(s, "tick in a run, 10 criteria", ms(w_small), "ms")
    figure(s, f"tick in a run, {big:,} criteria", ms(w_big), "ms")
    figure(s, f"tick in a run {big:,} / 10", ratio, "x", "<= 2", ratio <= 2.0)
    figure(s, f"first tick {big:,} / 10", f_big / f_small, "x")
    figure(s, f"apply() only, {big:,} criteria", ms(a_big), "ms")

    sides = []
    for size in (10, big):
        path = results[size]["path"]
        original = results[size]["original"]
        number = read_task(path).criteria[results[size]["middle"]].number
        selector = f"ac{number}-"

        def prepare(p: Path = path, o: bytes = original) -> None:
            p.write_bytes(o)

        def check(out: str, p: Path = path) -> None:
            expect(out, "1 passed", f"-k run on {p.name}")
            if inputs.count_ticked(p) != 1:
                raise BenchError(f"-k run on {p.name} did not tick exactly one box")

        sides.append(
            Side(
                f"{size:,} criteria, -k {selector}",
                lambda p=path, k=selector: run([*PYTEST, p.name, "-k", k], folder, cfg.warm_env),
                prepare,
                check,
            )
        )
    measure(sides, cfg.k_reps)
    print(f"full pytest run selecting one criterion with -k; median of {cfg.k_reps}")
    for side in sides:
        print(f"  {side.name:34s} {side.describe()}")
    k_ratio = sides[1].median / sides[0].median
    print(
        f"  pytest -k {big:,} / 10            {k_ratio:6.2f}x  (collection of every "
        "criterion dominates)"
    )
    figure(s, "pytest -k one criterion, 10", sides[0].median, "s")
    figure(s, f"pytest -k one criterion, {big:,}", sides[1].median, "s")
    figure(s, f"pytest -k {big:,} / 10", k_ratio, "x")


# --------------------------------------------------------------------------- 5
WORKERS = 4


def bench_parallel(cfg: Config) -> None:
    files, per = cfg.par_files, cfg.par_criteria
    heading(
        f"5. Parallel: {files} task files x {per} criteria of `sleep 0.05`, "
        f"-n {WORKERS} vs no xdist; plain pytest the same"
    )
    folder = cfg.root / "parallel"
    plain_dir = cfg.root / "parallel-plain"
    inputs.pytest_ini(folder)
    inputs.pytest_ini(plain_dir)
    texts = {
        folder / f"TASK-{i:02d}.md": inputs.task_text(f"TASK-{i:02d}", per, "sleep 0.05")
        for i in range(files)
    }
    for i in range(files):
        inputs.plain_tests(plain_dir / f"test_par_{i:02d}.py", per, "sleep 0.05")
    total = files * per

    def prepare() -> None:
        for path, text in texts.items():
            path.write_text(text, encoding="utf-8")

    def check(out: str) -> None:
        expect(out, f"{total} passed", "parallel run")
        ticked = sum(inputs.count_ticked(p) for p in texts)
        if ticked != total:
            raise BenchError(f"parallel run ticked {ticked} of {total} criteria")

    def plain_check(out: str) -> None:
        expect(out, f"{total} passed", "plain parallel run")

    # Warm-up on one small file only: a full warm-up would cost a whole sequential run.
    warm = cfg.root / "parallel-warm"
    inputs.pytest_ini(warm)
    inputs.write_task(warm / "TASK-W.md", 2)
    run([*PYTEST, "TASK-W.md"], warm, cfg.warm_env)
    inputs.write_task(warm / "TASK-W.md", 2)
    run([*PYTEST, "-n", str(WORKERS), "TASK-W.md"], warm, cfg.warm_env)
    run([*PYTEST, *NO_PLUGIN, "--co", "."], plain_dir, cfg.warm_env)  # compile the tests

    n = ("-n", str(WORKERS))
    sides = [
        Side("plugin, no xdist", lambda: run([*PYTEST, "."], folder, cfg.warm_env), prepare, check),
        Side(
            f"plugin, -n {WORKERS}",
            lambda: run([*PYTEST, *n, "."], folder, cfg.warm_env),
            prepare,
            check,
        ),
        Side(
            "plain pytest, no xdist",
            lambda: run([*PYTEST, *NO_PLUGIN, "."], plain_dir, cfg.warm_env),
            check=plain_check,
        ),
        Side(
            f"plain pytest, -n {WORKERS}",
            lambda: run([*PYTEST, *NO_PLUGIN, *n, "."], plain_dir, cfg.warm_env),
            check=plain_check,
        ),
    ]
    measure(sides, cfg.par_reps, warmup=False)
    cpus = os.cpu_count() or 1
    cores = min(WORKERS, cpus)
    print(
        f"interleaved, median of {cfg.par_reps}; {cpus} CPUs, so {WORKERS} workers have "
        f"{cores} cores; sleeping alone takes {total * 0.05:.1f} s in sequence, "
        f"{total * 0.05 / WORKERS:.1f} s on {WORKERS} workers"
    )
    for side in sides:
        print(f"  {side.name:24s} {side.describe()}")
    speedup = sides[0].median / sides[1].median
    plain_speedup = sides[2].median / sides[3].median
    per_core, plain_per_core = speedup / cores, plain_speedup / cores
    print(
        f"  plugin speed-up            {speedup:6.2f}x  = {per_core:.2f} per core  "
        "(target >= 0.75 per core)"
    )
    print(f"  plain pytest speed-up      {plain_speedup:6.2f}x  = {plain_per_core:.2f} per core")
    print(
        f"  plugin / plain speed-up    {speedup / plain_speedup:6.2f}x  (1.0: the plugin "
        "spreads as well as plain pytest does)"
    )
    s = "5 parallel (f)"
    figure(s, "plugin, no xdist", sides[0].median, "s")
    figure(s, f"plugin, -n {WORKERS}", sides[1].median, "s")
    figure(s, f"plugin speed-up -n {WORKERS}", speedup, "x")
    figure(
        s,
        f"(f) plugin speed-up per core ({cores} cores)",
        per_core,
        "x",
        ">= 0.75",
        per_core >= 0.75,
    )
    figure(s, f"plain pytest speed-up -n {WORKERS}", plain_speedup, "x")
    figure(s, f"plain pytest speed-up per core ({cores} cores)", plain_per_core, "x")
    figure(s, "(f) plugin speed-up / plain pytest speed-up", speedup / plain_speedup, "x", "~1.0")


# --------------------------------------------------------------------------- 6
def bench_flat(cfg: Config) -> None:
    big, base = cfg.flat_big, 100
    sizes = (1, 10, base, 1000, big)
    heading(
        f"6. Flat cost: one task file of 10, {base}, 1,000 and {big:,} criteria of `true`, "
        "whole pytest runs; plain pytest the same"
    )
    folder = cfg.root / "flat"
    inputs.pytest_ini(folder)
    texts = {size: inputs.task_text(f"TASK-{size}", size) for size in sizes}
    plugin: dict[int, Side] = {}
    plain: dict[int, Side] = {}
    for size in sizes:
        task = folder / f"TASK-{size}.md"
        module = f"test_flat_{size}.py"
        inputs.plain_tests(folder / module, size)
        reps = cfg.flat_reps[size] if size in cfg.flat_reps else cfg.flat_reps[0]

        def prepare(t: Path = task, size: int = size) -> None:
            t.write_text(texts[size], encoding="utf-8")

        def check(out: str, t: Path = task, size: int = size) -> None:
            expect(out, f"{size} passed", t.name)
            ticked, logged = inputs.count_ticked(t), inputs.count_log_lines(t)
            if (ticked, logged) != (size, size + 1):
                raise BenchError(
                    f"{t.name}: {ticked} ticks / {logged} log lines, wanted {(size, size + 1)}"
                )

        plugin[size] = Side(
            f"plugin, {size:,} criteria",
            lambda t=task: run([*PYTEST, t.name], folder, cfg.warm_env, peak=True),
            prepare,
            check,
            reps,
        )
        plain[size] = Side(
            f"plain pytest, {size:,} tests",
            lambda m=module: run([*PYTEST, *NO_PLUGIN, m], folder, cfg.warm_env, peak=True),
            check=lambda out, size=size: expect(out, f"{size} passed", "plain pytest"),
            reps=reps,
        )
        # compile and assertion-rewrite the module once, untimed, as in a warm checkout
        run([*PYTEST, *NO_PLUGIN, "--co", module], folder, cfg.warm_env)
    small = [side for size in sizes[:3] for side in (plugin[size], plain[size])]
    large = [side for size in sizes[3:] for side in (plugin[size], plain[size])]
    measure(small, 0)
    measure(large, 0, warmup=False)
    reps = ", ".join(f"{size:,}: {len(plugin[size].times)}" for size in sizes)
    print(
        f"interleaved; median of ({reps}) runs; the 1-criterion run is the start-up; "
        "after start-up = (run of N - run of 1) / (N - 1); peak = the largest resident "
        "set of its runs (/usr/bin/time %M; 0 without it)"
    )

    def after(sides: dict[int, Side], size: int, cpu: bool = False) -> float:
        if cpu:
            return ms(sides[size].cpu_median - sides[1].cpu_median) / (size - 1)
        return ms(sides[size].median - sides[1].median) / (size - 1)

    for size in sizes:
        for sides in (plugin, plain):
            side = sides[size]
            extra = (
                ""
                if size == 1
                else (
                    f"  after start-up {after(sides, size):6.2f} ms "
                    f"(cpu {after(sides, size, True):5.2f})"
                )
            )
            print(f"  {side.name:28s} {side.describe()}  peak {side.peak_mib:5.0f} MiB{extra}")
    s = "6 flat cost (d)"
    figure(s, "start-up (1 criterion): plugin", plugin[1].median, "s")
    figure(s, "start-up (1 test): plain pytest", plain[1].median, "s")
    print(
        f"\n  ms per criterion after start-up    {'plugin':>8s} {'plain':>8s} {'ratio':>7s}"
        f" {'cpu ratio':>9s}"
    )
    for size in sizes[1:]:
        mine, floor = after(plugin, size), after(plain, size)
        cpu_ratio = after(plugin, size, True) / after(plain, size, True)
        print(
            f"  N={size:<6,}                         {mine:8.2f} {floor:8.2f} "
            f"{mine / floor:6.2f}x {cpu_ratio:8.2f}x"
        )
        figure(s, f"plugin, ms/criterion after start-up, N={size:,}", mine, "ms")
        figure(s, f"plain pytest, ms/test after start-up, N={size:,}", floor, "ms")
        if size == big:
            figure(
                s,
                f"(d) plugin / plain pytest after start-up, N={size:,}",
                mine / floor,
                "x",
                "<= 1.2",
                mine / floor <= 1.2,
            )
            figure(s, f"(d) ... cpu time, N={size:,}", cpu_ratio, "x")
        elif size != 10:  # at N=10 the difference of two short runs is mostly noise
            figure(s, f"plugin / plain pytest after start-up, N={size:,}", mine / floor, "x")
    for small_n in (base, 1000):
        flat = after(plugin, big) / after(plugin, small_n)
        flat_cpu = after(plugin, big, True) / after(plugin, small_n, True)
        plain_flat = after(plain, big) / after(plain, small_n)
        target = small_n == base
        print(
            f"  plugin, N={big:,} / N={small_n:,} per criterion  {flat:5.2f}x  "
            f"(cpu {flat_cpu:.2f}x){'  (target <= 1.2: flat)' if target else ''}; "
            f"plain pytest {plain_flat:.2f}x"
        )
        label = f"{'(d) ' if target else ''}plugin, N={big:,} / N={small_n:,} per criterion"
        figure(s, label, flat, "x", "<= 1.2" if target else "", flat <= 1.2 if target else None)
        figure(
            s, f"{'(d) ' if target else ''}... cpu time, N={big:,} / N={small_n:,}", flat_cpu, "x"
        )
        figure(s, f"plain pytest, N={big:,} / N={small_n:,} per test", plain_flat, "x")
    for size in (1000, big):
        growth_plugin = (plugin[size].peak_mib - plugin[1].peak_mib) * 1024 / (size - 1)
        growth_plain = (plain[size].peak_mib - plain[1].peak_mib) * 1024 / (size - 1)
        print(
            f"  peak memory N={size:<6,} plugin {plugin[size].peak_mib:5.0f} MiB "
            f"({growth_plugin:5.1f} KiB/criterion over the 1-criterion run), plain pytest "
            f"{plain[size].peak_mib:5.0f} MiB ({growth_plain:5.1f} KiB/test)"
        )
        figure(s, f"peak memory, plugin, N={size:,}", plugin[size].peak_mib, "MiB")
        figure(s, f"peak memory, plain pytest, N={size:,}", plain[size].peak_mib, "MiB")


# --------------------------------------------------------------------------- 7
def bench_named(cfg: Config) -> None:
    files = cfg.collect_files
    heading(
        f"7. Collection of {files} task files named one by one (a Backlog.md shell glob) "
        "vs as their directory, vs the plugin disabled (--co -q)"
    )
    tasks = cfg.root / "named" / "backlog" / "tasks"
    tasks.mkdir(parents=True)
    inputs.pytest_ini(cfg.root / "named")
    names = [f"backlog/tasks/task-{i}.md" for i in range(files)]
    for name in names:
        inputs.write_task(cfg.root / "named" / name, 2)
    here, want = cfg.root / "named", f"{files * 2} tests collected"
    # disabled, nothing collects a Markdown file: pytest reports every named one not found
    sides = [
        Side(
            "named, plugin",
            lambda: run([*PYTEST, "--co", *names], here, cfg.warm_env),
            check=lambda out: expect(out, want, "named collection"),
        ),
        Side(
            "named, -p no:infratask",
            lambda: run([*PYTEST, *NO_PLUGIN, "--co", *names], here, cfg.warm_env, ok=(4,)),
        ),
        Side(
            "directory, plugin",
            lambda: run([*PYTEST, "--co", "backlog/tasks"], here, cfg.warm_env),
            check=lambda out: expect(out, want, "directory collection"),
        ),
        Side(
            "directory, -p no:infratask",
            lambda: run(
                [*PYTEST, *NO_PLUGIN, "--co", "backlog/tasks"], here, cfg.warm_env, ok=(5,)
            ),
        ),
    ]
    measure(sides, cfg.collect_reps)
    print(f"interleaved, one untimed warm-up each, median of {cfg.collect_reps}")
    for side in sides:
        print(f"  {side.name:30s} {side.describe()}")
    named = sides[0].median / sides[1].median
    directory = sides[2].median / sides[3].median
    by_one = sides[0].median / sides[2].median
    extra = [(sides[i].median - sides[i + 1].median) / files * 1e3 for i in (0, 2)]
    print(f"  named: plugin / disabled        {named:6.2f}x  (target <= 1.5)")
    print(
        f"  directory: plugin / disabled    {directory:6.2f}x  (disabled, pytest collects "
        "nothing there: the difference is reading and parsing the files, see 3)"
    )
    print(
        f"  plugin's time per file          {extra[0]:6.2f} ms named, {extra[1]:.2f} ms "
        "from the directory"
    )
    print(
        f"  plugin: named / directory       {by_one:6.2f}x  (pytest collects a named file's "
        "directory again for each file named; disabled it is "
        f"{sides[1].median / sides[3].median:.2f}x)"
    )
    s = "7 named files"
    figure(s, f"{files} named files --co", sides[0].median, "s")
    figure(s, f"{files} named files --co, -p no:infratask", sides[1].median, "s")
    figure(s, "(e) named: plugin / disabled", named, "x", "<= 1.5", named <= 1.5)
    figure(s, "directory: plugin / disabled", directory, "x")
    figure(s, "plugin's time per named file", extra[0], "ms")
    figure(s, "plugin's time per file from the directory", extra[1], "ms")
    figure(s, "plugin: named one by one / directory", by_one, "x")


# --------------------------------------------------------------------------- 8
def bench_reconcile(cfg: Config) -> None:
    import _reconcile

    rounds = 10 if cfg.quick else 20
    heading(
        f"8. Flux: Kustomization Ready -> the plugin's verdict vs kubectl wait "
        f"({rounds} reconciles, real cluster stack)"
    )
    missing = _reconcile.missing()
    if missing:
        print(
            f"  not measured: cluster stack not built ({', '.join(missing)} missing; "
            "run `make cluster-build`)"
        )
        return
    from pytest_infratask.clients.cluster import load_api

    workdir = cfg.root / "cluster"
    started = time.perf_counter()
    stack = _reconcile.start_stack(workdir)
    try:
        print(f"  stack up in {time.perf_counter() - started:.1f} s")
        _reconcile.make_app(stack, workdir, "bench")
        api = load_api(str(stack.kubeconfig), "dev")
        done = [_reconcile.one_round(stack, api, "bench", n) for n in range(rounds)]
    finally:
        stack.stop()
    plugin = [r.plugin_after for r in done]
    kubectl = [r.kubectl_after for r in done]
    for label, values in (("plugin (wait_ready)", plugin), ("kubectl wait", kubectl)):
        print(
            f"  {label:22s} median {ms(statistics.median(values)):7.1f} ms after Ready; "
            f"min {ms(min(values)):.1f}, max {ms(max(values)):.1f}"
        )
    print("  (below zero: that side's own watch got the event before the reference watch did)")
    med = statistics.median(plugin)
    s = "8 reconcile"
    figure(s, "(e) Ready -> plugin verdict, median", ms(med), "ms", "<= 100", ms(med) <= 100)
    figure(s, "Ready -> kubectl wait exit, median", ms(statistics.median(kubectl)), "ms")


# --------------------------------------------------------------------------- 9
def bench_repo_parallel(cfg: Config) -> None:
    files, sleep = 4, 3
    heading(
        f"9. Parallel in one git repository: {files} independent task files x 1 criterion "
        f"of `sleep {sleep}`, -n {WORKERS}, vs the same files in a plain directory"
    )
    repo = cfg.root / "repo-parallel"
    plain_dir = cfg.root / "repo-parallel-plain"
    texts = {
        f"TASK-{i}.md": inputs.task_text(f"TASK-{i}", 1, f"sleep {sleep}") for i in range(files)
    }
    for folder in (repo, plain_dir):
        inputs.pytest_ini(folder)
        for name, text in texts.items():
            (folder / name).write_text(text, encoding="utf-8")
    gitenv = inputs.git_repo(repo, cfg.warm_env)

    def untick(folder: Path) -> None:
        for name, text in texts.items():
            (folder / name).write_text(text, encoding="utf-8")

    def reset() -> None:  # the task files as committed, nothing staged: a clean tree
        untick(repo)
        inputs.git_reset(repo, gitenv)

    last: dict[Path, str] = {}  # each side's last output, for its lock-wait lines

    def checker(folder: Path) -> Callable[[str], None]:
        def check(out: str) -> None:
            last[folder] = out
            expect(out, f"{files} passed", f"{folder.name} run")
            ticked = sum(inputs.count_ticked(folder / name) for name in texts)
            if ticked != files:
                raise BenchError(f"{folder.name}: {ticked} of {files} boxes ticked")

        return check

    n = ("-n", str(WORKERS))
    sides = [
        Side(
            f"git repository, -n {WORKERS}",
            lambda: run([*PYTEST, *n, "."], repo, gitenv),
            reset,
            checker(repo),
            cfg.par_reps,
        ),
        Side(
            f"plain directory, -n {WORKERS}",
            lambda: run([*PYTEST, *n, "."], plain_dir, cfg.warm_env),
            lambda: untick(plain_dir),
            checker(plain_dir),
            cfg.par_reps,
        ),
    ]
    measure(sides, cfg.par_reps)
    print(
        f"interleaved, one untimed warm-up each, median of {cfg.par_reps}; floor {sleep} s "
        f"(the ideal: the {files} sleeps side by side, one {sleep}-s sleep); "
        f"in sequence they take {files * sleep} s"
    )
    for side in sides:
        print(f"  {side.name:28s} {side.describe()}")
    ratio = sides[0].median / sides[1].median
    met = ratio <= 1.3
    print(
        f"  git repository / plain dir   {ratio:6.2f}x  (target <= 1.3: "
        f"{'meets' if met else 'MISSES'})"
    )
    for folder in (repo, plain_dir):
        for line in last[folder].splitlines():
            if "waiting for" in line:
                print(f"  {folder.name} (last run): {line.strip()}")
    s = "9 repo parallel"
    figure(s, f"{files} x sleep {sleep}, git repo, -n {WORKERS}", sides[0].median, "s")
    figure(s, f"{files} x sleep {sleep}, plain dir, -n {WORKERS}", sides[1].median, "s")
    figure(s, "floor (one sleep)", float(sleep), "s")
    figure(s, "git repo / plain dir", ratio, "x", "<= 1.3", met)


# -------------------------------------------------------------------------- 10
def bench_tasks(cfg: Config) -> None:
    tasks, each = (10, 2) if cfg.quick else (40, 2)
    heading(
        f"10. Many small tasks: {tasks} task files x {each} criteria of `true` in one run, "
        f"vs plain pytest on {tasks} modules x {each} tests"
    )
    base = cfg.root / "tasks"
    plugin_dir, plain_dir = base / "plugin", base / "plain"
    texts = {f"TASK-{i}.md": inputs.task_text(f"TASK-{i}", each) for i in range(tasks)}
    for folder in (plugin_dir, plain_dir):
        inputs.pytest_ini(folder)
    for i in range(tasks):
        inputs.plain_tests(plain_dir / f"test_m{i}.py", each)

    def fresh() -> None:
        for name, text in texts.items():
            (plugin_dir / name).write_text(text, encoding="utf-8")

    total = tasks * each
    sides = [
        Side(
            "plugin",
            lambda: run([*PYTEST, "."], plugin_dir, cfg.warm_env),
            fresh,
            lambda out: expect(out, f"{total} passed", "plugin"),
        ),
        Side(
            "pytest, plain tests (-p no:infratask)",
            lambda: run([*PYTEST, *NO_PLUGIN, "."], plain_dir, cfg.warm_env),
            check=lambda out: expect(out, f"{total} passed", "plain pytest"),
        ),
    ]
    measure(sides, cfg.criteria_reps)
    print(f"interleaved, one untimed warm-up each, median of {cfg.criteria_reps}")
    for side in sides:
        print(f"  {side.name:40s} {side.describe()}  = {ms(side.median) / tasks:6.1f} ms/task")
    ratio = sides[0].median / sides[1].median
    print(f"  plugin / plain pytest                    {ratio:6.2f}x whole run")
    s = "10 many tasks"
    figure(s, "plugin, ms/task", ms(sides[0].median) / tasks, "ms")
    figure(s, "plain pytest, ms/module", ms(sides[1].median) / tasks, "ms")
    figure(s, "plugin / plain pytest, whole run", ratio, "x")


# --------------------------------------------------------------------------- main
BENCHES = {
    "1": bench_criteria,
    "2": bench_startup,
    "3": bench_collection,
    "4": bench_large,
    "5": bench_parallel,
    "6": bench_flat,
    "7": bench_named,
    "8": bench_reconcile,
    "9": bench_repo_parallel,
    "10": bench_tasks,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions and smaller inputs (about a minute)"
    )
    parser.add_argument(
        "--only", default="", metavar="N,N", help="run only these benchmarks, e.g. --only 1,4"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the slow paths and print the hot spots",
    )
    args = parser.parse_args(argv)
    chosen = [n for n in BENCHES if not args.only or n in args.only.split(",")]

    import pytest

    import pytest_infratask

    root = Path(tempfile.mkdtemp(prefix="infratask-bench-"))
    cfg = make_config(args.quick, root)
    started = time.perf_counter()
    print(f"pytest-infratask benchmarks{' (--quick)' if args.quick else ''}")
    plugin_at = Path(pytest_infratask.__file__).parent
    print(
        f"python {platform.python_version()}, pytest {pytest.__version__}, plugin "
        f"{getattr(pytest_infratask, '__version__', '?')} ({plugin_at}), "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"inputs in {root}; pytest runs: {' '.join(PYTEST[1:])} ...; bytecode cache in a "
        "private PYTHONPYCACHEPREFIX unless marked cold"
    )
    try:
        for number in chosen:
            BENCHES[number](cfg)
        if args.profile:
            from _profile import profile_all

            profile_all(root, cfg.warm_env, cfg.criteria, cfg.collect_files)
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    heading("Summary")
    print(summary_table())
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
