"""Ticks written in place through the intent journal: byte for byte what replacing
the file whole gives, and whole again after a kill at any step."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from helpers import changes, encode, item, task_md, updated_value
from hypothesis import assume, given
from hypothesis import strategies as st
from test_properties import FUZZ, task_files

from pytest_infratask.read.taskfile import TaskFileError, parse_task, read_task
from pytest_infratask.record import buffer as text_buffer
from pytest_infratask.record import patch
from pytest_infratask.record import writeback as wb
from pytest_infratask.record.buffer import HEAD, Buffer, joined

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


_CHARS = st.text(alphabet="ab-x\n\r é✓", max_size=40)


@st.composite
def _edits(draw: st.DrawFn, size: int) -> list[tuple[int, int, str]]:
    """Sorted, disjoint edits of a text of ``size`` characters, as a tick makes them
    (same-length replacements, an append at the end) and, now and then, others."""
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=6)))
    edits = []
    for start, end in zip(cuts[::2], cuts[1::2], strict=False):
        same = draw(st.booleans()) or draw(st.booleans())
        length = end - start if same else draw(st.integers(0, 3))
        edits.append((start, end, draw(st.text(alphabet="yé\n", min_size=length, max_size=length))))
    if draw(st.booleans()) and not any(end == size for _, end, _ in edits):
        edits.append((size, size, draw(_CHARS)))
    return edits


@FUZZ
@given(_CHARS, st.sampled_from([(65536, 4096), (0, 0), (0, 5)]), st.data())
def test_a_buffer_reads_and_edits_as_the_string_it_holds(
    text: str, sizes: tuple[int, int], data: st.DataObject
) -> None:
    """As a large text (``_SMALL`` 0), edited in place, with or without a start kept."""
    small, head = sizes
    with mock.patch.multiple(text_buffer, _SMALL=small, HEAD=head):
        _reads_and_edits(Buffer(text), text, data)


def _reads_and_edits(buffer: Buffer, text: str, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        size = len(text)
        i, j = data.draw(st.integers(-size - 2, size + 2)), data.draw(st.integers(-2, size + 2))
        sub = data.draw(st.sampled_from(["\n", "\r\n", "a", "é✓", "--"]))
        assert len(buffer) == size
        assert buffer[i:j] == text[i:j] and buffer[i:] == text[i:] and buffer[:j] == text[:j]
        if -size <= i < size:
            assert buffer[i] == text[i]
        assert buffer.rfind(sub, min(i, j), j) == text.rfind(sub, min(i, j), j)
        assert buffer.startswith(sub, max(j, 0)) == text.startswith(sub, max(j, 0))
        assert buffer.startswith(("\n", "\r\n"), max(j, 0)) == text.startswith(
            ("\n", "\r\n"), max(j, 0)
        )
        assert buffer.endswith(sub) == text.endswith(sub)
        if data.draw(st.booleans()):
            assert str(buffer) == text  # and read from that string until the next edit
        edits = data.draw(_edits(size))
        text = joined(text, edits)
        buffer.edit(edits)
    assert str(buffer) == text


def test_a_buffer_searches_back_past_its_first_chunk() -> None:
    text = "---\n" + "x" * 100_000 + "\n---\n" + "y" * 70_000 + "\n"
    buffer = Buffer(text)
    buffer.edit([(0, 1, "-")])  # read from the buffer, not the string it was made from
    assert buffer.rfind("\n", 0, len(text) - 1) == text.rfind("\n", 0, len(text) - 1)
    assert buffer.rfind("---", 0, len(text)) == text.rfind("---")


@pytest.mark.parametrize("end", [-300, -4, -3, -2, -1, 0, 1, 300])
def test_a_frontmatter_ending_near_or_past_the_start_read_keeps_its_date_moving(
    tmp_path: Path, end: int
) -> None:
    """The frontmatter is read from the text's first ``HEAD`` characters; one whose
    closing line (starting at ``HEAD + end``) is cut by them, or lies past them, is
    read whole."""
    meta = "id: TASK-001\ntitle: Demo task\nupdated: 2024-01-01\nnote: "
    meta += "n" * (HEAD + end - len("---\n") - len(meta) - len("\n"))
    text = task_md(item("one", "echo 1"), item("two", "echo 2"), meta=meta)
    assert text.index("\n---\n") + 1 == HEAD + end
    path = tmp_path / "TASK-001.md"
    path.write_text(text)
    forget(path)
    task = read_task(path)
    for number, when in ((1, WHEN), (2, WHEN.replace(day=9))):  # the second from memory
        entry = wb.progress_entry(when, f"Completed #{number}")
        wb.write(path, wb.Change(task.criterion(number), [entry], when), task.layout)
        now = path.read_text()
        assert updated_value(now) == when.strftime("%Y-%m-%d")
        assert changes(text, now).ticked == ["- [ ] one", "- [ ] two"][:number]


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
    journal = wb._journal(wb.lock(path))
    assert patch.pending(journal), "the ticks of the last second are kept in the journal"
    wb.flush(path)  # the task's end: the file synced, the journal emptied
    assert not patch.pending(journal)
    assert changes(TASK, path.read_text()).ticked == found.ticked


def test_a_journal_kept_in_memory_syncs_the_file_at_every_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tmpfs ``/tmp`` loses the journal in a power cut: each tick syncs the file."""
    monkeypatch.setattr(patch, "_LASTING", {})
    monkeypatch.setattr(patch, "_file_system", lambda device: "tmpfs")
    path = tmp_path / "TASK-001.md"
    path.write_text(TASK)
    task = read_task(path)
    wb.write(path, wb.Change(task.criteria[0], ["2025-03-04 05:06: Completed #1"], WHEN))
    assert "- [x] one" in path.read_text()
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


# What a tick does in place, in order: its record written and synced, each range
# written (in a batch, the same date is not written again); and when its batch ends
# (``sync``), the file synced and the journal emptied (its magic overwritten). A child
# process ticks #2 of three and SIGKILLs itself just before step ``at`` of those.
CHILD = """
import os, signal, sys
from pathlib import Path
from pytest_infratask.read.taskfile import read_task
from pytest_infratask.record import writeback as wb
from datetime import datetime, UTC

path, at, sync = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "sync"
task = read_task(path)
wb.patch.FLUSH_AFTER = 0.0 if sync else float("inf")
day = 1 if sync else 0  # a new ``updated`` value ends a batch: batched ticks keep the date
wb.patch.MEMORY = frozenset()  # batched even where the journal is on a tmpfs
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
                       datetime(2025, 3, 3 + day * number, 5, number, tzinfo=UTC))
    wb.write(path, change, task.layout)
print("steps", steps[0], flush=True)
wb.flush(path)  # the task's end
"""
# pwrite the record, fdatasync; (a new date when synced), box, line; (when synced) fsync,
# empty the intent
STEPS = {"batched": 4, "sync": 7}


def tick_in_child(path: Path, at: int, mode: str = "batched") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": CHECKOUT}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(at), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("mode", "at"), [(mode, at) for mode, steps in STEPS.items() for at in range(steps + 1)]
)
def test_a_kill_at_any_step_is_finished_by_the_next_reader(
    tmp_path: Path, mode: str, at: int
) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(TASK)
    steps = STEPS[mode]
    done = tick_in_child(path, steps + 1, mode)  # never killed: the whole tick, to compare
    assert done.returncode == 0 and f"steps {steps}" in done.stdout, done.stderr
    whole = path.read_text()

    path.write_text(TASK)
    killed = tick_in_child(path, at, mode)
    if at < steps:
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
    killed = tick_in_child(path, 3)  # #2: its box written, its line not yet
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


class PowerCut(BaseException):
    """The machine stops: nothing after this step of a tick runs."""


class Disk:
    """What a power cut leaves of the files the write-back touches: per file, its bytes
    as last synced, and the writes since (``os`` as ``record.patch`` sees it). The writes
    and syncs are made for real too, so the run goes on as usual until the cut."""

    def __init__(self, files: list[Path], cut_at: int) -> None:
        self.paths: dict[int, Path] = {}
        self.synced = {path: path.read_bytes() if path.exists() else b"" for path in files}
        self.since: dict[Path, list[tuple[int, bytes | int]]] = {path: [] for path in files}
        self.steps, self.cut_at = 0, cut_at

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)

    def _step(self) -> None:
        if self.steps == self.cut_at:
            raise PowerCut
        self.steps += 1

    def open(self, path: object, flags: int, mode: int = 0o777) -> int:
        fd = os.open(path, flags, mode)  # type: ignore[call-overload]
        self.paths[fd] = Path(str(path))
        return fd

    def pwrite(self, fd: int, data: bytes, at: int) -> int:
        self._step()
        self.since.setdefault(self.paths[fd], []).append((at, bytes(data)))
        return os.pwrite(fd, data, at)

    def ftruncate(self, fd: int, size: int) -> None:
        self._step()
        self.since.setdefault(self.paths[fd], []).append((-1, size))
        os.ftruncate(fd, size)

    def fsync(self, fd: int) -> None:
        self._step()
        path = self.paths.get(fd)
        if path is not None and path in self.synced:
            self.synced[path] = self.image(path, [True] * len(self.since[path]))
            self.since[path] = []
        os.fsync(fd)

    fdatasync = fsync

    def image(self, path: Path, kept: list[bool], zeros: bool = False) -> bytes:
        """The file after the cut: its synced bytes, with the writes since that ``kept``
        marks reaching the disk (in order); with ``zeros``, a write that extended the
        file and did not reach it leaves zeros (its size reached the disk, not its data)."""
        data = bytearray(self.synced[path])
        for (at, what), reached in zip(self.since[path], kept, strict=False):
            if at == -1:
                if reached:
                    del data[int(what) :]
            elif reached or (zeros and at + len(bytes(what)) > len(data)):
                body = bytes(what) if reached else bytes(len(bytes(what)))
                data[len(data) : at] = bytes(max(0, at - len(data)))
                data[at : at + len(body)] = body
        return bytes(data)


def tick_all(path: Path, ticks: int, then_sync: bool, done: list[int] | None = None) -> list[bytes]:
    """Tick the first ``ticks`` criteria of a fresh run's ``path``; the file after each.
    ``done`` counts the ticks written."""
    journal = wb._journal(wb.lock(path))
    journal.unlink(missing_ok=True)
    forget(path)
    patch._BATCHES.clear()
    task = read_task(path)
    states = [path.read_bytes()]
    for n in range(ticks):
        c = task.criteria[n]
        when = WHEN + timedelta(minutes=n)  # each tick moves ``updated`` on
        wb.write(
            path,
            wb.Change(c, [wb.progress_entry(when, f"Completed #{c.number}")], when),
            task.layout,
        )
        states.append(path.read_bytes())
        if done is not None:
            done.append(n)
    if then_sync:
        wb.flush(path)
    return states


@FUZZ
@given(
    ticks=st.integers(1, 5),
    cut_at=st.integers(0, 60),
    flush_after=st.sampled_from([0.0, float("inf")]),
    journal_size=st.sampled_from([patch.JOURNAL_SIZE, 700]),
    then_sync=st.booleans(),
    reached=st.lists(st.booleans(), max_size=80),
    zeros=st.booleans(),
)
def test_a_power_cut_at_any_step_loses_no_tick_that_was_written(
    ticks: int,
    cut_at: int,
    flush_after: float,
    journal_size: int,
    then_sync: bool,
    reached: list[bool],
    zeros: bool,
) -> None:
    """Every tick ``write`` returned is in the file once the next run settled it, and
    the tick under way is there whole or not at all, whichever writes reached the disk."""
    text = task_md(
        *(item(f"step {n}", f"echo {n}") for n in range(1, 6)),
        meta="id: TASK-001\ntitle: Demo task\nupdated_date: '2024-01-01 09:00'",
    )
    with (
        tempfile.TemporaryDirectory() as folder,
        mock.patch.multiple(
            patch,
            FLUSH_AFTER=flush_after,
            JOURNAL_SIZE=journal_size,
            MEMORY=frozenset(),  # the journal lasts: the simulated disk says what survives
            _LASTING={},
        ),
    ):
        path = Path(folder) / "TASK-001.md"
        path.write_text(text)
        states = tick_all(path, ticks, then_sync)  # the run as it goes uncut
        path.write_text(text)
        journal = wb._journal(wb.lock(path))
        journal.unlink(missing_ok=True)
        disk, done = Disk([path, journal], cut_at), []
        with mock.patch.object(patch, "os", disk), contextlib.suppress(PowerCut):
            tick_all(path, ticks, then_sync, done)
        for file in (path, journal):
            file.write_bytes(disk.image(file, reached, zeros))
        forget(path)
        patch._BATCHES.clear()
        wb.settle(path)
        after = path.read_bytes()
        # the ticks written, and the one under way whole or not at all
        assert after in states[len(done) : len(done) + 2], (len(done), after.decode())
        assert not patch.pending(journal)
