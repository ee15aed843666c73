"""Task dependencies, end to end: waiting is a blocked failure that ran nothing, tasks of
one session run dependencies first then by priority, and a cycle is a usage error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import QUIET, opt_in
from helpers import meta_task as write_task

pytest_plugins = ["pytester"]


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, Path]:
    report_dir = pytester.path / "reports"
    return pytester.runpytest(
        *QUIET, "--infratask-report-dir", str(report_dir), *opt_in(pytester.path, *args)
    ), report_dir


def contract(report_dir: Path, task_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((report_dir / f"{task_id}.json").read_text())
    return data


@pytest.fixture(autouse=True)
def _rootdir(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\n")


def assert_blocked(
    result: pytest.RunResult, report: dict[str, Any], marker: Path, reason: str, remedy: str
) -> None:
    assert not marker.exists(), "the blocked command ran"
    assert result.parseoutcomes().get("failed") == 1
    out = result.stdout.str()
    assert reason in out and remedy in out, out
    assert report["status"] == "blocked"
    assert reason in report["message"]
    assert any(remedy in s for s in report["recovery_suggestions"])
    assert remedy in report["next_steps"]


def test_open_dependency_blocks(pytester: pytest.Pytester) -> None:
    (pytester.path / "TASK-000.md").write_text(
        "---\nid: TASK-000\n---\n# Base\n\n## Acceptance Criteria\n\n"
        "- [x] Step 1\n- [x] Step 2\n- [X] Step 3\n- [ ] Step 4\n- [ ] Step 5\n"
    )
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md",
        {"dependencies": ["TASK-000"]},
        [("Touch it", f"touch {marker}"), ("Second", f"touch {marker}-2")],
    )
    result, reports = run(pytester, "TASK-001.md")
    report = contract(reports, "TASK-001")
    assert_blocked(
        result,
        report,
        marker,
        "waiting for TASK-000 (2 of 5 criteria open)",
        "finish TASK-000 first",
    )
    assert not (pytester.path / "marker-2").exists()
    result.assert_outcomes(failed=1, skipped=1)


def test_missing_dependency_blocks_without_crashing(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md",
        {"dependencies": "TASK-009"},
        [("Touch it", f"touch {marker}")],
    )
    result, reports = run(pytester, "TASK-001.md")
    assert_blocked(
        result,
        contract(reports, "TASK-001"),
        marker,
        "dependency TASK-009 not found",
        "infratask_task_dirs",
    )


def test_dependencies_section_and_task_dirs(pytester: pytest.Pytester) -> None:
    elsewhere = pytester.path / "platform"
    elsewhere.mkdir()
    dep = write_task(
        elsewhere / "TASK-000-network-baseline.md", {"id": "TASK-000"}, [("Subnets", None)]
    )
    marker = pytester.path / "marker"
    section = "## Dependencies\n\n- TASK-000 (network baseline)\n"
    write_task(pytester.path / "TASK-001.md", {}, [("Touch it", f"touch {marker}")], section)

    # not beside the task: not found until infratask_task_dirs names its directory
    result, reports = run(pytester, "TASK-001.md")
    assert_blocked(
        result,
        contract(reports, "TASK-001"),
        marker,
        "dependency TASK-000 not found",
        "infratask_task_dirs",
    )

    pytester.makefile(".ini", pytest="[pytest]\ninfratask_task_dirs = platform\n")
    write_task(pytester.path / "TASK-001.md", {}, [("Touch it", f"touch {marker}")], section)
    result, reports = run(pytester, "TASK-001.md")
    assert_blocked(
        result,
        contract(reports, "TASK-001"),
        marker,
        "waiting for TASK-000 (1 of 1 criteria open)",
        "finish TASK-000 first",
    )

    dep.write_text(dep.read_text().replace("- [ ] Subnets", "- [x] Subnets"))
    write_task(pytester.path / "TASK-001.md", {}, [("Touch it", f"touch {marker}")], section)
    result, _ = run(pytester, "TASK-001.md")
    result.assert_outcomes(passed=1)
    assert marker.exists()


def test_dependency_without_criteria_is_done_by_status(pytester: pytest.Pytester) -> None:
    dep = pytester.path / "TASK-000.md"
    dep.write_text("---\nid: TASK-000\nstatus: in progress\n---\n# Old task\n")
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md",
        {"dependencies": ["TASK-000"]},
        [("Touch it", f"touch {marker}")],
    )
    result, reports = run(pytester, "TASK-001.md")
    assert_blocked(
        result,
        contract(reports, "TASK-001"),
        marker,
        "waiting for TASK-000 (status in progress)",
        "finish TASK-000 first",
    )

    dep.write_text("---\nid: TASK-000\nstatus: done\n---\n# Old task\n")
    write_task(
        pytester.path / "TASK-001.md",
        {"dependencies": ["TASK-000"]},
        [("Touch it", f"touch {marker}")],
    )
    run(pytester, "TASK-001.md")[0].assert_outcomes(passed=1)
    assert marker.exists()


@pytest.mark.parametrize("dependent_priority", ["low", "high"])
def test_session_runs_dependencies_first_then_priority(
    pytester: pytest.Pytester, dependent_priority: str
) -> None:
    log = pytester.path / "order.log"
    tasks = {
        "TASK-001": {"priority": "low"},
        "TASK-002": {"priority": dependent_priority, "dependencies": ["TASK-001"]},
        "TASK-003": {"priority": "critical"},
    }
    for task_id, meta in tasks.items():
        write_task(
            pytester.path / f"{task_id}.md",
            meta,
            [("First", f"echo {task_id} >> {log}"), ("Second", f"echo {task_id} >> {log}")],
        )

    collected = pytester.runpytest(*QUIET, "--co", "-q", ".")
    files = [line.split("::")[0] for line in collected.stdout.lines if "::" in line]
    assert files == ["TASK-003.md"] * 2 + ["TASK-001.md"] * 2 + ["TASK-002.md"] * 2
    assert not log.exists()

    result, reports = run(pytester)
    result.assert_outcomes(passed=6)
    assert log.read_text().split() == ["TASK-003"] * 2 + ["TASK-001"] * 2 + ["TASK-002"] * 2
    assert contract(reports, "TASK-002")["status"] == "ready_for_verification"


@pytest.mark.parametrize("cycle", [["TASK-001", "TASK-002", "TASK-003"], ["TASK-001"]])
def test_dependency_cycle_is_a_usage_error(pytester: pytest.Pytester, cycle: list[str]) -> None:
    log = pytester.path / "ran.log"
    for i, task_id in enumerate(cycle):
        write_task(
            pytester.path / f"{task_id}.md",
            {"dependencies": [cycle[(i + 1) % len(cycle)]]},
            [("Step", f"echo {task_id} >> {log}")],
        )
    for args in ((), ("--co",)):
        result, _ = run(pytester, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        expected = " -> ".join([*cycle, cycle[0]])
        assert f"task dependency cycle: {expected}" in result.stderr.str()
    assert not log.exists()


def test_k_selecting_a_criterion_whose_need_is_open_blocks(pytester: pytest.Pytester) -> None:
    first, second = pytester.path / "first", pytester.path / "second"
    write_task(
        pytester.path / "TASK-001.md",
        {},
        [("Create the bucket", f"touch {first}"), ("Upload <!-- needs: #1 -->", f"touch {second}")],
    )
    result, reports = run(pytester, "TASK-001.md", "-k", "upload")
    report = contract(reports, "TASK-001")
    assert_blocked(
        result, report, second, "needs #1 (Create the bucket), which is open", "complete #1 first"
    )
    assert not first.exists()
    result.assert_outcomes(failed=1, deselected=1)

    # run together, the need is met within the session
    result, _ = run(pytester, "TASK-001.md")
    result.assert_outcomes(passed=2)
    assert first.exists() and second.exists()


@pytest.mark.parametrize("mode", ["--infratask-dry-run", "--infratask-no-writeback"])
def test_dependency_completed_in_session_without_writeback(
    pytester: pytest.Pytester, mode: str
) -> None:
    write_task(pytester.path / "TASK-001.md", {}, [("First", "true")])
    write_task(pytester.path / "TASK-002.md", {"dependencies": ["TASK-001"]}, [("Then", "true")])
    result, _ = run(pytester, mode)
    assert result.parseoutcomes().get("failed", 0) == 0
