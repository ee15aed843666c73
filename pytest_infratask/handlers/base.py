"""The handler interface: what a task type adds around the criteria's commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_infratask.core.durations import DurationError, parse_duration
from pytest_infratask.core.results import CheckResult, CommandResult
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.task import Criterion, Task
from pytest_infratask.options import SETTINGS_KEY

if TYPE_CHECKING:
    from pytest_infratask.record.git import Published


@dataclass
class Step:
    """One criterion as the handler sees it after its commands ran."""

    criterion: Criterion
    cwd: Path
    env: dict[str, str]
    results: list[CommandResult]
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    kube_context: str | None = None


class Blocked(Exception):
    """Raised by a handler when retrying cannot help (an unreachable API server).

    The criterion is reported blocked with ``suggestions``, not failed.
    """

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message)
        self.suggestions = suggestions or []

    def as_check(self, name: str) -> CheckResult:
        """The failed check a task-level block is reported as (``BLOCKED: ...``)."""
        return CheckResult(name, False, f"BLOCKED: {self}", "; ".join(self.suggestions))


class Handler:
    """Generic tasks: run the commands, nothing more.

    Subclass it for a task type; override only what the type needs. Handlers
    hold per-task state (one instance per task), so they can collect facts for
    the report as criteria pass.
    """

    task_type = "generic"
    retries: int | None = None
    """The type's own retry count for a failing block, used when neither the criterion,
    the frontmatter nor ``--infratask-retries`` sets one; None: ini
    ``infratask_retries``. A type whose commands only look (verification) can retry
    more; one whose commands reach outside the work tree may want 0."""

    def __init__(self, task: Task, settings: Settings, config: pytest.Config | None = None) -> None:
        # Secrets the handler met that the environment does not show (registry tokens
        # from an auth file): the run masks them in everything it reports.
        self.secrets: set[str] = set()
        self.task = task
        self.settings = settings
        self.config = config

    @classmethod
    def create(cls, task: Task, config: pytest.Config) -> Handler:
        """Build a handler with the run's settings; what a handler hook returns."""

        return cls(task, config.stash[SETTINGS_KEY], config)

    @property
    def name(self) -> str:
        return type(self).__name__

    def environment(self) -> dict[str, str]:
        """Variables exported to every command of the task."""
        return {}

    def uses_cluster(self, criterion: Criterion | None) -> bool:
        """Whether the handler itself talks to a cluster for this criterion."""
        return False

    def after_criterion(self, step: Step) -> list[str]:
        """Post-conditions; each returned message fails the criterion."""
        return []

    @staticmethod
    def duration(value: object, default: float = 300.0) -> float:
        """Seconds from ``300``, ``"90s"``, ``"5m"`` or ``"1h30m"``; unset: ``default``.
        Values are checked at collection, so an unreadable one never gets here."""

        try:
            seconds = parse_duration(value, "duration")
        except DurationError:
            return default
        return default if seconds is None else seconds

    def verify(self, cwd: Path, env: dict[str, str]) -> list[CheckResult]:
        """Task-level verification, run once every criterion is ticked."""
        return []

    def after_commit(self, env: dict[str, str], kube_context: str | None) -> list[CheckResult]:
        """Work that needs the change committed first; called when this run committed."""
        return []

    def after_publish(
        self, env: dict[str, str], kube_context: str | None, published: Published
    ) -> list[CheckResult]:
        """Checks once the task is complete, verified, committed and pushed as asked.

        Called whenever the task completes, with what of it the remote can see
        (``published``); the default runs :meth:`after_commit` when this run committed.
        """
        return self.after_commit(env, kube_context) if published.committed else []

    def has_task_checks(self) -> bool:
        """Whether the handler does work after the criteria (``verify`` or the steps
        after the commit), which the task's ``::verify`` item reports."""
        cls = type(self)
        return any(
            getattr(cls, name) is not getattr(Handler, name)
            for name in ("verify", "after_commit", "after_publish")
        )

    def report(self) -> dict[str, Any]:
        """Extra fields for the task's output contract."""
        return {}

    def next_steps(self, status: str) -> list[str]:
        """What should happen after this run, by final status."""
        if status == "ready_for_verification":
            return ["review the staged changes and commit once verification passes"]
        if status == "committed":
            return ["task complete"]
        return []
