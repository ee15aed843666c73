"""lifecycle.settle: while task items run, what the session holds is kept out of the
cyclic garbage collector's scans (``gc.freeze``), and given back at its end."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from helpers import item, opt_in, task_md, write_task

Run = Callable[..., pytest.RunResult]

RECORDER = """
import gc


def pytest_infratask_criterion_result(task, outcome, config):
    with open(config.rootpath / "frozen.log", "a") as log:
        log.write(f"{outcome.number} {gc.get_freeze_count()}\\n")


def test_plain():
    with open("plain.log", "w") as log:
        log.write(str(gc.get_freeze_count()))
"""


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """The runs here are in-process: they start and end with nothing frozen."""
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()


def recorded(pytester: pytest.Pytester) -> list[int]:
    path = pytester.path / "frozen.log"
    return [int(line.split()[1]) for line in path.read_text().splitlines()]


def test_objects_are_frozen_while_criteria_run_and_unfrozen_after(
    pytester: pytest.Pytester, run: Run
) -> None:
    pytester.makeconftest(RECORDER)
    write_task(pytester.path, "TASK-001.md", task_md(item("one", "true"), item("two", "true")))
    run().assert_outcomes(passed=2)
    counts = recorded(pytester)
    assert len(counts) == 2 and all(count > 1000 for count in counts), counts
    assert gc.get_freeze_count() == 0


def test_a_session_without_task_items_leaves_the_collector_alone(
    pytester: pytest.Pytester, run: Run
) -> None:
    pytester.makepyfile(test_only=RECORDER)
    run("test_only.py").assert_outcomes(passed=1)
    assert (pytester.path / "plain.log").read_text() == "0"


def test_collect_only_freezes_nothing(pytester: pytest.Pytester, run: Run) -> None:
    pytester.makeconftest(RECORDER)
    write_task(pytester.path, "TASK-001.md", task_md(item("one", "true")))
    result = run("--co", "-q")
    assert "TASK-001.md" in result.stdout.str()
    assert not (pytester.path / "frozen.log").exists()
    assert gc.get_freeze_count() == 0


def test_what_another_part_of_the_process_froze_stays_frozen(
    pytester: pytest.Pytester, run: Run
) -> None:
    pytester.makeconftest(RECORDER)
    write_task(pytester.path, "TASK-001.md", task_md(item("one", "true")))
    gc.freeze()
    before = gc.get_freeze_count()
    run().assert_outcomes(passed=1)
    [during] = recorded(pytester)
    assert 0 < during <= before  # nothing more frozen by the run (objects may be freed)
    assert gc.get_freeze_count() > 0  # and nothing given back that the run did not freeze


AT_EXIT = """
import atexit
import gc


def pytest_configure(config):
    path = config.rootpath / "at_exit.log"
    atexit.register(lambda: path.write_text(str(gc.get_freeze_count())))
"""


def test_run_as_the_program_the_session_stays_frozen_to_the_exit(
    pytester: pytest.Pytester,
) -> None:
    """``pytest`` as the program ends with its session: what the session froze stays
    frozen, so the collections at the end skip it (what the exit frees anyway); a
    program that runs pytest in-process gets it back (the other tests here)."""
    pytester.makeconftest(AT_EXIT)
    write_task(pytester.path, "TASK-001.md", task_md(item("one", "true")))
    args = ("-p", "no:cacheprovider", *opt_in(pytester.path))
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=1)
    assert int((pytester.path / "at_exit.log").read_text()) > 1000
