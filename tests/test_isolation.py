"""Runs that share a machine: tasks sharing a repository never mix their commits, a
criterion runs once however many runs race for it, locks are private and bounded, and
nothing a command started outlives its criterion. End to end through pytest subprocesses."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from helpers import DEADLINE, git, item, none_left, processes_with, task_md, wait_for, write_task

import pytest_infratask
from pytest_infratask.read.taskfile import read_task
from pytest_infratask.util.locks import lock_for

QUIET = ("-p", "no:cacheprovider", "-p", "no:benchmark")


@pytest.fixture(autouse=True)
def _this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess runs load the plugin this test imported, whichever copy is installed."""
    root = str(Path(pytest_infratask.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    )
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *QUIET, "-q", *args]


# -- tasks sharing a repository ----------------------------------------------------------


def _round_of_tasks(root: Path, round_: int, tasks: int) -> dict[str, set[str]]:
    """``tasks`` tasks of two criteria each, every one writing its own files."""
    own = {}
    for i in range(1, tasks + 1):
        task_id = f"TASK-R{round_}-T{i}"
        steps = [
            item(
                f"Write file {n} of {task_id}",
                f"sleep 0.0$((RANDOM % 5)); echo {n} > out/{task_id}-{n}.txt",
            )
            for n in (1, 2)
        ]
        meta = f"id: {task_id}\ntitle: Task {task_id}\nworkdir: ../..\nupdated: 2024-01-01"
        write_task(root / "tasks" / f"r{round_}", f"{task_id}.md", task_md(*steps, meta=meta))
        own[task_id] = {
            f"out/{task_id}-1.txt",
            f"out/{task_id}-2.txt",
            f"tasks/r{round_}/{task_id}.md",
        }
    git(root, "add", "tasks")
    git(root, "commit", "-q", "-m", f"round {round_} tasks")
    return own


@pytest.mark.parametrize(
    ("tasks", "rounds", "workers"),
    [
        pytest.param(4, 2, 2, id="4x2"),
        pytest.param(8, 20, 4, id="8x20", marks=pytest.mark.slow),
    ],
)
def test_tasks_sharing_a_repository_commit_exactly_their_own_files(
    pytester: pytest.Pytester, git_identity: None, tasks: int, rounds: int, workers: int
) -> None:
    root = pytester.path
    pytester.makeini("[pytest]\ninfratask_timeout = 60\n")
    # Reports go inside the repository, not ignored, as the CI recipe has them.
    # stdout/stderr: where pytester captures the run, which changes while it runs.
    (root / ".gitignore").write_text(".pytest_cache/\nstdout\nstderr\n")
    (root / "out").mkdir()
    (root / "out" / ".keep").write_text("")
    (root / "notes.txt").write_text("mine\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    (root / "notes.txt").write_text("mine, edited\n")  # someone's work: never committed
    for round_ in range(rounds):
        own = _round_of_tasks(root, round_, tasks)
        start = git(root, "rev-parse", "HEAD").strip()
        result = pytester.runpytest_subprocess(
            *QUIET,
            "-n",
            str(workers),
            f"tasks/r{round_}",
            "--infratask-commit",
            "--infratask-report-dir=reports/tasks",
            "--junitxml=reports/junit.xml",
            timeout=DEADLINE * 3,
        )
        out = result.stdout.str()
        assert "BLOCKED" not in out, out
        result.assert_outcomes(passed=3 * tasks)  # two criteria and ::verify per task
        commits = git(root, "rev-list", f"{start}..HEAD").split()
        committed = {}
        for sha in commits:
            task_id = git(root, "log", "-1", "--format=%s", sha).split(":")[0]
            committed[task_id] = set(git(root, "show", "--name-only", "--format=", sha).split())
        assert committed == own, f"round {round_}"
    history = git(root, "log", "--name-only", "--format=").split()
    assert not [f for f in history if f.startswith("reports/")], "a report was committed"
    assert "notes.txt" not in history[:-3]
    assert git(root, "status", "--porcelain", "--", "notes.txt") == " M notes.txt\n"


# -- a criterion runs once ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rounds", "in_git"),
    [
        pytest.param(2, False, id="2-rounds"),
        pytest.param(2, True, id="2-rounds-in-git"),
        pytest.param(20, False, id="20-rounds", marks=pytest.mark.slow),
    ],
)
def test_two_runs_of_one_task_file_run_each_command_once(
    tmp_path: Path, git_identity: None, rounds: int, in_git: bool
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    if in_git:
        (tmp_path / ".gitignore").write_text("count.log\n")
        git(tmp_path, "init", "-q", "-b", "main")
        git(tmp_path, "commit", "-q", "--allow-empty", "-m", "init")
    log = tmp_path / "count.log"
    for round_ in range(rounds):
        path = write_task(
            tmp_path,
            f"TASK-{round_}.md",
            task_md(
                *(item(f"Step {n}", f"echo {round_}:{n} >> {log}") for n in range(1, 21)),
                meta=f"id: TASK-{round_}\nupdated: 2024-01-01",
            ),
        )
        runs = [
            subprocess.Popen(
                pytest_command(path.name),
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [r.communicate(timeout=DEADLINE)[0] for r in runs]
        assert [r.returncode for r in runs] == [0, 0], outputs
        ran = collections.Counter(
            line for line in log.read_text().split() if line.startswith(f"{round_}:")
        )
        assert ran == {f"{round_}:{n}": 1 for n in range(1, 21)}, (ran, outputs)
        assert all(c.done for c in read_task(path).criteria)


# -- private, bounded locks --------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_lock_directory_owned_by_someone_else_is_refused(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    planted = tmp / f"pytest-infratask-{os.geteuid()}"
    planted.mkdir(mode=0o777)
    os.chown(planted, 4242, 4242)
    os.chown(tmp, 4242, 4242)
    monkeypatch.setenv("TMPDIR", str(tmp))
    path = write_task(pytester.path, "TASK-001.md", task_md(item("Run", "touch ran")))
    result = pytester.runpytest_subprocess(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*BLOCKED: lock directory*belongs to uid 4242, not to you*set TMPDIR*"]
    )
    assert "Traceback" not in result.stdout.str()
    assert not (pytester.path / "ran").exists(), "the command ran"
    assert list(planted.iterdir()) == [], "a lock file was created in it"


def test_a_lock_held_past_its_limit_blocks_before_the_command(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\ninfratask_lock_wait = 1\n")
    path = write_task(pytester.path, "TASK-001.md", task_md(item("Run", "touch ran")))
    before = path.read_bytes()
    held = lock_for(path, "", "the task file")  # this process plays the other run
    with held.holding(10):
        result = pytester.runpytest_subprocess(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(
        [
            f"*BLOCKED: task file TASK-001.md is held by run PID {os.getpid()}; "
            "gave up after waiting 1s*the command did not run*",
        ]
    )
    result.stdout.fnmatch_lines(["*raise infratask_lock_wait*"])
    waiting = f"waiting for run PID {os.getpid()} to release task file TASK-001.md"
    assert waiting in result.stderr.str()
    assert not (pytester.path / "ran").exists(), "the command ran"
    assert path.read_bytes() == before


def test_a_wait_for_a_lock_that_is_released_in_time_runs_the_command(
    pytester: pytest.Pytester,
) -> None:
    path = write_task(pytester.path, "TASK-001.md", task_md(item("Run", "touch ran")))
    held = lock_for(path, "", "the task file")
    held.acquire(10)
    try:
        proc = subprocess.Popen(
            pytest_command(str(path)),
            cwd=pytester.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # the run says whom it waits for (on stderr, past pytest's capture)
        assert proc.stderr is not None
        waiting = f"waiting for run PID {os.getpid()}"
        line = ""
        while waiting not in line:
            line = proc.stderr.readline()
            assert line, "the run ended without saying whom it waits for"
    finally:
        held.release()
    out, _ = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, out
    assert (pytester.path / "ran").exists()


# -- nothing outlives its criterion --------------------------------------------------------

DAEMONS = """\
setsid sh -c 'echo $$ > setsid.pid; exec sleep 300' >/dev/null 2>&1 </dev/null &
( setsid sh -c 'echo $$ > double.pid; exec sleep 300' >/dev/null 2>&1 </dev/null & )
sh -c 'echo $$ > child.pid; exec sleep 300' &
for i in $(seq 2000); do
  [ -s setsid.pid ] && [ -s double.pid ] && [ -s child.pid ] && break; sleep 0.01
done
"""


def marked(meta: str = "") -> tuple[str, str]:
    """Frontmatter giving every process of the task a unique marker (its environment),
    and the marker: the processes are found by it, whatever pid namespace they are in."""
    marker = f"infratask-test-{uuid.uuid4().hex}"
    return f"id: TASK-001\nupdated: 2024-01-01\nenv:\n  RUN_MARKER: {marker}\n{meta}", marker


@pytest.mark.parametrize(
    ("ending", "meta", "outcome"),
    [
        ("true", "", "passed"),
        ("false", "retries: 0\n", "failed"),
        ("sleep 300", "timeout: 2\nretries: 0\n", "failed"),
    ],
    ids=["passed", "failed", "timed-out"],
)
def test_daemons_end_with_their_criterion(
    pytester: pytest.Pytester, ending: str, meta: str, outcome: str
) -> None:
    front, marker = marked(meta)
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Start daemons", DAEMONS + ending),
            meta=front,
        ),
    )
    result = pytester.runpytest_subprocess(*QUIET, str(path), timeout=DEADLINE)
    result.assert_outcomes(**{outcome: 1})
    assert none_left(marker, "the daemons") == []


def test_a_declared_service_outlives_its_criterion_until_the_run_ends(
    pytester: pytest.Pytester,
) -> None:
    front, marker = marked()
    service = f"svc-{marker}"
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item(
                "Start the API server <!-- service -->",
                f"SERVICE={service} nohup sleep 300 >/dev/null 2>&1 &",
            ),
            item("Use it", "touch waiting; while [ ! -e checked ]; do sleep 0.05; done"),
            meta=front,
        ),
    )
    proc = subprocess.Popen(
        pytest_command(str(path)),
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: (pytester.path / "waiting").exists() or proc.poll() is not None,
            what="the second criterion to start",
        )
        assert processes_with(service), "the service ended with its criterion"
        (pytester.path / "checked").touch()
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert none_left(marker, "the service") == [], "the service outlived the run"
    assert "- [x] Start the API server <!-- service -->" in path.read_text()
    criterion = read_task(path).criteria[0]
    assert criterion.service and criterion.text == "Start the API server"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


@pytest.mark.parametrize("stop", ["ctrl-c", "pytest-timeout"])
def test_an_interrupted_run_leaves_nothing_running(pytester: pytest.Pytester, stop: str) -> None:
    if stop == "pytest-timeout":
        pytest.importorskip("pytest_timeout")
    front, marker = marked()
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Start daemons, then hang", DAEMONS + "touch started\nsleep 300"),
            item("Afterwards", "true"),
            meta=front,
        ),
    )
    timeout = ["--timeout=5"] if stop == "pytest-timeout" else []
    args = pytest_command(str(path), "--infratask-report-dir=rep", *timeout)
    # Ctrl-C as from a shell: SIGINT handled by default, whatever this test process
    # inherited or was left with by earlier tests (an ignored SIGINT is inherited).
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    proc = subprocess.Popen(
        args,
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        wait_for(
            lambda: (pytester.path / "started").exists() or proc.poll() is not None,
            what="the command to start",
        )
        if stop == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            alive_then = proc.poll() is None
            proc.kill()
            out = proc.communicate(timeout=DEADLINE)[0]
            raise AssertionError(
                f"the interrupted run did not end (alive: {alive_then}, "
                f"SIGINT here: {inherited}):\n{out}"
            ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (pytester.path / "started").exists(), out
    assert ("KeyboardInterrupt" if stop == "ctrl-c" else "Timeout") in out, out
    assert none_left(marker, "the daemons") == []
    assert "- [ ] Start daemons, then hang" in path.read_text()
    if stop == "ctrl-c":  # the report says which criterion the interrupt stopped
        contract = json.loads((pytester.path / "rep" / "TASK-001.json").read_text())
        reasons = {c["number"]: c["reason"] for c in contract["remaining_criteria"]}
        assert reasons[1] == "interrupted while it ran in this session", reasons
        assert reasons[2].startswith("not run in this session"), reasons
        assert contract["next_steps"].startswith(
            "#1 'Start daemons, then hang' was interrupted while it ran in this session: "
            "rerun to run it again"
        ), contract["next_steps"]


def test_a_staging_failure_fails_the_criterion(
    pytester: pytest.Pytester, git_identity: None
) -> None:
    root = pytester.path
    (root / ".gitignore").write_text(".pytest_cache/\nstdout\nstderr\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    # the command leaves git's index locked, as a crashed git would
    path = write_task(
        root,
        "TASK-001.md",
        task_md(
            item("Write and lock", "echo x > new.txt; touch .git/index.lock"),
        ),
    )
    result = pytester.runpytest_subprocess(*QUIET, str(path), timeout=DEADLINE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*passed, but staging failed*git add failed*index.lock*"])
    (root / ".git" / "index.lock").unlink()
    assert git(root, "diff", "--cached", "--name-only") == ""
