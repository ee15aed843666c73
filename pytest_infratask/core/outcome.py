"""What happened to a criterion, and what a person should do about it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    BLOCKED = "blocked"
    SKIPPED = "skipped"
    DONE = "done"
    MANUAL = "manual"
    DRY_RUN = "dry_run"

    @property
    def failed(self) -> bool:
        """Failed or blocked: the criterion is red and the task is not done."""
        return self in (Status.FAILED, Status.BLOCKED)

    @property
    def complete(self) -> bool:
        """Complete in the file: passed now (and ticked), or ticked already."""
        return self in (Status.PASSED, Status.DONE)

    @property
    def satisfies(self) -> bool:
        """Lets what needs it go on: complete, or passed in a dry run (which ticks
        nothing, so the file alone would still call it open)."""
        return self.complete or self is Status.DRY_RUN


@dataclass(frozen=True)
class RolledBack:
    """An attempt that was put back: which one, why, the files, and what it had done
    to them (a masked diff), so a rollback never hides what the commands did."""

    attempt: int
    reason: str
    files: tuple[str, ...]
    diff: str = ""


@dataclass(frozen=True)
class Outcome:
    """The result of one criterion: plain, immutable data. Its status is decided when
    it is made, or by ``decide`` once the task file and the index have taken it."""

    number: int
    text: str
    status: Status
    message: str = ""
    error: str = ""
    command: str = ""
    output: str = ""
    error_output: str = ""
    exit_code: int | None = None
    attempts: int = 0
    cwd: str = ""
    repo: str = ""
    commands: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    progress_entry: str = ""
    summary: str = ""
    """The short outcome a progress line gives when ``message`` is long (a list of
    post-condition problems); empty: the message is short enough."""
    rolled_back: tuple[RolledBack, ...] = ()

    local: bool = False
    held_back: bool = False
    """Skipped only because another criterion failed or was blocked."""
    blocking: bool = False
    """Failed for a reason no retry fixes (a missing tool, an unreachable cluster) after
    part of it ran: it holds the criteria after it back, as a block does."""

    @property
    def stops_others(self) -> bool:
        """A blocking failure stops the criteria after it; a ``needs`` block is local."""
        return (self.status is Status.BLOCKED and not self.local) or self.blocking


class Outcomes(dict[int, Outcome]):
    """A task's outcomes by criterion number, in the order first recorded. It keeps
    the numbers that were recorded blocked, so asking which outcome stops the next
    criterion reads those, not every outcome: a criterion costs the same at #10,000
    as at #10."""

    def __init__(self) -> None:
        super().__init__()
        self._blocked: dict[int, int] = {}  # number -> its place in the dict's order
        self._places: dict[int, int] = {}

    def __setitem__(self, number: int, outcome: Outcome) -> None:
        place = self._places.setdefault(number, len(self._places))
        super().__setitem__(number, outcome)
        if outcome.stops_others:  # outcomes are frozen: none becomes blocking later
            self._blocked[number] = place

    def stopping(self, number: int) -> tuple[int, Outcome] | None:
        """The first outcome (in recording order) that stops criterion ``number``."""
        for other in sorted(self._blocked, key=self._blocked.__getitem__):
            state = self.get(other)
            if other != number and state is not None and state.stops_others:
                return other, state
        return None


@dataclass(frozen=True)
class Recorded:
    """What the task file made of an outcome: its progress line, and why it could not
    be written (``unwritten``) or that another run had ticked the box first."""

    entry: str
    unwritten: str = ""
    raced: bool = False


RACED = "another run ticked it meanwhile; its progress line stands"
UNSTAGED_FIX = "fix the repository (git status) and rerun"


def decide(outcome: Outcome, recorded: Recorded, unstaged: Sequence[str] = ()) -> Outcome:
    """A recorded criterion's final outcome, the one place a status changes after its
    run: the task file is the run's record, so a write that failed fails the criterion;
    a passed change left out of the index (``unstaged``: git's problems, masked) would
    be left out of the commit, so it fails too."""
    if recorded.unwritten:
        return replace(
            outcome,
            status=Status.FAILED,
            message=f"{outcome.message}; task file not updated: {recorded.unwritten}",
            error=f"write-back failed: {recorded.unwritten}",
            suggestions=(*outcome.suggestions, recorded.unwritten),
            progress_entry=recorded.entry,
        )
    notes = (*outcome.notes, RACED) if recorded.raced else outcome.notes
    if unstaged and outcome.status is Status.PASSED:
        message = "passed, but staging failed: " + "; ".join(unstaged)
        return replace(
            outcome,
            status=Status.FAILED,
            message=message,
            error=message,
            suggestions=(*outcome.suggestions, UNSTAGED_FIX),
            notes=notes,
            progress_entry=recorded.entry,
        )
    return replace(outcome, notes=notes, progress_entry=recorded.entry)


TAIL_LINES = 20
OUTPUT_CHARS = 4000


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last lines, capped in characters too: one huge line must not flood reports."""
    return "\n".join(text.rstrip().splitlines()[-lines:])[-OUTPUT_CHARS * 4 :]


class CriterionFailed(Exception):
    """Raised by a criterion item; its text is the whole failure report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def internal_error(exc: Exception, handler: str) -> tuple[str, str]:
    """The message and the suggestion for an exception from a handler or the plugin:
    a bug to report, not a fact about the task."""
    return (
        f"internal error: {type(exc).__name__}: {exc}",
        f"a bug in the {handler} handler or the plugin, not in the task: "
        "report it with the traceback",
    )
