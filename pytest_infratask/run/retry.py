"""When a failed command block is worth running again, and when it blocks the task.

A retry runs the whole block again from its first line, so it only helps with
failures that can go away by themselves (a registry timing out, a rollout not
ready yet). A missing file, a missing command, a denied permission or a syntax
error fails the same way every time: retrying only repeats the block's side
effects (a line appended twice), so those are never retried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pytest_infratask.core.outcome import Status
from pytest_infratask.core.results import CommandResult
from pytest_infratask.core.task import Criterion

NOT_FOUND = re.compile(r"(?:^|\n)(?:bash: )?(?:line \d+: )?([^\s:]+): (?:command )?not found")
DENIED = re.compile(r"([^\s:'\"]*/[^\s:'\"]*|[^\s:'\"]+)['\"]?: Permission denied")

_DETERMINISTIC = (
    (re.compile(r"No such file or directory"), "a file or directory is missing"),
    (re.compile(r"\bsyntax error\b|SyntaxError\b", re.I), "a syntax error"),
    (re.compile(r"command not found|: not found\b"), "a command is missing"),
    (re.compile(r"Permission denied|Operation not permitted"), "a permission is missing"),
)


def deterministic(result: CommandResult) -> str | None:
    """Why running ``result``'s block again would fail the same way, or None."""
    if result.ok or result.timed_out:
        return None
    if result.exit_code in (126, 127):
        return "a command is missing or not executable"
    text = result.stderr + "\n" + result.stdout
    for pattern, why in _DETERMINISTIC:
        if pattern.search(text):
            return why
    return None


def summary(result: CommandResult) -> str:
    """How a block failed, in a few words: its exit code and the line bash named."""
    if result.timed_out:
        return "timed out"
    return f"exit code {result.exit_code}" + (
        f", {failed_line(result)}" if result.failed_line else ""
    )


def failed_line(result: CommandResult) -> str:
    """``line 2: test -f notified``: where the block failed, as bash reported it."""
    if result.failed_line is None:
        return ""
    lines = result.failed_command.strip().splitlines() or [""]
    return f"line {result.failed_line}: {lines[0]}" + (" …" if len(lines) > 1 else "")


def criterion_retries(criterion: Criterion | None) -> int | None:
    """The retry count a criterion sets for itself with ``<!-- retries: N -->``."""
    return None if criterion is None else criterion.retries


def could_not_start(result: CommandResult) -> bool:
    """Whether the block failed on its very first command, which bash could not start
    (missing, or not executable): then nothing of the block ran.

    Told from bash's own report: the failing command is where the first line of code
    begins, and bash (not a program it started) said the command is not there."""
    line, command = result.failed_line, result.failed_command.strip()
    if result.exit_code not in (126, 127) or line is None or not command:
        return False
    code = [
        (n, text.strip())
        for n, text in enumerate(result.script.splitlines(), start=1)
        if text.strip() and not text.strip().startswith("#")
    ]
    if not code or code[0][0] != line or not code[0][1].startswith(command):
        return False
    word = re.escape(command.split()[0])
    said = rf"(?m)^bash: line {line}: {word}: (?:command not found|Permission denied|No such file)"
    return re.search(said, result.stderr) is not None


def blocking_reason(result: CommandResult) -> tuple[str, list[str]] | None:
    """Failures that a retry cannot fix: a missing tool or a denied permission."""
    text = result.stderr + "\n" + result.stdout
    missing = NOT_FOUND.search(result.stderr)
    if result.exit_code == 127 or missing:
        tool = missing.group(1) if missing else "a command"
        return (
            f"missing dependency: {tool} not found",
            [
                f"install {tool} and make sure it is on PATH for the run",
                "or run the task where the tool is available (CI image, toolbox container)",
            ],
        )
    if result.exit_code == 126 or "Permission denied" in text:
        denied = DENIED.search(text)
        where = denied.group(1) if denied else "a file the command uses"
        return (
            f"permission denied: {where}",
            [
                f"check permissions on {where} (ls -l {where}); "
                "make it readable/executable for the user running the task",
                "or run the task as a user that owns it",
            ],
        )
    return None


@dataclass
class Failure:
    """How a failed block is reported: status, message, error, suggestions, and whether
    it holds the criteria after it back."""

    status: Status
    message: str
    error: str
    suggestions: list[str] = field(default_factory=list)
    blocking: bool = False


def classify(
    result: CommandResult, attempts: int, nothing_ran: bool, timeout: float | None
) -> Failure:
    """A failed block's report. A missing tool or a denied permission is BLOCKED only
    when nothing ran (``could_not_start``); after part of the block ran it is a
    failure that still holds the criteria after it back."""
    if result.timed_out:
        return Failure(
            Status.FAILED,
            f"timed out after {timeout or 0:g}s; the process group was killed",
            "timeout",
            ["raise `timeout` in the frontmatter or make the command finish sooner"],
        )
    where = failed_line(result)
    blocking = blocking_reason(result)
    if blocking is not None:
        why, suggestions = blocking
        if nothing_ran:
            return Failure(Status.BLOCKED, f"BLOCKED: {why}", why, suggestions)
        ran = f"{why}, after part of the block ran" + (f" ({where})" if where else "")
        return Failure(Status.FAILED, ran, why, suggestions, blocking=True)
    reason = deterministic(result)
    return Failure(
        Status.FAILED,
        f"command failed with exit code {result.exit_code} after {attempts} attempt(s)"
        + (f", at {where}" if where else "")
        + (f" (not retried: {reason})" if reason else ""),
        f"exit code {result.exit_code}",
        [fix_hint(result)],
    )


def fix_hint(result: CommandResult) -> str:
    """What to do about a failed block, pointing only at output it really printed (the
    headline already names the failing line)."""
    said = "stderr" if result.stderr.strip() else "output" if result.stdout.strip() else ""
    if said:
        return f"fix what made the block exit {result.exit_code} (its {said} says why) and rerun"
    return "the block printed nothing: run it by hand in its directory to see why, then rerun"
