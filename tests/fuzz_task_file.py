"""Coverage-guided fuzzing of the reader and the writer with atheris.

    python tests/fuzz_task_file.py -runs=100000        # or -max_total_time=600

Any bytes: reading either works or raises TaskFileError (a collection error
naming file and line); ticking any open criterion changes only allowed bytes
and the result reads back with that criterion done; ticking at the offsets the
reader recorded gives the same bytes as finding everything again; and wherever
the outline scanner answers, mistletoe gives the same outline.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from helpers import changes

    from pytest_infratask.read import taskfile as read
    from pytest_infratask.read.outline import fast_outline
    from pytest_infratask.read.taskfile import (
        TaskFileError,
        decode,
        mistletoe_outline,
        parse_task,
        split_lines,
        strip_ending,
        task_sections,
    )
    from pytest_infratask.record import writeback
    from pytest_infratask.record.writeback import Change, apply, progress_entry

PATH = Path("TASK-001.md")
WHEN = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def one_input(data: bytes) -> None:
    try:
        task = parse_task(PATH, data)
    except TaskFileError as exc:
        assert exc.line >= 1, exc
        return
    text = decode(PATH, data)
    for criterion in task.open_criteria[:3]:
        after = apply(text, Change(criterion, [progress_entry(WHEN, "fuzz entry")], WHEN))
        changes(text, after)
        again = parse_task(PATH, after.encode("utf-8"))
        assert len(again.criteria) == len(task.criteria)
        assert again.criterion(criterion.number) is not None
        assert again.criterion(criterion.number).done  # type: ignore[union-attr]
    seeded = parse_task(PATH, data, stamp=(1, 1, 1))
    assert seeded.layout is not None
    place = writeback._Place.seeded(seeded.layout)
    fast = slow = text
    headings = len(task_sections(body_of(text)).headings)
    # A lone CR makes the file's line ending ambiguous: a fresh read may take it for
    # part of a CRLF once an entry follows it, the run keeps the ending it read.
    lone_cr = "\r" in text.replace("\r\n", "")
    for criterion in seeded.open_criteria[:3] if not lone_cr else ():
        entries = [progress_entry(WHEN, "fuzz entry")]
        fast, _, place = writeback._edit(fast, Change(criterion, entries, WHEN), place)
        # the same criterion as a fresh read of the file as it is now finds it
        fresh = parse_task(PATH, slow.encode("utf-8")).criterion(criterion.number)
        slow = apply(slow, Change(fresh, entries, WHEN))
        assert fast == slow
        sections = task_sections(body_of(fast))
        if len(sections.headings) != headings or not sections.span("progress log"):
            # A fresh read no longer sees the log where the run writes it: a section the
            # run started at the end (a new heading, or none where an unclosed fence
            # swallows it), or a setext heading right below the log taken in as a lazy
            # line of the new entry. The run keeps writing where it wrote.
            break
    body = body_of(text)
    outline = fast_outline(body)
    if outline is not None:
        assert outline == mistletoe_outline(body)


def body_of(text: str) -> list[str]:
    return read.body_of([strip_ending(line) for line in split_lines(text)])


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
