"""Every attempt starts clean: a failed or interrupted attempt is put back, a retry
starts from the rolled-back state, a rerun never stacks side effects, and BLOCKED
always means that no command of the criterion ran.

Each test drives pytest on real task files in real git repositories; the property
test generates whole runs (criteria that append to tracked and untracked files,
create files, stage them, fail in several ways, over edits of the user's own) and
checks what every run leaves behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from helpers import DEADLINE, alive, commit_all, git, none_left, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest_infratask

EXAMPLES = int(os.environ.get("INFRATASK_ATTEMPT_EXAMPLES", "15"))
SLOW_EXAMPLES = int(os.environ.get("INFRATASK_ATTEMPT_SLOW_EXAMPLES", "120"))
TASK = "tasks/TASK-001.md"
CHECKOUT = str(Path(pytest_infratask.__file__).resolve().parents[1])


IN_PLACE = ("-o", "infratask_overlay=false")
"""Commands write the work tree itself (no overlay): what a kill or a failed
rollback leaves there is the next run's to settle."""


def environment() -> dict[str, str]:
    """The subprocess runs load this checkout of the plugin, and commit as someone."""
    path = os.pathsep.join(p for p in (CHECKOUT, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        env[f"{key}_NAME"], env[f"{key}_EMAIL"] = "Infratask Test", "test@infratask.invalid"
    env.pop("GITHUB_ACTIONS", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    return env


def pytest_args(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-p",
        "no:randomly",
        TASK,
        "--infratask-report-dir=reports",
        # The markers outside the repository (beside it, in the test's directory) are
        # writable to the commands' sandbox only when declared.
        "-o",
        "infratask_writable=..",
        *args,
    ]


def run_in(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pytest_args(*args),
        cwd=root,
        env=environment(),
        text=True,
        capture_output=True,
        timeout=DEADLINE,
        check=False,
    )


def make_repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in {**files, ".gitignore": ".pytest_cache/\nreports/\n"}.items():
        (root / name).write_text(text)
    commit_all(root)
    return root


def task_file(root: Path, criteria: list[tuple[str, str]], meta: str = "") -> Path:
    """A task at ``tasks/TASK-001.md`` whose commands run in the repository's root."""
    lines = [
        "---",
        "id: TASK-001",
        "title: Release",
        "workdir: ..",
        "updated: 2024-01-01",
        *([meta] if meta else []),
        "---",
        "## Acceptance Criteria",
        "",
    ]
    for text, script in criteria:
        lines += [
            f"- [ ] {text}",
            "  ```bash",
            *(f"  {line}" for line in textwrap.dedent(script).strip().splitlines()),
            "  ```",
        ]
    lines += ["", "## Progress Log", ""]
    path = root / TASK
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines))
    git(root, "add", TASK)
    git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "task")
    return path


def contract(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "reports" / "TASK-001.json").read_text())
    return data


def status(root: Path) -> list[str]:
    return git(root, "status", "--porcelain", "-uall").splitlines()


RELEASE = """\
echo "- api 1.2" >> CHANGELOG.md
test -f notified
"""


# -- bash names the line that failed ---------------------------------------------------
@pytest.mark.parametrize(
    ("script", "line", "command"),
    [
        ("echo a\ntest -f notified\necho never", 2, "test -f notified"),
        ("echo a\nno-such-tool-xyz --flag\n", 2, "no-such-tool-xyz --flag"),
        ("f() {\n  false\n}\necho\nf", 2, "false"),
        ("true\n( cd /; false )", 2, "( cd /; false )"),
        ("x=$(false)", 1, "x=$(false)"),
        # a command over two lines is reported at its last one, as bash numbers it
        ("exec 3>/dev/null 2>&1\necho 'a\nb' >&3\nfalse 'x\ny'", 5, "false 'x\ny'"),
        ("set +e\nfalse\nexit 3", None, ""),  # the status that ended it is not false's
        ("exit 4", None, ""),
        ("true", None, ""),
    ],
)
def test_the_failing_line_comes_from_bash_on_its_own_descriptor(
    tmp_path: Path, script: str, line: int | None, command: str
) -> None:
    from pytest_infratask.run.process import run_script

    result = run_script(script, tmp_path, dict(os.environ))
    assert (result.failed_line, result.failed_command) == (line, command)
    assert "BASH_COMMAND" not in result.stderr and "LINENO" not in result.stderr
    if "no-such-tool" in script:
        assert result.stderr == "bash: line 2: no-such-tool-xyz: command not found\n"


# -- the operator's loop: run, fail, fix, run again ------------------------------------
def test_fail_fix_rerun_appends_once_and_commits_the_tasks_paths(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"CHANGELOG.md": "# Changes\n"})
    task_file(root, [("Note the release and notify", RELEASE)])
    first = run_in(root, "--infratask-commit")
    assert first.returncode == 1, first.stdout
    assert (root / "CHANGELOG.md").read_text() == "# Changes\n", "both attempts were put back"
    assert [line for line in status(root) if "CHANGELOG" in line] == []
    out = first.stdout
    assert (
        "command failed with exit code 1 after 2 attempt(s), at line 2: test -f notified; "
        "its changes were rolled back: CHANGELOG.md" in out
    )
    assert "attempt 1/2: exit code 1, line 2: test -f notified; rolled back CHANGELOG.md" in out
    # the last attempt's rollback is the message's own: not repeated as a note
    assert "attempt 2/2: exit code 1, line 2: test -f notified; rolled back" not in out
    assert (
        "infratask: TASK-001 #1: attempt 2/2, after rolling back CHANGELOG.md "
        "(attempt 1: exit code 1, line 2: test -f notified)"
    ) in first.stderr
    [result] = contract(root)["criteria_results"]
    assert [(r["attempt"], r["reason"], r["files"]) for r in result["rolled_back"]] == [
        (1, "retried", ["CHANGELOG.md"]),
        (2, "failed", ["CHANGELOG.md"]),
    ]
    assert "+- api 1.2" in result["rolled_back"][0]["diff"]

    (root / "notified").touch()  # the fix, an untracked file of the operator's
    head = git(root, "rev-parse", "HEAD").strip()
    second = run_in(root, "--infratask-commit")
    assert second.returncode == 0, second.stdout
    assert (root / "CHANGELOG.md").read_text() == "# Changes\n- api 1.2\n"
    assert git(root, "rev-list", "--count", f"{head}..HEAD").strip() == "1"
    committed = set(git(root, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"CHANGELOG.md", TASK}
    assert status(root) == ["?? notified"]
    assert contract(root)["status"] == "committed"


def test_the_failing_line_and_the_diff_are_masked(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value-42"
    root = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    task_file(
        root,
        [("Uses a token", f"echo 'token {secret}' >> a.txt\ntest {secret} = other")],
        meta=f"env:\n  API_TOKEN: {secret}",
    )
    done = run_in(root)
    assert "line 2: test *** = other" in done.stdout
    for text in (
        done.stdout,
        done.stderr,
        (root / "reports" / "TASK-001.json").read_text(),
        (root / TASK).read_text().split("## Progress Log")[1],
    ):
        assert secret not in text
    [result] = contract(root)["criteria_results"]
    assert "+token ***" in result["rolled_back"][0]["diff"]


def test_a_change_to_a_file_with_your_edits_is_a_failure_that_ran_and_is_put_back(
    tmp_path: Path,
) -> None:
    root = make_repo(tmp_path / "repo", {"CHANGELOG.md": "# Changes\n"})
    task_file(
        root,
        [
            ("Note the release", 'echo "- api 1.2" >> CHANGELOG.md\ngit add -A'),
            ("Then this", "touch later"),
        ],
    )
    (root / "CHANGELOG.md").write_text("# Changes\n- my own note\n")
    done = run_in(root)
    assert done.returncode == 1
    assert "BLOCKED" not in done.stdout
    assert (
        "the commands ran and changed CHANGELOG.md, which held your uncommitted edits "
        "(kept as they were); its changes were rolled back: CHANGELOG.md"
    ) in done.stdout
    assert (root / "CHANGELOG.md").read_text() == "# Changes\n- my own note\n"
    assert git(root, "diff", "--cached", "--name-only") == "", "its `git add` was undone too"
    assert not (root / "later").exists(), "it holds the criteria after it back"
    statuses = [r["status"] for r in contract(root)["criteria_results"]]
    assert statuses == ["failed", "skipped"]


def test_blocked_only_when_nothing_ran(tmp_path: Path) -> None:
    """A missing tool as the block's first command: BLOCKED, nothing ran. The same tool
    missing after the block wrote a file: a failure (it ran), rolled back, that still
    holds the criteria after it back."""
    root = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    log = tmp_path / "log"
    task_file(
        root,
        [
            ("Nothing ran", f"no-such-tool-xyz --version\necho first >> {log}"),
            (
                "Something ran <!-- independent -->",
                f"echo second >> {log}\necho more >> a.txt\nno-such-tool-xyz apply",
            ),
            ("Held back", f"echo third >> {log}"),
        ],
    )
    done = run_in(root)
    results = contract(root)["criteria_results"]
    assert [r["status"] for r in results] == ["blocked", "failed", "skipped"]
    assert log.read_text() == "second\n"
    assert results[0]["message"] == "BLOCKED: missing dependency: no-such-tool-xyz not found"
    assert results[1]["message"] == (
        "missing dependency: no-such-tool-xyz not found, after part of the block ran "
        "(line 3: no-such-tool-xyz apply); its changes were rolled back: a.txt"
    )
    assert (root / "a.txt").read_text() == "a\n"
    assert "install no-such-tool-xyz" in done.stdout


def test_retries_comment_is_bounded_like_the_frontmatter_key(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {})
    log = tmp_path / "log"
    for value in ("1e30", "101", "1000000000000000000000000000000", "-1"):
        task_file(
            root,
            [("Fine", "true"), (f"Forever <!-- retries: {value} -->", f"echo x >> {log}; false")],
        )
        done = run_in(root)
        assert done.returncode != 0
        assert (
            f"TASK-001.md:13: <!-- retries: {value} -->: expected a whole number from 0 "
            "to 100" in done.stdout + done.stderr
        ), done.stdout
        assert not log.exists(), "nothing ran"


def test_a_task_type_sets_its_own_retry_default(tmp_path: Path) -> None:
    """Verification tasks retry by default (their commands look); the option beats it."""
    root = make_repo(tmp_path / "repo", {})
    log = tmp_path / "log"
    task_file(root, [("Looks", f"echo x >> {log}; false")], meta="labels: [verification]")
    run_in(root)
    assert log.read_text().count("x") == 3
    log.unlink()
    run_in(root, "--infratask-retries=0")
    assert log.read_text().count("x") == 1


def test_a_handler_of_your_own_declares_its_retry_default(tmp_path: Path) -> None:
    """The Retries example of docs/running.md, pasted: the class attribute is the default."""
    root = make_repo(tmp_path / "repo", {})
    log = tmp_path / "log"
    task_file(root, [("Looks", f"echo x >> {log}; false")], meta="type: smoke")
    (root / "conftest.py").write_text(
        textwrap.dedent("""
        from pytest_infratask import Handler


        class SmokeHandler(Handler):
            task_type = "smoke"
            retries = 3  # its commands only look; a fourth look is cheap


        def pytest_infratask_handler(task_type, task, config):
            if task_type == "smoke":
                return SmokeHandler.create(task, config)
    """)
    )
    run_in(root)
    assert log.read_text().count("x") == 4
    log.unlink()
    task_file(root, [("Looks", f"echo x >> {log}; false")], meta="type: smoke\nretries: 1")
    run_in(root)
    assert log.read_text().count("x") == 2, "the frontmatter beats the type's default"


def test_a_later_blocks_retry_starts_after_the_earlier_block(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.txt": "a\n", "b.txt": "b\n"})
    flag = tmp_path / "flag"
    path = root / TASK
    task_file(root, [("Two blocks", "echo one >> a.txt")])
    text = path.read_text().replace(
        "  ```\n\n## Progress",
        "  ```\n  ```bash\n"
        f"  echo two >> b.txt\n  test -f {flag} || {{ touch {flag}; false; }}\n"
        "  ```\n\n## Progress",
    )
    path.write_text(text)
    done = run_in(root)
    assert done.returncode == 0, done.stdout
    assert (root / "a.txt").read_text() == "a\none\n", "block 1 ran once"
    assert (root / "b.txt").read_text() == "b\ntwo\n", "block 2's failed try was put back"
    [result] = contract(root)["criteria_results"]
    assert [(r["attempt"], r["files"]) for r in result["rolled_back"]] == [(2, ["b.txt"])]


def test_an_attempt_that_cannot_be_put_back_blocks_what_comes_after(tmp_path: Path) -> None:
    """Nothing runs over an attempt whose rollback failed: the next criterion is BLOCKED
    before its command, until a rollback succeeds."""
    root = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    log = tmp_path / "log"
    task_file(
        root,
        [
            ("Breaks", "echo x >> a.txt\nfalse"),
            ("Independent <!-- independent -->", f"echo ran >> {log}"),
        ],
        meta="retries: 0",
    )
    (root / "conftest.py").write_text(
        textwrap.dedent("""
        from pytest_infratask.record import attempt

        def refuse(self, commit, paths):
            raise attempt.GitFailed("refused by the test")

        attempt.GitCommand.checkout = refuse
    """)
    )
    # In the work tree itself: an overlay's attempt has nothing to put back.
    done = run_in(root, *IN_PLACE)
    results = contract(root)["criteria_results"]
    assert [r["status"] for r in results] == ["failed", "blocked"], done.stdout
    assert "could not roll back: the index: refused by the test" in results[0]["message"]
    assert results[1]["message"].startswith(
        "BLOCKED: an interrupted attempt could not be rolled back: TASK-001 #1 (run PID "
    )
    assert not log.exists()
    assert (root / "a.txt").read_text() == "a\nx\n"

    (root / "conftest.py").unlink()
    again = run_in(root)
    assert (root / "a.txt").read_text() == "a\n", "put back, then #1 ran and was put back"
    assert [r["status"] for r in contract(root)["criteria_results"]] == ["failed", "passed"]
    assert log.read_text() == "ran\n", again.stdout


# -- an interrupted attempt ------------------------------------------------------------
def test_a_killed_run_leaves_a_journal_the_rerun_rolls_back(tmp_path: Path) -> None:
    """kill -9 in the middle of a command: the sandbox's death signal ends the command,
    and the line it appended stays. The rerun rolls the attempt back from its journal,
    then runs the criterion once."""
    root = make_repo(tmp_path / "repo", {"CHANGELOG.md": "# Changes\n"})
    started, fixed = tmp_path / "started", tmp_path / "fixed"
    marker = f"infratask-killed-{uuid.uuid4().hex}"
    task_file(
        root,
        [
            (
                "Note and wait",
                f"""
        echo "- api 1.2" >> CHANGELOG.md
        if [ ! -f {fixed} ]; then touch {started}; exec -a {marker} sleep 300; fi
    """,
            )
        ],
    )
    proc = subprocess.Popen(
        pytest_args(*IN_PLACE),
        cwd=root,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(started.exists, what="the command to start")
    finally:
        proc.kill()
        proc.wait()
    assert none_left(marker, "the killed run's command") == []
    assert (root / "CHANGELOG.md").read_text().count("api 1.2") == 1
    assert list((root / ".git" / "infratask" / "attempts").glob("*.json"))
    fixed.touch()
    done = run_in(root, *IN_PLACE)
    assert done.returncode == 0, done.stdout
    assert (root / "CHANGELOG.md").read_text() == "# Changes\n- api 1.2\n"
    [result] = contract(root)["criteria_results"]
    [undone] = result["rolled_back"]
    assert undone["attempt"] == 0 and undone["files"] == ["CHANGELOG.md"]
    assert undone["reason"] == f"interrupted: TASK-001 #1 (run PID {proc.pid})"
    assert "rolled back the interrupted attempt of TASK-001 #1" in " ".join(
        contract(root)["git_warnings"]
    )
    assert not list((root / ".git" / "infratask" / "attempts").glob("*.json"))


def test_ctrl_c_rolls_the_attempt_back_in_the_same_run(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"CHANGELOG.md": "# Changes\n"})
    started = tmp_path / "started"
    task_file(
        root, [("Note and wait", f'echo "- api 1.2" >> CHANGELOG.md\ntouch {started}\nsleep 300')]
    )
    proc = subprocess.Popen(
        pytest_args(),
        cwd=root,
        env=environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(started.exists, what="the command to start")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=DEADLINE)
    finally:
        proc.kill()
    assert (root / "CHANGELOG.md").read_text() == "# Changes\n"
    assert not list((root / ".git" / "infratask" / "attempts").glob("*.json"))


def test_ctrl_c_while_the_command_is_spawned_leaves_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interruption inside ``Popen``, after the fork: the child exists but no
    ``Popen`` object names it. It is ended all the same, before the attempt is put
    back, so it cannot write after the rollback."""
    from pytest_infratask.run import process

    spawned: list[int] = []
    original = subprocess.Popen._execute_child  # type: ignore[attr-defined]

    def interrupted(self: subprocess.Popen[bytes], *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        spawned.append(self.pid)
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess.Popen, "_execute_child", interrupted)
    with pytest.raises(KeyboardInterrupt):
        process.run_script(f"sleep 5; touch {tmp_path / 'late'}", tmp_path, dict(os.environ))
    monkeypatch.undo()
    [pid] = spawned
    assert not alive(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped, not left a zombie


def _dead_process() -> tuple[int, str]:
    from pytest_infratask.record.recovery import process_stamp

    proc = subprocess.Popen(["sleep", "30"])
    stamp = process_stamp(proc.pid)
    proc.kill()
    proc.wait()
    assert stamp is not None
    return proc.pid, stamp


def _stale_marker(root: Path, pid: int, stamp: str, when: float) -> None:
    marker = root / ".git" / "infratask" / "writing.json"
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps({"pid": pid, "stamp": stamp, "time": when}))


def test_the_runs_own_stale_index_lock_is_removed(tmp_path: Path) -> None:
    import time

    root = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    task_file(root, [("Edit", "echo b >> a.txt")])
    pid, stamp = _dead_process()
    _stale_marker(root, pid, stamp, time.time() - 1)
    (root / ".git" / "index.lock").write_text("")
    done = run_in(root, "--infratask-commit")
    assert done.returncode == 0, done.stdout
    assert not (root / ".git" / "index.lock").exists()
    assert (
        "removed the git lock(s) a run that died left: index.lock" in contract(root)["git_warnings"]
    )


INTERRUPTED_WRITE = """
import sys
from pathlib import Path
from pytest_infratask.record.recovery import writing
git_dir = Path(sys.argv[1])
with writing(git_dir):
    (git_dir / "index.lock").write_text("")  # a git process of ours, mid-write
    raise KeyboardInterrupt
"""


def test_a_lock_left_by_a_run_interrupted_while_writing_is_removed_by_the_next(
    tmp_path: Path,
) -> None:
    """Ctrl-C while the run's git writes the index: its lock may outlive the run, so
    the marker naming the writer stays, and the next run clears the lock."""
    root = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    task_file(root, [("Edit", "echo b >> a.txt")])
    checkout = str(Path(pytest_infratask.__file__).resolve().parents[1])
    child = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_WRITE, str(root / ".git")],
        env={**os.environ, "PYTHONPATH": checkout},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert "KeyboardInterrupt" in child.stderr, child.stderr
    assert (root / ".git" / "infratask" / "writing.json").exists(), "the marker went"
    done = run_in(root, "--infratask-commit")
    assert done.returncode == 0, done.stdout
    assert not (root / ".git" / "index.lock").exists()
    assert (
        "removed the git lock(s) a run that died left: index.lock" in contract(root)["git_warnings"]
    )


@pytest.mark.parametrize("case", ["no marker", "older than the marker", "held open"])
def test_a_lock_that_is_not_a_dead_runs_is_never_removed(tmp_path: Path, case: str) -> None:
    import time

    root = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    task_file(root, [("Edit", "echo b >> a.txt")])
    lock = root / ".git" / "index.lock"
    lock.write_text("")
    holder = None
    if case != "no marker":
        pid, stamp = _dead_process()
        _stale_marker(
            root, pid, stamp, time.time() + (60 if case == "older than the marker" else -1)
        )
    if case == "held open":
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import time; f = open({str(lock)!r}); time.sleep(300)"]
        )
        wait_for(
            lambda: any(
                os.path.exists(f"/proc/{holder.pid}/fd/{fd}")
                and os.readlink(f"/proc/{holder.pid}/fd/{fd}") == str(lock)
                for fd in os.listdir(f"/proc/{holder.pid}/fd")
            ),
            what="the holder to open the lock",
        )
    try:
        done = run_in(root)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
    assert lock.exists(), "a lock of someone else's stays"
    assert done.returncode == 1
    assert "staging failed" in done.stdout


# -- the starting state, put back whatever happened -------------------------------------
STATES = (
    "clean",
    "edited",
    "staged",
    "staged-then-edited",
    "untracked",
    "deleted",
    "executable",
    "link",
    "absent",
)
CHANGES = ("append", "remove", "create", "stage", "unstage", "chmod", "link", "dir")


def _prepare(root: Path, name: str, state: str) -> None:
    path = root / name
    if state in ("edited", "staged", "staged-then-edited"):
        path.write_text(f"{name}: yours\n")
    if state in ("staged", "staged-then-edited"):
        git(root, "add", name)
    if state == "staged-then-edited":
        path.write_text(f"{name}: yours, then more\n")
    if state == "untracked":
        (root / f"{name}.new").write_text("untracked\n")
    if state == "deleted":
        path.unlink()
    if state == "executable":
        path.chmod(0o755)
    if state == "link":
        path.unlink()
        path.symlink_to("elsewhere")


def _change(root: Path, name: str, change: str) -> None:
    path = root / name
    if change == "append" and path.is_file():
        with path.open("a") as handle:
            handle.write("the attempt\n")
    elif change == "remove" and (path.is_file() or path.is_symlink()):
        path.unlink()
    elif change == "create":
        (root / "made" / name).parent.mkdir(exist_ok=True)
        (root / "made" / name).write_text("made\n")
    elif change == "stage" and (path.exists() or path.is_symlink()):
        git(root, "add", name)
    elif change == "unstage":
        git(root, "rm", "-q", "-f", "--cached", "--ignore-unmatch", name)
    elif change == "chmod" and path.is_file() and not path.is_symlink():
        path.chmod(path.stat().st_mode ^ 0o100)
    elif change == "link" and not path.exists() and not path.is_symlink():
        path.symlink_to("the attempt's")
    elif change == "dir" and not path.exists() and not path.is_symlink():
        path.mkdir()
        (path / "inside").write_text("x\n")


def _picture(root: Path) -> tuple[str, dict[str, tuple[int, bytes]]]:
    """The index (modes, ids) and the work tree (modes, content) as they are."""
    index = git(root, "ls-files", "-s", "--others", "--exclude-standard")
    tree = {}
    for path in sorted(root.rglob("*")):
        if ".git" in path.relative_to(root).parts:
            continue
        info = path.lstat()
        data = (
            os.readlink(path).encode()
            if path.is_symlink()
            else (path.read_bytes() if path.is_file() else b"<dir>")
        )
        tree[str(path.relative_to(root))] = (info.st_mode, data)
    return index, tree


@settings(
    max_examples=EXAMPLES * 4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    states=st.lists(st.sampled_from(STATES), min_size=3, max_size=3),
    changes=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(CHANGES)), max_size=6),
)
def test_a_rollback_puts_work_tree_and_index_back_exactly(
    cases: Path, states: list[str], changes: list[tuple[int, str]]
) -> None:
    """Whatever the starting state (edits staged or not, untracked files, deletions,
    modes, links) and whatever the attempt does, the rollback of what it changed gives
    back the very index and work tree it started from."""
    from pytest_infratask.record.git import RepoTracker

    names = ["one.txt", "two.sh", "three.txt"]
    root = make_repo(cases / f"state{next(_IDS)}", {n: f"{n}\n" for n in names})
    for name, state in zip(names, states, strict=True):
        _prepare(root, name, state)
    repo = RepoTracker(root, "repo", "main")
    start = repo.view.snapshot(repo.snapshot())
    before = _picture(root)
    for which, change in changes:
        _change(root, names[which], change)
    changed = repo.view.diff(start, repo.snapshot())
    undone = repo.view.rollback(start, changed)
    assert undone.problems == []
    assert _picture(root) == before
    assert repo.view.diff(start, repo.snapshot()) == []


# -- the property ----------------------------------------------------------------------
PATHS = ("tracked-a.txt", "tracked-b.txt", "mine.txt", "new.txt")
TRACKED = {"tracked-a.txt": "a\n", "tracked-b.txt": "b\n"}
ENDINGS = ("pass", "fail", "missing", "flaky", "staged-then-fail", "missing-first")


@dataclass(frozen=True)
class Step:
    path: str
    ending: str
    needs_first: bool


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    user_edits: frozenset[str]
    retries: int


plans = st.builds(
    Plan,
    steps=st.lists(
        st.builds(Step, st.sampled_from(PATHS), st.sampled_from(ENDINGS), st.booleans()),
        min_size=1,
        max_size=4,
    ).map(tuple),
    user_edits=st.frozensets(st.sampled_from(("tracked-a.txt", "tracked-b.txt", "mine.txt"))),
    retries=st.integers(0, 2),
)


def script(n: int, step: Step, log: Path, flags: Path) -> str:
    write = f"echo c{n} >> {log}\necho line-{n} >> {step.path}"
    return {
        "pass": write,
        "fail": f"{write}\nfalse",
        "missing": f"{write}\nno-such-tool-{n}",
        "flaky": f"{write}\ntest -f {flags}/{n} || {{ touch {flags}/{n}; false; }}",
        "staged-then-fail": f"{write}\ngit add {step.path}\nfalse",
        "missing-first": f"no-such-tool-{n}\n{write}",
    }[step.ending]


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("attempt-cases")


_IDS = count()


def check_a_run(base: Path, plan: Plan) -> None:
    case = base / f"case{next(_IDS)}"
    log, flags = case / "log", case / "flags"
    flags.mkdir(parents=True)
    root = make_repo(case / "repo", TRACKED)
    criteria = [
        (
            f"Step {n}" + (" <!-- needs: #1 -->" if step.needs_first and n > 1 else ""),
            script(n, step, log, flags),
        )
        for n, step in enumerate(plan.steps, start=1)
    ]
    task_file(root, criteria, meta=f"retries: {plan.retries}")
    user = {p: f"{TRACKED.get(p, '')}the user's edit\n" for p in plan.user_edits}
    for name, text in user.items():
        (root / name).write_text(text)
    run_in(root)
    results = contract(root)["criteria_results"]
    story = json.dumps([(r["status"], r["message"]) for r in results], indent=1)
    ran = log.read_text().split() if log.exists() else []
    passed = [s for n, s in enumerate(plan.steps, 1) if results[n - 1]["status"] == "passed"]
    for n, result in enumerate(results, start=1):
        if result["status"] == "blocked":
            assert f"c{n}" not in ran, f"#{n} is BLOCKED but ran\n{story}"
        if result["status"] == "passed":
            assert f"c{n}" in ran
    assert not any(s.path in user for s in passed), f"a change mixed with your edits\n{story}"
    for path in PATHS:
        base_text = user.get(path, TRACKED.get(path))
        lines = [
            f"line-{n}\n"
            for n, s in enumerate(plan.steps, 1)
            if s.path == path and results[n - 1]["status"] == "passed"
        ]
        expected = None if base_text is None and not lines else (base_text or "") + "".join(lines)
        found = (root / path).read_text() if (root / path).exists() else None
        assert found == expected, f"{path}: {found!r} != {expected!r}\n{story}"
    allowed = {TASK, *user, *(s.path for s in passed)}
    left = {line[3:] for line in status(root)}
    assert left <= allowed, f"{left - allowed} left behind\n{story}"
    staged = set(git(root, "diff", "--cached", "--name-only").split())
    assert {s.path for s in passed} <= staged <= {TASK, *(s.path for s in passed)}, story
    assert not list((root / ".git" / "infratask" / "attempts").glob("*.json"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=plans)
def test_every_run_leaves_only_what_passed_and_blocked_means_nothing_ran(
    cases: Path, plan: Plan
) -> None:
    check_a_run(cases, plan)


@pytest.mark.slow
@settings(
    max_examples=SLOW_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(plan=plans)
def test_every_run_leaves_only_what_passed_many_runs(cases: Path, plan: Plan) -> None:
    check_a_run(cases, plan)
