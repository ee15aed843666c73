"""The task's own checks once its criteria are complete: the handler's, then the
Verification section's commands under the same safety checks as criteria."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_infratask.clients.kubeconfig import KubeconfigError
from pytest_infratask.core.handler import Blocked, TaskHandler
from pytest_infratask.core.masking import Masker
from pytest_infratask.core.outcome import Outcome, Status, tail
from pytest_infratask.core.results import CheckResult, CommandResult
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.task import Task
from pytest_infratask.guard.context import SafetyContext, Target
from pytest_infratask.record.git import Tracker
from pytest_infratask.record.journal import Journal
from pytest_infratask.run.workspace import Workspace
from pytest_infratask.util.locks import LockTimeout

RunBlock = Callable[[str, Path, dict[str, str], float | None, str], tuple[CommandResult, int]]
"""Runs a block (script, cwd, env, deadline, label) with the task's retries and live
display; returns its result and the tries made."""


@dataclass(frozen=True)
class Finishing:
    """What a task's end works with, handed over by the task's run: the task, its
    collaborators from the stages below, and the outcomes its criteria left."""

    task: Task
    settings: Settings
    handler: TaskHandler
    safety: SafetyContext
    workspace: Workspace
    tracker: Tracker
    journal: Journal
    mask: Masker
    outcomes: Mapping[int, Outcome]
    run_block: RunBlock
    deadline: Callable[[], float | None]
    """When the task's blocks must have ended, from now (its timeout)."""
    waiting_for: Callable[[str], None]
    track: Callable[[Path], None]
    """Follows the repositories the task file and a directory live in."""


def handler_checks(name: str, step: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """A handler step's checks; ``Blocked`` is a failed check with its suggestions. Any
    other exception is a bug, which ``settle`` records and pytest shows."""
    try:
        return step()
    except Blocked as exc:
        return [exc.as_check(name)]


def owes_lines(run: Finishing) -> bool:
    """Whether the task has work of this run (or uncommitted work) to account for;
    a rerun of a finished task leaves its file alone."""
    run.track(run.workspace.location.cwd)  # the task's repositories, also when nothing ran
    ran = any(o.status is Status.PASSED for o in run.outcomes.values())
    return ran or any(run.tracker.pending(r, run.task.id) for r in run.tracker.repos.values())


def verify(run: Finishing, owes: bool) -> list[CheckResult]:
    """The handler's checks and the Verification section, logged when work is owed."""
    cwd = run.workspace.location.cwd
    # The pinned kubeconfig when the handler checks a cluster, as for criteria.
    env = run.workspace.cluster_env()
    checks = handler_checks("verification", lambda: run.handler.verify(cwd, env))
    checks += verification_section(run)
    failed = [c for c in checks if not c.ok]
    if owes and failed:
        checks += log_verification(run, "failed", failed)
    elif owes and checks:
        checks += log_verification(run, "passed", checks)
    return checks


def log_verification(
    run: Finishing, how: str, checks: list[CheckResult], status: str | None = None
) -> list[CheckResult]:
    """The task's verification line; the same line as last time is counted there.
    ``status`` goes in the same write (``--infratask-status``)."""
    text = f"Verification {how}: " + "; ".join(c.logged() for c in checks)
    return run.journal.log(text, topic="Verification", status=status)


def verification_section(run: Finishing) -> list[CheckResult]:
    """The Verification section's commands, under the same safety checks."""
    task = run.task
    if not task.verification or not any(b.is_command for b in task.verification):
        return []
    target = run.workspace.target(None, task.verification)
    failed = next((r for r in run.safety.run(target) if not r.ok), None)
    if failed is not None:
        return [
            CheckResult(
                "verification", False, f"{failed.name}: {failed.message}", failed.remediation
            )
        ]
    try:
        env = run.workspace.command_env()
    except KubeconfigError as exc:
        return [CheckResult("verification", False, f"kube context: {exc}", "install kubectl")]
    deadline = run.deadline()
    try:
        with run.tracker.turns(run.settings.lock_wait, run.waiting_for):
            return _commands(run, target, env, deadline)
    except LockTimeout as exc:
        return [
            CheckResult(
                "verification",
                False,
                f"{exc} (infratask_lock_wait)",
                "let the other run finish, then rerun",
            )
        ]


def _commands(
    run: Finishing, target: Target, env: dict[str, str], deadline: float | None
) -> list[CheckResult]:
    label = f"{run.task.id} verification"
    for block in run.task.verification:
        if not block.is_command:
            continue
        result, _ = run.run_block(block.script, target.cwd, env, deadline, label)
        if not result.ok:
            lines = block.script.strip().splitlines() or [""]
            shown = f"`{lines[0]}`" + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")
            detail = tail(result.stderr or result.stdout, 1) or f"{shown} printed nothing"
            failed = f"Verification command failed (exit {result.exit_code})"
            return [
                CheckResult(
                    "verification",
                    False,
                    run.mask(f"{failed}: {detail}"),
                    "fix the change or the verification command, then rerun",
                    progress=f"{failed} (see {run.journal.report})",
                )
            ]
    return [CheckResult("verification", True, "Verification section passed")]
