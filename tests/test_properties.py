"""Properties over generated task files: parsing fails only as TaskFileError, and
write-back changes only the allowed bytes whatever the file looks like."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from pathlib import Path

from helpers import ENTRY, changes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_infratask.read.taskfile import TaskFileError, parse_task
from pytest_infratask.record import writeback as wb

EXAMPLES = int(os.environ.get("INFRATASK_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PATH = Path("/tasks/TASK-001.md")
WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)

# Characters that end a line for str.splitlines; criterion text stays on its line.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
words = (
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=LINE_BREAKS + "`"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)
plain = st.sampled_from(
    ["build", "push", "tag", "same", "Déploy ✓", "日本", "x", "<!-- independent -->"]
)
texts = st.one_of(words, plain, st.builds("{} {}".format, plain, words))

UPDATED_LINES = st.sampled_from(
    [
        None,
        "updated: 2024-01-01",
        "updated_date: '2024-01-15 14:30'",
        'updated: "2024-01-15 14:30:00"',
        "updated_at: 2024-01-15T14:30:00Z",
        "updated: 2024-01-15T14:30Z",
        "updated:",
        "updated: soon",
        "updated: 2024-01-01  # keep this comment",
    ]
)
META_LINES = st.lists(
    st.sampled_from(
        [
            "id: TASK-001",
            "title: A task",
            "status: To Do",
            "priority: high",
            "owner: 'me'",
            "labels: [a, b]",
            "labels:\n  - x\n  - y",
            "created_date: '2024-01-10 09:00'",
            "dependencies: []",
            "custom_key: {a: 1}",
            "timeout: 5",
            'note: "quoted: value"',
        ]
    ),
    max_size=5,
    unique=True,
)


@st.composite
def blocks(draw: st.DrawFn, pad: str) -> str:
    lang = draw(st.sampled_from(["bash", "", "sh", "yaml", "json", "text"]))
    body = draw(st.lists(words, min_size=1, max_size=3))
    fence = draw(st.sampled_from(["```", "~~~"]))
    return "\n".join([pad + fence + lang, *(pad + b for b in body), pad + fence])


@st.composite
def criteria(draw: st.DrawFn) -> str:
    marker = draw(st.sampled_from(["-", "*", "+", "1."]))
    pad = " " * (len(marker) + 1)
    box = draw(st.sampled_from([" ", " ", " ", "x", "X", "~"]))
    lines = [f"{marker} [{box}] {draw(texts)}"]
    lines += [draw(blocks(pad)) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()) and draw(st.booleans()):
        lines.append(f"{pad}- [ ] sub {draw(words)}")
    return "\n".join(lines)


@st.composite
def task_files(draw: st.DrawFn) -> str:
    meta = list(draw(META_LINES))
    updated = draw(UPDATED_LINES)
    if updated is not None:
        meta.insert(draw(st.integers(0, len(meta))), updated)
    items = draw(st.lists(criteria(), max_size=6))
    log = draw(st.sampled_from(["none", "empty", "entries"]))
    log_first = draw(st.booleans())
    parts = [f"# {draw(words)}", ""]
    if draw(st.booleans()):
        parts += ["Example:", "", "```", f"- [ ] {draw(texts)}", "```", ""]
    section = ["## Acceptance Criteria", "", *items, ""]
    log_part: list[str] = []
    if log != "none":
        log_part = ["## Progress Log", ""]
        if log == "entries":
            log_part += [f"- 2024-01-0{i} 10:00: {draw(words)}" for i in range(1, 3)]
        log_part.append("")
    parts += (log_part + section) if log_first else (section + log_part)
    if draw(st.booleans()):
        parts += ["## Notes", "", f"- [ ] {draw(texts)}", ""]
    fenced: bool = bool(meta) or draw(st.booleans())
    text = ("---\n" + "\n".join(meta) + "\n---\n\n" if fenced else "") + "\n".join(parts)
    if not draw(st.booleans()):
        text = text.rstrip("\n")
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text


@FUZZ
@given(task_files(), st.data())
def test_ticking_changes_only_allowed_bytes(text: str, data: st.DataObject) -> None:
    try:
        task = parse_task(PATH, text.encode())
    except TaskFileError:
        assume(False)
        raise
    chosen = data.draw(
        st.lists(st.sampled_from(task.open_criteria), unique_by=lambda c: c.number)
        if task.open_criteria
        else st.just([])
    )
    after = text
    entries = []
    for c in chosen:
        entry = wb.progress_entry(WHEN, f"Completed #{c.number}: {c.text}")
        entries.append(f"- {entry}")
        after = wb.apply(after, wb.Change(c, [entry], WHEN))
    found = changes(text, after)
    assert sorted(found.ticked) == sorted(c.raw_line for c in chosen)
    assert found.entries == entries
    assert all(ENTRY.match(e) for e in found.entries)
    if "\r\n" in text:
        assert "\n" not in after.replace("\r\n", "")

    again = parse_task(PATH, after.encode())
    assert [c.text for c in again.criteria] == [c.text for c in task.criteria]
    # identical criterion lines are interchangeable: compare boxes per line text
    expect = {c.number for c in chosen}
    wanted = sorted((c.raw_line, "x" if c.number in expect else c.box) for c in task.criteria)
    got = sorted(
        (old.raw_line, new.box) for old, new in zip(task.criteria, again.criteria, strict=True)
    )
    assert got == wanted
    # the entries are the last lines of the progress log, in order
    if chosen:
        assert list(again.progress_log[-len(chosen) :]) == [e[2:] for e in entries]


@FUZZ
@given(task_files(), st.data())
def test_edits_at_read_time_offsets_match_a_fresh_read(text: str, data: st.DataObject) -> None:
    """A run ticks at the offsets the reader took, carried across its own writes;
    the result is byte for byte what finding everything again would give."""
    try:
        task = parse_task(PATH, text.encode(), stamp=(1, 1, 1))
    except TaskFileError:
        assume(False)
        raise
    assert task.layout is not None
    chosen = data.draw(
        st.lists(st.sampled_from(task.open_criteria), unique_by=lambda c: c.number)
        if task.open_criteria
        else st.just([])
    )
    place = wb._Place.seeded(task.layout)
    fast = slow = text
    for c in chosen:
        at = place.offset(c)
        assert at is not None and fast.startswith(c.raw_line, at)  # no search needed
        entries = [wb.progress_entry(WHEN, f"Completed #{c.number}")]
        fast, recorded, place = wb._edit(fast, wb.Change(c, entries, WHEN), place)
        fresh = parse_task(PATH, slow.encode()).criterion(c.number)  # found again from scratch
        slow = wb.apply(slow, wb.Change(fresh, entries, WHEN))
        assert recorded and fast == slow
    note = wb.Change(None, ["a failure line"], WHEN)
    assert wb._edit(fast, note, place)[0] == wb.apply(slow, note)


@FUZZ
@given(task_files())
def test_rewriting_with_nothing_to_do_only_moves_updated(text: str) -> None:
    try:
        parse_task(PATH, text.encode())
    except TaskFileError:
        assume(False)
    found = changes(text, wb.apply(text, wb.Change(None, [], WHEN)))
    assert (found.ticked, found.entries, found.inserted) == ([], [], [])


@FUZZ
@given(task_files(), st.data())
def test_parse_raises_only_task_file_error(text: str, data: st.DataObject) -> None:
    raw = text.encode()
    if raw and data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(raw) - 1))
        junk = data.draw(st.binary(min_size=1, max_size=4))
        raw = raw[:at] + junk + raw[at + data.draw(st.integers(0, 4)) :]
    try:
        parse_task(PATH, raw)
    except TaskFileError as exc:
        assert exc.line >= 1
        assert str(exc).startswith(f"{PATH}:{exc.line}: ")


@FUZZ
@given(st.text(max_size=300))
def test_parse_of_any_text_raises_only_task_file_error(text: str) -> None:
    for candidate in (text, "---\n" + text, "---\n" + text + "\n---\n## Acceptance Criteria\n"):
        with contextlib.suppress(TaskFileError):
            parse_task(PATH, candidate.encode("utf-8", "surrogatepass"))
