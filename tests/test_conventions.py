"""pytest's own conventions on criteria, end to end in a subprocess: ``--lf``, ``--ff``,
``-x``, ``--co``, ``-m``, ``-k``, ``--infratask-id``, ``--setup-show`` and
``-p no:infratask`` behave as for Python tests, judged by what ran (a command log)
and what the task files became."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import changes, item, opt_in, task_md, write_task

import pytest_infratask

NO_CACHE = ("-p", "no:cacheprovider")


@pytest.fixture(autouse=True)
def _rootdir(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")


@pytest.fixture(autouse=True)
def _this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess runs load the plugin this test imported, whichever copy is installed."""
    root = str(Path(pytest_infratask.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    )


def run(pytester: pytest.Pytester, *args: str, cache: bool = False) -> pytest.RunResult:
    options = () if "no:infratask" in args else ("--infratask-retries", "0")
    return pytester.runpytest_subprocess(
        *(() if cache else NO_CACHE),
        "-p",
        "no:benchmark",
        *options,
        *opt_in(pytester.path, *args),
        timeout=60,
    )


def logged(root: Path, text: str) -> str:
    """A command that appends ``text`` to the run log (one line per executed command)."""
    return f"echo {text} >> {root / 'run.log'}"


def run_log(root: Path) -> list[str]:
    path = root / "run.log"
    return path.read_text().split() if path.exists() else []


def make_task(
    root: Path,
    task_id: str,
    steps: list[tuple[str, str]],
    *,
    labels: str = "[]",
    name: str | None = None,
) -> Path:
    """Criteria (text, extra command) that log ``<task>:<N>`` first, then run the command."""
    criteria = [
        item(text, logged(root, f"{task_id}:{n}") + (f"\n{extra}" if extra else ""))
        for n, (text, extra) in enumerate(steps, start=1)
    ]
    meta = f"id: {task_id}\ntitle: Task {task_id}\nlabels: {labels}\nupdated: 2024-01-01"
    return write_task(root / "tasks", name or f"{task_id}.md", task_md(*criteria, meta=meta))


def entries(before: str, after: str) -> list[str]:
    """The kind and number of each new progress line, e.g. ``Completed #2``."""
    return [text.split(":")[0] for text in changes(before, after).entry_texts()]


def open_boxes(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("- [ ]")]


# -- --lf / --ff / -x ---------------------------------------------------------------


def fixable(root: Path) -> Path:
    """Criterion #2 fails until ``fixed`` exists; #1 and #3 always pass."""
    return make_task(
        root,
        "TASK-001",
        [
            ("Prepare workspace", ""),
            ("Apply the fix", f"test -e {root / 'fixed'}"),
            ("Record the result", ""),
        ],
    )


def test_last_failed_reruns_only_the_failed_criterion(pytester: pytest.Pytester) -> None:
    root = pytester.path
    path = fixable(root)
    original = path.read_text()
    run(pytester, "tasks", cache=True).assert_outcomes(passed=2, failed=1)
    after_first = path.read_text()
    assert entries(original, after_first) == ["Completed #1", "Failed #2", "Completed #3"]
    assert open_boxes(path) == ["- [ ] Apply the fix"]

    (root / "fixed").touch()
    result = run(pytester, "tasks", "--lf", "-v", cache=True)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "run-last-failure: rerun previous 1 failure*",
            "*tasks/TASK-001.md::ac2-apply-the-fix PASSED*",
        ]
    )
    assert run_log(root) == ["TASK-001:1", "TASK-001:2", "TASK-001:3", "TASK-001:2"]
    assert entries(after_first, path.read_text()) == ["Completed #2"]
    assert open_boxes(path) == []


def test_failed_first_runs_the_failure_before_the_rest(pytester: pytest.Pytester) -> None:
    root = pytester.path
    path = fixable(root)
    original = path.read_text()
    first = run(pytester, "tasks", "--infratask-no-writeback", cache=True)
    first.assert_outcomes(passed=2, failed=1)
    assert path.read_text() == original

    (root / "fixed").touch()
    result = run(pytester, "tasks", "--ff", "-v", cache=True)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*ac2-apply-the-fix PASSED*",
            "*ac1-prepare-workspace PASSED*",
            "*ac3-record-the-result PASSED*",
        ]
    )
    assert run_log(root)[3:] == ["TASK-001:2", "TASK-001:1", "TASK-001:3"]
    assert entries(original, path.read_text()) == ["Completed #2", "Completed #1", "Completed #3"]


def test_exitfirst_stops_and_reports_the_rest_as_not_run(pytester: pytest.Pytester) -> None:
    root = pytester.path
    path = make_task(
        root,
        "TASK-001",
        [
            ("Prepare workspace", ""),
            ("Apply the change", "exit 3"),
            ("Restart the service", ""),
            ("Announce the change", ""),
        ],
    )
    original = path.read_text()
    result = run(pytester, "tasks", "-x", "--infratask-report-dir=reports")
    result.assert_outcomes(passed=1, failed=1)
    assert run_log(root) == ["TASK-001:1", "TASK-001:2"]
    assert entries(original, path.read_text()) == ["Completed #1", "Failed #2"]
    assert open_boxes(path) == [
        "- [ ] Apply the change",
        "- [ ] Restart the service",
        "- [ ] Announce the change",
    ]
    contract = json.loads((root / "reports" / "TASK-001.json").read_text())
    assert contract["criteria"] == {"total": 4, "completed": 1, "failed": 1, "remaining": 3}
    assert contract["success"] is False
    reasons = {r["criterion"]: r["reason"] for r in contract["remaining_criteria"]}
    assert set(reasons) == {"Apply the change", "Restart the service", "Announce the change"}
    for text in ("Restart the service", "Announce the change"):
        assert reasons[text].startswith("not run in this session"), reasons
    assert not reasons["Apply the change"].startswith("not run"), reasons


# -- collection and selection -------------------------------------------------------


def three_tasks(root: Path) -> dict[str, Path]:
    """A build task, a deployment task and a generic one labelled ``nightly``."""
    return {
        "TASK-001": make_task(
            root,
            "TASK-001",
            [
                ("Build containers", ""),
                ("Record the notes", ""),
            ],
            labels="[builds, team-payments]",
        ),
        "TASK-002": make_task(
            root,
            "TASK-002",
            [
                ("Bump the chart", ""),
                ("Build the values file", ""),
            ],
            labels="[deployment]",
        ),
        "TASK-003": make_task(root, "TASK-003", [("Rotate logs", "")], labels="[nightly]"),
    }


def test_collect_only_lists_criteria_and_runs_nothing(pytester: pytest.Pytester) -> None:
    root = pytester.path
    tasks = three_tasks(root)
    done = write_task(
        root / "tasks",
        "TASK-004.md",
        task_md(
            item("Already there", "true", box="x"),
            item("Check by hand"),
            meta="id: TASK-004\nupdated: 2024-01-01",
        ),
    )
    before = {p: p.read_bytes() for p in [*tasks.values(), done]}
    result = run(pytester, "tasks", "--co", "-q")
    assert result.ret == 0
    listed = [line for line in result.stdout.lines if "::" in line]
    assert listed == [
        "tasks/TASK-001.md::ac1-build-containers",
        "tasks/TASK-001.md::ac2-record-the-notes",
        "tasks/TASK-002.md::ac1-bump-the-chart",
        "tasks/TASK-002.md::ac2-build-the-values-file",
        "tasks/TASK-003.md::ac1-rotate-logs",
        "tasks/TASK-004.md::ac1-already-there",
        "tasks/TASK-004.md::ac2-check-by-hand",
    ]
    result.stdout.fnmatch_lines(["7 tests collected*"])
    assert run_log(root) == []
    assert all(p.read_bytes() == data for p, data in before.items())


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("deployment", "TASK-002"),
        ("build", "TASK-001"),
        ("team_payments", "TASK-001"),
        ("nightly", "TASK-003"),
    ],
)
def test_markers_from_type_and_labels_select_tasks(
    pytester: pytest.Pytester, expression: str, selected: str
) -> None:
    root = pytester.path
    tasks = three_tasks(root)
    before = {task_id: p.read_text() for task_id, p in tasks.items()}
    result = run(pytester, "tasks", "--strict-markers", "-m", expression)
    count = {"TASK-001": 2, "TASK-002": 2, "TASK-003": 1}
    result.assert_outcomes(passed=count[selected], deselected=5 - count[selected])
    assert {line.split(":")[0] for line in run_log(root)} == {selected}
    for task_id, path in tasks.items():
        if task_id == selected:
            assert open_boxes(path) == []
        else:
            assert path.read_text() == before[task_id], f"{task_id} was touched"


def test_markers_are_registered_for_strict_markers(pytester: pytest.Pytester) -> None:
    three_tasks(pytester.path)
    result = run(pytester, "tasks", "--strict-markers", "-m", "not nightly")
    result.assert_outcomes(passed=4, deselected=1)
    assert "not found in `markers`" not in result.stdout.str() + result.stderr.str()


def test_keyword_matches_criterion_slugs_not_the_task_type(pytester: pytest.Pytester) -> None:
    root = pytester.path
    tasks = three_tasks(root)
    result = run(pytester, "tasks", "-k", "build", "-v")
    # ac2 of the build task has no "build" in its name: the type must not match it
    result.assert_outcomes(passed=2, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*TASK-001.md::ac1-build-containers PASSED*",
            "*TASK-002.md::ac2-build-the-values-file PASSED*",
        ]
    )
    assert sorted(run_log(root)) == ["TASK-001:1", "TASK-002:2"]
    assert open_boxes(tasks["TASK-001"]) == ["- [ ] Record the notes"]
    assert open_boxes(tasks["TASK-002"]) == ["- [ ] Bump the chart"]


def test_task_id_option_picks_tasks_from_a_directory(pytester: pytest.Pytester) -> None:
    root = pytester.path
    tasks = three_tasks(root)
    # the id comes from the frontmatter, not the file name
    renamed = make_task(root, "TASK-009", [("Tidy up", "")], name="task-cleanup.md")
    tasks["TASK-009"] = renamed
    before = {task_id: p.read_text() for task_id, p in tasks.items()}
    result = run(
        pytester, "tasks", "--infratask-id", "TASK-002", "--infratask-id", "task-009", "-v"
    )
    result.assert_outcomes(passed=3, deselected=3)
    assert sorted(run_log(root)) == ["TASK-002:1", "TASK-002:2", "TASK-009:1"]
    for task_id, path in tasks.items():
        if task_id in ("TASK-002", "TASK-009"):
            assert open_boxes(path) == []
        else:
            assert path.read_text() == before[task_id], f"{task_id} was touched"


def test_setup_show_shows_the_task_fixtures(pytester: pytest.Pytester) -> None:
    root = pytester.path
    path = make_task(root, "TASK-001", [("Only step", "")])
    result = run(pytester, "tasks", "--setup-show")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*SETUP    M infratask_task*",
            "*SETUP    M infratask_handler*",
            "*SETUP    M infratask_safety*",
            "*SETUP    M infratask_run*",
            "*tasks/TASK-001.md::ac1-only-step*",
            "*TEARDOWN M infratask_run*",
        ]
    )
    assert open_boxes(path) == []


def test_disabled_plugin_collects_no_markdown(pytester: pytest.Pytester) -> None:
    root = pytester.path
    path = make_task(root, "TASK-001", [("Only step", "")])
    before = path.read_bytes()
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(pytester, "tasks", "test_plain.py", "-p", "no:infratask", "--co", "-q")
    assert [line for line in result.stdout.lines if "::" in line] == ["test_plain.py::test_plain"]
    result = run(pytester, "tasks", "-p", "no:infratask")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert path.read_bytes() == before
    assert run_log(root) == []
