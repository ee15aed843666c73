"""Decide a task's type from its labels, by the table platform teams already use."""

from __future__ import annotations

import difflib
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_infratask.core.task import Task

GENERIC = "generic"
LABEL_TYPES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("builds", "build", "registry"), "build"),
    (("deployment", "deploy", "flux"), "deployment"),
    (("configuration", "infrastructure", "networking", "security"), "configuration"),
    (("verification", "health"), "verification"),
)
_BY_WORD = {word: kind for words, kind in LABEL_TYPES for word in words} | {
    kind: kind for _, kind in LABEL_TYPES
}


def type_from_labels(task: Task) -> str:
    """First row whose word a label contains wins; ``generic`` when none does.

    ``type`` in the frontmatter overrides the labels for tasks whose labels
    say nothing useful.
    """
    from pytest_infratask.core.schema import TYPE  # start-up: the table loads for --markers

    explicit = task.value(TYPE)
    if explicit and explicit.strip():
        return explicit.strip().lower()
    labels = [label.lower() for label in task.labels]
    for words, task_type in LABEL_TYPES:
        if any(word in label for label in labels for word in words):
            return task_type
    return GENERIC


def label_hints(task: Task, task_type: str) -> list[str]:
    """A message per label that chooses no type but is close to a word that would
    choose another than ``task_type`` (``deplyoment`` for ``deployment``): the task
    would silently run as another type, without that type's keys and checks."""
    from pytest_infratask.core.schema import TYPE

    if (task.value(TYPE) or "").strip():
        return []
    hints = []
    for label in task.labels:
        close = _closest_word(label.lower())
        if close and _BY_WORD[close] != task_type:
            hints.append(
                f"label {label!r} chooses no task type; did you mean {close!r}? "
                f"The task runs as {task_type}, not {_BY_WORD[close]}, and reads none "
                f"of the {_BY_WORD[close]} keys"
            )
    return hints


@functools.lru_cache(maxsize=4096)
def _closest_word(lowered: str) -> str | None:
    """The type word a label that chooses no type is close to; cached, since a
    backlog repeats its labels in every file and the match costs 0.1 ms."""
    if any(word in lowered for word in _BY_WORD):
        return None
    close = difflib.get_close_matches(lowered, sorted(_BY_WORD), n=1, cutoff=0.75)
    return close[0] if close else None
