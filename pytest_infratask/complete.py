"""Finish a task: verify, commit when asked, build and publish the contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .execute import TaskRun
from .gitops import GitError
from .guard import CheckResult
from .handlers.base import Blocked
from .masking import Environment
from .outcome import Status
from .report import publish


def _ready(run: TaskRun) -> bool:
    done = {c.number for c in run.task.criteria if c.done}
    done |= {n for n, o in run.outcomes.items() if o.status is Status.PASSED}
    return bool(run.task.criteria) and len(done) == len(run.task.criteria)


def _checks(name: str, step: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """A handler step whose problems become failed checks, never a traceback that
    would cost the task its report."""
    try:
        return step()
    except Blocked as exc:
        return [CheckResult(name, False, str(exc), "; ".join(exc.suggestions))]
    except (ValueError, LookupError, TypeError) as exc:
        return [CheckResult(name, False, f"{type(exc).__name__}: {exc}", "fix the task file")]


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
        target = replace(run.target(None, ()), uses_cluster=run.handler.uses_cluster(None))
        env = run.env_for(target)
        run.verification += _checks(
            "after commit", lambda: run.handler.after_commit(env, run.safety.kube_context)
        )


def _verify(run: TaskRun) -> None:
    cwd, env = run.location.cwd, Environment(run.base_env)
    checks = _checks("verification", lambda: run.handler.verify(cwd, env))
    checks += run.run_verification()
    run.verification = checks
    failed = [c for c in checks if not c.ok]
    if failed:
        run.log("Verification failed: " + "; ".join(c.message for c in failed))
    elif checks:
        run.log("Verification passed: " + "; ".join(c.message for c in checks))
    if not failed and run.settings.commit:
        _commit(run)


def finish(run: TaskRun) -> None:
    settings = run.settings
    try:
        ran = any(o.status is Status.PASSED for o in run.outcomes.values())
        if _ready(run) and ran and not settings.dry_run and not settings.skip_verification:
            _verify(run)
    finally:
        try:
            publish(run)
        finally:
            run.close()
