"""When a failed command block is worth running again.

A retry runs the whole block again from its first line, so it only helps with
failures that can go away by themselves (a registry timing out, a rollout not
ready yet). A missing file, a missing command, a denied permission or a syntax
error fails the same way every time: retrying only repeats the block's side
effects (a line appended twice), so those are never retried.
"""

from __future__ import annotations

import re

import pytest

from .model import Criterion
from .run import CommandResult

# ``<!-- retries: 0 -->`` on a criterion's line: its own retry count.
MARKER = re.compile(r"<!--\s*retries\s*:\s*(\d+)\s*-->", re.I)

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


def no_reruns(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep pytest-rerunfailures off criteria: infratask retries them itself, knowing which
    failures are deterministic, and a rerun on top would multiply the attempts."""
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return
    from .collect import CriterionItem

    for item in items:
        if isinstance(item, CriterionItem):
            item.add_marker(pytest.mark.flaky(reruns=0))
