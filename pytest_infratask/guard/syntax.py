"""Script syntax: every command block must parse before any of them runs."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

from pytest_infratask.core.results import CheckResult
from pytest_infratask.guard.context import SafetyContext, Target
from pytest_infratask.util.scripts import delivered

_PARSED: dict[str, str | None] = {}
_PRETTY_PRINT: list[bool] = []  # whether this bash has --pretty-print (bash 5.1+)


def _bash(script: str, option: str, as_file: bool = False) -> subprocess.CompletedProcess[str]:
    with delivered(script, option, as_file=as_file) as (arguments, fds):
        return subprocess.run(
            ["bash", *arguments],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
            pass_fds=fds,
        )


def _bash_n(script: str) -> str | None:
    """The block's own parse: bash's last word on it, None when it parses."""
    proc = _bash(script, "-n")
    if proc.returncode == 0:
        return None
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "bash -n failed"


def _each_parses(scripts: Sequence[str]) -> bool:
    """Whether every block parses on its own, asked of one process: the blocks as
    functions of one file, printed back by ``bash --pretty-print``. A block parses on
    its own exactly when its function comes back whole: its random end marker the last
    command of the function's own body. A block that leaves a quote, a here-document or
    a compound command open, or closes its function early, lets that marker end up
    inside something else (a string, another block, the next function), where it
    prints differently or not at all. False also when the answer is unclear: each
    block is then asked on its own."""
    if _PRETTY_PRINT == [False]:
        return False
    mark = f"__infratask_{secrets.token_hex(8)}"
    text = "".join(f"{mark}_{i} () {{\n{s}\n{mark}_end_{i}\n}}\n" for i, s in enumerate(scripts))
    proc = _bash(text, "--pretty-print", as_file=True)
    if not _PRETTY_PRINT:
        _PRETTY_PRINT.append("--pretty-print" not in proc.stderr)
    if proc.returncode != 0:
        return False
    at, out = 0, proc.stdout
    for i in range(len(scripts)):
        head, end = f"{mark}_{i} () \n{{ \n", f"{mark}_end_{i}\n}}\n"
        start = len(out) - len(out[at:].lstrip())
        found = out.find(end, start)
        line = out[out.rfind("\n", 0, found) + 1 : found]
        if not out.startswith(head, start) or found < 0 or not _LAST.fullmatch(line):
            return False
        if _TOP_FUNCTION.search(out, start + len(head) - 1, found):
            return False  # the marker is another function's: the block closed its own
        at = found + len(end)
    return not out[at:].strip()


# A function's own commands are indented by four (the last may follow one sent to the
# background); a function outside any other starts a line.
_LAST = re.compile(r"    (?:.* & )?")
_TOP_FUNCTION = re.compile(r"\n\S[^\n]* \(\) \n\{ \n")


def _settle(scripts: Sequence[str]) -> None:
    """Parse results for ``scripts``: all at once while they parse, halves otherwise,
    down to the blocks that do not (whose own ``bash -n`` says why)."""
    if len(scripts) == 1:
        _PARSED[scripts[0]] = _bash_n(scripts[0])
    elif _each_parses(scripts):
        _PARSED.update(dict.fromkeys(scripts))
    elif _PRETTY_PRINT == [False]:
        _PARSED.update({s: _bash_n(s) for s in scripts})
    else:
        half = len(scripts) // 2
        _settle(scripts[:half])
        _settle(scripts[half:])


def _prime(scripts: Sequence[str]) -> None:
    """Parse every block of a task up front, each on its own but in one process while
    they all parse, so a task costs one process instead of one per block."""
    todo = [s for s in dict.fromkeys(scripts) if s not in _PARSED]
    if todo:
        _settle(todo)


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
