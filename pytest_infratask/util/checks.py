"""One result type for every check: safety checks, verification, cluster health."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str = ""
    remediation: str = ""

    def describe(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'BLOCKED'}" + (
            f" ({self.message})" if self.message else ""
        )
