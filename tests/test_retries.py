"""Retries: once by default, never for failures that repeat themselves, opt-out per
criterion or task, and no second layer of reruns from pytest-rerunfailures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import changes, item, task_md, write_task

Run = Callable[..., pytest.RunResult]


def make(pytester: pytest.Pytester, *criteria: str, meta: str | None = None) -> Path:
    text = task_md(*criteria, **({"meta": meta} if meta else {}))
    return write_task(pytester.path, "TASK-001.md", text)


def tries(pytester: pytest.Pytester, name: str = "tries") -> int:
    path = pytester.path / name
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(
    ("script", "why"),
    [
        ("cat missing.txt", "a file or directory is missing"),
        ("eval 'if then fi'", "a syntax error"),
        ("python3 -c 'print(('", "a syntax error"),
        ("echo 'cannot open ro: Operation not permitted' >&2; exit 1", "a permission is missing"),
    ],
)
def test_deterministic_failures_are_not_retried(
    pytester: pytest.Pytester, run: Run, script: str, why: str
) -> None:
    path = make(pytester, item("Appends, then fails", f"echo x >> tries\n{script}"))
    result = run(str(path))
    result.assert_outcomes(failed=1)
    assert tries(pytester) == 1, "the block ran once: its append happened once"
    assert why in result.stdout.str()


def test_transient_failure_is_retried_from_the_first_line(
    pytester: pytest.Pytester, run: Run
) -> None:
    """The whole block runs again: the line before the failure runs twice."""
    path = make(pytester, item("Flaky", "echo x >> tries\ntest $(wc -l < tries) -ge 2"))
    run(str(path)).assert_outcomes(passed=1)
    assert tries(pytester) == 2


def test_criterion_opts_out_with_a_comment(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Append once <!-- retries: 0 --> <!-- independent -->", "echo x >> tries; exit 1"),
        item("Default <!-- independent -->", "echo x >> tries2; exit 1"),
    )
    before = path.read_text()
    result = run(str(path), "-v")
    result.assert_outcomes(failed=2)
    assert (tries(pytester), tries(pytester, "tries2")) == (1, 2)
    result.stdout.fnmatch_lines(["*::ac1-append-once FAILED*"])
    entries = changes(before, path.read_text()).entry_texts()
    assert entries[0].startswith("Failed #1: Append once: command failed")


def test_task_opts_out_with_retries_zero(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Fails", "echo x >> tries; exit 1"),
        meta="id: TASK-001\ntitle: Demo task\nretries: 0",
    )
    run(str(path)).assert_outcomes(failed=1)
    assert tries(pytester) == 1


def test_criterion_comment_beats_the_task_setting(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Two more tries <!-- retries: 2 -->", "echo x >> tries; exit 1"),
        meta="id: TASK-001\ntitle: Demo task\nretries: 0",
    )
    run(str(path)).assert_outcomes(failed=1)
    assert tries(pytester) == 3


@pytest.mark.parametrize("flag", ["--reruns=2", "--force-reruns=2"])
def test_rerunfailures_does_not_add_a_second_layer(
    pytester: pytest.Pytester, run: Run, flag: str
) -> None:
    pytest.importorskip("pytest_rerunfailures")
    path = make(pytester, item("Always fails", "echo x >> tries; exit 1"))
    before = path.read_text()
    result = run(str(path), "-p", "rerunfailures", flag)
    assert result.ret == 1
    assert tries(pytester) == 2, "one run and infratask's one retry, nothing more"
    entries = changes(before, path.read_text()).entry_texts()
    assert len(entries) == 1 and entries[0].startswith("Failed #1: Always fails")


@pytest.mark.parametrize("flag", ["--reruns=2", "--force-reruns=2"])
def test_rerunfailures_does_not_rerun_the_verify_item(
    pytester: pytest.Pytester, run: Run, flag: str
) -> None:
    """A failed Verification section runs once: a rerun would run it (and a commit or
    push after it) again, and a second pass would hide the first one's failure."""
    pytest.importorskip("pytest_rerunfailures")
    text = task_md(item("Done", "true")).replace(
        "## Progress Log",
        "## Verification\n```bash\necho x >> verified\nexit 1\n```\n\n## Progress Log",
    )
    write_task(pytester.path, "TASK-001.md", text)
    result = run(
        str(pytester.path / "TASK-001.md"), "-p", "rerunfailures", flag, "--infratask-retries=0"
    )
    outcomes = result.parseoutcomes()
    assert (outcomes["passed"], outcomes["failed"]) == (1, 1)
    assert tries(pytester, "verified") == 1, "the Verification section ran once"


def test_rerunfailures_still_reruns_ordinary_tests(pytester: pytest.Pytester, run: Run) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makepyfile(
        test_flaky="""
        from pathlib import Path

        def test_second_time_lucky():
            marker = Path("ran")
            first = not marker.exists()
            marker.touch()
            assert not first
        """
    )
    path = make(pytester, item("Always fails", "echo x >> tries; exit 1"))
    result = run(str(path), "test_flaky.py", "-p", "rerunfailures", "--reruns=1")
    assert result.parseoutcomes() == {"passed": 1, "failed": 1, "rerun": 1}
    assert tries(pytester) == 2
