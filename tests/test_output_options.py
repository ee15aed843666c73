"""An output path the run could not write at its end is a usage error before any task
runs: one line naming the option, the value and why, exit code 4, no command run."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import item, task_md, write_task

BAD = {
    "report dir is a file": (
        "--infratask-report-dir",
        "CHANGELOG.md",
        "an existing file, not a directory",
    ),
    "summary is a directory": ("--infratask-summary", "docs", "an existing directory, not a file"),
    "sarif in /proc": ("--infratask-sarif", "/proc/x.sarif", "cannot create a file in /proc"),
    "summary under a file": (
        "--infratask-summary",
        "CHANGELOG.md/summary.md",
        "CHANGELOG.md is not a directory",
    ),
    "report dir under /proc": (
        "--infratask-report-dir",
        "/proc/reports/tasks",
        "cannot create a file in /proc",
    ),
    "sarif is a directory": ("--infratask-sarif", "docs", "an existing directory, not a file"),
}


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A task whose command leaves a marker file, beside a file and a directory."""
    write_task(pytester.path, "TASK-001.md", task_md(item("Mark", "touch ran.txt")))
    (pytester.path / "CHANGELOG.md").write_text("# Changes\n")
    (pytester.path / "docs").mkdir()
    return pytester.path


@pytest.mark.parametrize(("option", "value", "why"), BAD.values(), ids=BAD.keys())
def test_a_bad_output_path_stops_the_run_before_any_command(
    project: Path, pytester: pytest.Pytester, option: str, value: str, why: str
) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"{option}={value}", "TASK-001.md"
    )

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.strip()]
    assert len(errors) == 1, result.errlines
    assert errors[0].startswith(f"ERROR: {option}={value}: ")
    assert why in errors[0]
    assert "Traceback" not in result.stdout.str()
    assert not (project / "ran.txt").exists(), "a task command ran"
    assert (project / "CHANGELOG.md").read_text() == "# Changes\n"


def test_missing_directories_on_the_way_are_created(
    project: Path, pytester: pytest.Pytester
) -> None:
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--infratask-report-dir=out/tasks",
        "--infratask-summary=out/run/summary.md",
        "--infratask-sarif=out/scan/findings.sarif",
        "TASK-001.md",
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert (project / "ran.txt").exists()
    assert (project / "out/tasks/TASK-001.json").is_file()
    assert (project / "out/run/summary.md").read_text().startswith("### infratask: 1 task")
    assert (project / "out/scan/findings.sarif").is_file()
    assert not list(project.glob("**/.infratask-probe-*")), "the probe file was left behind"
