"""The handler teams subclass: a ``TaskHandler`` that runs the commands, nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import pytest

from pytest_infratask.core.durations import DurationError, parse_duration
from pytest_infratask.core.handler import Blocked, Published, Step
from pytest_infratask.core.messages import Holdings, type_hint
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.settings import SETTINGS_KEY, Settings
from pytest_infratask.core.shape import HandlerFields
from pytest_infratask.core.task import Criterion, Task

__all__ = ["Blocked", "Handler", "Step"]


class Handler:
    """Generic tasks: run the commands, nothing more.

    Subclass it for a task type; override only what the type needs. The run builds
    one instance per task, so a handler can collect facts for the report as
    criteria pass. It satisfies ``TaskHandler`` (``pytest_infratask.TaskHandler``).
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
    def create(cls, task: Task, config: pytest.Config) -> Self:
        """Build a handler with the run's settings; what a handler hook returns."""

        return cls(task, config.stash[SETTINGS_KEY], config)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def auth_file(self) -> Path | None:
        """A registry credentials file the commands read; the generic type has none."""
        return None

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
        return (
            cls.verify is not Handler.verify
            or cls.after_commit is not Handler.after_commit
            or cls.after_publish is not Handler.after_publish
        )

    def report(self) -> HandlerFields:
        """Extra fields for the task's output contract."""
        return {}

    def holdings(self) -> Holdings:
        """What the task declares that a next step may name (images, manifests, ...)."""
        return Holdings()

    def next_steps(self, status: str) -> list[str]:
        """What should happen after this run, by final status: the words are
        ``type_hint``'s, from the task type and what ``holdings`` says it has."""
        return type_hint(self.task_type, status, self.holdings())
