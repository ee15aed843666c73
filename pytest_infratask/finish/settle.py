"""Finish a task: verify, commit, push and reconcile, and say what that delivered.

It follows the task file's state, not this run's history: a task complete at the end
of the run (ticked now, by an earlier run or by a person) gets its checks, whatever of
it is still uncommitted is committed, and its declared Flux objects are checked
against the revision the remote has. The verdict is the report's to decide, from
the record of what this returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from pytest_infratask.core.outcome import Outcome
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.task import Task
from pytest_infratask.core.taskrecord import Delivery, Where
from pytest_infratask.core.verdict import Verdict, VerdictStatus
from pytest_infratask.finish.delivery import cluster_checks, commit, push, recall
from pytest_infratask.finish.verify import Finishing, log_verification, owes_lines, verify
from pytest_infratask.util.locks import LockTimeout


def open_criteria(task: Task, outcomes: Mapping[int, Outcome]) -> list[str]:
    """The criteria not complete now, each with why (``#3 (manual)``)."""
    result = []
    for c in task.criteria:
        outcome = outcomes.get(c.number)
        if c.done or (outcome is not None and outcome.status.complete):
            continue
        if outcome is not None:
            why = outcome.status.value
        elif c.manual:
            why = "manual"
        else:
            why = "not run"
        result.append(f"#{c.number} ({why})")
    return result


def unfinished(run: Finishing) -> Verdict | None:
    """The verdict of a task whose own work does not run (a dry run, open criteria,
    ``--infratask-skip-verification``); None when it runs."""
    if run.settings.dry_run:
        return Verdict(VerdictStatus.SKIPPED, _plan(run))
    remaining = open_criteria(run.task, run.outcomes)
    if remaining:
        held = any(o.status.failed or o.held_back for o in run.outcomes.values())
        return Verdict(
            VerdictStatus.SKIPPED,
            "not verified: criteria remain open: " + ", ".join(remaining),
            held_back=held,
        )
    if run.settings.skip_verification:
        return Verdict(VerdictStatus.SKIPPED, "not verified: --infratask-skip-verification")
    return None


class Interrupted(Exception):
    """A bug in a step after the commit: what was delivered so far, for the report;
    the bug is its cause."""

    def __init__(self, delivered: Delivery) -> None:
        super().__init__("delivery interrupted")
        self.delivered = delivered


def deliver(run: Finishing) -> Delivery:
    """The task's checks, then (when they pass) its commit, push and cluster checks."""
    owes = owes_lines(run)
    earlier = Delivery() if owes else recall(run)
    checks = verify(run, owes)
    if all(c.ok for c in checks):
        checks += run.journal.done()  # --infratask-status; before the commit, which carries it
    if any(not c.ok for c in checks):
        return replace(earlier, checks=tuple(checks))
    commits: dict[str, str] = {}
    later: list[CheckResult] = []
    if run.settings.commit:
        commits, later = _commit(run)
    pushed: dict[str, Where] = {}
    if run.settings.push and not later:
        pushed, later = push(run, commits)
    revision = None
    if not later:
        try:
            revision, later = cluster_checks(run, commits, pushed)
        except Exception as exc:
            made = replace(earlier, checks=tuple(checks), commits=commits, pushed=pushed)
            raise Interrupted(made) from exc
    failed = [c for c in later if not c.ok]
    undone = run.journal.undone() if failed else None  # the status before ``done``
    logged = []
    if failed and (owes or undone is not None):
        logged = log_verification(run, "failed", failed, undone)
    return replace(
        earlier,
        checks=(*checks, *later, *logged),
        commits=commits,
        pushed=pushed,
        revision=revision,
    )


def _commit(run: Finishing) -> tuple[dict[str, str], list[CheckResult]]:
    # A commit changes what `git status` shows: it must not interleave with another
    # task's criterion, whose changes are attributed by comparing that status.
    try:
        with run.tracker.turns(run.settings.lock_wait, run.waiting_for):
            return commit(run)
    except LockTimeout as exc:
        why = f"{exc} (infratask_lock_wait)"
        fix = "rerun when the other run has finished, or raise infratask_lock_wait"
        return {}, [CheckResult("commit", False, why, fix)]


def _plan(run: Finishing) -> str:
    """The dry run's line for the task's own work."""
    steps = []
    if run.handler.has_task_checks():
        steps.append(f"{run.handler.name} checks")
    commands = [run.mask(b.script.strip()) for b in run.task.verification if b.is_command]
    if commands:
        named = "; ".join(f"`{' && '.join(c.splitlines())}`" for c in commands)
        steps.append(f"the ## Verification commands {named}")
    if run.settings.commit:
        steps.append("commit the task's changes")
    if run.settings.push:
        steps.append("push to the branch's upstream")
    return "dry run: once every criterion is ticked, would run " + (
        ", ".join(steps) or "nothing more"
    )


def idle(run: Finishing) -> bool:
    """Complete, and nothing of it ran or is left uncommitted: its earlier commit is
    still reported when its ``::verify`` did not run (none collected, or deselected)."""
    return (
        not run.settings.dry_run
        and not open_criteria(run.task, run.outcomes)
        and not owes_lines(run)
    )
