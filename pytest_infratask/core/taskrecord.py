"""A task's run as values: what its end delivered, and the record the reports read.

The stages hand these forward: ``finish`` returns a ``Delivery``, the task's run
freezes everything into a ``TaskRecord``, and ``report`` builds the contract from
that record alone, never from the run's live state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Never

from pytest_infratask.core.outcome import Outcome
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.shape import HandlerFields, Revision
from pytest_infratask.core.task import Task
from pytest_infratask.core.verdict import Verdict

Where = Mapping[str, str]
"""A push: the remote, the branch and the commit."""


def _frozen() -> Mapping[str, Never]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Delivery:
    """What a task's end did: its own checks (verification, commit, push, cluster),
    the commits and pushes this run made, what an earlier run had left, and the
    revision Flux should apply."""

    checks: tuple[CheckResult, ...] = ()
    commits: Mapping[str, str] = field(default_factory=_frozen)
    """Repository name to the commit this run made for the task."""
    pushed: Mapping[str, Where] = field(default_factory=_frozen)
    """Repository name to where this run pushed it."""
    earlier_commits: Mapping[str, str] = field(default_factory=_frozen)
    """Repository name to the task's commit from an earlier run, on a rerun that
    found nothing of the task left uncommitted."""
    earlier_pushes: Mapping[str, Where] = field(default_factory=_frozen)
    """Of those, the ones the upstream already holds."""
    revision: Revision | None = None
    """What Flux should apply, and whether the remote it reads has it."""


@dataclass(frozen=True)
class TaskRecord:
    """One task's run, frozen at the moment a report asks for it."""

    task: Task
    task_type: str
    handler: str
    dry_run: bool
    outcomes: Mapping[int, Outcome]
    """By criterion number, in the order they were recorded."""
    delivery: Delivery
    verdict: Verdict | None
    entries: tuple[str, ...]
    """The progress lines this run wrote to the task file."""
    task_file: str
    """The task file's label when this run wrote to it, else empty."""
    git_warnings: tuple[str, ...]
    handler_fields: HandlerFields
    """The handler's own contract fields (images, reconciled, findings, ...)."""
    next_steps: tuple[str, ...]
    """The handler's next steps for the status this record has."""
    interrupted: int | None = None
    """The criterion a Ctrl-C or a signal stopped while it ran (it has no outcome)."""
