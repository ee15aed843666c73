"""Deliver a verified task: commit its changes, push them, and check what the cluster
made of what the remote now holds. Flux reads the remote, never this work tree."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from pytest_infratask.core.handler import Published
from pytest_infratask.core.outcome import Status
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.shape import Revision
from pytest_infratask.core.taskrecord import Delivery, Where
from pytest_infratask.finish.verify import Finishing, handler_checks
from pytest_infratask.read.taskfile import TaskFileError, parse_task
from pytest_infratask.record.git import GitError, includes


def commit(run: Finishing) -> tuple[dict[str, str], list[CheckResult]]:
    """The commits made (repository name to commit), or the check that failed."""
    if not run.tracker.repos:
        return {}, [
            CheckResult(
                "commit",
                False,
                "nothing to commit: the task is not in a git repository",
                "run the task inside the repository it changes",
            )
        ]
    # The task file is the task's own: a hand-ticked box or this run's lines go in too.
    run.tracker.stage({}, with_task_file=True)
    completes = completed_by_commit(run)
    message = f"{run.task.id}: {run.task.title}\n\nInfratask-Task: {run.task.id}\n"
    if completes:  # never an empty trailer: a commit of progress lines completes none
        message += f"Infratask-Criteria: {','.join(map(str, completes))}\n"
    try:
        return dict(run.tracker.commit(run.mask(message))), []
    except GitError as exc:
        fix = "fix the problem and rerun with --infratask-commit"
        return {}, [CheckResult("commit", False, str(exc), fix)]


def completed_by_commit(run: Finishing) -> list[int]:
    """The criteria this commit completes: ticked now (in this run or earlier) and not
    ticked in the task file as HEAD holds it; every ticked one when HEAD has no copy."""
    ticked = {c.number for c in run.task.criteria if c.done}
    ticked |= {n for n, o in run.outcomes.items() if o.status is Status.PASSED}
    path = run.task.path.resolve()
    shown = subprocess.run(
        ["git", "-C", str(path.parent), "show", f"HEAD:./{path.name}"],
        capture_output=True,
        check=False,
    )
    if shown.returncode != 0:
        return sorted(ticked)
    try:
        before = parse_task(path, shown.stdout)
    except TaskFileError:
        return sorted(ticked)
    return sorted(ticked - {c.number for c in before.criteria if c.done})


def recall(run: Finishing) -> Delivery:
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
            return Delivery()
    commits: dict[str, str] = {}
    pushes: dict[str, Where] = {}
    for repo in repos.values():
        sha = repo.task_commit(run.task.id)
        if sha is None:
            continue
        commits[repo.name] = sha
        upstream = repo.upstream()
        if upstream is not None and repo.on_upstream(sha, upstream):
            pushes[repo.name] = {"remote": upstream.url, "branch": upstream.branch, "commit": sha}
    return Delivery(earlier_commits=commits, earlier_pushes=pushes)


def push(run: Finishing, commits: Mapping[str, str]) -> tuple[dict[str, Where], list[CheckResult]]:
    """Push every repository holding a commit of the task that its upstream lacks:
    where each went, and the checks that failed."""
    pushed: dict[str, Where] = {}
    failed: list[CheckResult] = []
    for repo in run.tracker.repos.values():
        sha = commits.get(repo.name) or repo.task_commit(run.task.id)
        if sha is None:
            continue
        upstream = repo.upstream()
        if upstream is None:
            failed.append(
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
            failed.append(
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
    return pushed, failed


def published(run: Finishing, commits: Mapping[str, str], pushed: Mapping[str, Where]) -> Published:
    """What of the task the remote Flux reads can see, for the handler's cluster checks."""
    repo = run.tracker.repo_for(run.workspace.location.cwd)
    if repo is None:
        return Published(why_unchecked="the task's directory is not in a git repository")
    upstream = repo.upstream()
    state = Published(
        root=repo.root,
        branch=upstream.branch if upstream else (repo.branch or ""),
        remote=upstream.url if upstream else "",
        committed=repo.name in commits,
        pushed=repo.name in pushed,
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


def cluster_checks(
    run: Finishing, commits: Mapping[str, str], pushed: Mapping[str, Where]
) -> tuple[Revision | None, list[CheckResult]]:
    """The handler's checks of what Flux made of the published change (reconcile), and
    the revision it should apply."""
    env = run.workspace.cluster_env()
    state = published(run, commits, pushed)
    revision = None
    if state.sha or state.problem:
        revision = Revision(
            expected=state.revision,
            remote=state.remote,
            committed=state.committed,
            pushed=state.pushed,
        )
        if state.problem:
            revision["problem"] = state.problem
    handler, context = run.handler, run.safety.kube_context

    def step() -> list[CheckResult]:
        return handler.after_publish(env, context, state)

    return revision, handler_checks("cluster", step)
