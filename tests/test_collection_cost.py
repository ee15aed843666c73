"""Collection does constant work per file, however many paths are named."""

from __future__ import annotations

import sys
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any

import pytest
from helpers import QUIET as HELPER_QUIET
from helpers import item, task_md
from hypothesis import given
from hypothesis import strategies as st

import pytest_infratask
from pytest_infratask.items import TaskModule
from pytest_infratask.optin import SET_ASIDE, opted_dir

PLUGIN_DIR = str(Path(pytest_infratask.__file__).parent)
QUIET = (*HELPER_QUIET, "--co", "-q")

# ---------------------------------------------------------------- the predicate

PARTS = st.sampled_from(["a", "b", "archive", "Completed", "drafts", "tasks"])
PATHS = st.lists(PARTS, min_size=0, max_size=5).map(lambda p: PurePosixPath("/", *p))


def by_definition(roots: list[PurePosixPath], file_path: PurePosixPath) -> bool:
    """The opt-in rule as docs/running.md states it: below a named or listed directory, and
    not inside a set-aside folder there."""
    for root in roots:
        try:
            inner = file_path.relative_to(root)
        except ValueError:
            continue
        if not any(part.lower() in SET_ASIDE for part in inner.parts[:-1]):
            return True
    return False


@given(roots=st.lists(PATHS, max_size=4), dirs=st.lists(PATHS, min_size=1, max_size=6))
def test_opted_dir_follows_the_rule(roots: list[PurePosixPath], dirs: list[PurePosixPath]) -> None:
    memo: dict[str, bool] = {}  # shared: answers remembered for one directory hold for others
    keys = frozenset(str(r) for r in roots)
    for directory in dirs:
        file_path = directory / "task-1.md"
        assert opted_dir(keys, memo, Path(directory)) == by_definition(roots, file_path), (
            roots,
            directory,
        )


# ---------------------------------------------------------------- a whole collection


class Counter:
    """Calls of ``pytest_collect_file`` that reached the plugin, the task-file nodes
    they returned, and the lines of plugin code run during collection."""

    def __init__(self) -> None:
        self.calls = 0
        self.nodes: dict[int, Any] = {}
        self.lines = 0

    @pytest.hookimpl(wrapper=True)
    def pytest_collect_file(self, file_path: Path) -> Any:
        result = yield
        if file_path.suffix == ".md":
            self.calls += 1
            for node in result or ():
                if isinstance(node, TaskModule):
                    self.nodes[id(node)] = node
        return result

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(PLUGIN_DIR):
            return None

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "line":
                self.lines += 1
            return local

        return local(frame, event, arg)


def collect_named(pytester: pytest.Pytester, tasks: list[Path], named: int) -> Counter:
    counter = Counter()
    sys.settrace(counter.trace)
    try:
        recorder = pytester.inline_run(*QUIET, *map(str, tasks[:named]), plugins=[counter])
    finally:
        sys.settrace(None)
    assert recorder.ret == pytest.ExitCode.OK
    assert len(recorder.getcalls("pytest_itemcollected")) == named
    return counter


def test_work_per_file_does_not_grow_with_the_named_paths(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "backlog" / "tasks"
    folder.mkdir(parents=True)
    tasks = []
    for n in range(120):
        path = folder / f"task-{n}.md"
        path.write_text(task_md(item(f"Step {n}", "true"), meta=f"id: TASK-{n}\ntitle: t{n}"))
        tasks.append(path)
    few, many = collect_named(pytester, tasks, 20), collect_named(pytester, tasks, 80)
    # pytest collects a named file's directory again for each file named
    assert (few.calls, many.calls) == (20 * 120, 80 * 120)
    # one node per named task file, however often its directory is collected
    assert (len(few.nodes), len(many.nodes)) == (20, 80)
    per_call = few.lines / few.calls, many.lines / many.calls
    assert per_call[1] <= per_call[0] * 1.1, per_call


LOADED = """
import sys
import pytest

code = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
print(sorted(m for m in sys.modules if m.startswith("pytest_infratask")))
raise SystemExit(code)
"""
TASK_MACHINERY = (
    "pytest_infratask.core.task",
    "pytest_infratask.core.outcome",
    "pytest_infratask.core.messages",
    "pytest_infratask.items",
)


def test_a_run_without_task_files_does_not_load_the_task_machinery(
    pytester: pytest.Pytester,
) -> None:
    """The plugin loads in every pytest run of an environment that has it: a run that
    collects no task file (a Python test suite, ``pytest --markers``) pays for its
    hooks and options, not for reading, running or reporting tasks."""
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    pytester.makefile(".md", README="# Notes\n\nNo task here.\n")
    script = pytester.makepyfile(loaded=LOADED)
    for args in (["test_plain.py"], ["--markers"]):
        done = pytester.run(sys.executable, str(script), *args)
        assert done.ret == 0, done.stdout.str()
        loaded = set(eval(done.stdout.lines[-1]))
        assert "pytest_infratask.plugin" in loaded
        assert not loaded & set(TASK_MACHINERY), sorted(loaded & set(TASK_MACHINERY))
