"""What a command or a check came to: one result type for every command run, one for
every check (safety checks, verification, cluster health)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    script: str
    cwd: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    truncated: bool = False
    failed_line: int | None = None
    """The line of the block (1-based) whose command failed, as bash reported it."""
    failed_command: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


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
