"""A criterion's commands under the locks: one attempt from a recorded starting state,
what it changed, the handler's check of it, and its outcome. An attempt that does
not pass is put back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, cast

from pytest_infratask.core.handler import Blocked, Step
from pytest_infratask.core.outcome import OUTPUT_CHARS, Outcome, Status, tail
from pytest_infratask.core.results import CommandResult
from pytest_infratask.guard.context import Target
from pytest_infratask.orchestrator.attempts import AttemptLog
from pytest_infratask.orchestrator.drafts import Drafts
from pytest_infratask.record.attempt import Start
from pytest_infratask.record.undo import Attempt, Undo
from pytest_infratask.run.process import OUTPUT_LIMIT
from pytest_infratask.run.retry import classify, could_not_start, criterion_retries, summary
from pytest_infratask.run.sandbox import CommandEnv


class Commands:
    """One attempt at a criterion's blocks, and the outcome it earns."""

    def __init__(self, drafts: Drafts, target: Target, env: CommandEnv) -> None:
        self.drafts, self.run, self.c = drafts, drafts.run, drafts.c
        self.target, self.env = target, env
        self.log = AttemptLog(self.run.undo, self.run.mask)

    def attributed(self) -> Outcome:
        """Run the blocks as one attempt with a recorded starting state; what changed in
        the task's repositories meanwhile is the criterion's (the locks keep every
        other run of the plugin out)."""
        run = self.run
        attempt = run.undo.begin(self.c.number, self.c.raw_line)
        try:
            outcome = self.attempted(attempt)
        except BaseException:
            run.undo.abandon(attempt)  # Ctrl-C, a signal turned exception, a crash
            raise
        if self.log.unrestored:
            run.undo.leave(attempt)  # nothing runs over it until a rollback succeeds
        else:
            run.undo.end(attempt)
        return replace(outcome, rolled_back=(*outcome.rolled_back, *self.log.undone))

    def attempted(self, attempt: Attempt) -> Outcome:
        env = self.env.with_values(attempt.environment)
        results, attempts = self.commands(env, Undoing(self.run.undo, self.log, attempt.starts))
        if results and not results[-1].ok:
            return self.failure(results, attempts, attempt)
        return self.checked(results, attempts, attempt)

    def checked(self, results: list[CommandResult], attempts: int, attempt: Attempt) -> Outcome:
        """The commands passed and what they changed is in the work tree (since
        ``attempt`` began): the handler's check, the clash with your edits, the record."""
        run, target = self.run, self.target
        tracker = run.tracker
        files = tracker.attribute(attempt.before, not attempt.writes) if tracker.repos else {}
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
            outcome = _check_blocked(self.drafts, target, exc, results, attempts)
            return self.drafts.recorded(self.put_back(outcome, attempt, attempts, "check blocked"))
        ours = (f for o in run.outcomes.values() for f in o.files)
        clashes = [] if run.settings.allow_dirty else run.tracker.conflicts(files, ours)
        if clashes and not problems:
            outcome = _dirty(self.drafts, target, results, clashes, attempts)
            why = "changed files with your edits"
            return self.drafts.recorded(self.put_back(outcome, attempt, attempts, why))
        if problems:
            outcome = _post_failure(self.drafts, target, results, problems, attempts, step)
            why = "post-condition failed"
            return self.drafts.recorded(self.put_back(outcome, attempt, attempts, why))
        run.undo.passed(attempt, files)
        return self.drafts.recorded(self.passed(results, attempts, step, files), self.c, files)

    def commands(self, env: CommandEnv, rewind: Rewind) -> tuple[list[CommandResult], int]:
        """Each block in turn, with its retries, until one fails; and the attempts made.
        A retry starts from the state its block started from: the failed try is put
        back first (``rewind``)."""
        c, run = self.c, self.run
        deadline = run.attempts.policy.deadline()
        retries = criterion_retries(c)
        total = (run.attempts.policy.retries if retries is None else retries) + 1
        results: list[CommandResult] = []
        attempts = 0
        for number, block in enumerate(c.commands, start=1):
            where = f"block {number}, " if len(c.commands) > 1 else ""
            start = rewind.first() if number == 1 or total == 1 else rewind.checkpoint()

            def before_retry(
                tries: int,
                result: CommandResult,
                start: object = start,
                where: str = where,
                done: int = attempts,
            ) -> str:
                line = f"{where}attempt {tries}/{total}: {summary(result)}"
                return rewind.back(start, done + tries, line)

            result, tries = run.attempts.run(
                block.script,
                self.target.cwd,
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
        self,
        outcome: Outcome,
        attempt: Attempt | Dropping,
        attempts: int,
        reason: str,
        line: str = "",
    ) -> Outcome:
        """A failed attempt, rolled back (in an overlay: dropped, ``Dropping``): the
        message says what was put back, so the note this rollback adds is left out of
        the outcome's notes (earlier ones stay)."""
        if isinstance(attempt, Attempt):
            files = self.log.roll_back(attempt.starts, attempts, reason, line or reason)
        else:
            files = attempt.dropped(attempts, reason, line or reason)
        earlier = self.log.lines[:-1]
        message, suggestions, short = outcome.message, outcome.suggestions, outcome.summary
        if files:
            message += f"; its changes were rolled back: {files}"
            short += "; its changes were rolled back" if short else ""
        if self.log.unrestored:
            message += "; could not roll back: " + "; ".join(self.log.unrestored)
            fix = "put those files back by hand (the diff in the report shows what changed)"
            suggestions = (*suggestions, fix)
        return replace(
            outcome,
            message=self.run.mask(message),
            summary=short,
            suggestions=suggestions,
            notes=(*outcome.notes, *earlier),
        )

    def post_check(self, step: Step) -> list[str]:
        """The handler's check of what the commands did; its secrets are masked from here on."""
        run = self.run
        try:
            return run.handler.after_criterion(step)
        finally:
            run.mask.add(run.handler.secrets)

    def passed(
        self,
        results: list[CommandResult],
        attempts: int,
        step: Step,
        files: dict[Path, list[str]],
    ) -> Outcome:
        run, mask = self.run, self.run.mask
        last = next((r.stdout for r in reversed(results) if r.stdout.strip()), "")
        return self.drafts.new(
            Status.PASSED,
            "passed",
            self.target,
            commands=[mask(r.script) for r in results],
            attempts=attempts,
            output=tail(mask(last), 3)[-OUTPUT_CHARS:],
            notes=[*self.log.lines, *step.notes, *_cut(results)],
            files=run.tracker.labels(files),
        )

    def failure(
        self, results: list[CommandResult], attempts: int, attempt: Attempt | Dropping
    ) -> Outcome:
        """The last block failed: timed out, blocked by a missing tool or permission,
        or failed (after its retries, unless a retry could not help). Blocked only
        when nothing ran: the first command of the first block could not start."""
        mask, result = self.run.mask, results[-1]
        nothing_ran = len(results) == 1 and attempts == 1 and could_not_start(result)
        failed = classify(result, attempts, nothing_ran, self.run.attempts.policy.timeout)
        outcome = self.drafts.new(
            failed.status,
            failed.message,
            self.target,
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
            outcome = self.put_back(outcome, attempt, attempts, "failed", line)
        return self.drafts.recorded(outcome)


class Rewind(Protocol):
    """How a retry starts from the state its block started from."""

    def first(self) -> object:
        """The state the criterion's first block starts from."""

    def checkpoint(self) -> object:
        """The state now (a later block's start)."""

    def back(self, start: object, attempt: int, line: str) -> str:
        """Put ``start`` back; note ``line``; say what was put back."""


class Dropping(Protocol):
    """An attempt run in an overlay, whose writes are dropped instead of rolled back."""

    def dropped(self, attempt: int, reason: str, line: str) -> str:
        """Note what is dropped; say which files."""


@dataclass
class Undoing:
    """Retries in the work tree itself: the failed try is rolled back (``record.undo``)."""

    undo: Undo
    log: AttemptLog
    starts: dict[Path, Start]

    def first(self) -> object:
        return self.starts

    def checkpoint(self) -> object:
        return self.undo.checkpoint()

    def back(self, start: object, attempt: int, line: str) -> str:
        return self.log.roll_back(cast("dict[Path, Start]", start), attempt, "retried", line)


def _check_blocked(
    drafts: Drafts, target: Target, exc: Blocked, results: list[CommandResult], attempts: int
) -> Outcome:
    """The handler could not check what the commands did: no retry fixes that."""
    mask = drafts.run.mask
    return drafts.new(
        Status.FAILED,
        f"the commands ran, then: {exc}",
        target,
        error=mask(str(exc)),
        attempts=attempts,
        commands=[mask(r.script) for r in results],
        suggestions=exc.suggestions,
        blocking=True,
    )


def _dirty(
    drafts: Drafts, target: Target, results: list[CommandResult], clashes: list[str], attempts: int
) -> Outcome:
    """The commands ran and changed files that held edits of yours from before the
    task started: they cannot be told apart from yours, so the attempt fails."""
    mask = drafts.run.mask
    names = ", ".join(clashes)
    return drafts.new(
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


def _post_failure(
    drafts: Drafts,
    target: Target,
    results: list[CommandResult],
    problems: list[str],
    attempts: int,
    step: Step,
) -> Outcome:
    mask = drafts.run.mask
    last = results[-1] if results else None
    count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
    return drafts.new(
        Status.FAILED,
        "post-condition failed: " + "; ".join(problems),
        target,
        error="; ".join(mask(p) for p in problems),
        summary=f"post-condition failed ({count})",
        commands=[mask(r.script) for r in results],
        command=mask(last.script) if last else "",
        # the commands' own output: the problems are the headline already
        output=tail(mask(last.stdout)) if last else "",
        error_output=tail(mask(last.stderr)) if last else "",
        attempts=attempts,
        notes=step.notes,
        suggestions=["fix the cause and rerun; the criterion stays open"],
    )


def _cut(results: list[CommandResult]) -> list[str]:
    """A note for each block whose output was longer than the part kept of it."""
    kept = OUTPUT_LIMIT // 1024
    return [
        f"block {n} printed more than {kept} KiB: only the end of its output was kept"
        for n, r in enumerate(results, start=1)
        if r.truncated
    ]
