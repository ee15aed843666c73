"""One criterion: decide whether it runs, guard it, run it under the locks, check what
it did, and record it. The steps read top to bottom in ``execute``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_infratask.clients.kubeconfig import KubeconfigError
from pytest_infratask.core.handler import Blocked, Step
from pytest_infratask.core.masking import Environment
from pytest_infratask.core.outcome import Outcome, RolledBack, Status, internal_error
from pytest_infratask.core.results import CommandResult
from pytest_infratask.core.task import Criterion
from pytest_infratask.guard.context import Target
from pytest_infratask.orchestrator.attempts import AttemptLog, diff_head
from pytest_infratask.plan.dependencies import DependencyState
from pytest_infratask.plan.dryrun import plan_line
from pytest_infratask.record import writeback
from pytest_infratask.record.attempt import Start
from pytest_infratask.record.undo import Attempt
from pytest_infratask.run.process import OUTPUT_LIMIT
from pytest_infratask.run.retry import classify, could_not_start, criterion_retries, summary
from pytest_infratask.util.locks import LockDirError, LockTimeout, lock_dir

if TYPE_CHECKING:
    from pytest_infratask.orchestrator.taskrun import TaskRun

TAIL_LINES = 20
OUTPUT_CHARS = 4000


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last lines, capped in characters too: one huge line must not flood reports."""
    return "\n".join(text.rstrip().splitlines()[-lines:])[-OUTPUT_CHARS * 4 :]


def execute(run: TaskRun, criterion: Criterion) -> Outcome:
    """The criterion's outcome, decided once per session and announced to the hooks."""
    previous = run.outcomes.get(criterion.number)
    if previous is not None and previous.status.failed:
        # Run again in the same session (a rerun plugin): the retries were had already.
        return previous
    step = _Criterion(run, criterion)
    try:
        outcome = step.decide()
    except Exception as exc:
        # A bug (in a handler or here), not a fact about the task: pytest shows its
        # traceback, and the task's contract records the criterion as failed.
        _settled(run, step.recorded(step.crashed(exc)))
        raise
    return _settled(run, outcome)


def _settled(run: TaskRun, outcome: Outcome) -> Outcome:
    run.outcomes[outcome.number] = outcome
    run.config.hook.pytest_infratask_criterion_result(
        task=run.task, outcome=outcome, config=run.config
    )
    return outcome


class _Criterion:
    """The steps of one criterion's run, sharing the task's run and the criterion."""

    def __init__(self, run: TaskRun, criterion: Criterion) -> None:
        self.run, self.c = run, criterion
        self.log = AttemptLog(run.undo, run.mask)

    def new(
        self, status: Status, message: str = "", target: Target | None = None, **kw: Any
    ) -> Outcome:
        """An outcome of this criterion, masked, located at ``target`` when given."""
        c, mask = self.c, self.run.mask
        if target is not None:
            kw.setdefault("cwd", str(target.cwd))
            kw.setdefault("repo", target.repo or "")
        return Outcome(c.number, c.text, status, mask(message), **kw)

    def crashed(self, exc: Exception) -> Outcome:
        why, suggestion = internal_error(exc, self.run.handler.name)
        return self.new(Status.FAILED, why, error=why, suggestions=[suggestion])

    def recorded(self, outcome: Outcome, tick: Criterion | None = None) -> Outcome:
        self.run.journal.record(self.c, outcome, tick)
        return outcome

    def blocked(
        self, why: str, suggestions: list[str], target: Target, record: bool = True
    ) -> Outcome:
        mask = self.run.mask
        outcome = self.new(
            Status.BLOCKED,
            f"BLOCKED: {why}",
            target,
            error=why,
            suggestions=[mask(s) for s in suggestions if s],
            command=mask("\n".join(target.scripts)),
        )
        return self.recorded(outcome) if record else outcome

    # -- whether it runs -------------------------------------------------------------
    def decide(self) -> Outcome:
        c, run = self.c, self.run
        if c.done:
            return self.new(Status.DONE, "already complete")
        if not c.open:
            return self.new(Status.SKIPPED, f"box [{c.box}] is neither open nor done; left as is")
        if c.manual:
            return self.new(Status.MANUAL, "manual criterion: no command to run; left open")
        held = self.held_by_others()
        if held is not None:
            return held
        target = run.workspace.target(c, c.blocks)
        problem = run.workspace.location.problem
        if problem:
            return self.blocked(problem, ["fix `repo` in the task's frontmatter"], target)
        waiting = run.dependencies.unsatisfied()
        if waiting:
            return self.blocked(
                "; ".join(s.describe() for s in waiting), _dependency_fixes(waiting), target
            )
        return self.guarded(target)

    def held_by_others(self) -> Outcome | None:
        """Blocked by a ``needs`` criterion, or held back by a blocking failure before it."""
        c, run = self.c, self.run
        if c.needs is not None:
            return self.needs(c.needs)
        if c.independent or run.settings.dry_run:
            # A dry run shows every criterion's checks, not only the first blocked one's.
            return None
        stopping = run.outcomes.stopping(c.number)
        if stopping is not None:
            number, state = stopping
            return self.new(
                Status.SKIPPED, f"blocked by #{number}: {state.message}", held_back=True
            )
        return None

    def needs(self, numbers: tuple[int, ...]) -> Outcome | None:
        c, run = self.c, self.run
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
            outcome = self.new(
                Status.BLOCKED, f"BLOCKED: {why}", error=why, suggestions=[fix], local=True
            )
            return self.recorded(outcome)
        return None

    # -- the safety checks -----------------------------------------------------------
    def guarded(self, target: Target) -> Outcome:
        run = self.run
        checks = run.safety.run(target)
        failed = next((r for r in checks if not r.ok), None)
        if run.settings.dry_run:
            return self.new(
                Status.DRY_RUN if failed is None else Status.BLOCKED,
                plan_line(target, [r.describe() for r in checks], run.mask),
                target,
                commands=[run.mask(s) for s in target.scripts],
                suggestions=[failed.remediation] if failed else [],
                error=failed.message if failed else "",
            )
        if failed is not None:
            return self.blocked(f"{failed.name}: {failed.message}", [failed.remediation], target)
        return self.locked(target)

    # -- under the locks -------------------------------------------------------------
    def locked(self, target: Target) -> Outcome:
        run = self.run
        try:
            lock_dir()
        except LockDirError as exc:
            return self.blocked(str(exc), [], target, record=False)
        try:
            env = run.workspace.command_env()
        except KubeconfigError as exc:
            fix = "install kubectl, or set `allow_direct_apply: <reason>` in the frontmatter"
            return self.blocked(f"kube context: {exc}", [fix], target)
        run.track(target.cwd)
        wait = run.settings.lock_wait
        start = len(run.waits)
        try:
            # Repositories first, then the task file: every run takes them in this
            # order, so two runs never wait for each other in a circle.
            with (
                run.tracker.turns(wait, run.waiting_for, keep=run.settings.commit),
                writeback.lock(run.task.path).holding(wait, run.waiting_for),
            ):
                unsettled = run.undo.take_unsettled()
                # Decided under the lock that serialises the run: a concurrent run that
                # ticked the criterion first wins, and this one skips it.
                if unsettled:
                    outcome = self.blocked(
                        "an interrupted attempt could not be rolled back: " + "; ".join(unsettled),
                        ["put those files back by hand (git status, git diff), then rerun"],
                        target,
                    )
                elif run.settings.writeback and writeback.ticked_on_disk(
                    run.task.path, self.c, run.task.layout
                ):
                    outcome = self.new(Status.DONE, "already complete (ticked by another run)")
                else:
                    outcome = self.attributed(target, env)
        except LockTimeout as exc:
            return self.blocked(
                f"{exc} (infratask_lock_wait); the command did not run",
                [
                    f"let the run holding {exc.what} finish, or end it, then rerun",
                    "or raise infratask_lock_wait in the ini file",
                ],
                target,
                record=False,
            )
        outcome.notes += run.waits[start:]
        for found in run.undo.take_recovered():
            outcome.notes.append(run.mask(found.describe()))
            if found.rollback is not None and found.rollback.files:
                diff = diff_head(run.mask(found.rollback.diff))
                interrupted = RolledBack(
                    0, f"interrupted: {found.owner}", found.rollback.files, diff
                )
                outcome.rolled_back.insert(0, interrupted)
        return outcome

    # -- the commands, and what they changed ----------------------------------------
    def attributed(self, target: Target, env: Environment) -> Outcome:
        """Run the blocks as one attempt with a recorded starting state; what changed in
        the task's repositories meanwhile is the criterion's (the locks keep every
        other run of the plugin out). An attempt that does not pass is put back."""
        run = self.run
        attempt = run.undo.begin(self.c.number, self.c.raw_line)
        try:
            outcome = self.attempted(target, env, attempt)
        except BaseException:
            run.undo.abandon(attempt)  # Ctrl-C, a signal turned exception, a crash
            raise
        if self.log.unrestored:
            run.undo.leave(attempt)  # nothing runs over it until a rollback succeeds
        else:
            run.undo.end(attempt)
        outcome.rolled_back += self.log.undone
        return outcome

    def attempted(self, target: Target, env: Environment, attempt: Attempt) -> Outcome:
        run = self.run
        env = env.with_values(attempt.environment)
        results, attempts = self.commands(target, env, attempt)
        if results and not results[-1].ok:
            return self.failure(target, results, attempts, attempt)
        files = run.tracker.attribute(attempt.before) if run.tracker.repos else {}
        step = Step(
            self.c,
            target.cwd,
            run.workspace.cluster_env(),  # the handler's own calls keep the pinned credentials
            results,
            kube_context=run.safety.kube_context,
            files=[root / p for root, ps in files.items() for p in ps],
        )
        try:
            problems = self.post_check(step)
        except Blocked as exc:
            outcome = self.new(
                Status.FAILED,
                f"the commands ran, then: {exc}",
                target,
                error=run.mask(str(exc)),
                attempts=attempts,
                commands=[run.mask(r.script) for r in results],
                suggestions=exc.suggestions,
                blocking=True,
            )
            return self.recorded(self.put_back(outcome, attempt, attempts, "check blocked"))
        ours = (f for o in run.outcomes.values() for f in o.files)
        clashes = [] if run.settings.allow_dirty else run.tracker.conflicts(files, ours)
        if clashes and not problems:
            outcome = self.dirty(target, results, clashes, attempts)
            return self.recorded(
                self.put_back(outcome, attempt, attempts, "changed files with your edits")
            )
        if problems:
            outcome = self.post_failure(target, results, problems, attempts, step)
            return self.recorded(self.put_back(outcome, attempt, attempts, "post-condition failed"))
        run.undo.passed(attempt, files)
        return self.passed(target, results, attempts, step, files)

    def commands(
        self, target: Target, env: Environment, attempt: Attempt
    ) -> tuple[list[CommandResult], int]:
        """Each block in turn, with its retries, until one fails; and the attempts made.
        A retry starts from the state its block started from: the failed try is put
        back first."""
        c, run = self.c, self.run
        deadline = run.attempts.policy.deadline()
        retries = criterion_retries(c)
        total = (run.attempts.policy.retries if retries is None else retries) + 1
        results: list[CommandResult] = []
        attempts = 0
        for number, block in enumerate(c.commands, start=1):
            where = f"block {number}, " if len(c.commands) > 1 else ""
            start = attempt.starts if number == 1 or total == 1 else run.undo.checkpoint()

            def before_retry(
                tries: int,
                result: CommandResult,
                start: dict[Path, Start] = start,
                where: str = where,
                done: int = attempts,
            ) -> str:
                line = f"{where}attempt {tries}/{total}: {summary(result)}"
                return self.log.roll_back(start, done + tries, "retried", line)

            result, tries = run.attempts.run(
                block.script,
                target.cwd,
                env,
                deadline,
                retries,
                label=f"{run.task.id} #{c.number}",
                service=c.service,
                before_retry=before_retry,
            )
            attempts += tries
            results.append(result)
            if not result.ok or tries > 1:
                verdict = summary(result) if not result.ok else "passed"
                self.log.note(f"{where}attempt {tries}/{total}: {verdict}")
            if not result.ok:
                break
        return results, attempts

    def put_back(
        self, outcome: Outcome, attempt: Attempt, attempts: int, reason: str, line: str = ""
    ) -> Outcome:
        """A failed attempt, rolled back: the message says what was put back."""
        files = self.log.roll_back(attempt.starts, attempts, reason, line or reason)
        if files:
            outcome.message += f"; its changes were rolled back: {files}"
        if self.log.unrestored:
            outcome.message += "; could not roll back: " + "; ".join(self.log.unrestored)
            outcome.suggestions.append(
                "put those files back by hand (the diff in the report shows what changed)"
            )
        outcome.message = self.run.mask(outcome.message)
        outcome.notes += self.log.lines
        return outcome

    def post_check(self, step: Step) -> list[str]:
        """The handler's check of what the commands did; its secrets are masked from here on."""
        run = self.run
        try:
            return run.handler.after_criterion(step)
        finally:
            run.mask.add(run.handler.secrets)

    def dirty(
        self, target: Target, results: list[CommandResult], clashes: list[str], attempts: int
    ) -> Outcome:
        """The commands ran and changed files that held edits of yours from before the
        task started: they cannot be told apart from yours, so the attempt fails."""
        mask = self.run.mask
        names = ", ".join(clashes)
        return self.new(
            Status.FAILED,
            f"the commands ran and changed {names}, which held your uncommitted edits "
            "(kept as they were)",
            target,
            error="dirty files: " + names,
            commands=[mask(r.script) for r in results],
            attempts=attempts,
            blocking=True,
            suggestions=[
                f"commit or stash your changes to {names} and rerun",
                "or set infratask_allow_dirty = true if mixing them is intended",
            ],
        )

    def post_failure(
        self,
        target: Target,
        results: list[CommandResult],
        problems: list[str],
        attempts: int,
        step: Step,
    ) -> Outcome:
        mask = self.run.mask
        return self.new(
            Status.FAILED,
            "post-condition failed: " + "; ".join(problems),
            target,
            error="; ".join(mask(p) for p in problems),
            commands=[mask(r.script) for r in results],
            command=mask(results[-1].script) if results else "",
            error_output="\n".join(mask(p) for p in problems),
            attempts=attempts,
            notes=step.notes,
            suggestions=["fix the cause and rerun; the criterion stays open"],
        )

    def passed(
        self,
        target: Target,
        results: list[CommandResult],
        attempts: int,
        step: Step,
        files: dict[Path, list[str]],
    ) -> Outcome:
        run, mask = self.run, self.run.mask
        last = next((r.stdout for r in reversed(results) if r.stdout.strip()), "")
        outcome = self.new(
            Status.PASSED,
            "passed",
            target,
            commands=[mask(r.script) for r in results],
            attempts=attempts,
            output=tail(mask(last), 3)[-OUTPUT_CHARS:],
            notes=[*self.log.lines, *step.notes, *_cut(results)],
            files=run.tracker.labels(files),
        )
        self.recorded(outcome, self.c)
        if outcome.status is Status.PASSED:
            problems = run.tracker.stage(files, with_task_file=run.journal.written)
            if problems:
                # A change left out of the index is left out of the commit: a failure.
                outcome.status = Status.FAILED
                outcome.message = mask("passed, but staging failed: " + "; ".join(problems))
                outcome.error = outcome.message
                outcome.suggestions.append("fix the repository (git status) and rerun")
        return outcome

    def failure(
        self, target: Target, results: list[CommandResult], attempts: int, attempt: Attempt
    ) -> Outcome:
        """The last block failed: timed out, blocked by a missing tool or permission,
        or failed (after its retries, unless a retry could not help). Blocked only
        when nothing ran: the first command of the first block could not start."""
        mask, result = self.run.mask, results[-1]
        nothing_ran = len(results) == 1 and attempts == 1 and could_not_start(result)
        failed = classify(result, attempts, nothing_ran, self.run.attempts.policy.timeout)
        outcome = self.new(
            failed.status,
            failed.message,
            target,
            error=failed.error,
            suggestions=failed.suggestions,
            command=mask(result.script),
            commands=[mask(r.script) for r in results],
            attempts=attempts,
            exit_code=result.exit_code,
            # masked before the cut, so a cut never leaves part of a secret
            output=tail(mask(result.stdout)),
            error_output=tail(mask(result.stderr)),
            notes=_cut(results),
            blocking=failed.blocking,
        )
        if not nothing_ran:
            line = self.log.lines.pop() if self.log.lines else summary(result)
            self.put_back(outcome, attempt, attempts, "failed", line)
        return self.recorded(outcome)


def _cut(results: list[CommandResult]) -> list[str]:
    """A note for each block whose output was longer than the part kept of it."""
    kept = OUTPUT_LIMIT // 1024
    return [
        f"block {n} printed more than {kept} KiB: only the end of its output was kept"
        for n, r in enumerate(results, start=1)
        if r.truncated
    ]


def _dependency_fixes(waiting: list[DependencyState]) -> list[str]:
    return [
        f"finish {s.task_id} first"
        if s.found
        else f"add {s.task_id}.md beside the task or to ini infratask_task_dirs"
        for s in waiting
    ]
