"""writeback.py: line edits that change only the allowed bytes, under concurrent edits."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import changes, encode, item, task_md

from pytest_infratask.core.task import Criterion
from pytest_infratask.read.taskfile import parse_task
from pytest_infratask.record import writeback as wb

WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
PATH = Path("/tasks/TASK-001.md")


def criteria(text: str) -> list[Criterion]:
    return list(parse_task(PATH, text.encode()).criteria)


def apply(text: str, tick: Criterion | None = None, *entries: str) -> str:
    return wb.apply(text, wb.Change(tick, list(entries), WHEN))


BASE = task_md(item("one", "echo 1"), item("two", "echo 2"), item("three"))


def test_tick_and_log_change_only_allowed_lines() -> None:
    c = criteria(BASE)[1]
    after = apply(BASE, c, "2025-03-04 05:06: Completed #2: two")
    found = changes(BASE, after)
    assert found.ticked == ["- [ ] two"]
    assert found.updated == [("updated: 2024-01-01", "updated: 2025-03-04")]
    assert found.entries == ["- 2025-03-04 05:06: Completed #2: two"]
    assert after.endswith(
        "- 2024-01-01 09:00: Task created\n- 2025-03-04 05:06: Completed #2: two\n"
    )


def test_moved_line_is_found_by_content() -> None:
    c = criteria(BASE)[1]
    moved = BASE.replace("## Acceptance Criteria\n", "## Acceptance Criteria\n\nA new paragraph.\n")
    after = apply(moved, c)
    assert changes(moved, after).ticked == ["- [ ] two"]


def test_moved_line_is_never_ticked_inside_a_code_example() -> None:
    """A look-alike line in a fenced example must not take the tick (it did before)."""
    text = task_md(item("Build image", "make"))
    c = criteria(text)[0]
    example = "Example:\n\n```\n- [ ] Build image\n```\n"
    moved = text.replace("# Demo task\n", f"# Demo task\n\n{example}")
    after = apply(moved, c)
    assert "```\n- [ ] Build image\n```" in after
    assert "- [x] Build image\n  ```bash" in after


def test_identical_criteria_are_both_ticked_after_the_file_moved() -> None:
    """The second of two identical lines must not be taken as ticked by the first (it was)."""
    text = task_md(item("same", "echo 1"), item("same", "echo 2"))
    first, second = criteria(text)
    moved = text.replace("# Demo task\n", "# Demo task\n\nNew intro line.\n")
    after = apply(apply(moved, first), second)
    assert changes(moved, after).ticked == ["- [ ] same", "- [ ] same"]


def test_identical_criteria_below_a_growing_progress_log() -> None:
    """Each entry shifts the criteria down; the second look-alike is still ticked."""
    text = "---\nid: T-1\n---\n## Progress Log\n\n## Acceptance Criteria\n\n"
    text += "- [ ] same\n- [ ] same\n"
    first, second = criteria(text)
    after = apply(apply(text, first, "2025-03-04 05:06: a"), second, "2025-03-04 05:06: b")
    assert after.endswith("- [x] same\n- [x] same\n")
    assert "## Progress Log\n\n- 2025-03-04 05:06: a\n- 2025-03-04 05:06: b\n" in after


def test_already_ticked_by_another_run_is_a_no_op() -> None:
    c = criteria(BASE)[0]
    ticked = BASE.replace("- [ ] one", "- [x] one")
    after = apply(ticked, c)
    assert changes(ticked, after).ticked == []
    assert after.count("- [x] one") == 1


def test_line_changed_by_someone_raises_and_names_the_criterion() -> None:
    c = criteria(BASE)[0]
    edited = BASE.replace("- [ ] one", "- [ ] one, reworded")
    with pytest.raises(wb.WriteBackError, match=r"criterion #1 \('one'\).*changed during the run"):
        apply(edited, c)


def test_write_leaves_file_untouched_when_tick_fails(tmp_path: Path) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(BASE)
    c = parse_task(path, path.read_bytes()).criteria[0]
    path.write_text(BASE.replace("- [ ] one", "- [ ] one!"))
    before = path.read_bytes()
    with pytest.raises(wb.WriteBackError):
        wb.write(path, wb.Change(c, ["x"], WHEN))
    assert path.read_bytes() == before


def test_progress_log_created_at_the_end_when_missing() -> None:
    text = task_md(item("one"), log=None)
    after = apply(text, None, "2025-03-04 05:06: hello")
    assert after.endswith("\n## Progress Log\n- 2025-03-04 05:06: hello\n")
    assert after.startswith(text.replace("updated: 2024-01-01", "updated: 2025-03-04"))
    changes(text, after)


@pytest.mark.parametrize("has_log", [True, False])
def test_file_without_trailing_newline(has_log: bool) -> None:
    text = task_md(item("one"), log=("2024-01-01 09:00: created",) if has_log else None)
    text = text.rstrip("\n")
    c = criteria(text)[0]
    after = apply(text, c, "2025-03-04 05:06: done")
    found = changes(text, after)
    assert found.entries == ["- 2025-03-04 05:06: done"]
    assert found.ticked == ["- [ ] one"]
    if has_log:
        assert after.endswith("- 2024-01-01 09:00: created\n- 2025-03-04 05:06: done")
    else:
        assert after.endswith("- [x] one\n\n## Progress Log\n- 2025-03-04 05:06: done\n")


def test_progress_log_followed_by_another_section() -> None:
    text = task_md(item("one"), log=None) + (
        "\n## Progress Log\n\n- 2024-01-01 09:00: created\n\n## Notes\n\nKeep this.\n"
    )
    after = apply(text, None, "2025-03-04 05:06: a", "2025-03-04 05:06: b")
    assert (
        "- 2024-01-01 09:00: created\n- 2025-03-04 05:06: a\n- 2025-03-04 05:06: b\n\n## Notes\n"
        in after
    )
    assert after.endswith("Keep this.\n")


def test_empty_progress_log_keeps_blank_line_after_heading() -> None:
    text = task_md(item("one"), log=()) + "\n## Notes\n"
    after = apply(text, None, "2025-03-04 05:06: a")
    assert "## Progress Log\n\n- 2025-03-04 05:06: a\n" in after
    changes(text, after)


def test_progress_log_subsection_and_fenced_heading() -> None:
    """A deeper heading stays inside the log; a heading in a code fence is no heading."""
    text = task_md(item("one"), log=None) + (
        "\n```\n## Progress Log\n```\n\n## Progress Log\n\n- old\n\n### Detail\n\n- detail\n"
        "\n## After\n"
    )
    after = apply(text, None, "2025-03-04 05:06: new")
    assert "```\n## Progress Log\n```\n" in after
    assert "- detail\n- 2025-03-04 05:06: new\n\n## After\n" in after


def test_crlf_is_kept_for_every_new_line() -> None:
    text = encode(BASE, newline="\r\n").decode()
    c = criteria(text)[0]
    after = apply(text, c, "2025-03-04 05:06: x")
    assert "\n" not in after.replace("\r\n", "")
    assert changes(text, after).ticked == ["- [ ] one"]


def test_crlf_without_progress_log() -> None:
    text = encode(task_md(item("one"), log=None), newline="\r\n").decode()
    after = apply(text, None, "2025-03-04 05:06: x")
    assert after.endswith("\r\n\r\n## Progress Log\r\n- 2025-03-04 05:06: x\r\n")
    assert "\n" not in after.replace("\r\n", "")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("updated: 2024-01-01", "updated: 2025-03-04"),
        ("updated_date: '2024-01-15 14:30'", "updated_date: '2025-03-04 05:06'"),
        ('updated_at: "2024-01-15 14:30:59"', 'updated_at: "2025-03-04 05:06:07"'),
        ("updated: 2024-01-15T14:30:00Z", "updated: 2025-03-04T05:06:07Z"),
        ("updated: 2024-01-15T14:30Z", "updated: 2025-03-04T05:06Z"),
        ("updated: '2024-01-15T14:30:00+00:00'", "updated: '2025-03-04T05:06:07+00:00'"),
        ("updated:", "updated: 2025-03-04"),
        ("updated: ''", "updated: '2025-03-04'"),
        ("updated: 2024-01-01  # bumped by tooling", "updated: 2025-03-04  # bumped by tooling"),
        ("updated_date:   '2024-01-15 14:30' # note", "updated_date:   '2025-03-04 05:06' # note"),
        ("updated: last tuesday", "updated: last tuesday"),
        ("updated: 2024-01-15T14:30:00.123Z", "updated: 2025-03-04T05:06:07.000Z"),
        ("updated: 2024-01-15T14:30:00.5+02:00", "updated: 2025-03-04T07:06:07.0+02:00"),
        ("updated: '2024-01-15 14:30-0330'", "updated: '2025-03-04 01:36-0330'"),
        ("updated: 2024-01-15T14:30:00", "updated: 2025-03-04T05:06:07"),
        ("updated: 15/01/2024", "updated: 15/01/2024"),
    ],
)
def test_updated_formats(line: str, expected: str) -> None:
    text = task_md(item("one"), meta=f"id: TASK-001\n{line}\nowner: me")
    after = apply(text, None)
    assert f"\n{expected}\n" in after
    assert after.replace(expected, line, 1) == text


def test_only_the_frontmatter_updated_key_moves() -> None:
    text = task_md(
        item("one"),
        meta="id: T-1\nupdated_by: someone\nnested:\n  updated: 2020-01-01\nupdated: 2024-01-01",
        after_ac="Body text:\nupdated: 2024-01-01\n",
    )
    after = apply(text, None)
    assert "updated_by: someone\nnested:\n  updated: 2020-01-01\nupdated: 2025-03-04\n" in after
    assert "Body text:\nupdated: 2024-01-01\n" in after


def test_no_updated_key_is_not_added() -> None:
    text = task_md(item("one"), meta="id: T-1")
    assert apply(text, criteria(text)[0]) == text.replace("- [ ] one", "- [x] one")


def test_progress_entry_is_one_line() -> None:
    entry = wb.progress_entry(WHEN, "Failed #2:\n  multi\r\nline\ttext ")
    assert entry == "2025-03-04 05:06: Failed #2: multi line text"


def test_write_keeps_bom_mode_and_cleans_stale_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_bytes(encode(BASE, bom=True))
    os.chmod(path, 0o640)
    stale = tmp_path / f".TASK-001.md.abc123{wb.TMP_SUFFIX}"
    stale.write_text("half a file")
    c = parse_task(path, path.read_bytes()).criteria[0]
    wb.write(path, wb.Change(c, ["2025-03-04 05:06: done"], WHEN))
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf---\n")
    assert changes(BASE, data[3:].decode()).ticked == ["- [ ] one"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert not stale.exists()
    assert list(tmp_path.iterdir()) == [path]


def test_read_only_file_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(BASE)
    os.chmod(path, 0o444)
    with pytest.raises(wb.WriteBackError, match="read-only"):
        wb.write(path, wb.Change(None, ["x"], WHEN))
    assert path.read_text() == BASE


def test_unchanged_text_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "TASK-001.md"
    path.write_text(task_md(item("one"), meta="id: T-1"))
    before = path.stat().st_ino
    wb.write(path, wb.Change(None, [], WHEN))
    assert path.stat().st_ino == before


def test_a_stray_cr_ending_the_file_stays_part_of_its_last_line() -> None:
    # An LF after that CR would make it a CRLF: "- [ ]\r" (text) would read as an
    # open criterion "- [ ]" afterwards.
    text = "## Acceptance Criteria\n- [ ] one\n  ```bash\n  true\n  ```\n- [ ]\r"
    [one] = criteria(text)
    after = apply(text, one, "2025-03-04 05:06: Completed #1: one")
    assert after.startswith(text.replace("[ ] one", "[x] one") + "\r\n")
    assert [c.text for c in criteria(after)] == ["one"]
    assert changes(text, after).entries == ["- 2025-03-04 05:06: Completed #1: one"]


def test_ticks_go_to_read_time_offsets_while_the_file_is_unchanged(tmp_path: Path) -> None:
    from pytest_infratask.read.taskfile import read_task

    path = tmp_path / "TASK-001.md"
    path.write_text(BASE.replace("## Progress Log", "## Notes\n\n## Progress Log"))
    task = read_task(path)
    assert task.layout is not None
    for c in task.criteria[:2]:
        assert wb.write(
            path, wb.Change(c, [f"2025-03-04 05:06: Completed #{c.number}"], WHEN), task.layout
        )
    again = read_task(path)
    assert [c.done for c in again.criteria] == [True, True, False]
    assert again.progress_log[-2:] == (
        "2025-03-04 05:06: Completed #1",
        "2025-03-04 05:06: Completed #2",
    )
    # someone else's edit changes the stamp: the next tick finds its line again
    path.write_text(path.read_text().replace("## Notes", "## Notes\n\nAdded meanwhile."))
    third = task.criteria[2]
    assert wb.write(path, wb.Change(third, ["2025-03-04 05:07: Completed #3"], WHEN), task.layout)
    final = path.read_text()
    assert "Added meanwhile." in final and "- [x] three" in final
    assert read_task(path).progress_log[-1] == "2025-03-04 05:07: Completed #3"
