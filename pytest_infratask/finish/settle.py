"""Finish a task: verify, commit, push and reconcile; decide its verdict; publish.

``settle`` is what the task's ``::verify`` item runs. It follows the task file's state,
not this run's history: a task complete at the end of the run (ticked now, by an earlier
run or by a person) gets its checks, whatever of it is still uncommitted is committed,
and its declared Flux objects are checked against the revision the remote has.
"""

from __future__ import annotations

from pytest_infratask.core.outcome import internal_error
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.verdict import Verdict, VerdictStatus
from pytest_infratask.finish.delivery import cluster_checks, commit, push, recall
from pytest_infratask.finish.verify import log_verification, owes_lines, verify
from pytest_infratask.orchestrator.taskrun import TaskRun
from pytest_infratask.report.contract import build_contract
from pytest_infratask.report.publish import publish
from pytest_infratask.util.locks import LockTimeout


def open_criteria(run: TaskRun) -> list[str]:
    """The criteria not complete now, each with why (``#3 (manual)``)."""
    result = []
    for c in run.task.criteria:
        outcome = run.outcomes.get(c.number)
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


def _failed(run: TaskRun) -> bool:
    return any(not c.ok for c in run.verification)


def _verify_and_deliver(run: TaskRun) -> None:
    owes = owes_lines(run)
    if not owes:
        recall(run)
    checks = verify(run, owes)
    run.verification = list(checks)
    if any(not c.ok for c in checks):
        return
    if run.settings.commit:
        # A commit changes what `git status` shows: it must not interleave with another
        # task's criterion, whose changes are attributed by comparing that status.
        try:
            with run.tracker.turns(run.settings.lock_wait, run.waiting_for):
                commit(run)
        except LockTimeout as exc:
            run.verification.append(
                CheckResult(
                    "commit",
                    False,
                    f"{exc} (infratask_lock_wait)",
                    "rerun when the other run has finished, or raise infratask_lock_wait",
                )
            )
    if run.settings.push and not _failed(run):
        push(run)
    if not _failed(run):
        cluster_checks(run)
    later = [c for c in run.verification[len(checks) :] if not c.ok]
    if owes and later:
        run.verification += log_verification(run, "failed", later)


def _plan(run: TaskRun) -> str:
    """The dry run's line for the task's own work."""
    steps = []
    if run.handler.has_task_checks():
        steps.append(f"{run.handler.name} checks")
    if any(b.is_command for b in run.task.verification):
        steps.append("the ## Verification commands")
    if run.settings.commit:
        steps.append("commit the task's changes")
    if run.settings.push:
        steps.append("push to the branch's upstream")
    return "dry run: once every criterion is ticked, would run " + (
        ", ".join(steps) or "nothing more"
    )


def settle(run: TaskRun) -> Verdict:
    """Run the task's own work and decide its verdict (the ``::verify`` item's outcome),
    once per session: a rerun of the item (pytest-rerunfailures) gets the same verdict
    and never verifies, commits or pushes again.

    An exception on the way (a handler's or the plugin's) is a bug: it is recorded as a
    failed check, so the task's contract says failed, and pytest shows its traceback.
    """
    if run.verdict is not None:
        return run.verdict
    try:
        run.verdict = _settle(run)
    except Exception as exc:
        message, suggestion = internal_error(exc, run.handler.name)
        message = run.mask(message)
        run.verification.append(CheckResult("verification", False, message, suggestion))
        run.verdict = Verdict(VerdictStatus.FAILED, message)
        raise
    return run.verdict


def _settle(run: TaskRun) -> Verdict:
    settings = run.settings
    if settings.dry_run:
        return Verdict(VerdictStatus.SKIPPED, _plan(run))
    remaining = open_criteria(run)
    if remaining:
        held = any(o.status.failed or o.held_back for o in run.outcomes.values())
        return Verdict(
            VerdictStatus.SKIPPED,
            "not verified: criteria remain open: " + ", ".join(remaining),
            held_back=held,
        )
    if settings.skip_verification:
        return Verdict(VerdictStatus.SKIPPED, "not verified: --infratask-skip-verification")
    _verify_and_deliver(run)
    contract = build_contract(run)
    properties: list[tuple[str, object]] = [
        ("status", contract["status"]),
        ("success", contract["success"]),
    ]
    for name, sha in (contract.get("commits") or {}).items():
        properties.append(("commit", f"{name}@{sha}"))
    if contract.get("revision", {}).get("expected"):
        properties.append(("revision", contract["revision"]["expected"]))
    if contract["success"]:
        done = [c.message for c in run.verification if c.ok]
        return Verdict(VerdictStatus.PASSED, "; ".join(done) or "complete", properties=properties)
    failed = [c for c in run.verification if not c.ok]
    details = [f"check {c.name}: {c.message}" for c in failed]
    details += [f"  - {c.remediation}" for c in failed if c.remediation]
    return Verdict(
        VerdictStatus.FAILED,
        str(contract.get("message") or "verification failed"),
        details=details,
        properties=properties,
    )


def finish(run: TaskRun) -> None:
    """Teardown of the task: publish the contract (once), whatever happened before.
    A complete task whose ``::verify`` did not run (none collected, or deselected)
    still reports its earlier commit."""
    try:
        try:
            if run.verdict is None and _idle(run):
                recall(run)
        finally:
            publish(run)
    finally:
        run.close()


def _idle(run: TaskRun) -> bool:
    """Complete, and nothing of it ran or is left uncommitted."""
    return not run.settings.dry_run and not open_criteria(run) and not owes_lines(run)
