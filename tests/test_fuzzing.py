"""Fuzzing: the atheris harness in a bounded run, and the inputs it found, kept as
regression tests so they hold without the fuzzer."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import changes

from pytest_infratask.read.taskfile import TaskFileError, parse_task
from pytest_infratask.record.writeback import Change, apply, progress_entry

HERE = Path(__file__).parent
RUNS = int(os.environ.get("INFRATASK_ATHERIS_RUNS", "10000"))
WHEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PATH = Path("TASK-001.md")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_finds_nothing(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "fuzz_corpus", corpus)
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "fuzz_task_file.py"),
            f"-runs={RUNS}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"Done {RUNS} runs" in proc.stderr


def tick_all(text: str) -> str:
    task = parse_task(PATH, text.encode())
    for criterion in task.open_criteria:
        after = apply(text, Change(criterion, [progress_entry(WHEN, "done")], WHEN))
        changes(text, after)
        again = parse_task(PATH, after.encode())
        assert len(again.criteria) == len(task.criteria)
        assert again.criterion(criterion.number).done  # type: ignore[union-attr]
    return text


@pytest.mark.parametrize("separator", ["\x1d", "\x0c", "\u2028", "\x85", "\x0b"])
def test_unicode_line_separators_are_text(separator: str) -> None:
    text = f"## Acceptance Criteria\n- [ ] Build{separator}it\n  ```bash\n  true\n  ```\n"
    [criterion] = parse_task(PATH, text.encode()).criteria
    assert criterion.line == 2 and separator in criterion.text
    tick_all(text)


def test_carriage_return_at_end_of_file_is_text() -> None:
    tick_all("## Acceptance Criteria\n- [ ] One\n- [ ] Two\r")


def test_empty_heading_is_not_read_as_another_heading() -> None:
    text = "##\nnot a heading\n- [ ] Outside\n## Acceptance Criteria\n- [ ] Inside\n"
    task = parse_task(PATH, text.encode())
    assert [c.text for c in task.criteria] == ["Inside"]
    tick_all(text)


def test_comment_after_an_empty_updated_value_stays_a_comment() -> None:
    text = "---\nupdated: # set by the tool\n---\n## Acceptance Criteria\n- [ ] One\n"
    [criterion] = parse_task(PATH, text.encode()).criteria
    after = apply(text, Change(criterion, [], WHEN))
    assert "updated: 2026-11-25 # set by the tool\n" in after
    assert parse_task(PATH, after.encode()).meta["updated"].isoformat() == "2026-11-25"


def test_impossible_date_is_a_collection_error() -> None:
    with pytest.raises(TaskFileError) as info:
        parse_task(PATH, b"---\nupdated: 2024-02-31\n---\n# T\n")
    assert info.value.line == 2 and "day is out of range" in info.value.message
