"""pytest's own conventions work on criteria as on any test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import item, task_md, write_task


def build_task(folder: Path) -> Path:
    return write_task(folder, "TASK-001.md", task_md(
        item("Build containers", "echo built"),
        item("Push images", "exit 1"),
        item("Record build notes", "echo notes"),
        meta="id: TASK-001\nlabels: [builds, team-payments]\nupdated: 2024-01-01",
    ))


def deploy_task(folder: Path) -> Path:
    return write_task(folder, "TASK-002.md", task_md(
        item("Bump chart", "true"),
        meta="id: TASK-002\nlabels: [deployment]\nupdated: 2024-01-01",
    ))


def test_last_failed_reruns_only_the_failure(pytester: pytest.Pytester) -> None:
    path = build_task(pytester.path)
    pytester.runpytest(str(path)).assert_outcomes(passed=2, failed=1)
    path.write_text(path.read_text().replace("exit 1", "echo pushed"))
    result = pytester.runpytest(str(path), "--lf", "-v")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*ac2-push-images PASSED*"])


def test_failed_first_orders_the_failure_first(pytester: pytest.Pytester) -> None:
    path = build_task(pytester.path)
    pytester.runpytest(str(path)).assert_outcomes(passed=2, failed=1)
    result = pytester.runpytest(str(path), "--ff", "--co", "-q")
    assert result.stdout.lines[0].endswith("ac2-push-images")


def test_exitfirst_leaves_the_rest_open_and_reported(pytester: pytest.Pytester) -> None:
    path = build_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", str(path), "-x",
                                "--infratask-report-dir=reports")
    result.assert_outcomes(passed=1, failed=1)
    assert "- [ ] Record build notes" in path.read_text()
    contract = json.loads((pytester.path / "reports" / "TASK-001.json").read_text())
    reasons = {r["criterion"]: r["reason"] for r in contract["remaining_criteria"]}
    assert reasons["Record build notes"].startswith("not run in this session")


def test_collect_only_lists_criteria(pytester: pytest.Pytester) -> None:
    build_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q", ".")
    result.stdout.fnmatch_lines([
        "TASK-001.md::ac1-build-containers",
        "TASK-001.md::ac2-push-images",
        "TASK-001.md::ac3-record-build-notes",
    ])


@pytest.mark.parametrize(("expression", "selected"), [
    ("build", {"TASK-001"}),
    ("deployment", {"TASK-002"}),
    ("team_payments", {"TASK-001"}),
    ("not build", {"TASK-002"}),
])
def test_markers_from_type_and_labels(
    pytester: pytest.Pytester, expression: str, selected: set[str]
) -> None:
    build_task(pytester.path)
    deploy_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers", "--co", "-q",
                                "-m", expression, ".")
    listed = {line.split(".md::")[0] for line in result.stdout.lines if ".md::" in line}
    assert listed == selected


def test_keyword_expressions_select_by_slug(pytester: pytest.Pytester) -> None:
    build_task(pytester.path)
    deploy_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "--co", "-q",
                                "-k", "containers or (notes and not push)", ".")
    listed = [line for line in result.stdout.lines if ".md::" in line]
    assert listed == ["TASK-001.md::ac1-build-containers", "TASK-001.md::ac3-record-build-notes"]


def test_task_id_option_selects_tasks(pytester: pytest.Pytester) -> None:
    build_task(pytester.path)
    deploy_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", ".", "--infratask-id", "TASK-002")
    result.assert_outcomes(passed=1, deselected=3)


def test_setup_show_lists_the_task_fixtures(pytester: pytest.Pytester) -> None:
    deploy_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "--setup-show", ".")
    result.stdout.fnmatch_lines([
        "*SETUP    M infratask_task*",
        "*SETUP    M infratask_handler*",
        "*SETUP    M infratask_safety*",
        "*SETUP    M infratask_run*",
    ])


def test_disabled_plugin_collects_no_markdown(pytester: pytest.Pytester) -> None:
    deploy_task(pytester.path)
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:infratask", ".")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
