"""Ticks written in place through the intent journal: byte for byte what replacing
the file whole gives, and whole again after a kill at any step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest
from helpers import changes, encode, item, task_md
from hypothesis import assume, given
from hypothesis import strategies as st
from test_properties import FUZZ, task_files

from pytest_infratask.read.taskfile import TaskFileError, parse_task, read_task
from pytest_infratask.record import patch
from pytest_infratask.record import writeback as wb

WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
LATER = datetime(2025, 3, 4, 5, 7, 7, tzinfo=UTC)
TASK = task_md(item("one", "echo 1"), item("two", "echo 2"), item("three"))
CHECKOUT = str(Path(__file__).resolve().parents[1])


def forget(path: Path) -> None:
    """What a new process knows of the file: nothing."""
    wb._PLACES.pop(path, None)
    wb._VERSIONS.pop(path, None)


def run_ticks(path: Path, data: bytes, steps: list[tuple[int | None, str]]) -> bytes:
    """Write ``data``, read it as a run does, then write each step (a criterion's
    number to tick, or None: a failure line counted on its topic)."""
    path.write_bytes(data)
    forget(path)
    task = read_task(path)
    for n, (number, text) in enumerate(steps):
        when = WHEN if n % 2 else LATER
        entry = wb.progress_entry(when, text)
        if number is None:
            change = wb.Change(None, [entry], when, topic="#1")
        else:
            change = wb.Change(task.criterion(number), [entry], when)
        wb.write(path, change, task.layout)
    return path.read_bytes()


@FUZZ
@given(task_files(), st.booleans(), st.data())
def test_in_place_gives_the_bytes_of_a_whole_rewrite(
    text: str, bom: bool, data: st.DataObject
) -> None:
    try:
        task = parse_task(Path("/t/TASK-001.md"), text.encode())
    except TaskFileError:
        assume(False)
        raise
    drawn = data.draw(st.lists(st.sampled_from([c.number for c in task.open_criteria] + [None])))
    steps: list[tuple[int | None, str]] = []
    for number in drawn:
        if number is None:
            steps.append((None, "Failed #1: same again"))
        elif all(n != number for n, _ in steps):  # a criterion is ticked once
            steps.append((number, f"Completed #{number}: ✓"))
    raw = encode(text, bom=bom)
    with tempfile.TemporaryDirectory() as folder:
        fast = run_ticks(Path(folder) / "fast.md", raw, steps)
        with mock.patch.object(wb, "_in_place", lambda *_: None):
            whole = run_ticks(Path(folder) / "whole.md", raw, steps)
    assert fast == whole


def test_a_tick_edits_the_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(TASK)
    task = read_task(path)
    inode = path.stat().st_ino
    for c in task.criteria:
        wb.write(
            path, wb.Change(c, [f"2025-03-04 05:06: Completed #{c.number}"], WHEN), task.layout
        )
    assert path.stat().st_ino == inode, "replaced whole instead of edited in place"
    found = changes(TASK, path.read_text())
    assert found.ticked == ["- [ ] one", "- [ ] two", "- [ ] three"]
    assert len(found.entries) == 3
    assert not patch.pending(wb._journal(wb.lock(path)))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (
            TASK.replace("## Progress Log", "## Notes\n\n## Progress Log", 1)
            + "\n## After\nmore\n",
            "the progress log is not the last section",
        ),
        (TASK.replace("updated: 2024-01-01", "updated:"), "the date grows"),
    ],
)
def test_an_edit_that_moves_bytes_replaces_the_file_whole(
    tmp_path: Path, text: str, why: str
) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(text)
    task = read_task(path)
    inode = path.stat().st_ino
    wb.write(
        path, wb.Change(task.criteria[0], ["2025-03-04 05:06: Completed #1"], WHEN), task.layout
    )
    assert path.stat().st_ino != inode, why
    assert changes(text, path.read_text()).ticked == ["- [ ] one"]


# What a tick does in place, in order: the intent written and synced, each range
# written, the file synced, the intent emptied (its magic overwritten). A child
# process ticks #2 of three and SIGKILLs itself just before step ``at`` of those.
CHILD = """
import os, signal, sys
from pathlib import Path
from pytest_infratask.read.taskfile import read_task
from pytest_infratask.record import writeback as wb
from datetime import datetime, UTC

path, at = Path(sys.argv[1]), int(sys.argv[2])
task = read_task(path)
steps = [0]
def step(real):
    def wrapped(*args):
        if steps[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)
        steps[0] += 1
        return real(*args)
    return wrapped
def counted(apply):
    def wrapped(*args):
        calls = os.pwrite, os.fdatasync, os.fsync
        os.pwrite, os.fdatasync, os.fsync = (step(call) for call in calls)
        try:
            return apply(*args)
        finally:
            os.pwrite, os.fdatasync, os.fsync = calls
    return wrapped
for number in (1, 2):
    if number == 2:
        wb.patch.apply = counted(wb.patch.apply)
    change = wb.Change(task.criteria[number - 1], [f"2025-03-04 05:0{number}: Completed #{number}"],
                       datetime(2025, 3, 4, 5, number, tzinfo=UTC))
    wb.write(path, change, task.layout)
print("steps", steps[0])
"""
STEPS = 7  # pwrite intent, fdatasync; date, box, line; fsync; pwrite the intent empty


def tick_in_child(path: Path, at: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": CHECKOUT}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(at)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("at", range(STEPS + 1))
def test_a_kill_at_any_step_is_finished_by_the_next_reader(tmp_path: Path, at: int) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(TASK)
    done = tick_in_child(path, STEPS + 1)  # never killed: the whole tick, for comparison
    assert done.returncode == 0 and f"steps {STEPS}" in done.stdout, done.stderr
    whole = path.read_text()

    path.write_text(TASK)
    killed = tick_in_child(path, at)
    if at < STEPS:
        assert killed.returncode == -signal.SIGKILL, killed.stderr
    mid = path.read_text()
    changes(TASK, mid)  # only allowed bytes changed, even half way
    forget(path)
    wb.settle(path)
    after = path.read_text()
    first = changes(TASK, whole).entries[:1]
    if at == 0:  # killed before the intent was written: as if #2 had not passed yet
        assert changes(TASK, after).entries == first
        assert after.count("[x]") == 1
    else:
        assert after == whole, f"killed before step {at}: not finished whole"


def test_a_run_finishes_a_killed_tick_before_it_reads_the_file(
    pytester: pytest.Pytester,
) -> None:
    path = pytester.path / "TASK-001.md"
    text = task_md(item("one", "echo 1"), item("two", "echo 2"), item("three", "echo 3"))
    path.write_text(text)
    killed = tick_in_child(path, 4)  # #2: date and box written, its line not yet
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "- [x] two" in path.read_text() and "Completed #2" not in path.read_text()
    # even a run that only reads (collects) the file finishes the tick first
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--co", str(path)).assert_outcomes()
    assert "Completed #2" in path.read_text()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(path))
    # #3 runs; #1 and #2 passed in the killed run, their ticks stand
    result.assert_outcomes(passed=1, skipped=2)
    found = changes(text, path.read_text())
    assert found.ticked == ["- [ ] one", "- [ ] two", "- [ ] three"]
    assert [e.split(": ", 1)[1] for e in found.entries[:2]] == ["Completed #1", "Completed #2"]
    assert len(found.entries) == 3


def test_an_edit_landing_just_before_the_patch_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone saves the file between the run's read and its write: the patch made
    for the old version is not written over the new one; the tick is made anew."""
    path = tmp_path / "TASK-001.md"
    path.write_text(TASK)
    task = read_task(path)
    real_apply, calls = patch.apply, []

    def save_first(*args: object, **kwargs: object) -> os.stat_result:
        if not calls:
            edited = path.read_text().replace("# Demo task", "# Demo task\n\nSaved meanwhile.")
            path.write_text(edited)  # in place: same inode, other size and time
        calls.append(1)
        return real_apply(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(patch, "apply", save_first)
    wb.write(
        path, wb.Change(task.criteria[0], ["2025-03-04 05:06: Completed #1"], WHEN), task.layout
    )
    text = path.read_text()
    assert "Saved meanwhile." in text and "- [x] one" in text
    assert (
        changes(TASK, text.replace("\n\nSaved meanwhile.", "")).entries[-1].endswith("Completed #1")
    )
    assert len(calls) == 2
