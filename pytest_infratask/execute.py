"""Run a task's criteria: guard, run, retry, post-check, record.

One ``TaskRun`` per task file (the module-scoped ``infratask_run`` fixture),
so state such as "which criterion blocked the rest" lives exactly as long as
the task's items.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from . import writeback
from .gitops import Tracker
from .guard import CheckResult, SafetyContext, Target
from .handlers.base import Blocked, Handler, Step
from .locks import LockDirError, LockTimeout, lock_dir
from .masking import Environment, Masker, github_add_mask
from .model import CodeBlock, Criterion, Task
from .options import Settings
from .outcome import Outcome, Outcomes, Status, blocking_reason
from .pathenv import with_scripts_dir
from .plan import DependencyState, dependency_states
from .retry import criterion_retries, deterministic
from .run import CommandResult, run_script

TAIL_LINES = 20
OUTPUT_CHARS = 4000


class CriterionFailed(Exception):
    """Raised by a criterion item; its text is the whole failure report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last lines, capped in characters too: one huge line must not flood reports."""
    return "\n".join(text.rstrip().splitlines()[-lines:])[-OUTPUT_CHARS * 4 :]


@dataclass
class Location:
    cwd: Path
    repo: str | None
    problem: str = ""


@dataclass
class TaskRun:
    task: Task
    task_type: str
    handler: Handler
    safety: SafetyContext
    settings: Settings
    config: pytest.Config
    outcomes: Outcomes = field(default_factory=Outcomes)
    entries: list[str] = field(default_factory=list)
    verification: list[CheckResult] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    written: bool = False
    tracker: Tracker = field(init=False)
    _dependencies: list[DependencyState] | None = None
    _kube: Any = None

    def __post_init__(self) -> None:
        self.tracker = Tracker(
            self.task.id, self.task.path, ignored=own_outputs(self.config, self.settings.report_dir)
        )
        # The handler's values win: it checks what it exports (e.g. REGISTRY_URL).
        self.base_env = Environment(
            {**with_scripts_dir(os.environ), **self.task.env, **self.handler.environment()}
        )
        names = (*self.settings.secret_vars, *_names(self.task.meta.get("secrets")))
        self.mask = Masker.for_run(self.base_env, names)
        self.waits: list[str] = []
        announce(self.config, github_add_mask(self.mask, _ANNOUNCED))

    # -- where and with what -------------------------------------------------
    @property
    def retries(self) -> int:
        value = _number(self.task.meta.get("retries"))
        return int(value) if value is not None and value >= 0 else self.settings.retries

    @property
    def retry_delay(self) -> float:
        from .durations import DurationError, parse_duration

        try:
            value = parse_duration(self.task.meta.get("retry_delay"), "retry_delay")
        except DurationError:
            value = None  # refused at collection already
        return value if value is not None else self.settings.retry_delay

    @property
    def timeout(self) -> float | None:
        return self.task.timeout or self.settings.timeout

    @cached_property
    def location(self) -> Location:
        """Where commands run: fixed by the frontmatter and ini for the whole task."""
        base = self.task.path.parent
        repo = self.task.meta.get("repo")
        if repo:
            known = self.settings.repos.get(str(repo))
            if known is None:
                return Location(
                    base,
                    str(repo),
                    f"unknown repo {repo!r}: add it to ini infratask_repos as '{repo} = <path>'",
                )
            base = known
        workdir = self.task.workdir
        cwd = (base / workdir) if workdir else base
        return Location(Path(os.path.normpath(cwd.absolute())), str(repo) if repo else None)

    @property
    def kube(self) -> Any:
        if self._kube is None:
            from .kubeconfig import PrivateKube

            read_only = not self.safety.allow_direct_apply
            self._kube = PrivateKube(self.safety.kube_context, read_only, self.base_env)
        return self._kube

    def env_for(self, target: Target) -> dict[str, str]:
        """The plugin's own environment for cluster calls: the pinned context only
        (none at all when the task pins none), never the user's kubeconfig."""
        return Environment({**self.base_env, "KUBECONFIG": str(self.kube.direct())})

    def command_env(self, target: Target) -> dict[str, str]:
        """What task commands run with: like ``env_for``, through the read-only proxy
        unless the task sets ``allow_direct_apply``. Raises ``KubeconfigError``."""
        return Environment({**self.base_env, "KUBECONFIG": str(self.kube.for_commands())})

    def target(self, criterion: Criterion | None, blocks: tuple[CodeBlock, ...]) -> Target:
        from .guard import reaches_cluster

        where = self.location
        scripts = tuple(b.script for b in blocks if b.is_command)
        validate = tuple(Path(p) for p in _names(self.task.meta.get("syntax_check")))
        return Target(
            task=self.task,
            task_type=self.task_type,
            criterion=criterion,
            cwd=where.cwd,
            repo=where.repo,
            scripts=scripts,
            uses_cluster=self.handler.uses_cluster(criterion) or reaches_cluster(scripts),
            validate_files=validate,
            env=self.base_env,
        )

    # -- one criterion -------------------------------------------------------
    def execute(self, criterion: Criterion) -> Outcome:
        previous = self.outcomes.get(criterion.number)
        if previous is not None and previous.status in (Status.FAILED, Status.BLOCKED):
            # Run again in the same session (a rerun plugin): the retries were had already.
            return previous
        outcome = self._decide(criterion)
        self.outcomes[criterion.number] = outcome
        self.config.hook.pytest_infratask_criterion_result(
            task=self.task, outcome=outcome, config=self.config
        )
        return outcome

    def _new(self, criterion: Criterion, status: Status, message: str = "", **kw: Any) -> Outcome:
        return Outcome(criterion.number, criterion.text, status, self.mask(message), **kw)

    def _decide(self, c: Criterion) -> Outcome:
        if c.done:
            return self._new(c, Status.DONE, "already complete")
        if not c.open:
            return self._new(
                c, Status.SKIPPED, f"box [{c.box}] is neither open nor done; left as is"
            )
        if c.manual:
            return self._new(c, Status.MANUAL, "manual criterion: no command to run; left open")
        blocker = self._blocked_by(c)
        if blocker is not None:
            return blocker
        target = self.target(c, c.blocks)
        where = self.location
        if where.problem:
            return self._blocked(c, where.problem, ["fix `repo` in the task's frontmatter"], target)
        waiting = self._waiting()
        if waiting:
            return self._blocked(
                c,
                "; ".join(s.describe() for s in waiting),
                [
                    f"finish {s.task_id} first"
                    if s.found
                    else f"add {s.task_id}.md beside the task or to ini infratask_task_dirs"
                    for s in waiting
                ],
                target,
            )
        checks = self.safety.run(target)
        failed = next((r for r in checks if not r.ok), None)
        if self.settings.dry_run:
            return self._new(
                c,
                Status.DRY_RUN if failed is None else Status.BLOCKED,
                plan_line(target, [r.describe() for r in checks], self.mask),
                cwd=str(target.cwd),
                repo=target.repo or "",
                commands=[self.mask(s) for s in target.scripts],
                suggestions=[failed.remediation] if failed else [],
                error=failed.message if failed else "",
            )
        if failed is not None:
            return self._blocked(
                c, f"{failed.name}: {failed.message}", [failed.remediation], target
            )
        return self._run(c, target)

    def _blocked_by(self, c: Criterion) -> Outcome | None:
        if c.needs is not None:
            for number in c.needs:
                needed = self.task.criterion(number)
                state = self.outcomes.get(number)
                if needed is None:
                    why = f"needs #{number}, which the task does not have"
                    fix = f"fix the `<!-- needs: ... -->` comment of #{c.number}"
                elif needed.done or (state and state.status in (Status.PASSED, Status.DRY_RUN)):
                    continue
                else:
                    status = state.status.value if state else "open"
                    why = f"needs #{number} ({needed.text}), which is {status}"
                    fix = f"complete #{number} first"
                outcome = self._new(
                    c, Status.BLOCKED, f"BLOCKED: {why}", error=why, suggestions=[fix], local=True
                )
                self._record(c, outcome, None)
                return outcome
            return None
        if c.independent:
            return None
        if self.settings.dry_run:
            return None  # show every criterion's checks, not only the first blocked one's
        stopping = self.outcomes.stopping(c.number)
        if stopping is not None:
            number, state = stopping
            return self._new(
                c, Status.SKIPPED, f"blocked by #{number}: {state.message}", held_back=True
            )
        return None

    def _waiting(self) -> list[DependencyState]:
        """Unsatisfied dependencies; under xdist, first wait for those running elsewhere."""
        if self._dependencies is None:
            from .workers import wait_for

            def check() -> list[DependencyState]:
                states = dependency_states(self.task, self.settings.task_dirs)
                return [s for s in states if not s.satisfied and not self._done_here(s)]

            running = [s.path for s in check() if s.path is not None and s.found]
            self._dependencies = wait_for(
                self.config,
                running,
                check,
                lambda pending: not pending,
                timeout=self.settings.dependency_wait,
            )
        return self._dependencies

    def _done_here(self, state: DependencyState) -> bool:
        """A dependency that finished in this session without writing back (dry run,
        --infratask-no-writeback) counts as done when nothing of it failed."""
        from .report import contracts

        if state.path is None or self.settings.writeback:
            return False
        contract = contracts(self.config).get(str(state.path))
        if contract is None:
            return False
        counts = contract["criteria"]
        if counts["failed"]:
            return False
        ran = {
            r["number"]
            for r in contract["criteria_results"]
            if r["status"] in (Status.PASSED.value, Status.DRY_RUN.value, Status.DONE.value)
        }
        return bool(counts["remaining"] == 0 or len(ran) == counts["total"])

    def _blocked(
        self,
        c: Criterion,
        why: str,
        suggestions: list[str],
        target: Target,
        record: bool = True,
    ) -> Outcome:
        outcome = self._new(
            c,
            Status.BLOCKED,
            f"BLOCKED: {why}",
            error=why,
            cwd=str(target.cwd),
            repo=target.repo or "",
            suggestions=[self.mask(s) for s in suggestions if s],
            command=self.mask("\n".join(target.scripts)),
        )
        if record:
            self._record(c, outcome, None)
        return outcome

    def _track(self, cwd: Path) -> None:
        if not self.settings.dry_run:
            names = {path.resolve(): name for name, path in self.settings.repos.items()}
            self.tracker.track((self.task.path.parent, cwd), names)

    def _run(self, c: Criterion, target: Target) -> Outcome:
        try:
            lock_dir()
        except LockDirError as exc:
            return self._blocked(c, str(exc), [], target, record=False)
        from .kubeconfig import KubeconfigError

        try:
            env = self.command_env(target)
        except KubeconfigError as exc:
            fix = "install kubectl, or set `allow_direct_apply: <reason>` in the frontmatter"
            return self._blocked(c, f"kube context: {exc}", [fix], target)
        self._track(target.cwd)
        wait = self.settings.lock_wait
        start = len(self.waits)
        try:
            # Repositories first, then the task file: every run takes them in this
            # order, so two runs never wait for each other in a circle.
            with (
                self.tracker.turns(wait, self.waiting_for, keep=self.settings.commit),
                writeback.lock(self.task.path).holding(wait, self.waiting_for),
            ):
                # Decided under the lock that serialises the run: a concurrent run that
                # ticked the criterion first wins, and this one skips it.
                if self.settings.writeback and writeback.ticked_on_disk(
                    self.task.path, c, self.task.layout
                ):
                    outcome = self._new(c, Status.DONE, "already complete (ticked by another run)")
                else:
                    outcome = self._run_attributed(c, target, env)
        except LockTimeout as exc:
            return self._blocked(
                c,
                f"{exc} (infratask_lock_wait); the command did not run",
                [
                    f"let the run holding {exc.what} finish, or end it, then rerun",
                    "or raise infratask_lock_wait in the ini file",
                ],
                target,
                record=False,
            )
        outcome.notes += self.waits[start:]
        return outcome

    def waiting_for(self, message: str) -> None:
        """Tell the person watching (and the criterion's notes) whose lock holds us up."""
        self.waits.append(message)
        announce(self.config, [f"infratask: {self.task.id}: {message}"])

    def _run_attributed(self, c: Criterion, target: Target, env: dict[str, str]) -> Outcome:
        before = self.tracker.snapshots()
        deadline = time.monotonic() + self.timeout if self.timeout else None
        results: list[CommandResult] = []
        attempts = 0
        for block in c.commands:
            result, tries = self._attempts(
                block.script,
                target.cwd,
                env,
                deadline,
                criterion_retries(c),
                label=f"{self.task.id} #{c.number}",
                service=c.service,
            )
            attempts += tries
            results.append(result)
            if not result.ok:
                return self._failure(c, target, result, results, attempts)
        files = self.tracker.attribute(before) if self.tracker.repos else {}
        step = Step(
            c,
            target.cwd,
            self.env_for(target),  # the handler's own calls keep the pinned credentials
            results,
            kube_context=self.safety.kube_context,
            files=[root / p for root, ps in files.items() for p in ps],
        )
        try:
            try:
                problems = self.handler.after_criterion(step)
            finally:
                self.mask.add(getattr(self.handler, "secrets", ()))
        except (ValueError, LookupError, TypeError) as exc:
            # a handler tripping over bad task data: a failure with a message, no traceback
            problems = [f"{self.handler.name}: {type(exc).__name__}: {exc}"]
        except Blocked as exc:
            outcome = self._new(
                c,
                Status.BLOCKED,
                f"BLOCKED: {exc}",
                error=self.mask(str(exc)),
                cwd=str(target.cwd),
                repo=target.repo or "",
                attempts=attempts,
                commands=[self.mask(r.script) for r in results],
                suggestions=exc.suggestions,
            )
            self._record(c, outcome, None)
            return outcome
        ours = (f for o in self.outcomes.values() for f in o.files)
        clashes = [] if self.settings.allow_dirty else self.tracker.conflicts(files, ours)
        if clashes and not problems:
            outcome = self._new(
                c,
                Status.BLOCKED,
                "BLOCKED: files it changed were already dirty before the task started: "
                + ", ".join(clashes),
                error="dirty files: " + ", ".join(clashes),
                cwd=str(target.cwd),
                repo=target.repo or "",
                commands=[self.mask(r.script) for r in results],
                files=clashes,
                suggestions=[
                    "commit or stash the existing changes to " + ", ".join(clashes) + " and rerun",
                    "or set infratask_allow_dirty = true if mixing them is intended",
                ],
            )
            self._record(c, outcome, None)
            return outcome
        if problems:
            outcome = self._new(
                c,
                Status.FAILED,
                "post-condition failed: " + "; ".join(problems),
                error="; ".join(self.mask(p) for p in problems),
                cwd=str(target.cwd),
                repo=target.repo or "",
                commands=[self.mask(r.script) for r in results],
                command=self.mask(results[-1].script) if results else "",
                error_output="\n".join(self.mask(p) for p in problems),
                attempts=attempts,
                notes=step.notes,
                suggestions=["fix the cause and rerun; the criterion stays open"],
            )
            self._record(c, outcome, None)
            return outcome
        last = next((r.stdout for r in reversed(results) if r.stdout.strip()), "")
        outcome = self._new(
            c,
            Status.PASSED,
            "passed",
            cwd=str(target.cwd),
            repo=target.repo or "",
            commands=[self.mask(r.script) for r in results],
            attempts=attempts,
            output=tail(self.mask(last), 3)[-OUTPUT_CHARS:],
            notes=step.notes,
            files=self.tracker.labels(files),
        )
        self._record(c, outcome, c)
        if outcome.status is Status.PASSED:
            problems = self.tracker.stage(files, with_task_file=self.written)
            if problems:
                # A change left out of the index is left out of the commit: a failure.
                outcome.status = Status.FAILED
                outcome.message = self.mask("passed, but staging failed: " + "; ".join(problems))
                outcome.error = outcome.message
                outcome.suggestions.append("fix the repository (git status) and rerun")
        return outcome

    def _attempts(
        self,
        script: str,
        cwd: Path,
        env: dict[str, str],
        deadline: float | None,
        retries: int | None = None,
        label: str = "",
        service: bool = False,
    ) -> tuple[CommandResult, int]:
        """Run a block, and again from its first line while retries last and the failure
        is not one that repeats itself (see retry.py)."""
        retries = self.retries if retries is None else retries
        tries = 0
        while True:
            tries += 1
            remaining = None if deadline is None else max(0.01, deadline - time.monotonic())
            result = self._run_live(script, cwd, env, remaining, label, service)
            if result.ok or result.timed_out or blocking_reason(result) is not None:
                return result, tries
            if deterministic(result) is not None:
                return result, tries
            if tries > retries:
                return result, tries
            if self.retry_delay:
                time.sleep(self.retry_delay)

    def _run_live(
        self,
        script: str,
        cwd: Path,
        env: dict[str, str],
        timeout: float | None,
        label: str,
        service: bool = False,
    ) -> CommandResult:
        """One run of a block, its output shown live (masked) as progress.py decides."""
        from .progress import for_config

        progress = for_config(self.config)
        live = progress.criterion(label or self.task.id, self.mask) if progress else None
        try:
            return run_script(script, cwd, env, timeout=timeout, on_output=live, service=service)
        finally:
            if live is not None:
                live.close()

    def _failure(
        self,
        c: Criterion,
        target: Target,
        result: CommandResult,
        results: list[CommandResult],
        attempts: int,
    ) -> Outcome:
        common: dict[str, Any] = dict(
            cwd=str(target.cwd),
            repo=target.repo or "",
            command=self.mask(result.script),
            commands=[self.mask(r.script) for r in results],
            attempts=attempts,
            exit_code=result.exit_code,
            # masked before the cut, so a cut never leaves part of a secret
            output=tail(self.mask(result.stdout)),
            error_output=tail(self.mask(result.stderr)),
        )
        blocking = blocking_reason(result)
        if result.timed_out:
            outcome = self._new(
                c,
                Status.FAILED,
                f"timed out after {self.timeout:g}s; the process group was killed",
                error="timeout",
                suggestions=[
                    "raise `timeout` in the frontmatter or make the command finish sooner"
                ],
                **common,
            )
        elif blocking is not None:
            why, suggestions = blocking
            outcome = self._new(
                c, Status.BLOCKED, f"BLOCKED: {why}", error=why, suggestions=suggestions, **common
            )
        else:
            outcome = self._new(
                c,
                Status.FAILED,
                f"command failed with exit code {result.exit_code} after {attempts} attempt(s)"
                + (f" (not retried: {reason})" if (reason := deterministic(result)) else ""),
                error=f"exit code {result.exit_code}",
                suggestions=["read the error output above, fix the cause and rerun"],
                **common,
            )
        self._record(c, outcome, None)
        return outcome

    # -- recording -----------------------------------------------------------
    def _record(self, c: Criterion, outcome: Outcome, tick: Criterion | None) -> None:
        when = writeback.now_utc()
        if outcome.status is Status.PASSED:
            text = f"Completed #{c.number}: {c.text}"
        elif outcome.status is Status.BLOCKED:
            text = f"Blocked #{c.number}: {c.text}: {outcome.error}"
        else:
            text = f"Failed #{c.number}: {c.text}: {outcome.message}" + (
                f" ({outcome.error_output.strip().splitlines()[-1]})"
                if outcome.error_output.strip()
                else ""
            )
        entry = writeback.progress_entry(when, self.mask(text))
        outcome.progress_entry = entry
        if not self.settings.writeback:
            return
        try:
            recorded = writeback.write(
                self.task.path, writeback.Change(tick, [entry], when), self.task.layout
            )
        except writeback.WriteBackError as exc:
            outcome.status = Status.FAILED
            outcome.message = f"{outcome.message}; task file not updated: {exc}"
            outcome.error = f"write-back failed: {exc}"
            outcome.suggestions.append(str(exc))
            return
        if not recorded:
            outcome.notes.append("another run ticked it meanwhile; its progress line stands")
            return
        self.entries.append(entry)
        self.written = True

    def log(self, text: str, when: datetime | None = None) -> str:
        """Append a task-level progress line (verification, commit)."""
        when = when or writeback.now_utc()
        entry = writeback.progress_entry(when, self.mask(text))
        if self.settings.writeback:
            # Under the repositories' locks: another task's criterion must not see
            # this task file change (or its temp file) while its commands run.
            with contextlib.suppress(writeback.WriteBackError, LockTimeout, LockDirError):
                with self.tracker.turns(self.settings.lock_wait):
                    writeback.write(
                        self.task.path, writeback.Change(None, [entry], when), self.task.layout
                    )
                self.entries.append(entry)
                self.written = True
        return entry

    # -- the end of the task -------------------------------------------------
    def run_verification(self) -> list[CheckResult]:
        """The Verification section's commands, under the same safety checks."""
        results: list[CheckResult] = []
        if not self.task.verification or not any(b.is_command for b in self.task.verification):
            return results
        target = self.target(None, self.task.verification)
        failed = next((r for r in self.safety.run(target) if not r.ok), None)
        if failed is not None:
            return [
                CheckResult(
                    "verification", False, f"{failed.name}: {failed.message}", failed.remediation
                )
            ]
        from .kubeconfig import KubeconfigError

        try:
            env = self.command_env(target)
        except KubeconfigError as exc:
            return [CheckResult("verification", False, f"kube context: {exc}", "install kubectl")]
        deadline = time.monotonic() + self.timeout if self.timeout else None
        try:
            with self.tracker.turns(self.settings.lock_wait, self.waiting_for):
                return self._verify_commands(target, env, deadline)
        except LockTimeout as exc:
            return [
                CheckResult(
                    "verification",
                    False,
                    f"{exc} (infratask_lock_wait)",
                    "let the other run finish, then rerun",
                )
            ]

    def _verify_commands(
        self, target: Target, env: dict[str, str], deadline: float | None
    ) -> list[CheckResult]:
        results: list[CheckResult] = []
        for block in self.task.verification:
            if not block.is_command:
                continue
            result, _ = self._attempts(
                block.script, target.cwd, env, deadline, label=f"{self.task.id} verification"
            )
            if not result.ok:
                lines = block.script.strip().splitlines() or [""]
                shown = f"`{lines[0]}`" + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")
                detail = tail(result.stderr or result.stdout, 1) or f"{shown} printed nothing"
                results.append(
                    CheckResult(
                        "verification",
                        False,
                        self.mask(
                            f"Verification command failed (exit {result.exit_code}): {detail}"
                        ),
                        "fix the change or the verification command, then rerun",
                    )
                )
                return results
        results.append(CheckResult("verification", True, "Verification section passed"))
        return results

    def commit(self) -> dict[str, str]:
        """Commit the task's own changes, linked back to the task by trailers."""
        passed = sorted(n for n, o in self.outcomes.items() if o.status is Status.PASSED)
        return self.tracker.commit(
            self.mask(
                f"{self.task.id}: {self.task.title}\n\n"
                f"Infratask-Task: {self.task.id}\n"
                f"Infratask-Criteria: {','.join(map(str, passed))}\n"
            )
        )

    def close(self) -> None:
        self.tracker.release()
        if self._kube is not None:
            self._kube.close()


def plan_line(target: Target, checks: list[str], mask: Masker) -> str:
    """What a dry run would do for one criterion, on one line: the skip reason."""
    lines = [line for script in target.scripts for line in script.strip().splitlines()]
    what = f"would run `{mask(lines[0])}`" if lines else "no command to run"
    if len(lines) > 1:
        what += f" (+{len(lines) - 1} more line(s))"
    where = f" in {target.cwd}" + (f" (repo {target.repo})" if target.repo else "")
    return f"dry run: {what}{where}; checks: " + ("; ".join(checks) or "none")


_ANNOUNCED: set[str] = set()


def announce(config: pytest.Config, lines: list[str]) -> None:
    """Lines for the person or CI log watching the run, past pytest's capture
    (an xdist worker's stderr is the controller's)."""
    if not lines:
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write("".join(line + "\n" for line in lines))
        sys.stderr.flush()


def own_outputs(config: pytest.Config, report_dir: Path | None) -> tuple[Path, ...]:
    """Files and directories the plugin and pytest write reports to: never a task's."""
    base = Path(config.invocation_params.dir)
    found = [report_dir]
    for name in ("xmlpath", "json_report_file"):
        value = getattr(config.option, name, None)
        if value:
            found.append(base / os.path.expanduser(str(value)))
    return tuple(Path(os.path.abspath(p)) for p in found if p is not None)


def _number(value: object) -> float | None:
    """Frontmatter numbers, also quoted; booleans are not numbers here."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(str(value))
    except ValueError:
        return None


def _names(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []
