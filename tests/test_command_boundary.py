"""Input where it meets the processes it starts: a block too long for bash's command
line runs; env names no process could take are collection errors that name them; each
block's syntax is judged on its own, so a quote one block leaves open is that block's
error even when the next block would close it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import DEADLINE, QUIET, item, task_md, write_task
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_infratask.guard import syntax
from pytest_infratask.run.process import run_script
from pytest_infratask.util.scripts import ARGV_LIMIT

MAX_ARG_STRLEN = 32 * 4096  # Linux: the longest single argument


def _huge(tail: str) -> str:
    filler = "# " + "x" * 200 + "\n"
    script = filler * 1500 + tail
    assert len(script.encode()) > 2 * MAX_ARG_STRLEN
    return script


def test_a_block_over_the_argument_limit_runs_with_stdin_closed(tmp_path: Path) -> None:
    script = _huge("if read -r line; then echo read; else echo eof; fi\nno-such-tool-xyz\n")
    result = run_script(script, tmp_path, dict(os.environ))
    assert result.stdout == "eof\n"
    assert result.exit_code == 127
    # bash names the descriptor it read the block from, and the line
    assert re.search(
        r"^/dev/fd/\d+: line 1502: no-such-tool-xyz: command not found$", result.stderr, re.M
    )


def test_an_ordinary_block_keeps_bash_c(tmp_path: Path) -> None:
    result = run_script("echo $0\nno-such-tool-xyz", tmp_path, dict(os.environ))
    assert result.stdout == "bash\n" and len("echo $0") < ARGV_LIMIT
    assert "bash: line 2: no-such-tool-xyz: command not found" in result.stderr


def test_a_task_with_a_huge_block_is_checked_and_run(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path,
        "TASK-001.md",
        task_md(item("Huge", _huge(f"touch {marker}\n")), meta="id: TASK-001\nupdated: 2024-01-01"),
    )
    result = pytester.runpytest_subprocess(*QUIET, "TASK-001.md", timeout=DEADLINE)
    result.assert_outcomes(passed=1)
    assert marker.exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('"A=B": 1', "env: variable name 'A=B' contains '=', which no variable name can"),
        ('"A\\0B": 1', "env: variable name 'A\\x00B' contains a NUL byte"),
        ('"": 1', "env: a variable name is empty"),
        ('GREETING: "hi\\0there"', "env: the value of GREETING contains a NUL byte"),
        ("- GREETING", "env: expected a mapping of variable names to values"),
    ],
    ids=["equals sign", "NUL in a name", "empty name", "NUL in a value", "a list"],
)
def test_unusable_env_is_a_collection_error_naming_the_variable(
    pytester: pytest.Pytester, entry: str, message: str
) -> None:
    marker = pytester.path / "marker"
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(item("Touch", f"touch {marker}"), meta=f"id: TASK-001\nenv:\n  {entry}"),
    )
    result = pytester.runpytest_subprocess(*QUIET, "TASK-001.md", timeout=DEADLINE)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert f"{path}:3: {message}" in out, out
    assert "Traceback" not in out and "ValueError" not in out
    assert not marker.exists()


@pytest.mark.parametrize("together", ["one criterion", "two criteria"])
def test_a_quote_left_open_is_its_own_blocks_error(
    pytester: pytest.Pytester, together: str
) -> None:
    """The second block closes the first block's quote: parsed together they pass;
    each on its own, block 1 does not parse and nothing runs."""
    first, second = pytester.path / "first", pytester.path / "second"
    opens, closes = f'touch {first}; echo "abc', f'echo def"; touch {second}'
    criteria = (
        [item("Both", opens, closes)]
        if together == "one criterion"
        else [item("Opens", opens), item("Closes", closes)]
    )
    write_task(pytester.path, "TASK-001.md", task_md(*criteria, meta="id: TASK-001"))
    result = pytester.runpytest_subprocess(*QUIET, "-rA", "TASK-001.md", timeout=DEADLINE)
    out = result.stdout.str()
    assert "command block 1 does not parse" in out, out
    assert "unexpected EOF while looking for matching" in out
    assert not first.exists() and not second.exists()


# Pieces of shell, many of which leave something open that another piece closes.
FRAGMENTS = [
    "echo a", "'", '"', "{", "}", "(", ")", "if true; then", "fi", "cat <<EOF", "EOF",
    "|", "\\", "&&", ";", "&", "\n", "$(", "`", "f() {", "case x in", "x) :;;", "esac",
    "for i in 1; do", "done", "# c", "}\n{", "$'", "[[ -n x ]]",
    'echo "a', 'b"', "echo 'a", "b'", "{ echo a", "echo b; }", "echo a |", "cat",
]  # fmt: skip
BLOCK = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=3).map("\n".join)


def _bash_n_ok(script: str) -> bool:
    return subprocess.run(["bash", "-n", "-c", script], capture_output=True).returncode == 0


@settings(max_examples=150, deadline=None)
@given(blocks=st.lists(BLOCK, min_size=1, max_size=4, unique=True))
def test_the_task_wide_check_agrees_with_each_blocks_own_bash_n(blocks: list[str]) -> None:
    saved = dict(syntax._PARSED)
    syntax._PARSED.clear()
    try:
        syntax._prime(blocks)
        verdicts = {b: syntax._PARSED[b] is None for b in blocks}
    finally:
        syntax._PARSED.clear()
        syntax._PARSED.update(saved)
    assert verdicts == {b: _bash_n_ok(b) for b in blocks}


def test_blocks_that_parse_cost_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    real = subprocess.run

    def counted(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        return real(args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(syntax.subprocess, "run", counted)
    monkeypatch.setattr(syntax, "_PARSED", {})
    blocks = [
        f"echo {n} | tr 0-9 a-j\nif [ -e x{n} ]; then cat <<EOF\n{n}\nEOF\nfi" for n in range(60)
    ]
    syntax._prime([*blocks, 'echo "open'])
    assert all(syntax._PARSED[b] is None for b in blocks)
    assert "unexpected EOF" in str(syntax._PARSED['echo "open'])
    assert len(calls) <= 2 * 7 + 1  # halving down to the one bad block, and its bash -n
    calls.clear()
    monkeypatch.setattr(syntax, "_PARSED", {})
    syntax._prime(blocks)
    assert len(calls) == 1
