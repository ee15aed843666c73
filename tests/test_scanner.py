"""``infratask scan``: the pending tasks, in the order they would run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import item, task_md, write_task

from pytest_infratask.cli import main


def tasks(folder: Path) -> Path:
    write_task(folder, "TASK-001.md", task_md(
        item("One", "true"), item("Two", "true"), item("Three", "true", box="x"),
        meta="id: TASK-001\ntitle: Base\npriority: low\nlabels: [builds]",
    ))
    write_task(folder, "TASK-002.md", task_md(
        item("Deploy", "true"),
        meta="id: TASK-002\ntitle: Deploy\npriority: critical\ndependencies: [TASK-001]\n"
             "labels: [flux]",
    ))
    write_task(folder, "TASK-003.md", task_md(
        item("Check", "true"), meta="id: TASK-003\ntitle: Check\npriority: high",
    ))
    write_task(folder, "TASK-004.md", task_md(
        item("Done", "true", box="x"), meta="id: TASK-004\ntitle: Finished",
    ))
    return folder


def test_table_in_execution_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tasks(tmp_path))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:6] == ["#", "ID", "PRIORITY", "TYPE", "OPEN", "STATE"]
    ids = [line.split()[1] for line in lines[1:]]
    # the critical TASK-002 pulls its dependency ahead of the high TASK-003
    assert ids == ["TASK-001", "TASK-002", "TASK-003"], "finished TASK-004 is left out"
    row = {line.split()[1]: line for line in lines[1:]}
    assert "2/3" in row["TASK-001"] and "ready" in row["TASK-001"]
    assert "waiting for TASK-001 (2 of 3 criteria open)" in row["TASK-002"]


def test_json_through_the_console_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_infratask.cli", "scan", "--json", str(tasks(tmp_path))],
        capture_output=True, text=True, check=True,
    )
    rows = json.loads(proc.stdout)
    assert [r["id"] for r in rows] == ["TASK-001", "TASK-002", "TASK-003"]
    first = rows[0]
    assert set(first) == {"order", "id", "title", "priority", "type", "open_criteria",
                          "total_criteria", "ready", "waiting_for", "path"}
    assert (first["type"], first["open_criteria"], first["total_criteria"]) == ("build", 2, 3)
    assert rows[1]["ready"] is False and rows[1]["waiting_for"]


def test_malformed_file_is_reported_and_the_rest_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks(tmp_path)
    (tmp_path / "TASK-009.md").write_text("---\nid: [unclosed\n---\n")
    assert main(["scan", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert re.search(r"TASK-009\.md:\d+: invalid YAML frontmatter", err), err
    assert "TASK-001" in out


def test_cycle_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_task(tmp_path, "TASK-001.md", task_md(item("a", "true"),
               meta="id: TASK-001\ndependencies: [TASK-002]"))
    write_task(tmp_path, "TASK-002.md", task_md(item("b", "true"),
               meta="id: TASK-002\ndependencies: [TASK-001]"))
    assert main(["scan", str(tmp_path)]) == 1
    assert "TASK-001 -> TASK-002 -> TASK-001" in capsys.readouterr().err


def test_nothing_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "no pending tasks"
