"""Finish a task: verify, commit when asked, build and publish the contract."""

from __future__ import annotations

from .execute import TaskRun
from .gitops import GitError
from .guard import CheckResult
from .outcome import Status
from .report import publish


def _ready(run: TaskRun) -> bool:
    done = {c.number for c in run.task.criteria if c.done}
    done |= {n for n, o in run.outcomes.items() if o.status is Status.PASSED}
    return bool(run.task.criteria) and len(done) == len(run.task.criteria)


def _commit(run: TaskRun) -> None:
    if not run.tracker.repos:
        run.verification.append(CheckResult(
            "commit", False, "nothing to commit: the task is not in a git repository",
            "run the task inside the repository it changes"))
        return
    try:
        commits = run.commit()
    except GitError as exc:
        run.verification.append(CheckResult("commit", False, str(exc),
                                            "fix the problem and rerun with --infratask-commit"))
        return
    if commits:
        run.extra["commits"] = commits
        run.verification += run.handler.after_commit(dict(run.base_env))


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
            if not failed and settings.commit:
                _commit(run)
        publish(run)
    finally:
        run.close()
