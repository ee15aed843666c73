"""Under GitHub Actions (``GITHUB_ACTIONS=true``) the run speaks the workflow command
syntax: ``::add-mask::`` lines each start a line of the log, before anything they
protect; failed, blocked and manual criteria are annotated at their task file line;
the step summary says which commit a task made and whether, and where, it was pushed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import DEADLINE, QUIET, git, item, push_to_new_origin, task_md, write_task
from hypothesis import given
from hypothesis import strategies as st
from test_run_outputs import gfm_tables, unescaped

from pytest_infratask.report.workflow import command

SECRET = "hunter2-secret-value"
ENV_TOKEN = "envtoken-abcdef123456"


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


# -- ::add-mask:: ------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("-v",), ("-s",)], ids=["plain", "verbose", "no capture"])
def test_every_add_mask_starts_a_line_before_what_it_protects(
    pytester: pytest.Pytester, flags: tuple[str, ...]
) -> None:
    meta = f"id: TASK-001\ntitle: Secrets\nupdated: 2024-01-01\nenv:\n  DB_PASSWORD: {SECRET}"
    write_task(
        pytester.path,
        "TASK-001.md",
        task_md(item("Show", 'echo "out=$DB_PASSWORD tok=$API_TOKEN"'), meta=meta),
    )
    env = {**os.environ, "GITHUB_ACTIONS": "true", "API_TOKEN": ENV_TOKEN}
    env.pop("GITHUB_STEP_SUMMARY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *QUIET, *flags, "TASK-001.md"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out
    lines = out.splitlines()
    masks = [i for i, line in enumerate(lines) if line.startswith("::add-mask::")]
    assert out.count("::add-mask::") == len(masks), "an ::add-mask:: not at column 0:\n" + out
    told = {lines[i].removeprefix("::add-mask::"): i for i in masks}
    # the environment's secrets come first, before pytest prints anything
    header = next(i for i, line in enumerate(lines) if "test session starts" in line)
    assert header > 0 and all(line.startswith("::add-mask::") for line in lines[:header])
    assert told[ENV_TOKEN] < header
    # the task's own (its env) before its command's first line of output
    assert told[SECRET] > header
    if "-s" in flags:
        shown = next(i for i, line in enumerate(lines) if "out=" in line)
        assert told[SECRET] < shown
        assert "out=*** tok=***" in lines[shown]
    for i, line in enumerate(lines):
        if i not in masks:
            assert SECRET not in line and ENV_TOKEN not in line, line


# -- annotations -------------------------------------------------------------------------


@pytest.fixture
def annotated(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A task with a manual and a failing criterion in a directory whose name needs
    escaping as a property, and a blocked task; the texts they were written with."""
    meta = f"id: TASK-001\ntitle: Checks\nupdated: 2024-01-01\nenv:\n  DB_PASSWORD: {SECRET}"
    first = task_md(
        item("Check the dashboards by hand"),
        item("Compare", f'[ "50%" = "{SECRET}" ]'),
        meta=meta,
    )
    second = task_md(
        item("Needs a tool", "infratask-missing-tool-xyz --flag"),
        meta="id: TASK-002\ntitle: Tool\nupdated: 2024-01-01",
    )
    write_task(pytester.path / "ops,team:x", "TASK-001.md", first)
    write_task(pytester.path, "TASK-002.md", second)
    return {"first": first, "second": second}


def test_failed_blocked_and_manual_criteria_are_annotated_at_their_lines(
    pytester: pytest.Pytester, annotated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(pytester.path.parent))
    result = pytester.runpytest(*QUIET, "ops,team:x/TASK-001.md", "TASK-002.md")

    result.assert_outcomes(failed=2, skipped=1)
    found = [line for line in result.outlines if re.match(r"::(error|warning) ", line)]
    here = pytester.path.name
    manual = line_of(annotated["first"], "- [ ] Check the dashboards")
    compare = line_of(annotated["first"], "- [ ] Compare")
    tool = line_of(annotated["second"], "- [ ] Needs a tool")
    assert len(found) == 3, result.outlines
    warning, error, blocked = found
    assert warning.startswith(
        f"::warning file={here}/ops%2Cteam%3Ax/TASK-001.md,line={manual},title=TASK-001::"
        "Check the dashboards by hand: "
    )
    assert error.startswith(
        f"::error file={here}/ops%2Cteam%3Ax/TASK-001.md,line={compare},title=TASK-001::"
        "command failed with exit code 1"
    )
    # the reason is escaped as workflow command data, and masked like every output
    assert '[ "50%25" = "***" ]' in error
    assert blocked.startswith(
        f"::error file={here}/TASK-002.md,line={tool},title=TASK-002::BLOCKED: "
    )
    assert "infratask-missing-tool-xyz" in blocked
    assert SECRET not in result.stdout.str().replace(f"::add-mask::{SECRET}", "")


def test_no_annotations_outside_github_actions(
    pytester: pytest.Pytester, annotated: dict[str, str]
) -> None:
    result = pytester.runpytest(*QUIET, "ops,team:x/TASK-001.md", "TASK-002.md")
    result.assert_outcomes(failed=2, skipped=1)
    assert "::error" not in result.stdout.str() and "::warning" not in result.stdout.str()


def test_annotation_paths_outside_the_workspace_stay_absolute(
    pytester: pytest.Pytester, annotated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    elsewhere = pytester.path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GITHUB_WORKSPACE", str(elsewhere))
    result = pytester.runpytest(*QUIET, "TASK-002.md")
    assert any(
        line.startswith(f"::error file={pytester.path}/TASK-002.md,line=")
        for line in result.outlines
    ), result.outlines


def unescape(text: str) -> str:
    return re.sub(r"%(25|0D|0A|3A|2C)", lambda m: bytes.fromhex(m[1]).decode(), text)


@given(message=st.text(), title=st.text(), file=st.text())
def test_a_workflow_command_carries_any_text_on_one_line(
    message: str, title: str, file: str
) -> None:
    line = command("error", message, file=file, title=title)
    head, sep, data = line.partition("::")[2].partition("::")
    assert sep and "\n" not in line and "\r" not in line
    assert unescape(data) == message
    kind, _, properties = head.partition(" ")
    assert kind == "error"
    values = dict(p.split("=", 1) for p in properties.split(","))
    assert {k: unescape(v) for k, v in values.items()} == {"file": file, "title": title}


# -- the step summary --------------------------------------------------------------------


@pytest.fixture
def checkout(
    pytester: pytest.Pytester, git_identity: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pytester directory as a git checkout of a bare ``origin``, with one task."""
    root = pytester.path
    (root / ".gitignore").write_text("step-summary.md\n")
    write_task(root, "TASK-001.md", task_md(item("Write", "echo v2 > version.txt")))
    origin = tmp_path_factory.mktemp("remote") / "origin.git"
    push_to_new_origin(root, origin)
    return root


@pytest.mark.parametrize("push", [True, False], ids=["pushed", "committed only"])
def test_the_step_summary_names_the_commit_and_where_it_went(
    pytester: pytest.Pytester, checkout: Path, monkeypatch: pytest.MonkeyPatch, push: bool
) -> None:
    step = checkout / "step-summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    flag = "--infratask-push" if push else "--infratask-commit"
    result = pytester.runpytest(*QUIET, flag, "TASK-001.md")

    result.assert_outcomes(passed=2)
    sha = git(checkout, "rev-parse", "HEAD").strip()
    assert "TASK-001" in git(checkout, "log", "-1", "--format=%B")
    [table] = gfm_tables(step.read_text())
    commit = unescaped(table[1][table[0].index("Commit")])
    origin = git(checkout, "remote", "get-url", "origin").strip()
    if push:
        assert git(checkout, "ls-remote", "origin", "refs/heads/main").split()[0] == sha
        assert commit == f"{checkout.name} {sha[:10]}, pushed to main at {origin}"
    else:
        assert git(checkout, "ls-remote", "origin", "refs/heads/main").split()[0] != sha
        assert commit == f"{checkout.name} {sha[:10]}, not pushed"
