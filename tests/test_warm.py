"""A shell started ahead (``run.warm``): the task's fork server starts the next block's
``bash`` while the run records the block before; the block it runs sees what a shell
started for it alone shows, and a block it does not fit gets a shell of its own."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    QUIET,
    commit_all,
    item,
    none_left,
    processes_with,
    task_md,
    wait_for,
    write_task,
)

from pytest_infratask.run import sandbox as sb
from pytest_infratask.run.process import end_services, run_script
from pytest_infratask.run.warm import VARIABLE

AHEAD = "{ tr '\\0' ' ' < /proc/$$/cmdline | grep -c 'exec [3]<&-' || true; }"
"""Prints 1 in a shell started ahead (its command line is the loader's), else 0 (the
pattern does not match itself, on a fresh shell's command line)."""

# What a block sees of its shell; the values that change from one shell to the next
# (its pid, clocks, random numbers, the attempt's token) are left out.
PROBE = (
    'echo "0=$0 -=$- ?=$? _=$_ seconds=$SECONDS line=$LINENO sub=$BASH_SUBSHELL"; '
    'ls /proc/$$/fd; shopt -p; set -o; trap -p; echo "pwd=$(pwd) stack=${DIRSTACK[*]}"; '
    "declare -p PWD OLDPWD; "
    "declare -p | grep -vE "
    "'^declare -[-a-zA-Z]+ (BASHPID|BASH_EXECUTION_STRING|EPOCH[A-Z]+|S?RANDOM|INFRATASK_ATTEMPT)='"
)


@pytest.fixture(autouse=True)
def _sandboxed() -> None:
    reason = sb.unavailable("bwrap")
    if reason is not None:
        if os.environ.get("INFRATASK_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"commands cannot be sandboxed here: {reason}")
        pytest.skip(f"commands cannot be sandboxed here: {reason}")


@pytest.mark.parametrize("where", ["directory", "git repository"])
def test_a_block_in_a_shell_started_ahead_sees_what_a_shell_of_its_own_shows(
    pytester: pytest.Pytester, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first block's shell is started for it; the next ones were started ahead.
    Each block's view of its shell is the same, its attempt's token included. In a git
    repository (run as root: the server mounts each block's overlay) the shell starts
    outside the work tree, and goes to the block's directory in its overlay: ``PWD``
    (here a path through a symbolic link, kept as bash keeps it), ``OLDPWD`` and the
    directory stack are the ones a shell started there has."""
    layered = where == "git repository"
    steps = [
        item(f"Probe {n}", f"{{ {PROBE}; }} > probe-{n}; {AHEAD} > ahead-{n}; "
             f'echo "$INFRATASK_ATTEMPT $(printenv INFRATASK_ATTEMPT)" > token-{n}')
        for n in range(3)
    ]  # fmt: skip
    pytester.makeini("[pytest]\n")  # the sandbox shows the ini file's directory
    tasks = write_task(pytester.path / "tasks", "TASK-001.md", task_md(*steps)).parent
    link = pytester.path / "alias"  # the task's directory, through a link beside it
    link.symlink_to(tasks)
    monkeypatch.chdir(link)
    monkeypatch.setenv("PWD", str(link))
    monkeypatch.setenv("OLDPWD", str(pytester.path))
    if layered:
        commit_all(pytester.path)
    pytester.runpytest(*QUIET, str(tasks)).assert_outcomes(passed=3)
    read = {name: [(tasks / f"{name}-{n}").read_text() for n in range(3)]
            for name in ("probe", "ahead", "token")}  # fmt: skip
    warm = "1\n" if not layered or os.geteuid() == 0 else "0\n"
    assert read["ahead"] == ["0\n", warm, warm]
    assert read["probe"][0] == read["probe"][1] == read["probe"][2]
    assert f"pwd={link} stack={link}\n" in read["probe"][0]
    assert read["probe"][0].startswith("0=bash -=ehBEc ?=0 _=-E seconds=0 line=1 sub=0\n")
    tokens = [text.split() for text in read["token"]]
    assert all(len(pair) == 2 and pair[0] == pair[1] for pair in tokens)
    assert len({pair[0] for pair in tokens}) == 3  # each attempt's own


def test_overlays_mounted_ahead_are_let_go_once_the_work_tree_changed(
    pytester: pytest.Pytester,
) -> None:
    """Run as root in a git repository, the next attempt's overlays are mounted for the
    shell started ahead while the attempt before is recorded: its block sees what that
    attempt applied and the tick written for it. A shell whose overlays were mounted
    before the plugin changed the work tree again (here a blocked criterion's
    progress line) is let go: the block gets a shell of its own, and sees the line."""
    if os.geteuid() != 0:
        pytest.skip("the fork server mounts overlays for a waiting shell as root only")
    steps = [
        item("Write", "echo one > one.txt"),
        item("Read", f"grep -qx one one.txt; grep -q '^- .x. Write' TASK-001.md; {AHEAD} > a2"),
        item("Broken", "if then fi ("),
        item("After <!-- independent -->", f"grep -q 'Blocked #3' TASK-001.md; {AHEAD} > a4"),
        item("Last <!-- independent -->", f"grep -q 'Completed #4' TASK-001.md; {AHEAD} > a5"),
    ]
    pytester.makeini("[pytest]\n")
    write_task(pytester.path, "TASK-001.md", task_md(*steps))
    commit_all(pytester.path)
    result = pytester.runpytest(*QUIET, "TASK-001.md")
    result.assert_outcomes(passed=4, failed=1)
    ahead = [(pytester.path / name).read_text() for name in ("a2", "a4", "a5")]
    assert ahead == ["1\n", "0\n", "1\n"]
    assert not none_left(VARIABLE, "the shells started ahead")


def test_a_block_in_a_shell_started_ahead_fails_at_its_own_line(
    pytester: pytest.Pytester,
) -> None:
    """The failure report gives the block's own line numbers (the second block runs in
    the shell started after the first)."""
    failing = item("Fail", "echo one", "echo two\nfalse\necho nev''er")
    write_task(pytester.path, "TASK-001.md", task_md(item("Pass", "true"), failing))
    result = pytester.runpytest(*QUIET, str(pytester.path))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*command failed with exit code 1*at line 2: false",
            "*block 2, attempt 1/2: *line 2: false",
        ]
    )
    assert "never" not in result.stdout.str()


@pytest.fixture
def box(tmp_path: Path) -> Iterator[sb.Sandbox]:
    spec = (tmp_path, [tmp_path], [], {"PATH": os.environ["PATH"]})
    sandbox = sb.sandbox_for("bwrap", sb.mounts(*spec), b"", ahead=False)
    try:
        yield sandbox
    finally:
        sandbox.close()
    assert not none_left(VARIABLE, "the shells started ahead")


def _run(script: str, cwd: Path, env: sb.CommandEnv) -> tuple[int, str]:
    result = run_script(script, cwd, env, timeout=30)
    return result.exit_code, result.stdout


def test_a_shell_started_ahead_is_taken_only_by_a_block_it_fits(
    box: sb.Sandbox, tmp_path: Path
) -> None:
    """Same directory, shell and environment but the run's own variables: taken. Another
    variable, a directory made again at the same path, or a ``BASH_ENV``: a shell of its
    own, which sees what it should."""
    env = sb.CommandEnv(PATH=os.environ["PATH"], INFRATASK_ATTEMPT="a")
    env.sandbox = box
    work = tmp_path / "work"
    work.mkdir()
    assert _run(AHEAD, work, env) == (0, "0\n")
    assert _run(AHEAD, work, env) == (0, "1\n")
    own = env.with_values({"INFRATASK_ATTEMPT": "it's b"})
    assert _run(f'{AHEAD}; echo "$INFRATASK_ATTEMPT"; printenv INFRATASK_ATTEMPT', work, own) == (
        0,
        "1\nit's b\nit's b\n",
    )
    other = env.with_values({"OTHER": "x"})
    assert _run(f'{AHEAD}; echo "$OTHER"', work, other) == (0, "0\nx\n")
    work.rename(tmp_path / "old")
    work.mkdir()
    (work / "new").touch()
    assert _run(f"{AHEAD}; ls", work, other) == (0, "0\nnew\n")
    (tmp_path / "rc").write_text("echo sourced\n")
    rc = env.with_values({"BASH_ENV": str(tmp_path / "rc")})
    assert _run("true", work, rc) == (0, "sourced\n")
    assert _run(AHEAD, work, rc) == (0, "sourced\n0\n")  # read when the block runs


def test_a_long_block_runs_whole_in_a_shell_started_ahead(box: sb.Sandbox, tmp_path: Path) -> None:
    """A block longer than a command line takes (``util.scripts``) is read whole."""
    env = sb.CommandEnv(PATH=os.environ["PATH"])
    env.sandbox = box
    assert _run("true", tmp_path, env) == (0, "")
    long = "\n".join(f": {'x' * 100} {n}" for n in range(1000))
    code, out = _run(f"{AHEAD}\n{long}\necho $LINENO", tmp_path, env)
    assert (code, out) == (0, "1\n1002\n")
    assert re.fullmatch(r"\d+\n", _run("echo $$", tmp_path, env)[1])


def test_a_service_lets_the_waiting_shell_go(box: sb.Sandbox, tmp_path: Path) -> None:
    """A service runs in a sandbox of its own: the task's waiting shell is not kept
    beside it."""
    env = sb.CommandEnv(PATH=os.environ["PATH"])
    env.sandbox = box
    assert _run("true", tmp_path, env) == (0, "")
    wait_for(lambda: processes_with(VARIABLE), what="the shell started ahead")
    try:
        service = run_script(AHEAD, tmp_path, env, timeout=30, service=True)
        assert (service.exit_code, service.stdout) == (0, "0\n")
        assert not none_left(VARIABLE, "the shell started ahead")
    finally:
        end_services()


def test_overlays_an_attempt_left_as_it_found_them_are_kept_for_the_next(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as root in a git repository, the overlays of an attempt that wrote nothing,
    while nobody else held the repository, stay mounted for the next attempt's shell:
    no unmount and mount per criterion. Its block still sees the tick written since
    (in place, through the work tree under them). An attempt that wrote something has
    it applied, and the next gets overlays mounted afresh, which show it."""
    if os.geteuid() != 0:
        pytest.skip("the fork server mounts overlays for a waiting shell as root only")
    from pytest_infratask.run import served

    asked: list[bool] = []
    real = served.ForkServer.mount

    def mount(self: served.ForkServer, pid: int, layers: object, *args: object, **kw: object):
        asked.append(bool(kw.get("reuse")))
        return real(self, pid, layers, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(served.ForkServer, "mount", mount)
    steps = [
        item("Quiet", "test -d .git"),
        item("Sees the tick", "grep -q '^- .x. Quiet' TASK-001.md"),
        item("Writes", "grep -q 'Completed #2' TASK-001.md; echo one > one.txt"),
        item("Reads", "grep -qx one one.txt; grep -q '^- .x. Writes' TASK-001.md"),
    ]
    pytester.makeini("[pytest]\n")
    write_task(pytester.path, "TASK-001.md", task_md(*steps))
    commit_all(pytester.path)
    pytester.runpytest(*QUIET, "TASK-001.md").assert_outcomes(passed=4)
    # after #1 and #2 (nothing written) the overlays are kept; after #3, mounted afresh
    assert asked[:3] == [True, True, False], asked
