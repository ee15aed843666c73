"""One task's run: what it runs with, what happened so far, and what it wrote.

One ``TaskRun`` per task file (the module-scoped ``infratask_run`` fixture), so state
such as "which criterion blocked the rest" lives exactly as long as the task's items.
The steps live elsewhere: a criterion in ``run.criterion``, the task's end in
``finish``, its contract in ``report.contract``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_infratask.core.handler import TaskHandler
from pytest_infratask.core.masking import Masker, github_add_mask
from pytest_infratask.core.outcome import Outcome, Outcomes
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.shape import Revision
from pytest_infratask.core.task import Criterion, Task
from pytest_infratask.core.verdict import Verdict
from pytest_infratask.guard.context import SafetyContext
from pytest_infratask.orchestrator import criterion
from pytest_infratask.orchestrator.attempts import Attempts, RetryPolicy
from pytest_infratask.plan.waiting import Dependencies
from pytest_infratask.record.git import Tracker
from pytest_infratask.record.journal import Journal, report_pointer
from pytest_infratask.record.undo import Undo
from pytest_infratask.report.live import announce
from pytest_infratask.report.store import contracts
from pytest_infratask.run.workspace import Workspace
from pytest_infratask.workers import worker_input

_ANNOUNCED: set[str] = set()
_TOLD = pytest.StashKey[set[str]]()


@dataclass
class TaskRun:
    task: Task
    task_type: str
    handler: TaskHandler
    safety: SafetyContext
    settings: Settings
    config: pytest.Config
    outcomes: Outcomes = field(default_factory=Outcomes)
    """Each criterion's outcome in this session, by number."""
    verification: list[CheckResult] = field(default_factory=list)
    """The task's own checks: verification, commit, push, cluster."""
    commits: dict[str, str] = field(default_factory=dict)
    """Repository name to the commit this run made for the task."""
    pushed: dict[str, dict[str, str]] = field(default_factory=dict)
    """Repository name to the remote, branch and commit this run pushed."""
    earlier_commits: dict[str, str] = field(default_factory=dict)
    """Repository name to the task's commit from an earlier run, on a rerun that
    found nothing of the task left uncommitted."""
    earlier_pushes: dict[str, dict[str, str]] = field(default_factory=dict)
    """Of those, the ones the upstream already holds: remote, branch and commit."""
    revision: Revision | None = None
    """What Flux should apply, and whether the remote it reads has it."""
    verdict: Verdict | None = None
    """The ``::verify`` item's verdict, decided once per session."""
    waits: list[str] = field(default_factory=list)
    """Whose locks held the run up, as told to the person watching."""

    def __post_init__(self) -> None:
        self.workspace = Workspace(
            self.task, self.task_type, self.handler, self.safety, self.settings, self.say_once
        )
        self.tracker = Tracker(self.task.id, self.task.path, ignored=self.settings.own_outputs)
        self.undo = Undo(self.tracker)
        self.journal = Journal(
            self.task.path,
            self.task.layout,
            self.mask,
            self.tracker,
            enabled=self.settings.writeback,
            lock_wait=self.settings.lock_wait,
            report=report_pointer(self.settings.report_dir, self.settings.rootdir, self.task.id),
        )
        policy = RetryPolicy.of(self.task, self.settings, self.handler.retries)
        self.attempts = Attempts(self.config, self.mask, policy)
        self.dependencies = Dependencies(
            self.task, self.settings, self.config, lambda: contracts(self.config)
        )
        announce(self.config, github_add_mask(self.mask, _ANNOUNCED))

    @property
    def mask(self) -> Masker:
        return self.workspace.mask

    def execute(self, c: Criterion) -> Outcome:
        """Run one criterion (once per session) and return its outcome."""
        return criterion.execute(self, c)

    def track(self, cwd: Path) -> None:
        """Follow the repositories the task file and ``cwd`` live in, unless nothing runs."""
        if not self.settings.dry_run:
            names = {path.resolve(): name for name, path in self.settings.repos.items()}
            self.tracker.track((self.task.path.parent, cwd), names)

    def say_once(self, line: str) -> None:
        """Tell the person watching, once per run (on xdist, through the first worker)."""
        told = self.config.stash.setdefault(_TOLD, set())
        given = worker_input(self.config)
        if line not in told and (given is None or given.get("workerid") == "gw0"):
            announce(self.config, [line])
        told.add(line)

    def waiting_for(self, message: str) -> None:
        """Tell the person watching (and the criterion's notes) whose lock holds us up."""
        self.waits.append(message)
        announce(self.config, [f"infratask: {self.task.id}: {message}"])

    def close(self) -> None:
        self.tracker.release()
        self.workspace.close()
