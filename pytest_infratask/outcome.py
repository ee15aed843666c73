"""What happened to a criterion, and what a person should do about it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from .run import CommandResult

NOT_FOUND = re.compile(r"(?:^|\n)(?:bash: )?(?:line \d+: )?([^\s:]+): (?:command )?not found")
DENIED = re.compile(r"([^\s:'\"]*/[^\s:'\"]*|[^\s:'\"]+)['\"]?: Permission denied")


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    BLOCKED = "blocked"
    SKIPPED = "skipped"
    DONE = "done"
    MANUAL = "manual"
    DRY_RUN = "dry_run"
    DESELECTED = "deselected"


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
        if outcome.status is Status.BLOCKED:  # no outcome becomes blocked later
            self._blocked[number] = place

    def stopping(self, number: int) -> tuple[int, Outcome] | None:
        """The first outcome (in recording order) that stops criterion ``number``."""
        for other in sorted(self._blocked, key=self._blocked.__getitem__):
            state = self.get(other)
            if other != number and state is not None and state.stops_others:
                return other, state
        return None


def blocking_reason(result: CommandResult) -> tuple[str, list[str]] | None:
    """Failures that a retry cannot fix: a missing tool or a denied permission."""
    text = result.stderr + "\n" + result.stdout
    missing = NOT_FOUND.search(result.stderr)
    if result.exit_code == 127 or missing:
        tool = missing.group(1) if missing else "a command"
        return (
            f"missing dependency: {tool} not found",
            [
                f"install {tool} and make sure it is on PATH for the run",
                "or run the task where the tool is available (CI image, toolbox container)",
            ],
        )
    if result.exit_code == 126 or "Permission denied" in text:
        denied = DENIED.search(text)
        where = denied.group(1) if denied else "a file the command uses"
        return (
            f"permission denied: {where}",
            [
                f"check permissions on {where} (ls -l {where}); "
                "make it readable/executable for the user running the task",
                "or run the task as a user that owns it",
            ],
        )
    return None
