"""One criterion through the stages: whether it runs (plan), its safety checks
(guard), its commands under the locks (run, record), and the hooks told. The steps
read top to bottom from ``execute``."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from pytest_infratask.clients.kubeconfig import KubeconfigError
from pytest_infratask.core.outcome import Outcome, RolledBack, Status
from pytest_infratask.core.task import Criterion
from pytest_infratask.guard.context import Target
from pytest_infratask.orchestrator.attempts import diff_head
from pytest_infratask.orchestrator.commands import Commands
from pytest_infratask.orchestrator.drafts import Drafts
from pytest_infratask.orchestrator.overlaid import attempted as overlay_attempt
from pytest_infratask.orchestrator.overlaid import eligible, ready
from pytest_infratask.orchestrator.taskrun import TaskRun
from pytest_infratask.plan.dependencies import DependencyState
from pytest_infratask.plan.dryrun import plan_line
from pytest_infratask.record import writeback
from pytest_infratask.util.locks import LockDirError, LockTimeout, lock_dir


def execute(run: TaskRun, criterion: Criterion) -> Outcome:
    """The criterion's outcome, decided once per session and announced to the hooks."""
    previous = run.outcomes.get(criterion.number)
    if previous is not None and previous.status.failed:
        # Run again in the same session (a rerun plugin): the retries were had already.
        return previous
    drafts = Drafts(run, criterion)
    try:
        outcome = _whether_it_runs(drafts)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM/SIGHUP turned into one
        run.interrupted = criterion.number
        raise
    except Exception as exc:
        # A bug (in a handler or here), not a fact about the task: pytest shows its
        # traceback, and the task's contract records the criterion as failed.
        _settled(run, drafts.recorded(drafts.crashed(exc)))
        raise
    return _settled(run, outcome)


def _settled(run: TaskRun, outcome: Outcome) -> Outcome:
    run.outcomes[outcome.number] = outcome
    run.config.hook.pytest_infratask_criterion_result(
        task=run.task, outcome=outcome, config=run.config
    )
    return outcome


def _whether_it_runs(drafts: Drafts) -> Outcome:
    c, run = drafts.c, drafts.run
    if c.done:
        return drafts.new(Status.DONE, "already complete")
    if not c.open:
        return drafts.new(Status.SKIPPED, f"box [{c.box}] is neither open nor done; left as is")
    if c.manual:
        return drafts.new(Status.MANUAL, "manual criterion: no command to run; left open")
    held = _held_by_others(drafts)
    if held is not None:
        return held
    target = run.workspace.target(c, c.blocks)
    problem = run.workspace.location.problem
    if problem:
        return drafts.blocked(problem, ["fix `repo` in the task's frontmatter"], target)
    waiting = run.dependencies.unsatisfied()
    if waiting:
        why = "; ".join(s.describe() for s in waiting)
        return drafts.blocked(why, _dependency_fixes(waiting), target)
    return _guarded(drafts, target)


def _held_by_others(drafts: Drafts) -> Outcome | None:
    """Blocked by a ``needs`` criterion, or held back by a blocking failure before it."""
    c, run = drafts.c, drafts.run
    if c.needs is not None:
        return _needs(drafts, c.needs)
    if c.independent or run.settings.dry_run:
        # A dry run shows every criterion's checks, not only the first blocked one's.
        return None
    stopping = run.outcomes.stopping(c.number)
    if stopping is not None:
        number, state = stopping
        why = f"blocked by #{number}: {state.message}"
        return drafts.new(Status.SKIPPED, why, held_back=True)
    return None


def _needs(drafts: Drafts, numbers: tuple[int, ...]) -> Outcome | None:
    c, run = drafts.c, drafts.run
    for number in numbers:
        needed = run.task.criterion(number)
        state = run.outcomes.get(number)
        if needed is None:
            why = f"needs #{number}, which the task does not have"
            fix = f"fix the `<!-- needs: ... -->` comment of #{c.number}"
        elif needed.done or (state and state.status.satisfies):
            continue
        else:
            status = state.status.value if state else "open"
            why = f"needs #{number} ({needed.text}), which is {status}"
            fix = f"complete #{number} first"
        outcome = drafts.new(
            Status.BLOCKED, f"BLOCKED: {why}", error=why, suggestions=[fix], local=True
        )
        return drafts.recorded(outcome)
    return None


def _guarded(drafts: Drafts, target: Target) -> Outcome:
    run = drafts.run
    checks = run.safety.run(target)
    failed = next((r for r in checks if not r.ok), None)
    if run.settings.dry_run:
        return drafts.new(
            Status.DRY_RUN if failed is None else Status.BLOCKED,
            plan_line(
                target.scripts, target.cwd, target.repo, [r.describe() for r in checks], run.mask
            ),
            target,
            commands=[run.mask(s) for s in target.scripts],
            suggestions=[failed.remediation] if failed else [],
            error=failed.message if failed else "",
        )
    if failed is not None:
        return drafts.blocked(f"{failed.name}: {failed.message}", [failed.remediation], target)
    return _locked(drafts, target)


def _locked(drafts: Drafts, target: Target) -> Outcome:
    """The commands under the locks: repositories first, then the task file. Every run
    takes them in this order, so two runs never wait for each other in a circle."""
    run = drafts.run
    try:
        lock_dir()
    except LockDirError as exc:
        return drafts.blocked(str(exc), [], target, record=False)
    try:
        env = run.workspace.command_env()
    except KubeconfigError as exc:
        fix = "install kubectl, or set `allow_direct_apply: <reason>` in the frontmatter"
        return drafts.blocked(f"kube context: {exc}", [fix], target)
    run.track(target.cwd)
    if env.sandbox is not None:  # its server starts beside the probes and locks to come
        env.sandbox.served(layered=eligible(run, drafts.c))
    wait = run.settings.lock_wait
    start = len(run.waits)
    overlaid = ready(run, env, drafts.c)
    try:
        with (
            # in overlays the repositories are held only around the attempt's start and
            # its apply (``orchestrator.overlaid``)
            contextlib.nullcontext()
            if overlaid
            else run.tracker.turns(wait, run.waiting_for, keep=run.settings.commit),
            writeback.lock(run.task.path).holding(wait, run.waiting_for),
        ):
            commands = Commands(drafts, target, env)
            outcome = _under_the_locks(drafts, target, commands, overlaid)
    except LockTimeout as exc:
        return drafts.blocked(
            f"{exc} (infratask_lock_wait); the command did not run",
            [
                f"let the run holding {exc.what} finish, or end it, then rerun",
                "or raise infratask_lock_wait in the ini file",
            ],
            target,
            record=False,
        )
    return _with_what_the_locks_found(run, outcome, run.waits[start:])


def _under_the_locks(drafts: Drafts, target: Target, commands: Commands, overlaid: bool) -> Outcome:
    """Decided under the lock that serialises the run: a concurrent run that ticked the
    criterion first wins, and this one skips it."""
    run = drafts.run
    # in an overlay an interrupted attempt is settled at the attempt's start, under the
    # repositories' lock (``orchestrator.overlaid``)
    unsettled = [] if overlaid else run.undo.take_unsettled()
    if unsettled:
        return drafts.blocked(
            "an interrupted attempt could not be rolled back: " + "; ".join(unsettled),
            ["put those files back by hand (git status, git diff), then rerun"],
            target,
        )
    if run.settings.writeback and writeback.ticked_on_disk(
        run.task.path, drafts.c, run.task.layout
    ):
        return drafts.new(Status.DONE, "already complete (ticked by another run)")
    run.journal.running()  # --infratask-status: the board shows the task in progress
    return overlay_attempt(commands) if overlaid else commands.attributed()


def _with_what_the_locks_found(run: TaskRun, outcome: Outcome, waits: list[str]) -> Outcome:
    """The outcome's notes gain whose locks held it up and the interrupted attempts of
    earlier runs that were found and put back first (listed before its own)."""
    notes = [*outcome.notes, *waits]
    interrupted: list[RolledBack] = []
    for found in run.undo.take_recovered():
        notes.append(run.mask(found.describe()))
        if found.rollback is not None and found.rollback.files:
            diff = diff_head(run.mask(found.rollback.diff))
            why = f"interrupted: {found.owner}"
            interrupted.insert(0, RolledBack(0, why, tuple(found.rollback.files), diff))
    return replace(outcome, notes=tuple(notes), rolled_back=(*interrupted, *outcome.rolled_back))


def _dependency_fixes(waiting: list[DependencyState]) -> list[str]:
    return [
        f"finish {s.task_id} first"
        if s.found
        else f"add {s.task_id}.md beside the task or to ini infratask_task_dirs"
        for s in waiting
    ]
