"""``infratask scan``: the pending tasks in the order a run would execute them
(dependencies, then priority), which can start now and which wait; unreadable files
and cycles are errors that name the file or the cycle."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import item, task_md, write_task

import pytest_infratask
from pytest_infratask.cli import main

FIELDS = {
    "order",
    "id",
    "title",
    "priority",
    "type",
    "open_criteria",
    "total_criteria",
    "ready",
    "waiting_for",
    "path",
}
# the subprocess imports the package this test imported, wherever it is installed from
PACKAGE_ROOT = str(Path(pytest_infratask.__file__).resolve().parents[1])


def task(folder: Path, task_id: str, *criteria: str, meta: str = "", name: str = "") -> Path:
    text = task_md(*criteria, meta=f"id: {task_id}\n{meta}", title=f"Title of {task_id}")
    return write_task(folder, name or f"{task_id}.md", text)


@pytest.fixture
def tasks(tmp_path: Path) -> Path:
    """Four pending tasks, one finished one and two Markdown files that are no tasks."""
    folder = tmp_path / "tasks"
    task(
        folder,
        "TASK-001",
        item("Build", "true"),
        item("Push", "true"),
        item("Scan", "true", box="x"),
        meta="title: Base image\npriority: low\nlabels: [builds]",
    )
    task(
        folder,
        "TASK-002",
        item("Bump chart", "true"),
        item("Check dashboards"),
        meta="title: Deploy api\npriority: critical\nlabels: [flux]\ndependencies: [TASK-001]",
    )
    task(
        folder,
        "TASK-003",
        item("Probe", "true"),
        meta="title: Health check\npriority: high\nlabels: [health]",
    )
    task(
        folder,
        "TASK-004",
        item("Done", "true", box="x"),
        item("Also done", box="x"),
        meta="title: Finished work\npriority: critical",
    )
    task(
        folder,
        "TASK-005",
        item("Tidy", "true"),
        meta="title: After finished work\ndependencies: [TASK-004]",
    )
    (folder / "README.md").write_text("# Tasks\n\n## Acceptance Criteria\n- [ ] not a task\n")
    (folder / "notes.md").write_text("- [ ] neither\n")
    return folder


def rows_of(table: str) -> list[list[str]]:
    """Table lines split into columns (columns are separated by two or more spaces)."""
    return [re.split(r"\s{2,}", line.rstrip()) for line in table.splitlines()]


EXPECTED_TABLE = [
    ["#", "ID", "PRIORITY", "TYPE", "OPEN", "STATE", "TITLE"],
    # the critical TASK-002 pulls its dependency ahead of the high TASK-003
    ["1", "TASK-001", "low", "build", "2/3", "ready", "Base image"],
    [
        "2",
        "TASK-002",
        "critical",
        "deployment",
        "2/2",
        "waiting for TASK-001 (2 of 3 criteria open)",
        "Deploy api",
    ],
    ["3", "TASK-003", "high", "verification", "1/1", "ready", "Health check"],
    ["4", "TASK-005", "medium", "generic", "1/1", "ready", "After finished work"],
]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p),
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest_infratask.cli", "scan", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_table_lists_pending_tasks_in_execution_order(
    tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tasks)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert rows_of(out) == EXPECTED_TABLE, out


def test_table_through_the_module_entry_point(tasks: Path) -> None:
    proc = cli(str(tasks))
    assert (proc.returncode, proc.stderr) == (0, "")
    assert rows_of(proc.stdout) == EXPECTED_TABLE, proc.stdout


def test_json_has_every_field(tasks: Path) -> None:
    proc = cli("--json", str(tasks))
    assert (proc.returncode, proc.stderr) == (0, "")
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    assert all(set(row) == FIELDS for row in rows), rows
    summary = [
        (
            r["order"],
            r["id"],
            r["title"],
            r["priority"],
            r["type"],
            r["open_criteria"],
            r["total_criteria"],
            r["ready"],
            r["waiting_for"],
        )
        for r in rows
    ]
    assert summary == [
        (1, "TASK-001", "Base image", "low", "build", 2, 3, True, []),
        (
            2,
            "TASK-002",
            "Deploy api",
            "critical",
            "deployment",
            2,
            2,
            False,
            ["waiting for TASK-001 (2 of 3 criteria open)"],
        ),
        (3, "TASK-003", "Health check", "high", "verification", 1, 1, True, []),
        (4, "TASK-005", "After finished work", "medium", "generic", 1, 1, True, []),
    ]
    for row in rows:
        assert Path(row["path"]).resolve() == (tasks / f"{row['id']}.md").resolve()


def test_json_through_main(tasks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--json", str(tasks / "TASK-002.md"), str(tasks / "TASK-004.md")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["ready"]) for r in rows] == [("TASK-002", False)]
    assert rows[0]["waiting_for"] == ["waiting for TASK-001 (2 of 3 criteria open)"]


def test_dependencies_across_folders_and_missing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task(tmp_path / "team-a", "TASK-001", item("One", "true"), item("Two", "true", box="x"))
    task(
        tmp_path / "team-b",
        "TASK-002",
        item("Three", "true"),
        meta="dependencies: [TASK-001, TASK-404]",
    )
    assert main(["scan", "--json", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["TASK-001", "TASK-002"]
    assert rows[1]["waiting_for"] == [
        "waiting for TASK-001 (1 of 2 criteria open)",
        "dependency TASK-404 not found",
    ]


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (
            b"---\nid: TASK-009\ntitle: [unclosed\n---\n# Broken\n",
            r"TASK-009\.md:\d+: invalid YAML frontmatter",
        ),
        (
            b"---\nid: TASK-009\n---\n# Broken\n\n## Acceptance Criteria\n- [ ] caf\xe9\n",
            r"TASK-009\.md:7: not valid UTF-8",
        ),
    ],
)
def test_malformed_file_is_reported_and_the_rest_still_listed(
    tasks: Path, capsys: pytest.CaptureFixture[str], content: bytes, where: str
) -> None:
    (tasks / "TASK-009.md").write_bytes(content)
    assert main(["scan", str(tasks)]) == 1
    out, err = capsys.readouterr()
    assert re.search(where, err), err
    assert len(err.splitlines()) == 1, err
    assert rows_of(out) == EXPECTED_TABLE, out


def test_duplicate_id_is_reported_not_silently_dropped(
    tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task(tasks / "more", "TASK-003", item("Other probe", "true"), meta="title: Same id")
    assert main(["scan", str(tasks)]) == 1
    out, err = capsys.readouterr()
    assert re.search(
        r"more/TASK-003\.md:2: duplicate task id TASK-003 \(also .*tasks/TASK-003"
        r"\.md\)",
        err,
    ), err
    assert rows_of(out) == EXPECTED_TABLE, out


def test_dependency_cycle_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task(tmp_path, "TASK-001", item("a", "true"), meta="dependencies: [TASK-002]")
    task(tmp_path, "TASK-002", item("b", "true"), meta="dependencies: [TASK-001]")
    task(tmp_path, "TASK-003", item("c", "true"))
    assert main(["scan", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "task dependency cycle: TASK-001 -> TASK-002 -> TASK-001" in err, err
    assert out == ""
    proc = cli("--json", str(tmp_path))
    assert proc.returncode == 1
    assert "TASK-001 -> TASK-002 -> TASK-001" in proc.stderr


def test_nothing_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no pending tasks\n"
    task(tmp_path, "TASK-001", item("Done", "true", box="x"))
    assert main(["scan", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "no pending tasks\n"
    assert main(["scan", "--json", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_dependency_id_case_does_not_change_the_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task(tmp_path, "TASK-001", item("a", "true"), meta="priority: low")
    task(tmp_path, "TASK-002", item("b", "true"), meta="priority: high\ndependencies: [task-001]")
    assert main(["scan", "--json", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1]["waiting_for"] == ["waiting for task-001 (1 of 1 criteria open)"]
    assert [r["id"] for r in rows] == ["TASK-001", "TASK-002"]
