"""What happened to a criterion, and what a person should do about it."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass
class RolledBack:
    """An attempt that was put back: which one, why, the files, and what it had done
    to them (a masked diff), so a rollback never hides what the commands did."""

    attempt: int
    reason: str
    files: list[str]
    diff: str = ""


@dataclass
class Outcome:
    """The result of one criterion; plain data so it can cross xdist workers."""

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
    commands: list[str] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    progress_entry: str = ""
    rolled_back: list[RolledBack] = field(default_factory=list)

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
        if outcome.stops_others:  # no outcome becomes blocking later
            self._blocked[number] = place

    def stopping(self, number: int) -> tuple[int, Outcome] | None:
        """The first outcome (in recording order) that stops criterion ``number``."""
        for other in sorted(self._blocked, key=self._blocked.__getitem__):
            state = self.get(other)
            if other != number and state is not None and state.stops_others:
                return other, state
        return None


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
