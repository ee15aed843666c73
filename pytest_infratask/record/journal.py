"""The task file's record of a run: ticks and progress lines, written as they happen."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pytest_infratask.core.masking import Masker
from pytest_infratask.core.messages import progress
from pytest_infratask.core.outcome import Outcome, Recorded, Status
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.task import Criterion, Layout
from pytest_infratask.read.statuses import BoardStatuses
from pytest_infratask.record import writeback
from pytest_infratask.record.git import Tracker
from pytest_infratask.util.files import report_path
from pytest_infratask.util.locks import LockDirError, LockTimeout


@dataclass
class Journal:
    """Writes one task's ticks and progress lines, and remembers what it wrote."""

    path: Path
    layout: Layout | None
    mask: Masker
    tracker: Tracker
    enabled: bool
    lock_wait: float
    report: str = "the run's output"
    """Where a failure's output can be read (see ``report_pointer``)."""
    entries: list[str] = field(default_factory=list)
    written: bool = False
    board: BoardStatuses | None = None
    """The statuses ``--infratask-status`` writes; None leaves ``status`` alone (the
    option is off, or the file has no ``status`` key: none is added)."""
    statuses: list[str] = field(default_factory=list)
    """The ``status`` values the file held, oldest first: as read, then as written."""

    def record(self, c: Criterion, outcome: Outcome, tick: Criterion | None) -> Recorded:
        """A criterion's progress line (and its tick when it passed), on disk before
        the outcome is reported; what became of the write, for ``decide``."""
        when = writeback.now_utc()
        entry = writeback.progress_entry(when, self.mask(_line(c, outcome, self.report)))
        if not self.enabled:
            return Recorded(entry)
        # A failure that repeats the last one of this criterion is counted, not appended.
        topic = None if outcome.status is Status.PASSED else f"#{c.number}"
        try:
            written = writeback.write(
                self.path, writeback.Change(tick, [entry], when, topic), self.layout
            )
        except writeback.WriteBackError as exc:
            return Recorded(entry, unwritten=str(exc))
        if not written:
            return Recorded(entry, raced=True)
        self.entries.append(entry)
        self.written = True
        return Recorded(entry)

    def log(
        self,
        text: str,
        when: datetime | None = None,
        topic: str | None = None,
        status: str | None = None,
    ) -> list[CheckResult]:
        """Append a task-level progress line (verification, commit); one that repeats
        the log's latest line on ``topic`` is counted there instead. A line that could
        not be written is a failed check: the task file is the run's record. ``status``
        goes in the same write (``--infratask-status``)."""
        when = when or writeback.now_utc()
        entry = writeback.progress_entry(when, self.mask(text))
        if not self.enabled:
            return []
        status = self._status_change(status)
        failed = self._write(writeback.Change(None, [entry], when, topic, status), "progress log")
        if not failed:
            self.entries.append(entry)
        return failed

    def running(self) -> None:
        """The task's first command is about to run (its locks held): its status becomes
        the in-progress one. A file that cannot be written is reported by the tick."""
        status = self._status_change(self.board.in_progress if self.board else None)
        if status is not None:
            self._write(writeback.Change(None, [], writeback.now_utc(), status=status), locked=True)

    def done(self) -> list[CheckResult]:
        """The task is verified: its status becomes the done one (before any commit, so
        the commit carries it)."""
        status = self._status_change(self.board.done if self.board else None)
        if status is None:
            return []
        return self._write(writeback.Change(None, [], writeback.now_utc(), status=status))

    def undone(self) -> str | None:
        """The status to put back when the task's delivery failed after ``done``."""
        if self.board is None or len(self.statuses) < 2 or self.statuses[-1] != self.board.done:
            return None
        return self.statuses[-2]

    def closing(self, passed: bool) -> list[CheckResult]:
        """The task's end: a run that moved it to in-progress and passed nothing puts
        back the status it had (a run that passed some criteria leaves it in progress)."""
        board, held = self.board, self.statuses
        if passed or board is None or len(held) < 2 or held[-1] != board.in_progress:
            return []
        status = self._status_change(held[0])
        if status is None:
            return []
        return self._write(writeback.Change(None, [], writeback.now_utc(), status=status))

    def synced(self) -> list[str]:
        """The task's end: its ticks synced to disk (``writeback.flush``). A problem is a
        warning, not a failure: every tick is durable in the intent journal already."""
        if not self.written:
            return []
        try:
            writeback.flush(self.path)
        except writeback.WriteBackError as exc:
            return [self.mask(str(exc))]
        return []

    def _status_change(self, status: str | None) -> str | None:
        """``status`` when it is this run's to write and not what the file holds."""
        if status is None or not self.enabled or self.board is None:
            return None
        return None if self.statuses and self.statuses[-1] == status else status

    def _write(
        self, change: writeback.Change, what: str = "status", locked: bool = False
    ) -> list[CheckResult]:
        try:
            # Under the repositories' locks: another task's criterion must not see
            # this task file change (or its temp file) while its commands run.
            with contextlib.nullcontext() if locked else self.tracker.turns(self.lock_wait):
                writeback.write(self.path, change, self.layout)
        except (writeback.WriteBackError, LockTimeout, LockDirError) as exc:
            return [
                CheckResult(
                    what,
                    False,
                    self.mask(f"task file not updated: {exc}"),
                    "make the task file writable (or let the run holding it finish), then rerun",
                )
            ]
        if change.status is not None:
            self.statuses.append(change.status)
        self.written = True
        return []


def _line(c: Criterion, outcome: Outcome, report: str) -> str:
    """What happened, never what the commands printed: the task file is committed, the
    output stays in the reports (masked) the line points to."""
    if outcome.status is Status.PASSED:
        return f"Completed #{c.number}: {c.text}"
    if outcome.status is Status.BLOCKED:
        return f"Blocked #{c.number}: {c.text}: {outcome.error}"
    return f"Failed #{c.number}: {c.text}: {progress(outcome)} (see {report})"


def report_pointer(report_dir: Path | None, rootdir: Path, task_id: str) -> str:
    """Where a progress line sends the reader for the output: the task's report file
    (relative to the rootdir when below it), else the run's own output."""
    if report_dir is None:
        return "the run's output"
    path = report_path(report_dir, task_id)
    return str(path.relative_to(rootdir)) if path.is_relative_to(rootdir) else str(path)
