"""Backlog.md trees as Backlog.md writes them: read, counted, run, never mixed up."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import QUIET, item, task_md

from pytest_infratask.core.durations import DurationError, parse_duration
from pytest_infratask.read.taskfile import read_task

CORPUS = Path(__file__).parent / "backlog_corpus"
STRICT = ("-W", "error::pytest_infratask.core.schema.UnknownKeyWarning")


@pytest.fixture
def corpus(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(CORPUS, pytester.path, dirs_exist_ok=True)
    out = pytester.mkdir("out")
    monkeypatch.setenv("OUT", str(out))
    pytester.makeini("[pytest]\ninfratask_task_dirs = backlog/completed\n")
    return pytester.path


def test_the_corpus_collects_with_the_right_counts(pytester: pytest.Pytester, corpus: Path) -> None:
    result = pytester.runpytest(*QUIET, *STRICT, "--co", "-q", "backlog")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    ids = [line for line in result.stdout.lines if "::" in line]
    per_file = {name: sum(name in i for i in ids) for name in ("task-3 -", "task-3.1", "task-4")}
    assert per_file == {"task-3 -": 4, "task-3.1": 1, "task-4": 2}
    assert len(ids) == 7
    assert not any(s in i for i in ids for s in ("archive", "completed", "drafts"))


def test_the_corpus_runs_what_it_should(pytester: pytest.Pytester, corpus: Path) -> None:
    result = pytester.runpytest(*QUIET, *STRICT, "backlog")
    # task-3: #1 done, #2 #3 pass, #4 manual; task-3.1 passes; task-4: #1 passes, #2 manual
    result.assert_outcomes(passed=4 + 0, skipped=3)
    made = sorted(p.name for p in (corpus / "out").iterdir())
    assert made == ["task-3.1.1", "task-3.2", "task-3.3", "task-4.1"]
    text = (corpus / "backlog/tasks/task-3 - Rotate-the-ingress-certificate.md").read_text()
    assert "- [x] #2 New certificate requested" in text
    assert "updated_date: '20" in text and "'2025-06-02 14:30'" not in text


def test_backlog_values_read_as_backlog_reads_them() -> None:
    tasks = CORPUS / "backlog" / "tasks"
    full = read_task(tasks / "task-3 - Rotate-the-ingress-certificate.md")
    assert full.meta["assignee"] == ["@alice"] and full.meta["reporter"] == "@bob"
    assert [c.number for c in full.criteria] == [1, 2, 3, 4]
    assert full.dependencies == ("task-2",) and full.labels == ("networking", "security")
    sub = read_task(tasks / "task-3.1 - Staging-ingress.md")
    assert sub.meta["assignee"] == "@dave" and sub.meta["reporter"] == "@bob"
    pair = read_task(tasks / "task-4 - Pair-on-DNS.md")
    assert pair.meta["assignee"] == ["@erin", "frank"]
    assert pair.meta["due_date"] == "2025-06-30"
    assert read_task(tasks / "task-5 - Write-the-runbook.md").criteria == ()


def _task(path: Path, task_id: str, meta: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(task_md(item("Step", "true"), meta=f"id: {task_id}\n{meta}"))
    return path


@pytest.mark.parametrize("other_id", ["TASK-7", "task-7"])
def test_duplicate_ids_are_a_collection_error_naming_both(
    pytester: pytest.Pytester, other_id: str
) -> None:
    first = _task(pytester.path / "tasks" / "TASK-7.md", "TASK-7")
    second = _task(pytester.path / "tasks" / "more" / "task-7-again.md", other_id)
    result = pytester.runpytest(*QUIET, "tasks")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    out = result.stdout.str()
    assert str(first) in out and str(second) in out and "already used by" in out
    assert "- [x]" not in first.read_text() + second.read_text()


def test_an_archived_copy_named_directly_is_still_a_duplicate(
    pytester: pytest.Pytester, corpus: Path
) -> None:
    archived = "backlog/archive/tasks/task-3 - Rotate-the-ingress-certificate.md"
    result = pytester.runpytest(*QUIET, "backlog/tasks", archived)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*task id 'task-3' is already used by*"])
    assert not (corpus / "out" / "archive-ran").exists()


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("lables", "labels"), ("dependancies", "dependencies"), ("timout", "timeout")],
)
def test_unknown_keys_warn_with_a_suggestion(
    pytester: pytest.Pytester, key: str, suggestion: str
) -> None:
    path = _task(pytester.path / "TASK-1.md", "TASK-1", f"{key}: [x]")
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(passed=1, warnings=1)
    wanted = f"*unknown frontmatter key '{key}'; did you mean '{suggestion}'?*"
    result.stdout.fnmatch_lines([wanted])
    path.write_text(path.read_text().replace("[x]", "[ ]"))
    failed = pytester.runpytest(*QUIET, *STRICT, str(path))
    assert failed.ret == pytest.ExitCode.INTERRUPTED
    assert "- [x]" not in path.read_text()


def test_strict_keys_ini_makes_unknown_keys_errors(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ninfratask_strict_keys = true\ninfratask_known_keys = team\n")
    path = _task(pytester.path / "TASK-1.md", "TASK-1", "team: infra\nlables: [x]")
    result = pytester.runpytest(*QUIET, str(path))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*unknown frontmatter key 'lables'; did you mean 'labels'?*"])
    assert "'team'" not in result.stdout.str()


def test_a_hook_declares_keys_of_its_own(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("def pytest_infratask_frontmatter_keys(config):\n    return ['ticket']\n")
    path = _task(pytester.path / "TASK-1.md", "TASK-1", "ticket: OPS-1")
    pytester.runpytest(*QUIET, *STRICT, str(path)).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("1.5h", 5400.0),
        ("2d", 172800.0),
        (0.5, 0.5),
        ("", None),
        (None, None),
    ],
)
def test_one_duration_parser(value: object, seconds: float | None) -> None:
    assert parse_duration(value, "timeout") == seconds


@pytest.mark.parametrize(
    "value", ["soon", "10 minutes", "1h30", "-5", "m10", True, float("inf"), "1e9", [1], 10**12]
)
def test_unreadable_durations_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(DurationError, match=r"^wait: "):
        parse_duration(value, "wait")


def test_timeout_with_units_is_used(pytester: pytest.Pytester) -> None:
    path = pytester.path / "TASK-1.md"
    path.write_text(task_md(item("Slow", "sleep 30"), meta="id: TASK-1\ntimeout: 0m1s"))
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*timed out after 1s*"])


def test_unreadable_timeout_is_a_collection_error_naming_the_key(
    pytester: pytest.Pytester,
) -> None:
    path = pytester.path / "TASK-1.md"
    marker = pytester.path / "ran"
    path.write_text(task_md(item("Run", f"touch {marker}"), meta="id: TASK-1\ntimeout: 1h30"))
    result = pytester.runpytest(*QUIET, str(path))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*TASK-1.md:3: timeout: cannot read '1h30' as a duration*"])
    assert not marker.exists()
