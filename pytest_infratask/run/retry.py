"""When a failed command block is worth running again, and when it blocks the task.

A retry runs the whole block again from its first line, so it only helps with
failures that can go away by themselves (a registry timing out, a rollout not
ready yet). A missing file, a missing command, a denied permission or a syntax
error fails the same way every time: retrying only repeats the block's side
effects (a line appended twice), so those are never retried.
"""

from __future__ import annotations

import re

from pytest_infratask.read.model import Criterion
from pytest_infratask.run.process import CommandResult

# ``<!-- retries: 0 -->`` on a criterion's line: its own retry count.
MARKER = re.compile(r"<!--\s*retries\s*:\s*(\d+)\s*-->", re.I)

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


def criterion_retries(criterion: Criterion | None) -> int | None:
    """The retry count a criterion sets for itself with ``<!-- retries: N -->``."""
    if criterion is None:
        return None
    found = MARKER.search(criterion.raw_line)
    return int(found.group(1)) if found else None


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
