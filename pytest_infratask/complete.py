"""Finish a task: verify, commit when asked, build and publish the contract."""

from __future__ import annotations

from dataclasses import replace

from .execute import TaskRun
from .gitops import GitError
from .guard import CheckResult
from .handlers.base import Blocked
from .outcome import Status
from .report import publish


def _ready(run: TaskRun) -> bool:
    done = {c.number for c in run.task.criteria if c.done}
    done |= {n for n, o in run.outcomes.items() if o.status is Status.PASSED}
    return bool(run.task.criteria) and len(done) == len(run.task.criteria)


def _commit(run: TaskRun) -> None:
    if not run.tracker.repos:
        run.verification.append(
            CheckResult(
                "commit",
                False,
                "nothing to commit: the task is not in a git repository",
                "run the task inside the repository it changes",
            )
        )
        return
    try:
        commits = run.commit()
    except GitError as exc:
        run.verification.append(
            CheckResult(
                "commit", False, str(exc), "fix the problem and rerun with --infratask-commit"
            )
        )
        return
    if commits:
        run.extra["commits"] = commits
        target = run.target(None, ())
        env = run.env_for(replace(target, uses_cluster=run.handler.uses_cluster(None)))
        try:
            run.verification += run.handler.after_commit(env, run.safety.kube_context)
        except Blocked as exc:
            run.verification.append(
                CheckResult("after commit", False, str(exc), "; ".join(exc.suggestions))
            )


def finish(run: TaskRun) -> None:
    try:
        settings = run.settings
        ran = any(o.status is Status.PASSED for o in run.outcomes.values())
        if _ready(run) and ran and not settings.dry_run and not settings.skip_verification:
            try:
                checks = run.handler.verify(run.location().cwd, dict(run.base_env))
            except Blocked as exc:
                checks = [CheckResult("verification", False, str(exc), "; ".join(exc.suggestions))]
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
