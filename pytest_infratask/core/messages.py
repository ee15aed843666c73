"""The words a person reads about a task, one function per kind of message.

Each function decides its words from the task's state as facts (its type, what it
declares, what happened), so a hint names only what the task has: no "images" for a
build task that declares none, no "kubectl apply" advice for a task with no manifests.

- ``type_hint``: the task type's next step, by final status and what the task has
- ``remaining``: the criteria still open that nothing failed on, each with its text
  and what to do (a manual one: tick it by hand when done)
- ``progress``: the short outcome a failed or blocked criterion's progress line gives
- ``summary_line``: a task's line in the terminal summary, and ``findings_lines``
  the security findings under it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import get_args

from pytest_infratask.core.outcome import Outcome, Status
from pytest_infratask.core.shape import Counts, SecurityFinding, Severity
from pytest_infratask.core.task import Criterion


@dataclass(frozen=True)
class Holdings:
    """What a task declares that a hint may name."""

    images: tuple[str, ...] = ()
    """``name:tag`` of each image a build task declares."""
    manifests: tuple[str, ...] = ()
    """The ``validate:`` directories (kustomizations) of the task."""
    reconcile: tuple[str, ...] = ()
    """Flux objects the run asks to reconcile and waits for."""
    checks: bool = False
    """A verification task's ``checks:`` (state it proves)."""


COMMIT = "review the staged changes and commit them (or rerun with --infratask-commit)"
DONE = "task complete"
MANUAL = "tick it by hand when done"


def type_hint(task_type: str, status: str, has: Holdings) -> list[str]:
    """The next step a task type adds for ``status``, naming only what ``has`` holds."""
    complete = status in ("ready_for_verification", "committed")
    if not complete:
        return []
    committed = status == "committed"
    then = "" if committed else "commit (--infratask-commit), then "
    if task_type == "build" and has.images:
        return [f"{then}deploy {', '.join(has.images)} through a deployment task"]
    if task_type == "deployment" and has.reconcile:
        if committed:
            return ["watch the release roll out (flux get helmreleases -A)"]
        return ["commit and push: Flux reconciles what is in git"]
    if task_type in ("deployment", "configuration") and has.manifests:
        what = "the committed manifests" if committed else "the manifests once committed"
        return [f"Flux applies {what} ({', '.join(has.manifests)}); do not kubectl apply them"]
    if task_type == "verification" and has.checks:
        return ["state verified; close the task"]
    return [DONE if committed else COMMIT]


INTERRUPTED = "interrupted while it ran in this session"
"""Why a criterion is open after a Ctrl-C or a signal stopped its commands."""


def remaining(
    criteria: Sequence[Criterion],
    outcomes: Mapping[int, Outcome],
    failed: bool,
    interrupted: int | None = None,
) -> list[str]:
    """Each open criterion that no failure explains, with its text and what to do.
    Manual ones are always named (nothing but a person ticks them), and so is the one
    an interruption stopped; one that did not run only when nothing failed (a
    failure's own suggestion comes first)."""
    steps = []
    for c in criteria:
        outcome = outcomes.get(c.number)
        if c.done or (outcome is not None and (outcome.status.complete or outcome.status.failed)):
            continue
        if outcome is not None and outcome.status is Status.DRY_RUN:
            continue
        if c.manual:
            steps.append(f"#{c.number} {c.text!r} is manual: {MANUAL}")
        elif c.number == interrupted:
            steps.append(f"#{c.number} {c.text!r} was {INTERRUPTED}: rerun to run it again")
        elif not failed and (outcome is None or not outcome.held_back):
            steps.append(f"#{c.number} {c.text!r} did not run in this session: rerun to run it")
    return steps


def dry_run(criteria: Sequence[Criterion], outcomes: Mapping[int, Outcome]) -> list[str]:
    """A dry run's next step: run it for real, naming how much it would do."""
    planned = [o for o in outcomes.values() if o.status is Status.DRY_RUN]
    if not planned:
        return []
    count = f"{len(planned)} criteri{'on' if len(planned) == 1 else 'a'}"
    return [f"rerun without --infratask-dry-run to run {count}"]


def progress(outcome: Outcome) -> str:
    """The short outcome a failed or blocked criterion's progress line gives (``exit
    code 1``, ``post-condition failed``), never the command's output: the task file is
    committed, the output stays in the reports."""
    return outcome.summary or outcome.message


def checks_line(checks: Sequence[tuple[str, bool]]) -> str:
    """``checks 1/2 passed (registry failed)`` from (name, ok) pairs; empty for none."""
    if not checks:
        return ""
    failed = [name for name, ok in checks if not ok]
    text = f"checks {len(checks) - len(failed)}/{len(checks)} passed"
    return text + (f" ({', '.join(dict.fromkeys(failed))} failed)" if failed else "")


def summary_line(
    task: str, status: str, counts: Counts, checks: Sequence[tuple[str, bool]] = ()
) -> str:
    """``TASK-1 [build] committed: 3/3 criteria complete, checks 1/1 passed``: the
    status first, then the criteria, then the task's own checks, each counted."""
    done, total = counts["completed"], counts["total"]
    text = f"{task} {status}: {done}/{total} criteria complete"
    if counts["failed"]:
        text += f", {counts['failed']} failed"
    if (left := counts["remaining"] - counts["failed"]) > 0:
        text += f", {left} open"
    if line := checks_line(checks):
        text += f", {line}"
    return text


SEVERITIES: tuple[str, ...] = get_args(Severity)
"""High first, as ``Severity`` lists them."""


def findings_lines(findings: Sequence[SecurityFinding]) -> list[str]:
    """Every security finding, grouped by severity (high first), one line each; a
    heading counts them. Empty when there is none."""
    if not findings:
        return []
    groups = {s: [f for f in findings if f["severity"] == s] for s in SEVERITIES}
    counts = ", ".join(f"{len(group)} {s}" for s, group in groups.items() if group)
    lines = [f"security findings: {counts}"]
    for severity, group in groups.items():
        for f in group:
            where = f"{f['namespace']}/" if f["namespace"] else ""
            at = f" ({f['path']}:{f['line']})" if f.get("path") else f" ({f['file']})"
            lines.append(
                f"  {severity} {f['rule_id']} {f['kind']}/{where}{f['name']}{at}: {f['message']}"
            )
    return lines
