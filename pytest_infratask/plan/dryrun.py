"""A dry run is a plan: what each criterion would run, where, after which checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def plan_line(
    scripts: Sequence[str],
    cwd: Path,
    repo: str | None,
    checks: list[str],
    mask: Callable[[str], str],
) -> str:
    """What a dry run would do for one criterion, on one line: the skip reason."""
    lines = [line for script in scripts for line in script.strip().splitlines()]
    what = f"would run `{mask(lines[0])}`" if lines else "no command to run"
    if len(lines) > 1:
        what += f" (+{len(lines) - 1} more line(s))"
    where = f" in {cwd}" + (f" (repo {repo})" if repo else "")
    return f"dry run: {what}{where}; checks: " + ("; ".join(checks) or "none")
