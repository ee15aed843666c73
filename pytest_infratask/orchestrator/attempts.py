"""Run a command block, and again while a retry can help, its output shown live."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_infratask.core.masking import Masker
from pytest_infratask.core.outcome import RolledBack
from pytest_infratask.core.results import CommandResult
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.task import Task
from pytest_infratask.record.attempt import Start
from pytest_infratask.record.undo import Undo
from pytest_infratask.report.live import announce, for_config
from pytest_infratask.run.process import run_script
from pytest_infratask.run.retry import blocking_reason, deterministic, summary

DIFF_LINES = 200
DIFF_CHARS = 16000

Retry = Callable[[int, CommandResult], str]
"""Called before each retry with the tries made and the last result; says what it put
back (the criterion rolls the failed try back), or ""."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a task's blocks may run: frontmatter over ini."""

    retries: int
    delay: float
    timeout: float | None

    @classmethod
    def of(cls, task: Task, settings: Settings, own: int | None = None) -> RetryPolicy:
        """Frontmatter, else ``--infratask-retries``, else the task type's own default
        (``own``, the handler's ``retries``), else the ini value."""
        retries, delay = task.retries, task.retry_delay
        if retries is None:
            retries = settings.retries_option
        if retries is None:
            retries = settings.retries if own is None else own
        return cls(
            retries,
            settings.retry_delay if delay is None else delay,
            task.timeout or settings.timeout,
        )

    def deadline(self) -> float | None:
        return time.monotonic() + self.timeout if self.timeout else None


@dataclass
class Attempts:
    """Runs blocks for one task: its retry policy, its masking, the live display."""

    config: pytest.Config
    mask: Masker
    policy: RetryPolicy

    def run(
        self,
        script: str,
        cwd: Path,
        env: dict[str, str],
        deadline: float | None,
        retries: int | None = None,
        label: str = "",
        service: bool = False,
        before_retry: Retry | None = None,
    ) -> tuple[CommandResult, int]:
        """Run a block, and again from its first line while retries last and the failure
        is not one that repeats itself (see retry.py). Returns the result and the tries.

        Each retry is announced live, with what ``before_retry`` put back."""
        retries = self.policy.retries if retries is None else retries
        tries = 0
        while True:
            tries += 1
            remaining = None if deadline is None else max(0.01, deadline - time.monotonic())
            result = self._once(script, cwd, env, remaining, label, service)
            if result.ok or result.timed_out or blocking_reason(result) is not None:
                return result, tries
            if deterministic(result) is not None or tries > retries:
                return result, tries
            undone = before_retry(tries, result) if before_retry is not None else ""
            announce(
                self.config,
                [
                    self.mask(
                        f"infratask: {label}: attempt {tries + 1}/{retries + 1}"
                        + (f", after rolling back {undone}" if undone else "")
                        + f" (attempt {tries}: {summary(result)})"
                    )
                ],
            )
            if self.policy.delay:
                time.sleep(self.policy.delay)

    def _once(
        self,
        script: str,
        cwd: Path,
        env: dict[str, str],
        timeout: float | None,
        label: str,
        service: bool,
    ) -> CommandResult:
        """One run of a block, its output shown live (masked) as report/live.py decides."""
        progress = for_config(self.config)
        live = progress.criterion(label, self.mask) if progress else None
        try:
            return run_script(script, cwd, env, timeout=timeout, on_output=live, service=service)
        finally:
            if live is not None:
                live.close()


@dataclass
class AttemptLog:
    """What a criterion's attempts did, for its outcome: a line per attempt that failed
    or was retried (masked, for the notes), and what each rollback took away."""

    undo: Undo
    mask: Masker
    lines: list[str] = field(default_factory=list)
    undone: list[RolledBack] = field(default_factory=list)
    unrestored: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        self.lines.append(self.mask(line))

    def roll_back(self, start: dict[Path, Start], attempt: int, reason: str, line: str) -> str:
        """Put the attempt back to ``start``, note it with ``line`` and keep the diff of
        what it undid. Returns the files, for a message."""
        done = self.undo.rollback(start)
        self.undone_as(attempt, reason, line, done.files, done.diff, done.problems)
        return ", ".join(done.files)

    def undone_as(
        self,
        attempt: int,
        reason: str,
        line: str,
        files: list[str],
        diff: str,
        problems: list[str] | None = None,
    ) -> None:
        """Note ``line`` with what was rolled back (``files``, their ``diff``)."""
        listed = ", ".join(files)
        self.note(
            line
            + (f"; rolled back {listed}" if files else "")
            + (f"; could not roll back: {'; '.join(problems)}" if problems else "")
        )
        if files:
            self.undone.append(
                RolledBack(attempt, reason, tuple(files), diff_head(self.mask(diff)))
            )
        self.unrestored += problems or []


def diff_head(diff: str) -> str:
    """The start of a (masked) diff, its file headers first, cut in lines and characters."""
    lines = diff.splitlines()
    kept = "\n".join(lines[:DIFF_LINES])[:DIFF_CHARS]
    return kept + (f"\n… ({len(lines) - DIFF_LINES} more lines)" if len(lines) > DIFF_LINES else "")
