"""What the run asks of a task type (``TaskHandler``) and the values it hands one.

A handler is anything with these members: ``pytest_infratask.Handler`` is the
implementation teams subclass, and the ``pytest_infratask_handler`` hook's result is
checked against the Protocol at collection, so a wrong object is a collection error
naming the hook's implementation rather than an ``AttributeError`` mid-run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pytest_infratask.core.results import CheckResult, CommandResult
from pytest_infratask.core.shape import HandlerFields
from pytest_infratask.core.task import Criterion


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


Includes = Callable[[str, str], bool]
"""Whether commit ``newer`` (first) is commit ``older`` (second) or builds on it."""


@dataclass
class Published:
    """What of the task the remote (and so Flux) can see.

    ``sha`` is the commit Flux must apply (the task's own commit, else the upstream's
    head); ``problem`` says why Flux cannot see the task's change, when it cannot.
    """

    root: Path | None = None
    sha: str | None = None
    branch: str = ""
    remote: str = ""
    committed: bool = False
    pushed: bool = False
    problem: str = ""
    suggestion: str = ""
    why_unchecked: str = ""
    includes: Includes | None = None
    """The repository's answer for ``contains``; None outside a repository."""

    @property
    def revision(self) -> str | None:
        """The revision as Flux writes it, e.g. ``main@sha1:<sha>``."""
        return f"{self.branch}@sha1:{self.sha}" if self.sha else None

    def contains(self, newer: str) -> bool:
        """Whether commit ``newer`` (a revision Flux applied) includes ``sha``."""
        if self.sha is None or self.includes is None:
            return False
        return self.includes(newer, self.sha)


@runtime_checkable
class TaskHandler(Protocol):
    """What a task type adds around the criteria's commands; one instance per task,
    so it can collect facts for the report as criteria pass.

    Parameters are positional: an implementation may name them as it likes.
    """

    @property
    def name(self) -> str:
        """The handler's name in reports (the contract's ``handler``)."""
        ...

    @property
    def retries(self) -> int | None:
        """The type's own retry count for a failing block; None: ini ``infratask_retries``."""
        ...

    @property
    def secrets(self) -> Collection[str]:
        """Secrets the handler met that the environment does not show; masked everywhere."""
        ...

    @property
    def auth_file(self) -> Path | None:
        """A credentials file the task's commands read (mounted into their sandbox)."""
        ...

    def environment(self) -> dict[str, str]:
        """Variables exported to every command of the task."""
        ...

    def uses_cluster(self, criterion: Criterion | None, /) -> bool:
        """Whether the handler itself talks to a cluster for this criterion."""
        ...

    def after_criterion(self, step: Step, /) -> list[str]:
        """Post-conditions; each returned message fails the criterion."""
        ...

    def verify(self, cwd: Path, env: dict[str, str], /) -> list[CheckResult]:
        """Task-level verification, run once every criterion is ticked."""
        ...

    def after_publish(
        self, env: dict[str, str], kube_context: str | None, published: Published, /
    ) -> list[CheckResult]:
        """Checks once the task is complete, verified, committed and pushed as asked."""
        ...

    def has_task_checks(self) -> bool:
        """Whether ``verify`` or ``after_publish`` do work (the ``::verify`` item's)."""
        ...

    def report(self) -> HandlerFields:
        """Extra fields for the task's output contract."""
        ...

    def next_steps(self, status: str, /) -> list[str]:
        """What should happen after this run, by final status."""
        ...
