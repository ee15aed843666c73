"""GitHub Actions annotations of a finished task: an ``::error`` at the line of each
failed or blocked criterion, a ``::warning`` at each manual one left open, so the run's
page and the pull request show them beside the task file. Only with
``GITHUB_ACTIONS=true``; the values are escaped as the workflow command syntax asks."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_infratask.core.ci import on_github_actions
from pytest_infratask.core.masking import Masker
from pytest_infratask.core.outcome import Status
from pytest_infratask.core.taskrecord import TaskRecord


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(kind: str, message: str, **properties: str) -> str:
    """One workflow command line: ``::kind key=value,...::message``."""
    given = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{kind} {given}::{escape_data(message)}"


def workspace_path(path: Path) -> str:
    """``path`` as annotations name files: relative to ``GITHUB_WORKSPACE`` (else the
    working directory); absolute when it lies outside."""
    base = os.environ.get("GITHUB_WORKSPACE") or os.getcwd()
    relative = os.path.relpath(path, base)
    return Path(path if relative.startswith("..") else relative).as_posix()


def criterion_annotations(record: TaskRecord, mask: Masker) -> list[str]:
    if not on_github_actions():
        return []
    task = record.task
    file, title = workspace_path(task.path), mask.mask(task.id)
    found = []
    for criterion in task.criteria:
        outcome = record.outcomes.get(criterion.number)
        if outcome is None:
            continue
        if outcome.status.failed:
            kind, text = "error", outcome.message or outcome.status.value
        elif outcome.status is Status.MANUAL:
            kind, text = "warning", f"{criterion.text}: {outcome.message}"
        else:
            continue
        found.append(
            command(kind, mask.mask(text), file=file, line=str(criterion.line), title=title)
        )
    return found
