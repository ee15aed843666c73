"""Finish a task: verify, commit when asked, build and publish the contract."""

from __future__ import annotations

from .execute import TaskRun
from .outcome import Status
from .report import publish


def _ready(run: TaskRun) -> bool:
    done = {c.number for c in run.task.criteria if c.done}
    done |= {n for n, o in run.outcomes.items() if o.status is Status.PASSED}
    return bool(run.task.criteria) and len(done) == len(run.task.criteria)


def finish(run: TaskRun) -> None:
    try:
        settings = run.settings
        ran = any(o.status is Status.PASSED for o in run.outcomes.values())
        if _ready(run) and ran and not settings.dry_run and not settings.skip_verification:
            checks = run.handler.verify(run.location().cwd, dict(run.base_env))
            checks += run.run_verification()
            run.verification = checks
            failed = [c for c in checks if not c.ok]
            if failed:
                run.log("Verification failed: " + "; ".join(c.message for c in failed))
            elif checks:
                run.log("Verification passed: " + "; ".join(c.message for c in checks))
        publish(run)
    finally:
        run.close()
