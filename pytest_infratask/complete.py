"""Finish a task: verify, commit, push and reconcile; decide its verdict; publish.

``settle`` is what the task's ``::verify`` item runs. It follows the task file's state,
not this run's history: a task complete at the end of the run (ticked now, by an earlier
run or by a person) gets its checks, whatever of it is still uncommitted is committed,
and its declared Flux objects are checked against the revision the remote has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .execute import TaskRun
from .gitops import GitError, Published
from .guard import CheckResult
from .handlers.base import Blocked
from .locks import LockTimeout
from .outcome import Status
from .report import publish
from .verdict import Verdict

FINISHED = (Status.PASSED, Status.DONE)


def open_criteria(run: TaskRun) -> list[str]:
    """The criteria not complete now, each with why (``#3 (manual)``)."""
    result = []
    for c in run.task.criteria:
        outcome = run.outcomes.get(c.number)
        if c.done or (outcome is not None and outcome.status in FINISHED):
            continue
        if outcome is not None:
            why = outcome.status.value
        elif c.manual:
            why = "manual"
        else:
            why = "not run"
        result.append(f"#{c.number} ({why})")
    return result


def _checks(name: str, step: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """A handler step whose problems become failed checks, never a traceback that
    would cost the task its report."""
    try:
        return step()
    except Blocked as exc:
        return [CheckResult(name, False, f"BLOCKED: {exc}", "; ".join(exc.suggestions))]
    except (ValueError, LookupError, TypeError) as exc:
        return [CheckResult(name, False, f"{type(exc).__name__}: {exc}", "fix the task file")]


def _failed(run: TaskRun) -> bool:
    return any(not c.ok for c in run.verification)


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
    # The task file is the task's own: a hand-ticked box or this run's lines go in too.
    run.tracker.stage({}, with_task_file=True)
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


def _push(run: TaskRun) -> None:
    """Push every repository holding a commit of the task that its upstream lacks."""
    commits = run.extra.get("commits") or {}
    pushed: dict[str, dict[str, str]] = {}
    for repo in run.tracker.repos.values():
        sha = commits.get(repo.name) or repo.task_commit(run.task.id)
        if sha is None:
            continue
        upstream = repo.upstream()
        if upstream is None:
            run.verification.append(
                CheckResult(
                    "push",
                    False,
                    f"{repo.name}: branch {repo.branch} has no upstream; nothing was pushed",
                    f"set one (git push -u origin {repo.branch}), then rerun with --infratask-push",
                )
            )
            continue
        if repo.on_upstream(sha, upstream):
            continue
        try:
            head = repo.push(upstream)
        except GitError as exc:
            run.verification.append(
                CheckResult(
                    "push",
                    False,
                    f"{repo.name}: {exc}",
                    f"nothing was forced: bring in what {upstream.remote}/{upstream.branch} has "
                    f"(git pull --rebase {upstream.remote} {upstream.branch}), check the "
                    "result, then rerun with --infratask-push",
                )
            )
            continue
        # No progress line: it would leave the task file dirty after its own commit.
        pushed[repo.name] = {"remote": upstream.url, "branch": upstream.branch, "commit": head}
    if pushed:
        run.extra["pushed"] = pushed


def published(run: TaskRun) -> Published:
    """What of the task the remote Flux reads can see, for the handler's cluster checks."""
    repo = run.tracker.repo_for(run.location.cwd)
    if repo is None:
        return Published(why_unchecked="the task's directory is not in a git repository")
    commits = run.extra.get("commits") or {}
    upstream = repo.upstream()
    state = Published(
        root=repo.root,
        branch=upstream.branch if upstream else (repo.branch or ""),
        remote=upstream.url if upstream else "",
        committed=repo.name in commits,
        pushed=repo.name in (run.extra.get("pushed") or {}),
        tracker=repo,
        upstream=upstream,
    )
    pending = run.tracker.pending(repo, run.task.id)
    if pending:
        state.problem = (
            f"{run.task.id}'s changes are not committed ({', '.join(pending)}); "
            f"Flux reads {state.remote or 'a remote'}, not this work tree"
        )
        state.suggestion = "rerun with --infratask-commit --infratask-push"
        return state
    sha = commits.get(repo.name) or repo.task_commit(run.task.id)
    if upstream is None:
        state.sha = sha or repo.head()
        state.problem = (
            f"branch {repo.branch} of {repo.root} has no upstream: Flux reads a remote, "
            "and nothing of this branch is on one"
        )
        state.suggestion = f"set one (git push -u origin {repo.branch}), then rerun with " + (
            "--infratask-push"
        )
        return state
    if sha is None:
        state.sha = repo.resolve(upstream.tracking) if upstream.tracking else None
        return state
    state.sha = sha
    if not repo.on_upstream(sha, upstream):
        state.problem = f"committed locally ({sha[:12]}); Flux reads {upstream.url}"
        state.suggestion = "rerun with --infratask-push"
    return state


def _after(run: TaskRun) -> None:
    target = replace(run.target(None, ()), uses_cluster=run.handler.uses_cluster(None))
    env = run.env_for(target)
    state = published(run)
    if state.sha or state.problem:
        run.extra["revision"] = {
            "expected": state.revision,
            "remote": state.remote,
            "committed": state.committed,
            "pushed": state.pushed,
            **({"problem": state.problem} if state.problem else {}),
        }
    handler, context = run.handler, run.safety.kube_context

    def step() -> list[CheckResult]:
        if hasattr(handler, "after_publish"):
            return handler.after_publish(env, context, state)
        # a handler that is not a Handler subclass: its after_commit, as before
        return handler.after_commit(env, context) if state.committed else []

    run.verification += _checks("cluster", step)


def _verify(run: TaskRun) -> None:
    cwd = run.location.cwd
    # The pinned kubeconfig when the handler checks a cluster, as for criteria.
    env = run.env_for(replace(run.target(None, ()), uses_cluster=run.handler.uses_cluster(None)))
    run._track(cwd)  # the repositories the task lives in, also when nothing ran now
    ran = any(o.status is Status.PASSED for o in run.outcomes.values())
    owes = ran or any(run.tracker.pending(r, run.task.id) for r in run.tracker.repos.values())
    checks = _checks("verification", lambda: run.handler.verify(cwd, env))
    checks += run.run_verification()
    run.verification = list(checks)
    failed = [c for c in checks if not c.ok]
    # A rerun of a finished task leaves its file alone: lines only for work still owed.
    if owes and failed:
        run.log("Verification failed: " + "; ".join(c.message for c in failed))
    elif owes and checks:
        run.log("Verification passed: " + "; ".join(c.message for c in checks))
    if failed:
        return
    if run.settings.commit:
        # A commit changes what `git status` shows: it must not interleave with another
        # task's criterion, whose changes are attributed by comparing that status.
        try:
            with run.tracker.turns(run.settings.lock_wait, run.waiting_for):
                _commit(run)
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
        _push(run)
    if not _failed(run):
        _after(run)
    later = [c for c in run.verification[len(checks) :] if not c.ok]
    if owes and later:
        run.log("Verification failed: " + "; ".join(c.message for c in later))


def _plan(run: TaskRun) -> str:
    """The dry run's line for the task's own work."""
    steps = []
    if getattr(run.handler, "has_task_checks", lambda: True)():
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
    """Run the task's own work and decide its verdict (the ``::verify`` item's outcome)."""
    verdict = _settle(run)
    run.extra["verdict"] = {"status": verdict.status, "message": verdict.message}
    return verdict


def _settle(run: TaskRun) -> Verdict:
    from .contract import build_contract

    settings = run.settings
    if settings.dry_run:
        return Verdict("skipped", _plan(run))
    remaining = open_criteria(run)
    if remaining:
        held = any(
            o.status in (Status.FAILED, Status.BLOCKED) or o.held_back
            for o in run.outcomes.values()
        )
        return Verdict(
            "skipped", "not verified: criteria remain open: " + ", ".join(remaining), held_back=held
        )
    if settings.skip_verification:
        return Verdict("skipped", "not verified: --infratask-skip-verification")
    _verify(run)
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
        return Verdict("passed", "; ".join(done) or "complete", properties=properties)
    failed = [c for c in run.verification if not c.ok]
    details = [f"check {c.name}: {c.message}" for c in failed]
    details += [f"  - {c.remediation}" for c in failed if c.remediation]
    return Verdict(
        "failed",
        str(contract.get("message") or "verification failed"),
        details=details,
        properties=properties,
    )


def finish(run: TaskRun) -> None:
    """Teardown of the task: publish the contract (once), whatever happened before."""
    try:
        publish(run)
    finally:
        run.close()
