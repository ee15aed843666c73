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

    local: bool = False
    held_back: bool = False
    """Skipped only because another criterion failed or was blocked."""

    @property
    def stops_others(self) -> bool:
        """A blocking failure stops the criteria after it; a ``needs`` block is local."""
        return self.status is Status.BLOCKED and not self.local


class CriterionFailed(Exception):
    """Raised by a criterion item; its text is the whole failure report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome
