"""One result type for every check: safety checks, verification, cluster health."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str = ""
    remediation: str = ""
    progress: str = ""
    """What the task file's progress log says, when ``message`` quotes command output:
    the log is committed, the output belongs in the reports."""

    def logged(self) -> str:
        return self.progress or self.message

    def describe(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'BLOCKED'}" + (
            f" ({self.message})" if self.message else ""
        )
