"""Task files run only when pytest is pointed at them."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import QUIET, item, task_md


def backlog(root: Path) -> dict[str, Path]:
    """A Backlog.md tree as Backlog.md lays it out, each task touching its own marker."""
    places = {
        "tasks": "backlog/tasks/task-3 - Rotate-cert.md",
        "archive": "backlog/archive/tasks/task-1 - Old.md",
        "completed": "backlog/completed/task-2 - Done.md",
        "drafts": "backlog/drafts/task-4 - Idea.md",
    }
    paths = {}
    # The allowed root (and so the sandbox's writable tree) is the ini file's directory,
    # where the markers go.
    (root / "tox.ini").write_text("[pytest]\n")  # as pytester.makeini writes it
    for number, (where, name) in enumerate(places.items(), start=1):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        marker = root / f"ran-{where}"
        meta = f"id: TASK-{number}\ntitle: {where}\nupdated: 2024-01-01"
        path.write_text(task_md(item(f"Touch {where}", f"touch {marker}"), meta=meta))
        paths[where] = path
    return paths


def ran(root: Path) -> set[str]:
    return {p.name.removeprefix("ran-") for p in root.glob("ran-*")}


def test_plain_pytest_runs_no_task_file(pytester: pytest.Pytester) -> None:
    paths = backlog(pytester.path)
    before = {p: p.read_bytes() for p in paths.values()}
    pytester.makepyfile(test_unit="def test_unit():\n    assert True\n")
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=1)
    assert ran(pytester.path) == set()
    assert {p: p.read_bytes() for p in paths.values()} == before


def test_testpaths_do_not_opt_in(pytester: pytest.Pytester) -> None:
    backlog(pytester.path)
    pytester.makeini("[pytest]\ntestpaths = backlog\n")
    result = pytester.runpytest(*QUIET)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert ran(pytester.path) == set()


def test_a_named_directory_skips_archive_completed_and_drafts(pytester: pytest.Pytester) -> None:
    backlog(pytester.path)
    result = pytester.runpytest(*QUIET, "backlog")
    result.assert_outcomes(passed=1)
    assert ran(pytester.path) == {"tasks"}


def test_a_file_named_directly_runs_even_in_the_archive(pytester: pytest.Pytester) -> None:
    paths = backlog(pytester.path)
    result = pytester.runpytest(*QUIET, str(paths["archive"]), str(paths["drafts"]))
    result.assert_outcomes(passed=2)
    assert ran(pytester.path) == {"archive", "drafts"}


def test_ini_paths_opt_a_project_in(pytester: pytest.Pytester) -> None:
    backlog(pytester.path)
    (pytester.path / "sub").mkdir()
    pytester.makeini("[pytest]\ninfratask_paths = backlog\n")
    pytester.makepyfile(test_unit="def test_unit():\n    assert True\n")
    result = pytester.runpytest(*QUIET)
    result.assert_outcomes(passed=2)
    assert ran(pytester.path) == {"tasks"}


def test_a_named_directory_only_collects_the_task_file_pattern(pytester: pytest.Pytester) -> None:
    backlog(pytester.path)
    (pytester.path / "backlog" / "tasks" / "README.md").write_text(
        task_md(item("Not a task", f"touch {pytester.path / 'ran-readme'}"))
    )
    result = pytester.runpytest(*QUIET, "backlog/tasks")
    result.assert_outcomes(passed=1)
    assert ran(pytester.path) == {"tasks"}
