"""Decide a task's type from its labels, by the table platform teams already use."""

from __future__ import annotations

from pytest_infratask.core.schema import TYPE
from pytest_infratask.core.task import Task

GENERIC = "generic"
LABEL_TYPES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("builds", "build", "registry"), "build"),
    (("deployment", "deploy", "flux"), "deployment"),
    (("infrastructure", "networking", "security"), "configuration"),
    (("verification", "health"), "verification"),
)


def type_from_labels(task: Task) -> str:
    """First row whose word a label contains wins; ``generic`` when none does.

    ``type`` in the frontmatter overrides the labels for tasks whose labels
    say nothing useful.
    """
    explicit = task.value(TYPE)
    if explicit and explicit.strip():
        return explicit.strip().lower()
    labels = [label.lower() for label in task.labels]
    for words, task_type in LABEL_TYPES:
        if any(word in label for label in labels for word in words):
            return task_type
    return GENERIC
