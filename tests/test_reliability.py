"""Try to break the write-back: kill runs, race them, fill the disk, edit the file
under them. Trial counts come from environment variables so CI can afford them."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import DEADLINE, changes, git, item, none_left, task_md, wait_for, write_task

from pytest_infratask.read.taskfile import read_task
from pytest_infratask.record.writeback import TMP_SUFFIX

KILL_TRIALS = int(os.environ.get("INFRATASK_KILL_TRIALS", "12"))
SEED = int(os.environ.get("INFRATASK_SEED", "20261125"))
CRITERIA = 8
COMMIT_KILL_TRIALS = int(os.environ.get("INFRATASK_COMMIT_KILL_TRIALS", "204"))
SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM)
BATCHES = 4
PER_BATCH = -(-COMMIT_KILL_TRIALS // (len(SIGNALS) * BATCHES))


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]


def slow_task(folder: Path, criteria: int = CRITERIA) -> Path:
    """Each criterion leaves a marker, so a tick can be checked against what ran."""
    return write_task(
        folder,
        "TASK-001.md",
        task_md(*(item(f"Step {n}", f"touch ran-{n}") for n in range(1, criteria + 1))),
    )


def ticked_numbers(path: Path) -> set[int]:
    return {c.number for c in read_task(path).criteria if c.done}


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(KILL_TRIALS))
def test_kill_at_a_random_point_loses_nothing(tmp_path: Path, trial: int) -> None:
    rng = random.Random(SEED + trial)
    path = slow_task(tmp_path)
    original = path.read_text()
    after = rng.randint(0, CRITERIA - 1)
    proc = subprocess.Popen(
        pytest_command(str(path)),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if after:
            wait_for(
                lambda: (tmp_path / f"ran-{after}").exists() or proc.poll() is not None,
                what=f"criterion {after} to run",
            )
        # land anywhere inside the next write: between the command and the rename
        time.sleep(rng.uniform(0, 0.03))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    text = path.read_text()
    task = read_task(path)  # still parses
    assert len(task.criteria) == CRITERIA
    changes(original, text)  # only allowed bytes changed
    for number in ticked_numbers(path):
        assert (tmp_path / f"ran-{number}").exists(), f"#{number} ticked but never ran"
    rerun = subprocess.run(
        pytest_command(str(path)), cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE
    )
    assert rerun.returncode == 0, rerun.stdout
    assert ticked_numbers(path) == set(range(1, CRITERIA + 1))
    assert not list(tmp_path.glob(f"*{TMP_SUFFIX}")), "temp files left behind"
    final = changes(original, path.read_text())
    completed = [e for e in final.entry_texts() if e.startswith("Completed")]
    assert len(completed) == len(set(completed)), "a progress line was written twice"


def _plugin_env() -> dict[str, str]:
    import pytest_infratask

    checkout = str(Path(pytest_infratask.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (checkout, os.environ.get("PYTHONPATH")) if p),
    }
    # Only the plugin: a second per run instead of three (hypothesis, xdist... unloaded).
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        env[f"{key}_NAME"], env[f"{key}_EMAIL"] = "Infratask Test", "test@infratask.invalid"
    return env


def _committing_task(root: Path, log: Path) -> list[str]:
    """A repository and a task that appends to a tracked file, edits another, creates
    a file and commits them; each command first logs that it ran. Returns the lines
    the edited files must hold."""
    root.mkdir(parents=True)
    (root / "CHANGELOG.md").write_text("# Changes\n")
    (root / "values.yaml").write_text("replicas: 1\n")
    (root / ".gitignore").write_text("reports/\n")
    # Each command lasts a moment after its edit: a signal often lands inside one.
    steps = [
        ("Note the release", f"echo 1 >> {log}\necho '- api 1.2' >> CHANGELOG.md\nsleep 0.1"),
        (
            "Scale up",
            f"echo 2 >> {log}\nsed -i 's/replicas: 1/replicas: 3/' values.yaml\n"
            "sleep 0.1\necho 'extra: true' >> values.yaml",
        ),
        (
            "Write the notes",
            f"echo 3 >> {log}\necho 'api 1.2 is out' >> notes.txt\n"
            "echo '- notes written' >> CHANGELOG.md\nsleep 0.1",
        ),
    ]
    write_task(
        root / "tasks",
        "TASK-001.md",
        task_md(
            *(item(text, script) for text, script in steps),
            meta="id: TASK-001\ntitle: Release\nworkdir: ..\nretries: 0\nupdated: 2024-01-01",
        ),
    )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", "init")
    return ["- api 1.2", "- notes written", "replicas: 3", "extra: true", "api 1.2 is out"]


def _interrupted_then_rerun(tmp_path: Path, rng: random.Random, sig: int) -> bool:
    """One trial: a committing run interrupted by ``sig`` at a random moment, then the
    same command once more. Returns whether the signal landed before the run ended."""
    root, log = tmp_path / "repo", tmp_path / "ran.log"
    expected = _committing_task(root, log)
    original = (root / "tasks" / "TASK-001.md").read_text()
    # The log beside the repository is written by the commands: declared writable.
    command = pytest_command(
        "-p",
        "pytest_infratask.plugin",
        "tasks/TASK-001.md",
        "--infratask-commit",
        "--infratask-report-dir=reports",
        "-o",
        "infratask_writable=..",
    )
    env = _plugin_env()
    proc = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ran = rng.randint(0, 3)
        wait_for(
            lambda: (
                proc.poll() is not None or (log.exists() and len(log.read_text().split()) >= ran)
            ),
            what=f"step {ran}",
        )
        time.sleep(rng.uniform(0, 0.3))  # anywhere: a command, a tick, staging, the commit
        landed = proc.poll() is None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    finally:
        proc.wait(timeout=DEADLINE)
    rerun = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=DEADLINE
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert ticked_numbers(root / "tasks" / "TASK-001.md") == {1, 2, 3}
    text = "".join(
        (root / name).read_text() for name in ("CHANGELOG.md", "values.yaml", "notes.txt")
    )
    lines = text.splitlines()
    assert len(lines) == len(set(lines)), f"a line twice:\n{text}"
    assert set(expected) <= set(lines), text
    task_text = (root / "tasks" / "TASK-001.md").read_text()
    completed = [e for e in changes(original, task_text).entry_texts() if e.startswith("Comp")]
    assert len(completed) == len(set(completed)) == 3, "a progress line was written twice"
    assert git(root, "status", "--porcelain", "-uall") == "", "the task is committed whole"
    assert git(root, "log", "--format=%h", "--grep=Infratask-Task: TASK-001", "HEAD")
    locks = [str(p) for p in (root / ".git").rglob("*.lock")]
    assert locks == [], f"stale locks: {locks}"
    fsck = subprocess.run(
        ["git", "-C", str(root), "fsck", "--no-progress", "--no-dangling"],
        capture_output=True,
        text=True,
    )
    assert fsck.returncode == 0 and not fsck.stdout.strip(), fsck.stdout + fsck.stderr
    assert not list((root / ".git" / "infratask" / "attempts").glob("*.json"))
    return landed


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(BATCHES))
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_an_interrupted_committing_run_is_finished_by_a_plain_rerun(
    tmp_path: Path, sig: int, batch: int
) -> None:
    """SIGKILL, SIGINT or SIGTERM at a random moment of a run that edits files and
    commits; the same command again always finishes the task: every line once, the
    task committed, no lock left, the repository sound."""
    rng = random.Random(SEED + 1000 * int(sig) + batch)
    trials = [_interrupted_then_rerun(tmp_path / f"trial{n}", rng, sig) for n in range(PER_BATCH)]
    assert len(trials) == PER_BATCH
    assert PER_BATCH * BATCHES * len(SIGNALS) >= COMMIT_KILL_TRIALS
    assert any(trials), "no signal landed while the run was running"


def test_two_runs_of_one_directory_at_once(tmp_path: Path) -> None:
    for name in ("TASK-001.md", "TASK-002.md"):
        write_task(
            tmp_path,
            name,
            task_md(
                *(item(f"Step {n}", f"echo {name}-{n} >> ../log-{name}") for n in range(1, 16)),
                meta=f"id: {name[:-3]}\nupdated: 2024-01-01",
            ),
        )
    originals = {p.name: p.read_text() for p in tmp_path.glob("TASK-*.md")}
    runs = [
        subprocess.Popen(
            pytest_command("."),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=DEADLINE)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), outputs
    for name, before in originals.items():
        path = tmp_path / name
        found = changes(before, path.read_text())
        assert ticked_numbers(path) == set(range(1, 16)), "a tick was lost"
        completed = [e for e in found.entry_texts() if e.startswith("Completed")]
        assert sorted(completed) == sorted(set(completed)), "duplicated progress line"
        assert len(completed) == 15, completed


def test_read_only_task_file_is_left_intact(pytester: pytest.Pytester) -> None:
    path = slow_task(pytester.path, 2)
    before = path.read_bytes()
    path.chmod(0o444)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(path))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*task file not updated*read-only*chmod u+w*"])
    assert path.read_bytes() == before
    assert not list(pytester.path.glob(f".*{TMP_SUFFIX}"))


def test_full_disk_during_write_is_a_clear_error(pytester: pytest.Pytester) -> None:
    path = slow_task(pytester.path, 2)
    before = path.read_bytes()
    pytester.makeconftest(f"""
        import errno, os
        from pytest_infratask.record import writeback

        def no_space(fd):
            raise OSError(errno.ENOSPC, os.strerror({errno.ENOSPC}))

        writeback.os.fsync = no_space
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(path))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*could not write*No space left on device*"])
    assert path.read_bytes() == before
    assert not list(pytester.path.glob(f".*{TMP_SUFFIX}")), "temp file left behind"


def test_someone_elses_edit_during_the_run_is_kept(pytester: pytest.Pytester) -> None:
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Edit the notes", "sed -i 's/^Owner: .*/Owner: platform-team/' TASK-001.md"),
            item("Then this", "true"),
            after_ac="## Notes\nOwner: nobody\n",
        ),
    )
    pytester.runpytest_subprocess("-p", "no:cacheprovider", str(path)).assert_outcomes(passed=2)
    text = path.read_text()
    assert "Owner: platform-team" in text
    assert "- [x] Edit the notes" in text and "- [x] Then this" in text


def test_criterion_rewritten_during_the_run_is_refused(pytester: pytest.Pytester) -> None:
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Rename me", "sed -i 's/Rename me/Renamed by a person/' TASK-001.md"),
        ),
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*no longer in the file as it was read*not ticked*"])
    text = path.read_text()
    assert "- [ ] Renamed by a person" in text, "the person's edit must survive"
    assert "Rename me" not in text


def test_deadline_ends_a_never_ending_command_and_its_children(
    pytester: pytest.Pytester,
) -> None:
    marker = f"infratask-test-{uuid.uuid4().hex}"
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Hangs", f"CHILD={marker} sleep 300 & while true; do :; done"),
            meta="id: TASK-001\ntimeout: 1\nretries: 0\nupdated: 2024-01-01",
        ),
    )
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(path))
    result.assert_outcomes(failed=1)
    assert time.monotonic() - started < DEADLINE  # the command alone would never end
    result.stdout.fnmatch_lines(["*timed out after 1s*process group was killed*"])
    assert none_left(marker, "the background child") == []


def test_enospc_message_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from pytest_infratask.record import writeback

    path = slow_task(tmp_path, 1)
    before = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # the tick's first sync is its intent's; the file's own comes with its batch's end
    monkeypatch.setattr(writeback.os, "fsync", no_space)
    monkeypatch.setattr(writeback.os, "fdatasync", no_space)
    criterion = read_task(path).criteria[0]
    with pytest.raises(writeback.WriteBackError) as info:
        writeback.write(path, writeback.Change(criterion, ["x"], datetime.now(UTC)))
    assert "\n" not in str(info.value) and "No space left" in str(info.value)
    assert path.read_bytes() == before


def test_a_full_disk_at_the_tasks_sync_keeps_its_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from pytest_infratask.record import patch, writeback

    path = slow_task(tmp_path, 1)
    monkeypatch.setattr(patch, "FLUSH_AFTER", float("inf"))
    criterion = read_task(path).criteria[0]
    writeback.write(path, writeback.Change(criterion, ["x"], datetime.now(UTC)))
    ticked = path.read_bytes()
    assert ticked.count(b"[x]") == 1

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as full:
        full.setattr(writeback.os, "fsync", no_space)
        with pytest.raises(writeback.WriteBackError) as info:
            writeback.flush(path)
    assert "\n" not in str(info.value) and "No space left" in str(info.value)
    assert "kept for the next run" in str(info.value)
    journal = writeback._journal(writeback.lock(path))
    assert patch.pending(journal) and path.read_bytes() == ticked
    writeback.settle(path)  # the next run's read: the file synced, the journal emptied
    assert not patch.pending(journal) and path.read_bytes() == ticked
