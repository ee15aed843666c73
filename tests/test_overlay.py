"""Tasks sharing one git repository run their commands at the same time, each in an
overlay of the work tree: what an attempt wrote reaches the work tree only when it
passed, two tasks editing one file take turns at it, and each commit holds its own
paths. End to end, in subprocess runs (``-n 2``) on a real repository."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import DEADLINE, QUIET, git, item, task_md, wait_for, write_task

import pytest_infratask
from pytest_infratask.run.overlay import Layer, unavailable
from pytest_infratask.run.sandbox import unavailable as no_sandbox

pytest.importorskip("xdist")

PARALLEL = ("-p", "no:cacheprovider", "-p", "no:benchmark")
WAIT = 60
"""Seconds a command waits for the other task's marker: serialised runs fail on it."""


@pytest.fixture(autouse=True)
def _setup(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    if no_sandbox("bwrap") is not None:
        pytest.fail(f"the sandbox is needed here: {no_sandbox('bwrap')}")
    root = str(Path(pytest_infratask.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    )
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{key}_NAME", "Infratask Test")
        monkeypatch.setenv(f"{key}_EMAIL", "test@infratask.invalid")
    (pytester.path / "marks").mkdir()
    pytester.makeini(
        f"[pytest]\ninfratask_timeout = {WAIT * 2}\ninfratask_lock_wait = 120\n"
        f"infratask_writable = {pytester.path / 'marks'}\n"  # outside every overlay
    )


def _repo(root: Path, tasks: dict[str, list[str]]) -> Path:
    """A repository under the run's root (the markers live beside it, outside every
    overlay) holding one task per id, a criterion per script."""
    repo = root / "repo"
    repo.mkdir()
    (repo / "tracked.txt").write_text("tracked\n")
    (repo / "gone.txt").write_text("to delete\n")
    for task_id, scripts in tasks.items():
        steps = [item(f"Step {n} of {task_id}", s) for n, s in enumerate(scripts, 1)]
        meta = f"id: {task_id}\ntitle: {task_id}\nworkdir: ..\nupdated: 2024-01-01"
        write_task(repo / "tasks", f"{task_id}.md", task_md(*steps, meta=meta))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def _meet(me: str, other: str, marks: Path) -> str:
    """Say ``me`` started, then wait (bounded) until ``other`` has: fails when the two
    commands do not run at the same time."""
    return (
        f"touch {marks}/{me}; "
        f"for i in $(seq {WAIT * 10}); do [ -e {marks}/{other} ] && break; sleep 0.1; done; "
        f"[ -e {marks}/{other} ]"
    )


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        *PARALLEL, "-n", "2", "repo/tasks", "--infratask-report-dir=reports", *args,
        timeout=DEADLINE * 2,
    )  # fmt: skip


def test_the_overlay_mounts_here(pytester: pytest.Pytester) -> None:
    """The tests below prove parallelism only where overlays mount (else they fail)."""
    repo = _repo(pytester.path, {})
    probe = repo / ".git" / "probe"
    assert unavailable(Layer(repo, probe / "upper", probe / "work")) is None
    assert not probe.exists(), "the probe's directories are left"


def test_two_tasks_editing_different_files_run_at_once_and_commit_their_own(
    pytester: pytest.Pytester,
) -> None:
    marks = pytester.path / "marks"
    log = pytester.path / "marks" / "log"
    repo = _repo(pytester.path, {
        task: [f"echo {task}-start >> {log}; {_meet(task, other, marks)}; "
               f"echo {task} > {task}.txt; echo {task}-end >> {log}"]
        for task, other in (("TASK-A", "TASK-B"), ("TASK-B", "TASK-A"))
    })  # fmt: skip
    result = _run(pytester, "--infratask-commit")
    result.assert_outcomes(passed=4)
    lines = log.read_text().split()
    assert sorted(lines[:2]) == ["TASK-A-start", "TASK-B-start"], lines
    assert sorted(lines[2:]) == ["TASK-A-end", "TASK-B-end"], lines
    commits = git(repo, "rev-list", "HEAD").split()[:-1]
    held = {
        git(repo, "log", "-1", "--format=%s", sha).split(":")[0]: set(
            git(repo, "show", "--name-only", "--format=", sha).split()
        )
        for sha in commits
    }
    assert held == {
        "TASK-A": {"TASK-A.txt", "tasks/TASK-A.md"},
        "TASK-B": {"TASK-B.txt", "tasks/TASK-B.md"},
    }, held
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert "waiting for TASK" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "stage"])
def test_two_tasks_editing_one_file_take_turns(pytester: pytest.Pytester, commit: bool) -> None:
    marks = pytester.path / "marks"
    repo = _repo(pytester.path, {
        task: [f"{_meet(task, other, marks)}; echo {task}-start >> shared.txt; "
               f"sleep 0.2; echo {task}-end >> shared.txt"]
        for task, other in (("TASK-A", "TASK-B"), ("TASK-B", "TASK-A"))
    })  # fmt: skip
    result = _run(pytester, *(["--infratask-commit"] if commit else []))
    result.assert_outcomes(passed=4 if commit else 2)
    lines = (repo / "shared.txt").read_text().split()
    first, second = lines[0].rsplit("-", 1)[0], lines[2].rsplit("-", 1)[0]
    assert {first, second} == {"TASK-A", "TASK-B"}
    assert lines == [f"{first}-start", f"{first}-end", f"{second}-start", f"{second}-end"]
    out = result.stdout.str() + result.stderr.str()
    assert f"infratask: {second}: waiting for {first}, which edits shared.txt" in out, out
    report = (pytester.path / "reports" / f"{second}.json").read_text()
    assert f"rerun after {first}, which edits shared.txt" in report
    if commit:
        assert git(repo, "show", "HEAD~1:shared.txt").split() == lines[:2]
        assert git(repo, "show", "HEAD:shared.txt").split() == lines


def test_each_block_and_a_retry_of_a_later_one_see_what_came_before(
    pytester: pytest.Pytester,
) -> None:
    """One attempt's blocks mount its overlay in turn: the second sees the first's
    writes, and its retry starts from them again, not from its own failed try."""
    marks = pytester.path / "marks"
    repo = _repo(pytester.path, {})
    blocks = (
        "echo one > a.txt",
        f"echo two >> a.txt; [ -e {marks}/tried ] || {{ touch {marks}/tried; exit 1; }}",
        '[ "$(cat a.txt)" = "$(printf \'one\\ntwo\')" ]',
    )
    meta = "id: TASK-A\ntitle: TASK-A\nworkdir: ..\nupdated: 2024-01-01"
    write_task(repo / "tasks", "TASK-A.md", task_md(item("Three blocks", *blocks), meta=meta))
    result = pytester.runpytest_subprocess(
        *QUIET, "repo/tasks", "--infratask-retries=1", timeout=DEADLINE
    )
    result.assert_outcomes(passed=1)
    assert (marks / "tried").exists(), "the second block never failed: nothing was retried"
    assert (repo / "a.txt").read_text() == "one\ntwo\n"
    assert list((repo / ".git" / "infratask" / "overlay").iterdir()) == []


@pytest.mark.parametrize("writes", [True, False], ids=["writes", "writes-nothing"])
def test_an_edit_from_outside_while_the_commands_run_is_not_the_criterions(
    pytester: pytest.Pytester, writes: bool
) -> None:
    """Someone edits a tracked file while the first criterion's command runs: neither
    that criterion nor the next one (whose state before may be reused) takes it for
    its own, so it is neither staged nor reported as theirs."""
    marks = pytester.path / "marks"
    wait = f"for i in $(seq {WAIT * 10}); do [ -e {marks}/edited ] && break; sleep 0.1; done"
    first = f"touch {marks}/started; {wait}; [ -e {marks}/edited ]"
    if writes:
        first += "; echo one > one.txt"
    repo = _repo(pytester.path, {"TASK-A": [first, "echo two > two.txt" if writes else "true"]})

    def edit() -> None:
        wait_for(lambda: (marks / "started").exists(), what="the first command")
        with (repo / "tracked.txt").open("a") as handle:
            handle.write("an edit of yours\n")
        (marks / "edited").touch()

    editor = threading.Thread(target=edit)
    editor.start()
    try:
        result = pytester.runpytest_subprocess(
            *QUIET, "repo/tasks", "--infratask-report-dir=reports", timeout=DEADLINE
        )
    finally:
        editor.join(timeout=DEADLINE)
    result.assert_outcomes(passed=2)
    staged = set(git(repo, "diff", "--cached", "--name-only").split())
    assert staged == ({"one.txt", "two.txt"} if writes else set()) | {"tasks/TASK-A.md"}
    assert git(repo, "status", "--porcelain", "tracked.txt") == " M tracked.txt\n"
    report = (pytester.path / "reports" / "TASK-A.json").read_text()
    assert "tracked.txt" not in report


FAILS = "echo new > new.txt; echo more >> tracked.txt; rm gone.txt; mkdir -p d/e; exit 3"


def test_a_failed_attempt_leaves_the_work_tree_untouched(pytester: pytest.Pytester) -> None:
    repo = _repo(pytester.path, {"TASK-A": [FAILS]})
    result = pytester.runpytest_subprocess(
        *QUIET, "repo/tasks", "--infratask-retries=1", timeout=DEADLINE
    )
    result.assert_outcomes(failed=1)
    # the task file's progress line alone
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == " M tasks/TASK-A.md\n"
    assert (repo / "gone.txt").exists() and not (repo / "d").exists()
    assert list((repo / ".git" / "infratask" / "overlay").iterdir()) == []


def test_a_killed_run_leaves_nothing_the_next_trips_over(pytester: pytest.Pytester) -> None:
    marks = pytester.path / "marks"
    script = (
        f"echo new > new.txt; echo more >> tracked.txt; rm gone.txt; "
        f"if [ ! -e {marks}/killed ]; then touch {marks}/started; sleep 300; fi"
    )
    repo = _repo(pytester.path, {"TASK-A": [script]})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", *QUIET, "repo/tasks"],
        cwd=pytester.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (marks / "started").exists() or proc.poll() is not None, what="start")
        assert proc.poll() is None, "the run ended before the command started"
        assert (repo / ".git" / "infratask" / "overlay").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    (marks / "killed").touch()
    result = pytester.runpytest_subprocess(*QUIET, "repo/tasks", timeout=DEADLINE)
    result.assert_outcomes(passed=1)
    status = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(status) == ["A  new.txt", "D  gone.txt", "M  tasks/TASK-A.md", "M  tracked.txt"]
    assert list((repo / ".git" / "infratask" / "overlay").iterdir()) == []
