"""A Markdown summary of a run: one table row per task, for a pull request or
``$GITHUB_STEP_SUMMARY``.

Built from the contracts alone, so it says exactly what the JSON reports say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pytest_infratask.core.shape import Contract

COLUMNS = ("Task", "Status", "Criteria", "Verification", "Commit", "First failure")
_ICONS = {
    "committed": ":white_check_mark:",
    "ready_for_verification": ":white_check_mark:",
    "partially_complete": ":hourglass:",
    "not_started": ":hourglass:",
    "blocked": ":no_entry:",
}
_CELL_LIMIT = 300


def cell(text: str) -> str:
    """One table cell: a single line, pipes escaped, HTML inert, bounded length."""
    flat = " ".join(str(text).split())
    if len(flat) > _CELL_LIMIT:
        flat = flat[: _CELL_LIMIT - 1] + "…"
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # Backslashes first, so the escape added for a pipe is not itself escaped.
    flat = flat.replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"([`*_\[\]])", r"\\\1", flat)


def _status(contract: Contract) -> str:
    status = str(contract["status"])
    icon = ":x:" if not contract["success"] else _ICONS.get(status, "")
    if contract.get("dry_run"):
        status += " (dry run)"
    return f"{icon} {status}".strip()


def _criteria(contract: Contract) -> str:
    counts = contract["criteria"]
    text = f"{counts['completed']}/{counts['total']} complete"
    if counts["failed"]:
        text += f", {counts['failed']} failed"
    return text


def _verification(contract: Contract) -> str:
    checks = contract.get("verification") or []
    if not checks:
        return "not run"
    failed = [c for c in checks if not c["ok"]]
    if failed:
        return f"failed: {failed[0]['check']}: {failed[0]['message']}"
    return f"passed ({len(checks)} check{'s' if len(checks) != 1 else ''})"


def delivery(contract: Contract) -> str:
    """The task's commits and whether, and where, they were pushed, in one line
    (``gitops 3f2a9c1d0b, pushed to main at git@host:org/gitops.git``; ``gitops
    3f2a9c1d0b, not pushed``); empty when there is none."""
    commits = contract.get("commits") or {}
    pushed = contract.get("pushed") or {}
    found = []
    for repo, sha in commits.items():
        where = pushed.get(repo)
        if where is None:
            found.append(f"{repo} {sha[:10]}, not pushed")
            continue
        earlier = " by an earlier run" if where.get("earlier") else ""
        found.append(
            f"{repo} {sha[:10]}, pushed to {where['branch']} at {where['remote']}{earlier}"
        )
    return "; ".join(found)


def _commit(contract: Contract) -> str:
    return delivery(contract) or "-"


def _failure(contract: Contract) -> str:
    if "error" not in contract:
        return ""
    details = contract.get("details")
    criterion = details["criterion"] if details else ""
    text = f"{criterion}: {contract.get('message', '')}"
    suggestions = contract.get("recovery_suggestions") or []
    return f"{text} - {suggestions[0]}" if suggestions else text


def render(contracts: Iterable[Contract]) -> str:
    """The summary as GitHub-flavoured Markdown (a heading and a table)."""
    rows = list(contracts)
    failed = sum(1 for c in rows if not c["success"])
    lines = [
        f"### infratask: {len(rows)} task{'s' if len(rows) != 1 else ''}, {failed} failed",
        "",
    ]
    if not rows:
        return "\n".join([*lines, "No task ran.", ""])
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
    for c in rows:
        values = (
            f"{c['task_id']} {c['task_title']}",
            _status(c),
            _criteria(c),
            _verification(c),
            _commit(c),
            _failure(c),
        )
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"
