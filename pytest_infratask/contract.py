"""The output contract of one task, as CI and other tools read it.

Success fields are always present; when a criterion failed or was blocked the
error form's fields are added beside them, so a consumer never has to know
which shape it got before reading ``criteria`` or ``status``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .outcome import Outcome, Status

if TYPE_CHECKING:
    from .execute import TaskRun

STEP_ERRORS = {
    "commit": "Commit failed",
    "push": "Push failed",
    "reconcile": "Reconcile failed",
}
NOT_RUN = "not run in this session (deselected, or the run stopped before it)"


def _reason(outcome: Outcome | None) -> str:
    if outcome is None:
        return NOT_RUN
    if outcome.status is Status.DRY_RUN:
        return "dry run: not executed"
    return outcome.message or outcome.status.value


def _task_file_label(run: TaskRun) -> str:
    path = run.task.path.resolve()
    for root, repo in run.tracker.repos.items():
        if root in path.parents:
            return run.tracker.label(repo, str(path.relative_to(root)))
    return str(run.task.path)


def status_of(run: TaskRun, remaining: int) -> str:
    outcomes = run.outcomes.values()
    if any(o.status is Status.BLOCKED for o in outcomes):
        return "blocked"
    if run.settings.dry_run:
        return "dry_run"
    if remaining:
        return "partially_complete"
    if run.extra.get("commits"):
        return "committed"
    return "ready_for_verification"


def build_contract(run: TaskRun) -> dict[str, Any]:
    task = run.task
    outcomes = run.outcomes
    passed = [o for o in outcomes.values() if o.status is Status.PASSED]
    bad = [o for o in outcomes.values() if o.status in (Status.FAILED, Status.BLOCKED)]
    completed_numbers = {c.number for c in task.criteria if c.done} | {
        o.number for o in outcomes.values() if o.status in (Status.PASSED, Status.DONE)
    }
    completed = len(completed_numbers)
    remaining = len(task.criteria) - completed
    status = status_of(run, remaining)

    completed_criteria = []
    for c in task.criteria:
        o = outcomes.get(c.number)
        if o is not None and o.status is Status.PASSED:
            completed_criteria.append(
                {
                    "criterion": c.text,
                    "number": c.number,
                    "command": "\n".join(o.commands),
                    "output": o.output,
                    "notes": "; ".join(o.notes) or f"ran in {o.cwd}",
                }
            )
        elif c.number in completed_numbers:
            completed_criteria.append(
                {
                    "criterion": c.text,
                    "number": c.number,
                    "command": "",
                    "output": "",
                    "notes": "already complete before this run",
                }
            )
    remaining_criteria = [
        {"criterion": c.text, "number": c.number, "reason": _reason(outcomes.get(c.number))}
        for c in task.criteria
        if c.number not in completed_numbers
    ]
    failed_checks = [r for r in run.verification if not r.ok]
    next_steps = [s for o in bad for s in o.suggestions[:1]]
    next_steps += [f"{r.message}: {r.remediation}".rstrip(": ") for r in failed_checks]
    next_steps += run.handler.next_steps(status)
    if remaining and not bad:
        next_steps.append(
            f"{remaining} criteria remain: "
            + ", ".join(f"#{r['number']}" for r in remaining_criteria)
        )
    files = list(
        dict.fromkeys(f for o in outcomes.values() for f in o.files if o.status is Status.PASSED)
    )
    if run.written:
        files.append(_task_file_label(run))
    contract: dict[str, Any] = {
        "success": not bad and not failed_checks,
        "task_id": task.id,
        "task_title": task.title,
        "task_type": run.task_type,
        "task_path": str(task.path),
        "handler": run.handler.name,
        "criteria": {
            "total": len(task.criteria),
            "completed": completed,
            "failed": len(bad),
            "remaining": remaining,
        },
        "completed_criteria": completed_criteria,
        "remaining_criteria": remaining_criteria,
        "changes": {
            "files_modified": files,
            "commands_executed": [
                cmd for o in outcomes.values() for cmd in o.commands if o.attempts > 0
            ],
        },
        "progress_log_entry": run.entries[-1] if run.entries else "",
        "progress_log_entries": list(run.entries),
        "status": status,
        "next_steps": "; ".join(dict.fromkeys(next_steps)) or "none",
        "criteria_results": [
            {
                "number": o.number,
                "criterion": o.text,
                "status": o.status.value,
                "message": o.message,
                "cwd": o.cwd,
                "repo": o.repo,
                "attempts": o.attempts,
                "files": o.files,
                "commands": o.commands,
            }
            for o in outcomes.values()
        ],
        "verification": [
            {"check": r.name, "ok": r.ok, "message": r.message} for r in run.verification
        ],
        "dry_run": run.settings.dry_run,
    }
    if run.tracker.warnings:
        contract["git_warnings"] = list(run.tracker.warnings)
    contract.update(run.handler.report())
    contract.update({k: v for k, v in run.extra.items() if k != "files_modified"})
    if bad or failed_checks:
        first = bad[0] if bad else None
        contract.update(
            {
                "error": (
                    "Criterion blocked"
                    if first and first.status is Status.BLOCKED
                    else "Criterion failed"
                    if first
                    else "Verification blocked"
                    if failed_checks[0].message.startswith("BLOCKED:")
                    else STEP_ERRORS.get(failed_checks[0].name, "Verification failed")
                ),
                "message": first.message if first else failed_checks[0].message,
                "details": {
                    "criterion": first.text if first else "verification",
                    "command": (first.command or "\n".join(first.commands)) if first else "",
                    "error_output": (first.error_output or first.error)
                    if first
                    else failed_checks[0].message,
                },
                "completed_before_failure": [
                    o.text for o in passed if first is None or o.number < first.number
                ]
                if first
                else [o.text for o in passed],
                "recovery_suggestions": list(dict.fromkeys(s for o in bad for s in o.suggestions))
                + [r.remediation for r in failed_checks if r.remediation],
            }
        )
    return contract
