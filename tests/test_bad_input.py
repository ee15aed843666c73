"""Bad input costs a clear collection error, bounded in time and memory, and loses nothing."""

from __future__ import annotations

import resource
import time
import tracemalloc
from pathlib import Path

import pytest
from helpers import QUIET, item, task_md

from pytest_infratask.read.taskfile import TaskFileError, parse_task

HEAD = "---\nid: TASK-001\nupdated: 2024-01-01\n---\n# T\n\n## Acceptance Criteria\n\n"
# Generous: the unbounded versions took minutes and gigabytes.
CPU_SECONDS = 20.0
PEAK_BYTES = 64 * 2**20
MAX_RSS_KIB = 400 * 1024


def _alias_bomb() -> bytes:
    lines = ["---", "id: TASK-001", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    return ("\n".join(lines) + "\n---\n" + "## Acceptance Criteria\n\n- [ ] x\n").encode()


BAD: dict[str, tuple[bytes, str]] = {
    "alias bomb": (_alias_bomb(), "anchors and aliases"),
    "anchor": (b"---\nid: TASK-001\nenv: &e {A: 1}\n---\n", "anchors and aliases"),
    "deep flow yaml": (
        b"---\nid: TASK-001\nx: " + b"[" * 100000 + b"]" * 100000 + b"\n---\n",
        "nested more than",
    ),
    "deep block yaml": (
        (
            "---\nid: TASK-001\nx:\n" + "".join(" " * i + "-\n" for i in range(1, 2000)) + "---\n"
        ).encode(),
        "nested more than",
    ),
    "deep lists": (
        (HEAD + "".join("  " * i + "- [ ] step\n" for i in range(2000))).encode(),
        "nested too deeply",
    ),
    "deep quotes": (
        (HEAD + "".join("> " * i + "x\n" for i in range(2000))).encode(),
        "nested too deeply",
    ),
    "deep one line": ((HEAD + "- " * 100000 + "x\n").encode(), "nested too deeply"),
    "relative id": (b"---\nid: ../../x\n---\n", "id '../../x' must be letters"),
    "absolute id": (b"---\nid: /etc/passwd\n---\n", "must be letters, digits"),
    "infinite retries": (b"---\nid: TASK-001\nretries: .inf\n---\n", "retries: inf is not"),
    "nan timeout": (b"---\nid: TASK-001\ntimeout: .nan\n---\n", "timeout: nan is not"),
    "absurd number": (
        b"---\nid: TASK-001\nenv:\n  N: 1e999999999\nx: 99999999999999999999\n---\n",
        "too large to be meant",
    ),
    "absurd retries": (b"---\nid: TASK-001\nretries: 1000000\n---\n", "retries: expected"),
    "unreadable timeout": (b"---\nid: TASK-001\ntimeout: soon\n---\n", "timeout: cannot read"),
    "absurd timeout": (b"---\nid: TASK-001\ntimeout: 99999d\n---\n", "timeout: 99999d is not"),
    "nul byte": ((HEAD + "- [ ] x\n  ```bash\n  echo a\0b\n  ```\n").encode(), "NUL byte"),
    "cr only": (HEAD.replace("\n", "\r").encode() + b"- [ ] x\r", "CR only"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_a_bounded_collection_error(pytester: pytest.Pytester, name: str) -> None:
    data, message = BAD[name]
    path = pytester.path / "TASK-001.md"
    path.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = pytester.runpytest_subprocess(*QUIET, str(path), timeout=600)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    result.stdout.fnmatch_lines([f"*TASK-001.md:*{message}*"])
    assert path.read_bytes() == data
    assert cpu < CPU_SECONDS
    # the largest child so far: a bound for this one too (pytest alone takes ~60 MB)
    assert after.ru_maxrss < MAX_RSS_KIB


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_parse_is_bounded_in_process(name: str) -> None:
    data, message = BAD[name]
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(TaskFileError, match=message.split("'")[0]):
            parse_task(Path("TASK-001.md"), data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < CPU_SECONDS
    assert peak < PEAK_BYTES


def test_report_names_never_leave_the_report_dir(tmp_path: Path) -> None:
    from pytest_infratask.util.files import report_path

    for task_id in ("../../x", "/abs/x", "..", "a/b", "x\0y", "TASK-1"):
        path = report_path(tmp_path, task_id)
        assert path.parent == tmp_path and path.name.endswith(".json")
        assert not path.name.startswith(".")


def test_crlf_and_lf_still_read() -> None:
    text = task_md(item("Step", "echo hi"))
    for newline in ("\n", "\r\n"):
        task = parse_task(Path("t.md"), text.replace("\n", newline).encode())
        assert len(task.criteria) == 1


def test_symlinked_task_file_is_written_through(pytester: pytest.Pytester) -> None:
    real = pytester.path / "store" / "TASK-001.md"
    real.parent.mkdir()
    real.write_text(task_md(item("Step", "true")))
    link = pytester.path / "TASK-001.md"
    link.symlink_to(real)
    result = pytester.runpytest(*QUIET, str(link))
    result.assert_outcomes(passed=1)
    assert link.is_symlink() and link.resolve() == real
    assert "- [x] Step" in real.read_text()
    assert not list(real.parent.glob(".*tmp")) and not list(pytester.path.glob(".*tmp"))


@pytest.mark.parametrize(
    ("before", "shape"),
    [
        ("2024-01-01T09:00", r"\d{4}-\d\d-\d\dT\d\d:\d\d"),
        ("2024-01-01T09:00:00", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"),
        ("2024-01-01T09:00:00.123", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}"),
        ("2024-01-01T09:00:00Z", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"),
        ("2024-01-01T09:00:00.5Z", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\dZ"),
        ("2024-01-01T09:00:00+02:00", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+02:00"),
        ("'2024-01-01 09:00:00-0530'", r"'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d-0530'"),
        ('"2024-01-01T09:00+00:00"', r'"\d{4}-\d\d-\d\dT\d\d:\d\d\+00:00"'),
    ],
)
def test_updated_keeps_its_iso_form(pytester: pytest.Pytester, before: str, shape: str) -> None:
    import re

    path = pytester.path / "TASK-001.md"
    path.write_text(task_md(item("Step", "true"), meta=f"id: TASK-001\nupdated: {before}"))
    pytester.runpytest(*QUIET, str(path)).assert_outcomes(passed=1)
    line = next(s for s in path.read_text().splitlines() if s.startswith("updated:"))
    value = line.removeprefix("updated: ")
    assert value != before and re.fullmatch(shape, value), line
