"""A failure that repeats the last one of its criterion is counted on its line, not
appended again: a task failing the same way every night keeps one line for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import changes, encode, git, item, task_md, write_task
from hypothesis import assume, given
from hypothesis import strategies as st
from test_properties import FUZZ, LINE_BREAKS, task_files

from pytest_infratask.core.task import Criterion
from pytest_infratask.read.taskfile import TaskFileError, parse_task, read_task, split_lines
from pytest_infratask.read.taskfile import strip_ending as bare
from pytest_infratask.record import writeback as wb

PATH = Path("/tasks/TASK-001.md")
FIRST = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)
Run = Callable[..., pytest.RunResult]


def nightly(runs: int) -> list[datetime]:
    return [FIRST + timedelta(hours=31 * n, minutes=7 * n) for n in range(runs)]


def stamp(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M}"


def log_once(text: str, line: str, when: datetime, topic: str) -> str:
    """One run's failure line, as a run writes it: at the offsets its read took."""
    task = parse_task(PATH, text.encode(), stamp=(1, 1, 1))
    assert task.layout is not None
    change = wb.Change(None, [wb.progress_entry(when, line)], when, topic)
    fast, recorded, _ = wb._edit(text, change, wb._Place.seeded(task.layout))
    assert recorded and fast == wb.apply(text, change), "read-time offsets and a fresh read differ"
    return fast


messages = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=LINE_BREAKS),
    min_size=1,
    max_size=40,
)


@FUZZ
@given(task_files(), st.integers(1, 12), messages, st.integers(2, 6))
def test_identical_failures_leave_one_counted_line_and_every_other_byte(
    text: str, number: int, message: str, runs: int
) -> None:
    try:
        parse_task(PATH, text.encode())
    except TaskFileError:
        assume(False)
        raise
    line = f"Failed #{number}: Deploy: {message}"
    said = " ".join(line.split())
    assume(wb.REPEATED.match(said) is None)
    times = nightly(runs)
    first = log_once(text, line, times[0], f"#{number}")
    appended = changes(text, first).entries
    assert appended == [f"- {stamp(times[0])}: {said}"]
    last = first
    for when in times[1:]:
        last = log_once(last, line, when, f"#{number}")
    before, after = split_lines(first), split_lines(last)
    assert len(after) == len(before)
    at = [bare(x) for x in before].index(appended[0])
    counted = f"- {stamp(times[-1])}: {said} ({runs} times since {stamp(times[0])})"
    assert bare(after[at]) == counted
    assert after[at][len(counted) :] == before[at][len(appended[0]) :], "line ending kept"
    others = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b and i != at]
    # Every other line as it was, but the frontmatter's `updated` value (the time moves).
    assert len(others) <= 1
    for i in others:
        old, new = wb.UPDATED.match(bare(before[i])), wb.UPDATED.match(bare(after[i]))
        assert old and new and old["key"] == new["key"]
    assert sum(said in x for x in after) == 1


@FUZZ
@given(task_files(), st.data())
def test_ticks_after_a_counted_line_go_to_read_time_offsets(text: str, data: st.DataObject) -> None:
    """A run whose failure is counted on an old line (which grows, moving what follows
    it) ticks its other criteria at the offsets its read took, without a search, and
    the result is byte for byte what finding everything again gives."""
    try:
        parse_task(PATH, text.encode())
    except TaskFileError:
        assume(False)
        raise
    t1, t2 = nightly(2)
    # Numbers no criterion of the file has: its ticks log no line on them.
    failures = data.draw(st.lists(st.integers(20, 28), min_size=1, max_size=3, unique=True))
    for number in failures:  # an earlier run's lines
        text = log_once(text, f"Failed #{number}: x", t1, f"#{number}")
    task = parse_task(PATH, text.encode(), stamp=(1, 1, 1))
    assert task.layout is not None
    place = wb._Place.seeded(task.layout)
    fast = slow = text
    steps: list[tuple[str, object]] = [("fail", n) for n in failures]
    steps += [("tick", c) for c in task.open_criteria]
    for kind, what in data.draw(st.permutations(steps)):
        if kind == "fail":
            line = f"Failed #{what}: x"
            change = wb.Change(None, [wb.progress_entry(t2, line)], t2, f"#{what}")
            fast, _, place = wb._edit(fast, change, place)
            slow = wb.apply(slow, change)
        else:
            c = what
            assert isinstance(c, Criterion)
            at = place.offset(c)
            assert at is not None and fast.startswith(c.raw_line, at)  # no search needed
            entries = [wb.progress_entry(t2, f"Completed #{c.number}")]
            fast, recorded, place = wb._edit(fast, wb.Change(c, entries, t2), place)
            fresh = parse_task(PATH, slow.encode()).criterion(c.number)
            slow = wb.apply(slow, wb.Change(fresh, entries, t2))
            assert recorded
        assert fast == slow
    assert fast.count(f"(2 times since {stamp(t1)})") == len(failures)
    assert fast.count("times since") == len(failures)


def test_each_criterion_counts_its_own_failure() -> None:
    text = task_md(item("one", "exit 1"), item("two", "exit 2"))
    a, b = "Failed #1: one: exit code 1", "Failed #2: two: exit code 2"
    times = nightly(3)
    for when in times:
        text = log_once(log_once(text, a, when, "#1"), b, when, "#2")
    log = text.split("## Progress Log\n\n", 1)[1].splitlines()
    since, latest = stamp(times[0]), stamp(times[-1])
    assert log == [
        "- 2024-01-01 09:00: Task created",
        f"- {latest}: {a} (3 times since {since})",
        f"- {latest}: {b} (3 times since {since})",
    ]


def test_a_different_failure_in_between_starts_a_new_line() -> None:
    """The latest line on the criterion decides: X, Y, X is three lines, in order."""
    text = task_md(item("one", "exit 1"))
    x, y = "Failed #1: one: exit code 1", "Failed #1: one: timed out after 5s"
    t1, t2, t3, t4 = nightly(4)
    text = log_once(text, x, t1, "#1")
    text = log_once(text, y, t2, "#1")
    text = log_once(text, x, t3, "#1")
    text = log_once(text, x, t4, "#1")
    assert text.split("## Progress Log\n\n", 1)[1].splitlines()[1:] == [
        f"- {stamp(t1)}: {x}",
        f"- {stamp(t2)}: {y}",
        f"- {stamp(t4)}: {x} (2 times since {stamp(t3)})",
    ]


def test_criterion_numbers_are_told_apart_and_lines_without_a_topic_append() -> None:
    text = task_md(item("one", "exit 1"))
    t1, t2 = nightly(2)
    text = log_once(text, "Failed #1: x", t1, "#1")
    assert log_once(text, "Failed #1: x", t2, "#12").count("Failed #1: x") == 2
    plain = wb.apply(text, wb.Change(None, [wb.progress_entry(t2, "Failed #1: x")], t2))
    assert plain.count("Failed #1: x") == 2
    # A note by a person about the criterion after the line: the next failure is new.
    noted = text.rstrip("\n") + "\n- 2026-12-05 08:00: looked at #1, a network issue\n"
    assert log_once(noted, "Failed #1: x", t2, "#1").count("Failed #1: x") == 2


def test_a_collapse_above_the_criteria_still_ticks_the_right_line() -> None:
    """The log above the criteria: the counted line grows, the criteria move; a tick
    in the same run finds its line (the read-time offsets are not used past it)."""
    text = "---\nid: T-1\n---\n## Progress Log\n\n## Acceptance Criteria\n\n"
    text += "- [ ] same\n  ```bash\n  exit 1\n  ```\n- [ ] same\n"
    t1, t2 = nightly(2)
    text = log_once(text, "Failed #1: same: exit code 1", t1, "#1")
    task = parse_task(PATH, text.encode(), stamp=(1, 1, 1))
    assert task.layout is not None
    place = wb._Place.seeded(task.layout)
    entry = wb.progress_entry(t2, "Failed #1: same: exit code 1")
    text, _, place = wb._edit(text, wb.Change(None, [entry], t2, "#1"), place)
    second = task.criterion(2)
    done = wb.progress_entry(t2, "Completed #2: same")
    text, recorded, _ = wb._edit(text, wb.Change(second, [done], t2), place)
    assert recorded
    assert text.endswith("- [ ] same\n  ```bash\n  exit 1\n  ```\n- [x] same\n")
    assert f"(2 times since {stamp(t1)})\n- {done}\n## Acceptance" in text


def test_on_disk_the_count_keeps_bom_crlf_and_every_other_byte(tmp_path: Path) -> None:
    path = write_task(
        tmp_path, "TASK-001.md", task_md(item("one", "exit 1")), newline="\r\n", bom=True
    )
    times = nightly(3)
    snapshots = []
    for when in times:
        task = read_task(path)  # each run reads the file again
        entry = wb.progress_entry(when, "Failed #1: one: exit code 1")
        assert wb.write(path, wb.Change(None, [entry], when, "#1"), task.layout)
        snapshots.append(path.read_bytes())
    first, last = snapshots[0], snapshots[-1]
    old = f"- {stamp(times[0])}: Failed #1: one: exit code 1\r\n".encode()
    new = (
        f"- {stamp(times[-1])}: Failed #1: one: exit code 1 (3 times since {stamp(times[0])})\r\n"
    ).encode()
    assert first.count(old) == 1
    assert last == first.replace(old, new).replace(
        f"updated: {times[0]:%Y-%m-%d}".encode(), f"updated: {times[-1]:%Y-%m-%d}".encode()
    )
    assert last.startswith(encode("", bom=True))


def test_three_failing_runs_leave_one_line_with_a_count(
    pytester: pytest.Pytester, run: Run
) -> None:
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Ready", "echo 'not yet' >&2; exit 1"),
            meta="id: TASK-001\ntitle: Demo task\nupdated: 2024-01-01\nretries: 0",
        ),
    )
    run(str(path)).assert_outcomes(failed=1)
    first = path.read_text()
    [line] = [x for x in first.splitlines() if "Failed #1" in x]
    for _ in range(2):
        run(str(path)).assert_outcomes(failed=1)
    last = path.read_text()
    [counted] = [x for x in last.splitlines() if "Failed #1" in x]
    when, text = line[2:].split(": ", 1)
    assert counted.startswith("- ") and counted.endswith(f"{text} (3 times since {when})")
    assert last == first.replace(line, counted).replace(
        first.split("updated: ", 1)[1].split("\n", 1)[0],
        last.split("updated: ", 1)[1].split("\n", 1)[0],
    )


def test_a_verification_failing_the_same_way_keeps_one_line(
    pytester: pytest.Pytester, run: Run, git_identity: None
) -> None:
    """The task's own line too: its change stays uncommitted while verification fails,
    so every run logs it."""
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item("Rotated", "echo rotated > rotated.txt"),
            after_ac="## Verification\n```bash\ntest -f approved.txt\n```\n",
        ),
    )
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "init")
    run(str(path)).assert_outcomes(passed=1, failed=1)
    first = [x for x in path.read_text().splitlines() if "Verification failed" in x]
    for _ in range(2):
        run(str(path)).assert_outcomes(skipped=1, failed=1)
    [line] = [x for x in path.read_text().splitlines() if "Verification failed" in x]
    assert line.endswith(f" (3 times since {first[0][2:18]})")
