"""Deliver a verified task: commit its changes, push them, and check what the cluster
made of what the remote now holds. Flux reads the remote, never this work tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_infratask.core.handler import Published
from pytest_infratask.core.outcome import Status
from pytest_infratask.core.results import CheckResult
from pytest_infratask.finish.verify import handler_checks
from pytest_infratask.record.git import GitError, includes

if TYPE_CHECKING:
    from pytest_infratask.orchestrator.taskrun import TaskRun


def commit(run: TaskRun) -> None:
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
    passed = sorted(n for n, o in run.outcomes.items() if o.status is Status.PASSED)
    message = (
        f"{run.task.id}: {run.task.title}\n\n"
        f"Infratask-Task: {run.task.id}\n"
        f"Infratask-Criteria: {','.join(map(str, passed))}\n"
    )
    try:
        commits = run.tracker.commit(run.mask(message))
    except GitError as exc:
        run.verification.append(
            CheckResult(
                "commit", False, str(exc), "fix the problem and rerun with --infratask-commit"
            )
        )
        return
    run.commits.update(commits)


def recall(run: TaskRun) -> None:
    """What is already true of a task this run owes nothing for: its commit from an
    earlier run (the newest on HEAD whose ``Infratask-Task`` trailer names it) and
    whether the upstream holds it. The upstream is judged by its remote-tracking ref
    as the last fetch or push left it: a rerun stays read-only and needs no network.
    A task file with uncommitted edits (a box ticked by hand) is not committed."""
    task_file = run.task.path.resolve()
    repos = run.tracker.repos
    for root, repo in repos.items():
        if root in task_file.parents and task_file.relative_to(root).as_posix() in (
            repo.snapshot()
        ):
            return
    for repo in repos.values():
        sha = repo.task_commit(run.task.id)
        if sha is None:
            continue
        run.earlier_commits[repo.name] = sha
        upstream = repo.upstream()
        if upstream is not None and repo.on_upstream(sha, upstream):
            where = {"remote": upstream.url, "branch": upstream.branch, "commit": sha}
            run.earlier_pushes[repo.name] = where


def push(run: TaskRun) -> None:
    """Push every repository holding a commit of the task that its upstream lacks."""
    commits = run.commits
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
        run.pushed[repo.name] = {"remote": upstream.url, "branch": upstream.branch, "commit": head}


def published(run: TaskRun) -> Published:
    """What of the task the remote Flux reads can see, for the handler's cluster checks."""
    repo = run.tracker.repo_for(run.workspace.location.cwd)
    if repo is None:
        return Published(why_unchecked="the task's directory is not in a git repository")
    commits = run.commits
    upstream = repo.upstream()
    state = Published(
        root=repo.root,
        branch=upstream.branch if upstream else (repo.branch or ""),
        remote=upstream.url if upstream else "",
        committed=repo.name in commits,
        pushed=repo.name in run.pushed,
        includes=includes(repo, upstream),
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


def cluster_checks(run: TaskRun) -> None:
    """The handler's checks of what Flux made of the published change (reconcile)."""
    env = run.workspace.cluster_env()
    state = published(run)
    if state.sha or state.problem:
        run.revision = {
            "expected": state.revision,
            "remote": state.remote,
            "committed": state.committed,
            "pushed": state.pushed,
        }
        if state.problem:
            run.revision["problem"] = state.problem
    handler, context = run.handler, run.safety.kube_context

    def step() -> list[CheckResult]:
        return handler.after_publish(env, context, state)

    run.verification += handler_checks("cluster", step)
