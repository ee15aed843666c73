"""The output contract of one task, as CI and other tools read it.

Success fields are always present; when a criterion failed or was blocked the
error form's fields are added beside them, so a consumer never has to know
which shape it got before reading ``criteria`` or ``status``.
"""

from __future__ import annotations

from pytest_infratask.core.messages import INTERRUPTED, dry_run, remaining
from pytest_infratask.core.outcome import Outcome, Status
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.shape import (
    CompletedCriterion,
    Contract,
    ContractStatus,
    CriterionResult,
    Pushed,
    RemainingCriterion,
    RolledBack,
)
from pytest_infratask.core.taskrecord import TaskRecord, Where
from pytest_infratask.core.verdict import Verdict, VerdictStatus
from pytest_infratask.report.schema import SCHEMA_VERSION

STEP_ERRORS = {
    "commit": "Commit failed",
    "push": "Push failed",
    "reconcile": "Reconcile failed",
    "progress log": "Write-back failed",
}
NOT_RUN = "not run in this session (deselected, or the run stopped before it)"


def _reason(outcome: Outcome | None, interrupted: bool) -> str:
    if interrupted:
        return INTERRUPTED
    if outcome is None:
        return NOT_RUN
    if outcome.status is Status.DRY_RUN:
        return "dry run: not executed"
    return outcome.message or outcome.status.value


def blocked(check: CheckResult) -> bool:
    """A task-level check that could not run (``Blocked``): the task is blocked."""
    return not check.ok and check.message.startswith("BLOCKED:")


def status_of(run: TaskRecord) -> ContractStatus:
    outcomes, delivery = run.outcomes.values(), run.delivery
    if any(o.status is Status.BLOCKED for o in outcomes) or any(map(blocked, delivery.checks)):
        return "blocked"
    if run.dry_run:
        return "dry_run"
    done = _completed_numbers(run)
    if len(run.task.criteria) > len(done):
        failed = any(o.status.failed for o in outcomes)
        return "partially_complete" if done or failed else "not_started"
    if delivery.commits or delivery.earlier_commits:
        return "committed"
    return "ready_for_verification"


def build_contract(run: TaskRecord) -> Contract:
    """The task's contract as it stands now: success fields always, error fields when
    a criterion failed or was blocked or a check failed."""
    task, outcomes, checks = run.task, run.outcomes, run.delivery.checks
    bad = [o for o in outcomes.values() if o.status.failed]
    done = _completed_numbers(run)
    remaining = len(task.criteria) - len(done)
    status = status_of(run)
    remaining_criteria: list[RemainingCriterion] = [
        {
            "criterion": c.text,
            "number": c.number,
            "reason": _reason(outcomes.get(c.number), c.number == run.interrupted),
        }
        for c in task.criteria
        if c.number not in done
    ]
    failed_checks = [r for r in checks if not r.ok]
    contract: Contract = {
        "schemaVersion": SCHEMA_VERSION,
        "success": not bad and not failed_checks,
        "task_id": task.id,
        "task_title": task.title,
        "task_type": run.task_type,
        "task_path": str(task.path),
        "handler": run.handler,
        "criteria": {
            "total": len(task.criteria),
            "completed": len(done),
            "failed": len(bad),
            "remaining": remaining,
        },
        "completed_criteria": _completed_criteria(run, done),
        "remaining_criteria": remaining_criteria,
        "changes": {
            "files_modified": _files_modified(run),
            "commands_executed": [
                cmd for o in outcomes.values() for cmd in o.commands if o.attempts > 0
            ],
        },
        "progress_log_entry": run.entries[-1] if run.entries else "",
        "progress_log_entries": list(run.entries),
        "status": status,
        "next_steps": _next_steps(run, bad, failed_checks),
        "criteria_results": [_result(o) for o in outcomes.values()],
        "verification": [{"check": r.name, "ok": r.ok, "message": r.message} for r in checks],
        "dry_run": run.dry_run,
    }
    if run.git_warnings:
        contract["git_warnings"] = list(run.git_warnings)
    contract = {**contract, **run.handler_fields}
    _add_delivery(run, contract)
    if bad or failed_checks:
        _add_error_fields(contract, run, bad, failed_checks)
    return contract


def _completed_numbers(run: TaskRecord) -> set[int]:
    ticked = {c.number for c in run.task.criteria if c.done}
    return ticked | {o.number for o in run.outcomes.values() if o.status.complete}


def _completed_criteria(run: TaskRecord, done: set[int]) -> list[CompletedCriterion]:
    found: list[CompletedCriterion] = []
    for c in run.task.criteria:
        o = run.outcomes.get(c.number)
        if o is not None and o.status is Status.PASSED:
            command, output = "\n".join(o.commands), o.output
            notes = "; ".join(o.notes) or f"ran in {o.cwd}"
        elif c.number in done:
            command, output, notes = "", "", "already complete before this run"
        else:
            continue
        found.append(
            {
                "criterion": c.text,
                "number": c.number,
                "command": command,
                "output": output,
                "notes": notes,
            }
        )
    return found


def _files_modified(run: TaskRecord) -> list[str]:
    passed = (o for o in run.outcomes.values() if o.status is Status.PASSED)
    files = list(dict.fromkeys(f for o in passed for f in o.files))
    if run.task_file:
        files.append(run.task_file)
    return files


def _next_steps(run: TaskRecord, bad: list[Outcome], failed_checks: list[CheckResult]) -> str:
    """Each failure's first suggestion, each failed check's remedy, the task type's
    next step, then the open criteria by number and text (a manual one: tick it by
    hand when done); a dry run says how to run it for real."""
    steps = [s for o in bad for s in o.suggestions[:1]]
    steps += [f"{r.message}: {r.remediation}".rstrip(": ") for r in failed_checks]
    if not bad and not failed_checks:  # the type's next step follows a success only
        steps += run.next_steps
    steps += remaining(run.task.criteria, run.outcomes, bool(bad), run.interrupted)
    if run.dry_run:
        steps += dry_run(run.task.criteria, run.outcomes)
    return "; ".join(dict.fromkeys(steps)) or "none"


def _result(o: Outcome) -> CriterionResult:
    result: CriterionResult = {
        "number": o.number,
        "criterion": o.text,
        "status": o.status.value,
        "message": o.message,
        "cwd": o.cwd,
        "repo": o.repo,
        "attempts": o.attempts,
        "files": list(o.files),
        "commands": list(o.commands),
    }
    if o.rolled_back:
        result["rolled_back"] = [
            RolledBack(attempt=r.attempt, reason=r.reason, files=list(r.files), diff=r.diff)
            for r in o.rolled_back
        ]
    return result


def _add_error_fields(
    contract: Contract, run: TaskRecord, bad: list[Outcome], failed_checks: list[CheckResult]
) -> None:
    """The error form's fields: the first failed criterion, else the first failed check."""
    passed = [o.text for o in run.outcomes.values() if o.status is Status.PASSED]
    suggestions = list(dict.fromkeys(s for o in bad for s in o.suggestions))
    suggestions += [r.remediation for r in failed_checks if r.remediation]
    if bad:
        first = bad[0]
        before = [
            o.text
            for o in run.outcomes.values()
            if o.status is Status.PASSED and o.number < first.number
        ]
        contract["error"] = (
            "Criterion blocked" if first.status is Status.BLOCKED else "Criterion failed"
        )
        contract["message"] = first.message
        contract["details"] = {
            "criterion": first.text,
            "command": first.command or "\n".join(first.commands),
            "error_output": first.error_output or first.error,
        }
        contract["completed_before_failure"] = before
    else:
        check = failed_checks[0]
        contract["error"] = (
            "Verification blocked"
            if blocked(check)
            else STEP_ERRORS.get(check.name, "Verification failed")
        )
        contract["message"] = check.message
        contract["details"] = {
            "criterion": "verification",
            "command": "",
            "error_output": check.message,
        }
        contract["completed_before_failure"] = passed
    contract["recovery_suggestions"] = suggestions


def _add_delivery(run: TaskRecord, contract: Contract) -> None:
    """What the task's end did, present only when it happened."""
    delivery = run.delivery
    commits = {**delivery.earlier_commits, **delivery.commits}
    if commits:
        contract["commits"] = commits
    earlier = {name: _pushed(where, True) for name, where in delivery.earlier_pushes.items()}
    pushed = {**earlier, **{name: _pushed(where) for name, where in delivery.pushed.items()}}
    if pushed:
        contract["pushed"] = pushed
    if delivery.revision is not None:
        contract["revision"] = delivery.revision
    if run.verdict is not None:
        contract["verdict"] = {"status": run.verdict.status, "message": run.verdict.message}


def _pushed(where: Where, earlier: bool = False) -> Pushed:
    found = Pushed(remote=where["remote"], branch=where["branch"], commit=where["commit"])
    if earlier:
        found["earlier"] = True
    return found


def verdict_of(contract: Contract, checks: tuple[CheckResult, ...]) -> Verdict:
    """The ``::verify`` item's verdict of a task whose own work ran: the contract's,
    so pytest's exit code, JUnit and the JSON contract cannot disagree."""
    properties: list[tuple[str, object]] = [
        ("status", contract["status"]),
        ("success", contract["success"]),
    ]
    for name, sha in (contract.get("commits") or {}).items():
        properties.append(("commit", f"{name}@{sha}"))
    if contract.get("revision", {}).get("expected"):
        properties.append(("revision", contract["revision"]["expected"]))
    if contract["success"]:
        done = [c.message for c in checks if c.ok]
        return Verdict(VerdictStatus.PASSED, "; ".join(done) or "complete", properties=properties)
    failed = [c for c in checks if not c.ok]
    headline = str(contract.get("message") or "verification failed")
    # the headline is said once: a check whose message it is adds only its name
    details = [
        f"check {c.name}" + ("" if c.message == headline else f": {c.message}") for c in failed
    ]
    details += [f"  - {c.remediation}" for c in failed if c.remediation]
    return Verdict(
        VerdictStatus.FAILED,
        headline,
        details=details,
        properties=properties,
    )
