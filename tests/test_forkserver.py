"""One sandbox per task: a fork server in it starts each command block as its own
process group, with what a sandbox started for the block alone would give it (the
same capabilities, nothing the previous block left running), and is itself out of
the commands' reach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest
from helpers import QUIET, commit_all, item, processes_with, task_md, wait_for, write_task

from pytest_infratask.run.forkserver import children
from pytest_infratask.run.sandbox import BASE, unavailable

CAPS = "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status"


@pytest.fixture(autouse=True)
def _sandboxed() -> None:
    reason = unavailable("bwrap")
    if reason is not None:
        if os.environ.get("INFRATASK_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"commands cannot be sandboxed here: {reason}")
        pytest.skip(f"commands cannot be sandboxed here: {reason}")


def _capabilities_alone(cwd: Path) -> str:
    """What a command started in a sandbox of its own holds (``CAPS``)."""
    command = ["bwrap", *BASE, "--", "bash", "-c", CAPS]
    return subprocess.run(command, capture_output=True, text=True, check=True, cwd=cwd).stdout


def _task(folder: Path, name: str, *criteria: str) -> Path:
    return write_task(folder, name, task_md(*criteria, meta=f"id: {name[:-3]}"))


def test_a_tasks_blocks_share_its_sandbox_and_another_task_has_its_own(
    pytester: pytest.Pytester,
) -> None:
    """Each block's pid namespace, as the blocks see it: one per task, not the run's."""
    record = 'echo "$(readlink /proc/self/ns/pid)" >> "ns-$TASK"'
    for task in ("TASK-001", "TASK-002"):
        steps = [item(f"Step {n}", f"TASK={task}; {record}") for n in range(3)]
        _task(pytester.path, f"{task}.md", *steps)
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=6)
    first = (pytester.path / "ns-TASK-001").read_text().split()
    second = (pytester.path / "ns-TASK-002").read_text().split()
    assert len(first) == len(second) == 3
    assert len(set(first)) == len(set(second)) == 1
    assert set(first) != set(second)
    assert os.readlink("/proc/self/ns/pid") not in first + second


def test_each_block_is_its_own_process_group_and_starts_with_nothing_left(
    pytester: pytest.Pytester,
) -> None:
    """What a block leaves running (in its group, or escaped with setsid) is gone before
    the next block starts, though both run in the same sandbox."""
    leave = "sleep 300 & setsid sleep 301 & disown -a; echo $$ $(cut -d' ' -f5 /proc/$$/stat) > pg"
    look = (
        "for p in /proc/[0-9]*; do "
        '[ "$(cat "$p/comm" 2>/dev/null)" = sleep ] && echo "$p" >> left; done; true'
    )
    _task(pytester.path, "TASK-001.md", item("Leave sleepers", leave), item("Look", look))
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=2)
    pid, group = (pytester.path / "pg").read_text().split()
    assert pid == group
    assert not (pytester.path / "left").exists()


def test_a_block_has_exactly_the_capabilities_of_a_sandbox_of_its_own(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The server may hold more (run as root, to mount an attempt's overlay); a block
    never does."""
    _task(pytester.path, "TASK-001.md", item("Capabilities", f"{CAPS} > caps"))
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=1)
    alone = _capabilities_alone(tmp_path)
    assert (pytester.path / "caps").read_text() == alone


def test_the_server_is_out_of_the_blocks_reach(pytester: pytest.Pytester) -> None:
    """A block's parent is the server: it cannot read the server's environment or
    descriptors (its socket to the run), nor trace it. As root the block may list the
    descriptors, and each one is refused; as another user even the list is."""
    probe = (
        "tr '\\0' ' ' < /proc/$PPID/cmdline > parent; "
        "cat /proc/$PPID/environ > environ 2>/dev/null || echo refused >> denied; "
        "ls /proc/$PPID/fd > /dev/null 2>&1 || echo unlisted >> denied; "
        "for fd in /proc/$PPID/fd/*; do readlink $fd || echo refused >> denied; done"
    )
    _task(pytester.path, "TASK-001.md", item("Probe the parent", probe))
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=1)
    assert "forkserver" in (pytester.path / "parent").read_text()
    denied = (pytester.path / "denied").read_text().split()
    if "unlisted" in denied:
        assert denied == ["refused", "unlisted", "refused"]  # environ, the list, its glob
    else:
        assert len(denied) > 3 and set(denied) == {"refused"}  # environ, each descriptor


def test_in_a_git_repository_each_block_sees_its_own_overlay_alone(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """A block's overlay is gone before the next block's is mounted, and the block, and
    the server that started it, keep a sandbox's capabilities however it was mounted."""
    count = "grep -c ' overlay ' /proc/self/mountinfo >> overlays"
    server = "grep -E '^Cap(Prm|Eff)' /proc/$PPID/status > server-caps"
    steps = [item(f"Step {n}", count) for n in range(3)]
    _task(pytester.path, "TASK-001.md", *steps, item("Capabilities", f"{CAPS} > caps; {server}"))
    commit_all(pytester.path)
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=4)
    assert (pytester.path / "overlays").read_text().split() == ["1", "1", "1"]
    alone = _capabilities_alone(tmp_path)
    assert (pytester.path / "caps").read_text() == alone
    mine = [line for line in alone.splitlines() if line.startswith(("CapPrm", "CapEff"))]
    assert (pytester.path / "server-caps").read_text().splitlines() == mine


def test_the_server_starts_on_the_standard_librarys_lightest_modules() -> None:
    """A task's first command waits for the server's start: what it imports is that
    wait (``enum``, which ``signal`` and ``socket`` build on, is most of it)."""
    from pytest_infratask.run import forkserver

    folder = os.path.dirname(forkserver.__file__)
    probe = f"import sys; sys.path.insert(0, {folder!r}); import forkserver; print(*sys.modules)"
    python = [sys.executable, "-I", "-S", "-B", "-c", probe]
    loaded = set(subprocess.run(python, capture_output=True, text=True, check=True).stdout.split())
    assert {"_signal", "_socket", "ctypes", "marshal"} <= loaded
    assert not loaded & {"enum", "signal", "socket", "json", "typing", "contextlib", "re"}


def _bwrap_children() -> set[int]:
    """This process's children that are sandboxes (an in-process run's, still there)."""
    found = set()
    for pid in children():
        with suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap":
                found.add(pid)
    return found


REPLACER = """
import os
import shutil


def pytest_infratask_task_finished(task, contract, config):
    if task.id == "TASK-001":  # someone replaces the directory between the two tasks
        out = os.environ["OUTSIDE"]
        shutil.rmtree(out)
        os.mkdir(out)
"""


def test_the_next_tasks_sandbox_started_ahead_is_not_taken_once_a_directory_it_binds_is_gone(
    pytester: pytest.Pytester,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both tasks may write ``outside`` (``writable``), which only its own mount shows;
    it is replaced between them, which takes that mount away in the sandbox started
    ahead for the second task: the second task gets a sandbox of its own, which binds
    the new one."""
    outside = tmp_path_factory.mktemp("outside")
    monkeypatch.setenv("OUTSIDE", str(outside))
    pytester.makeconftest(REPLACER)
    meta = f"id: {{}}\ntitle: t\nupdated: 2024-01-01\nwritable: [{outside}]"
    write = f"touch {outside}/x"
    for task, step in (("TASK-001", item("One", "true")), ("TASK-002", item("Write", write))):
        write_task(pytester.path, f"{task}.md", task_md(step, meta=meta.format(task)))
    before = _bwrap_children()
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=2)
    assert (outside / "x").exists()
    assert _bwrap_children() <= before  # nothing started ahead is left behind


def test_a_sandbox_started_ahead_and_not_taken_ends_with_the_run(
    pytester: pytest.Pytester,
) -> None:
    """The second task's sandbox differs from the first one's (its own ``writable``):
    the one started ahead is not taken, and ends with the run all the same."""
    (pytester.path / "other").mkdir()
    _task(pytester.path, "TASK-001.md", item("One", "true"))
    meta = "id: TASK-002\ntitle: t\nupdated: 2024-01-01\nwritable: [other]"
    write_task(pytester.path, "TASK-002.md", task_md(item("Two", "touch other/x"), meta=meta))
    before = _bwrap_children()
    pytester.runpytest(*QUIET, str(pytester.path)).assert_outcomes(passed=2)
    assert (pytester.path / "other" / "x").exists()
    assert _bwrap_children() <= before


def test_a_sandbox_ahead_starts_its_twin_which_the_same_next_task_takes(tmp_path: Path) -> None:
    """``ahead``: once the sandbox's server starts, a twin's server starts too; the next
    task with the same mounts and kubeconfig takes it, running; any other gets a new
    sandbox, and the twin ends."""
    from pytest_infratask.run import sandbox as sb

    spec = (tmp_path, [tmp_path], [], {"PATH": os.environ["PATH"]})
    first = sb.sandbox_for("bwrap", sb.mounts(*spec), b"", ahead=True)
    try:
        assert first.served(False) is not None
        [twin] = sb._SPARE
        assert twin.alive and twin is not first
        taken = sb.sandbox_for("bwrap", sb.mounts(*spec), b"", ahead=True)
        assert taken is twin and taken.alive and not sb._SPARE
        assert taken.served(False) is not None  # taken ahead itself: its own twin starts
        [third] = sb._SPARE
        assert third.alive and third not in (first, twin)
        assert sb.sandbox_for("bwrap", sb.mounts(*spec), b"", ahead=False) is third
        assert third.served(False) is not None and not sb._SPARE  # the last: no twin
        for done in (twin, third):
            done.close()
        first.close()
        first = sb.sandbox_for("bwrap", sb.mounts(*spec), b"", ahead=True)
        first.served(False)
        [other] = sb._SPARE
        assert sb.sandbox_for("bwrap", sb.mounts(*spec), b"kubeconfig", ahead=False) is not other
        assert not sb._SPARE and not other.alive
    finally:
        first.close()
        sb.end_spare()


def test_a_sandbox_told_to_end_without_waiting_ends_by_the_runs_end(tmp_path: Path) -> None:
    """``close(wait=False)`` (a task without overlays, the next one on its way) tells
    the server to end and goes on; ``end_closed`` (the run's end) waits for the sandbox
    and everything still running in it to be gone."""
    from pytest_infratask.run import sandbox as sb
    from pytest_infratask.run import served

    spec = (tmp_path, [tmp_path], [], {"PATH": os.environ["PATH"]})
    box = sb.sandbox_for("bwrap", sb.mounts(*spec), b"", ahead=False)
    server = box.served(False)
    assert server is not None
    marker = "infratask-closed-97531"
    bash = shutil.which("bash") or "/bin/bash"
    env = {"MARK": marker}  # in its environment: seen from outside the sandbox
    request = served.spawn_request(["bash", "-c", "sleep 60"], bash, tmp_path, env, [], [])
    running = server.spawn(request, [])
    wait_for(lambda: processes_with(marker), what="the command to start")
    box.close(wait=False)
    served.end_closed()
    assert server.proc.poll() is not None
    assert not processes_with(marker)
    running.stdout.close()
    running.stderr.close()
