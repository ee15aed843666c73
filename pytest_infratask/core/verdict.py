"""The task's own outcome as pytest reports it: passed, failed or skipped with a reason.

A task's contract and its ``::verify`` item are decided from the same facts, so the
exit code, JUnit and the JSON contract cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

HELD_BACK = "infratask_held_back"
"""User property of an item skipped because another criterion failed or was blocked:
pytest's cache counts it as last failed, so ``--lf`` reruns it."""


class VerdictStatus(StrEnum):
    """How pytest reports the task's ``::verify`` item."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Verdict:
    """The task's verdict; ``message`` is the one line reports show."""

    status: VerdictStatus
    message: str
    details: list[str] = field(default_factory=list)
    held_back: bool = False
    properties: list[tuple[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = VerdictStatus(self.status)

    @property
    def failed(self) -> bool:
        return self.status is VerdictStatus.FAILED

    @property
    def skipped(self) -> bool:
        return self.status is VerdictStatus.SKIPPED

    @property
    def text(self) -> str:
        return "\n".join([self.message, *self.details])


class VerdictFailed(Exception):
    """Raised by a ``::verify`` item; its verdict is the whole failure report."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
