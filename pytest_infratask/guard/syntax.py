"""Script syntax: every command block must parse before any of them runs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

from pytest_infratask.guard.context import SafetyContext, Target
from pytest_infratask.util.checks import CheckResult

_PARSED: dict[str, str | None] = {}



def _bash_n(script: str) -> str | None:
    proc = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "bash -n failed"



def _prime(scripts: Sequence[str]) -> None:
    """Parse every block of a task in one ``bash -n``, each as a function body (parsed,
    never run), so a task costs one process instead of one per criterion. Only when
    that fails are blocks parsed one by one to find the culprit."""
    todo = [s for s in dict.fromkeys(scripts) if s not in _PARSED]
    if len(todo) < 2:
        return
    bodies = "".join(f"__infratask_{i}() {{\n{s}\n}}\n" for i, s in enumerate(todo))
    if _bash_n(bodies) is None:
        _PARSED.update(dict.fromkeys(todo))



def syntax_error(script: str) -> str | None:
    if script not in _PARSED:
        _PARSED[script] = _bash_n(script)
    return _PARSED[script]



def check_syntax(target: Target, safety: SafetyContext) -> CheckResult:
    name = "script syntax"
    if not safety.syntax_primed:
        # Once per task: gathering every block for each criterion would make a task's
        # checks quadratic in its criteria.
        safety.syntax_primed = True
        _prime(
            [b.script for c in target.task.criteria for b in c.commands if c.open]
            + [b.script for b in target.task.verification if b.is_command]
        )
    for number, script in enumerate(target.scripts, start=1):
        detail = syntax_error(script)
        if detail is not None:
            return CheckResult(
                name,
                False,
                f"command block {number} does not parse: {detail}",
                "fix the shell syntax in the task file; nothing was run",
            )
    for path in target.validate_files:
        problem = data_file_problem(target.cwd / path)
        if problem:
            return CheckResult(name, False, problem, f"fix {path} so it parses")
    return CheckResult(name, True, f"{len(target.scripts)} block(s)")



def data_file_problem(path: Path) -> str | None:
    """Parse a YAML or JSON file a criterion names for validation."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":

        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return f"{path.name}:{exc.lineno}: invalid JSON: {exc.msg}"
        return None

    try:
        list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return f"{path.name}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"
    return None
