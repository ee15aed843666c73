"""One task's run: what it runs with, what happened so far, and the order of its stages.

One ``TaskRun`` per task file (the module-scoped ``infratask_run`` fixture), so state
such as "which criterion blocked the rest" lives exactly as long as the task's items.
A criterion goes through the stages in ``orchestrator.criterion``; the task's end
(``verify``, ``finish``) hands ``finish`` what it works with, keeps the ``Delivery`` it
returns, and gives ``report`` a frozen ``TaskRecord``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import pytest

from pytest_infratask.core.handler import TaskHandler
from pytest_infratask.core.masking import Masker, github_add_mask
from pytest_infratask.core.outcome import Outcomes, Status, internal_error
from pytest_infratask.core.results import CheckResult, CommandResult
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.task import Task
from pytest_infratask.core.taskrecord import Delivery, TaskRecord
from pytest_infratask.core.verdict import Verdict, VerdictStatus
from pytest_infratask.finish.delivery import recall
from pytest_infratask.finish.settle import Interrupted, deliver, idle, unfinished
from pytest_infratask.finish.verify import Finishing
from pytest_infratask.guard.context import SafetyContext
from pytest_infratask.orchestrator.attempts import Attempts, RetryPolicy
from pytest_infratask.plan.waiting import Dependencies
from pytest_infratask.read.statuses import (
    IN_PROGRESS,
    BoardStatuses,
    board_statuses,
    keeps_status,
)
from pytest_infratask.record.git import Mark, Tracker
from pytest_infratask.record.journal import Journal, report_pointer
from pytest_infratask.record.undo import Undo
from pytest_infratask.report.contract import build_contract, status_of, verdict_of
from pytest_infratask.report.live import announce, workflow_commands
from pytest_infratask.report.publish import publish
from pytest_infratask.report.store import contracts
from pytest_infratask.run.overlay import drop
from pytest_infratask.run.workspace import Workspace
from pytest_infratask.workers import worker_input

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
    delivery: Delivery = field(default_factory=Delivery)
    """What the task's end did: its checks, commits and pushes."""
    verdict: Verdict | None = None
    """The ``::verify`` item's verdict, decided once per session."""
    waits: list[str] = field(default_factory=list)
    """Whose locks held the run up, as told to the person watching."""
    overlays: dict[Path, Path] = field(default_factory=dict)
    """Each repository's overlay directories, kept from one attempt to the next."""
    mounted_ahead: Mark | None = None
    """The repositories' ``mark`` when the next attempt's overlays were mounted ahead
    (``orchestrator.overlaid``); None when they were not."""
    interrupted: int | None = None
    """The criterion a Ctrl-C or a signal stopped while it ran."""
    ahead: bool = False
    """Another task follows in this process: its sandbox starts while this one runs."""

    def __post_init__(self) -> None:
        self.workspace = Workspace(
            self.task,
            self.task_type,
            self.handler,
            self.safety,
            self.settings,
            self.say_once,
            self.ahead,
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
            board=self._board(),
            statuses=[self.task.status],
        )
        policy = RetryPolicy.of(self.task, self.settings, self.handler.retries)
        self.attempts = Attempts(self.config, self.mask, policy)
        self.dependencies = Dependencies(
            self.task, self.settings, self.config, lambda: contracts(self.config)
        )
        workflow_commands(self.config, github_add_mask(self.mask))

    def _board(self) -> BoardStatuses | None:
        """The statuses ``--infratask-status`` writes; none for a file without ``status``."""
        if not keeps_status(self.task, self.settings):
            return None
        board = board_statuses(self.task.path)
        if board.in_progress is None:
            self.say_once(
                f"infratask: {board.config} has no {IN_PROGRESS!r} status: "
                "a running task's status is left as it is"
            )
        return board

    @property
    def mask(self) -> Masker:
        return self.workspace.mask

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

    def run_block(
        self, script: str, cwd: Path, env: dict[str, str], deadline: float | None, label: str
    ) -> tuple[CommandResult, int]:
        return self.attempts.run(script, cwd, env, deadline, label=label)

    def finishing(self) -> Finishing:
        """What the task's end works with."""
        return Finishing(
            task=self.task,
            settings=self.settings,
            handler=self.handler,
            safety=self.safety,
            workspace=self.workspace,
            tracker=self.tracker,
            journal=self.journal,
            mask=self.mask,
            outcomes=MappingProxyType(dict(self.outcomes)),
            run_block=self.run_block,
            deadline=self.attempts.policy.deadline,
            waiting_for=self.waiting_for,
            track=self.track,
        )

    def record(self) -> TaskRecord:
        """The task as it stands, frozen for the reports."""
        facts = TaskRecord(
            task=self.task,
            task_type=self.task_type,
            handler=self.handler.name,
            dry_run=self.settings.dry_run,
            outcomes=MappingProxyType(dict(self.outcomes)),
            delivery=self.delivery,
            verdict=self.verdict,
            entries=tuple(self.journal.entries),
            task_file=self._task_file_label() if self.journal.written else "",
            git_warnings=tuple(self.tracker.warnings),
            handler_fields=self.handler.report().copy(),
            next_steps=(),
            interrupted=self.interrupted,
        )
        return replace(facts, next_steps=tuple(self.handler.next_steps(status_of(facts))))

    def _task_file_label(self) -> str:
        path = self.task.path.resolve()
        for root, repo in self.tracker.repos.items():
            if root in path.parents:
                return self.tracker.label(repo, str(path.relative_to(root)))
        return str(self.task.path)

    def close(self) -> None:
        try:
            self.tracker.release()
            # Its end is waited for now only where overlays are mounted in it (their
            # directories go next); otherwise by the run's end, off the next task's path.
            self.workspace.close(wait=bool(self.overlays))
        finally:
            for folder in self.overlays.values():
                drop(folder)


def verify(run: TaskRun) -> Verdict:
    """Run the task's own work and decide its verdict (the ``::verify`` item's outcome),
    once per session: a rerun of the item (pytest-rerunfailures) gets the same verdict
    and never verifies, commits or pushes again.

    An exception on the way (a handler's or the plugin's) is a bug: it is recorded as a
    failed check, so the task's contract says failed, and pytest shows its traceback.
    """
    if run.verdict is not None:
        return run.verdict
    try:
        run.verdict = _verdict(run)
    except Exception as exc:
        bug = exc
        if isinstance(exc, Interrupted) and isinstance(exc.__cause__, Exception):
            run.delivery, bug = exc.delivered, exc.__cause__
        message, suggestion = internal_error(bug, run.handler.name)
        message = run.mask(message)
        failed = CheckResult("verification", False, message, suggestion)
        run.delivery = replace(run.delivery, checks=(*run.delivery.checks, failed))
        run.verdict = Verdict(VerdictStatus.FAILED, message)
        if bug is not exc:
            raise bug from None
        raise
    return run.verdict


def _verdict(run: TaskRun) -> Verdict:
    finishing = run.finishing()
    verdict = unfinished(finishing)
    if verdict is not None:
        return verdict
    run.delivery = deliver(finishing)
    return verdict_of(build_contract(run.record()), run.delivery.checks)


def finish(run: TaskRun) -> None:
    """Teardown of the task: publish the contract (once), whatever happened before.
    A complete task whose ``::verify`` did not run (none collected, or deselected)
    still reports its earlier commit."""
    try:
        try:
            if run.verdict is None and idle(run.finishing()):
                run.delivery = recall(run.finishing())
            passed = any(o.status is Status.PASSED for o in run.outcomes.values())
            for failed in run.journal.closing(passed):
                run.tracker.warnings.append(failed.message)
        finally:
            run.tracker.warnings.extend(run.journal.synced())
            # the ticks of criteria that changed no file, staged in one index write
            run.tracker.warnings.extend(run.mask(p) for p in run.tracker.stage_owed())
            # values a handler met on the way (registry tokens) are masked too
            run.mask.add(run.handler.secrets)
            publish(run.config, run.record(), run.mask, run.settings.report_dir)
    finally:
        run.close()
