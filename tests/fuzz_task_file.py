"""Coverage-guided fuzzing of the reader and the writer with atheris.

    python tests/fuzz_task_file.py -runs=100000        # or -max_total_time=600

Any bytes: reading either works or raises TaskFileError (a collection error
naming file and line); ticking any open criterion changes only allowed bytes
and the result reads back with that criterion done.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from helpers import changes

    from pytest_infratask.read import TaskFileError, decode, parse_task
    from pytest_infratask.writeback import Change, apply, progress_entry

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


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
