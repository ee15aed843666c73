"""The outcomes one criterion can have, made masked and located, and their record in
the task file (where ``decide`` settles a recorded criterion's final status)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack, cast

from pytest_infratask.core.outcome import Outcome, Status, decide, internal_error
from pytest_infratask.core.task import Criterion
from pytest_infratask.guard.context import Target
from pytest_infratask.orchestrator.taskrun import TaskRun


class Details(TypedDict, total=False):
    """What an outcome carries besides its status and message (fields of ``Outcome``);
    sequences are taken as any iterable and kept as tuples."""

    error: str
    command: str
    output: str
    error_output: str
    exit_code: int | None
    attempts: int
    commands: Iterable[str]
    suggestions: Iterable[str]
    notes: Iterable[str]
    files: Iterable[str]
    local: bool
    held_back: bool
    blocking: bool
    summary: str


class Drafts:
    """Makes one criterion's outcomes and writes them to the task file."""

    def __init__(self, run: TaskRun, criterion: Criterion) -> None:
        self.run, self.c = run, criterion

    def new(
        self,
        status: Status,
        message: str = "",
        target: Target | None = None,
        **kw: Unpack[Details],
    ) -> Outcome:
        """An outcome of this criterion, masked, located at ``target`` when given."""
        c, mask = self.c, self.run.mask
        fields: dict[str, object] = dict(kw)
        if target is not None:
            fields.setdefault("cwd", str(target.cwd))
            fields.setdefault("repo", target.repo or "")
        for name in ("commands", "suggestions", "notes", "files"):
            if name in fields:
                fields[name] = tuple(cast(Iterable[str], fields[name]))
        # each value's type is checked at the call, by ``Details``
        return Outcome(c.number, c.text, status, mask(message), **cast(dict[str, Any], fields))

    def crashed(self, exc: Exception) -> Outcome:
        why, suggestion = internal_error(exc, self.run.handler.name)
        return self.new(Status.FAILED, why, error=why, suggestions=[suggestion])

    def recorded(
        self,
        outcome: Outcome,
        tick: Criterion | None = None,
        files: dict[Path, list[str]] | None = None,
    ) -> Outcome:
        """The outcome written to the task file (ticked when ``tick``), the ``files`` it
        changed staged once that succeeded; ``decide`` says what it finally is."""
        run = self.run
        recorded = run.journal.record(self.c, outcome, tick)
        unstaged: Sequence[str] = ()
        if files is not None and not recorded.unwritten:
            problems = run.tracker.stage(files, run.journal.written, defer=True)
            unstaged = [run.mask(p) for p in problems]
        return decide(outcome, recorded, unstaged)

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
