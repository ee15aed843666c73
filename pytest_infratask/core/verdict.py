"""The task's own outcome as pytest reports it: passed, failed or skipped with a reason.

A task's contract and its ``::verify`` item are decided from the same facts, so the
exit code, JUnit and the JSON contract cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

HELD_BACK = "infratask_held_back"
"""User property of an item skipped because another criterion failed or was blocked:
pytest's cache counts it as last failed, so ``--lf`` reruns it."""

VerdictStatus = Literal["passed", "failed", "skipped"]


@dataclass
class Verdict:
    """``passed``, ``failed`` or ``skipped``; ``message`` is the one line reports show."""

    status: VerdictStatus
    message: str
    details: list[str] = field(default_factory=list)
    held_back: bool = False
    properties: list[tuple[str, object]] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    @property
    def text(self) -> str:
        return "\n".join([self.message, *self.details])


class VerdictFailed(Exception):
    """Raised by a ``::verify`` item; its verdict is the whole failure report."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.message)
        self.verdict = verdict
