"""Frontmatter keys this plugin, its handlers and Backlog.md know; a misspelled key
(``lables``, ``dependancies``, ``timout``) is reported instead of silently ignored."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

import pytest

BACKLOG_KEYS = frozenset(
    {
        "id", "title", "status", "assignee", "reporter", "created_date", "updated_date",
        "due_date", "labels", "milestone", "dependencies", "references", "documentation",
        "modified_files", "parent_task_id", "parent", "subtasks", "priority", "type",
        "ordinal", "onStatusChange", "tags",
    }
)  # fmt: skip
CORE_KEYS = frozenset(
    {
        "created", "updated", "created_at", "updated_at", "description", "owner",
        "workdir", "repo", "env", "timeout", "retries", "retry_delay", "syntax_check",
        "branch", "kube_context", "allow_direct_apply", "environment", "writable",
        "secrets", "registry_auth_file",
        # handlers: verification, deployment, build, configuration
        "checks", "wait", "poll_interval", "reconcile", "registry", "version", "images",
        "validate", "security",
    }
)  # fmt: skip
KNOWN_KEYS = BACKLOG_KEYS | CORE_KEYS


class InfrataskWarning(pytest.PytestWarning):
    """Base of this plugin's warnings (``-W error::pytest_infratask.InfrataskWarning``)."""


class UnknownKeyWarning(InfrataskWarning):
    """A frontmatter key nothing reads, probably a misspelling."""


def unknown_keys(keys: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """A message per unknown key, with the nearest known key as a suggestion."""
    known = KNOWN_KEYS | frozenset(extra)
    messages = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        messages.append(f"unknown frontmatter key {key!r}{hint}")
    return messages


def markdown_table() -> str:
    """Every known frontmatter key as a Markdown table, for the docs' key reference."""
    rows = ["| key | group |", "|---|---|"]
    for key in sorted(KNOWN_KEYS):
        group = "Backlog.md" if key in BACKLOG_KEYS else "pytest-infratask"
        rows.append(f"| `{key}` | {group} |")
    return "\n".join(rows) + "\n"
