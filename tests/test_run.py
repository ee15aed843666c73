"""run.py: one command block, its own process group, a deadline, bounded output."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from helpers import DEADLINE, alive, wait_for

from pytest_infratask.core.masking import Masker
from pytest_infratask.core.results import CommandResult
from pytest_infratask.run.process import OUTPUT_LIMIT, run_script

ENV = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}


def run(
    script: str,
    cwd: Path,
    *,
    timeout: float | None = None,
    on_output: Callable[[bytes, int], None] | None = None,
) -> CommandResult:
    return run_script(script, cwd, ENV, timeout=timeout, on_output=on_output)


def test_output_exit_code_cwd_and_env(tmp_path: Path) -> None:
    result = run_script(
        'echo "out $PWD $FOO"; echo err >&2; exit 3', tmp_path, {**ENV, "FOO": "bar"}
    )
    assert (result.exit_code, result.ok, result.timed_out) == (3, False, False)
    assert result.stdout == f"out {tmp_path} bar\n"
    assert result.stderr == "err\n"
    assert result.cwd == str(tmp_path)


def test_errexit_and_pipefail(tmp_path: Path) -> None:
    """A failing step in the middle or a pipeline must fail the block, as in CI."""
    assert run("false; echo after", tmp_path).exit_code == 1
    assert run("false | cat", tmp_path).exit_code == 1
    assert run("true | cat", tmp_path).ok


def test_stdin_is_closed(tmp_path: Path) -> None:
    result = run("read x; echo got $x", tmp_path, timeout=600)
    assert result.exit_code == 1 and not result.timed_out


def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"
    started = time.monotonic()
    result = run(f"sleep 300 & echo $! > {pid_file}; sleep 300", tmp_path, timeout=1)
    assert result.timed_out and not result.ok
    assert result.exit_code < 0
    assert time.monotonic() - started < DEADLINE
    pid = int(pid_file.read_text())
    wait_for(lambda: not alive(pid), what=f"background child {pid} to die")


def test_background_child_does_not_hold_the_run(tmp_path: Path) -> None:
    """The command is done when its main process is; a leftover child is killed.

    Before the fix this waited for the whole timeout (or forever without one).
    """
    pid_file = tmp_path / "bg.pid"
    started = time.monotonic()
    result = run(f"sleep 300 & echo $! > {pid_file}; echo done", tmp_path)
    assert result.ok and result.stdout == "done\n"
    assert time.monotonic() - started < DEADLINE  # not the child's 300 s
    pid = int(pid_file.read_text())
    wait_for(lambda: not alive(pid), what=f"background child {pid} to die")


def test_timeout_fires_while_output_keeps_flowing(tmp_path: Path) -> None:
    """A slow live display keeps the pipe full; the deadline must still hold."""

    def slow_display(chunk: bytes, stream: int) -> None:
        time.sleep(0.005)  # a terminal that takes its time with every chunk

    started = time.monotonic()
    result = run("yes", tmp_path, timeout=1, on_output=slow_display)
    assert result.timed_out
    assert time.monotonic() - started < DEADLINE


def test_big_output_completes_and_keeps_the_tail(tmp_path: Path) -> None:
    script = "head -c 5000000 /dev/zero | tr '\\0' a; echo; echo THE-END"
    result = run(script, tmp_path, timeout=600)
    assert result.ok and result.truncated
    assert len(result.stdout.encode()) <= OUTPUT_LIMIT
    # the partial first word at the cut is dropped: it could be a secret's suffix
    assert result.stdout == "THE-END\n"


def test_small_output_is_not_truncated(tmp_path: Path) -> None:
    result = run("seq 1 1000", tmp_path)
    assert not result.truncated
    assert result.stdout.splitlines() == [str(i) for i in range(1, 1001)]


def test_the_live_display_gets_each_stream_as_it_comes(tmp_path: Path) -> None:
    seen: dict[int, bytes] = {1: b"", 2: b""}

    def display(chunk: bytes, stream: int) -> None:
        if stream:
            seen[stream] += chunk

    result = run("echo visible; echo warn >&2", tmp_path, on_output=display)
    assert result.stdout == "visible\n" and result.stderr == "warn\n"
    assert seen == {1: b"visible\n", 2: b"warn\n"}


def test_invalid_utf8_output_is_replaced(tmp_path: Path) -> None:
    result = run("printf 'ok \\377\\n'", tmp_path)
    assert result.stdout == "ok \ufffd\n"


def test_missing_command_exits_127(tmp_path: Path) -> None:
    result = run("definitely-not-a-command-xyz", tmp_path)
    assert result.exit_code == 127
    assert "definitely-not-a-command-xyz" in result.stderr


class TestMasker:
    def test_masks_secret_named_values_longest_first(self) -> None:
        mask = Masker({"API_TOKEN": "abcd1234", "DB_PASSWORD": "abcd1234xyz", "HOME": "/root"})
        assert mask("t=abcd1234 p=abcd1234xyz h=/root") == "t=*** p=*** h=/root"

    def test_short_values_and_unrelated_names_are_left(self) -> None:
        mask = Masker({"API_KEY": "abc", "USER": "s3cr3tvalue"})
        mask.add(["xyz"])
        assert mask("abc s3cr3tvalue xyz") == "abc s3cr3tvalue xyz"

    def test_several_envs_and_extra_values(self) -> None:
        mask = Masker({"A_SECRET": "one1"}, {"my_credential": "two2"})
        mask.add(["three"])
        assert mask("one1 two2 three four") == "*** *** *** four"

    def test_regex_characters_are_literal(self) -> None:
        mask = Masker({"TOKEN": "a.b*c(d"})
        assert mask("a.b*c(d aXbbc(d") == "*** aXbbc(d"

    def test_nothing_to_mask(self) -> None:
        assert Masker({})("text") == "text"
        assert Masker({"TOKEN": "abcd"})("") == ""


def _fake_bash(folder: Path, marker: str) -> Path:
    """A ``bash`` that says it ran, then hands over to the real one."""
    import shutil

    real = shutil.which("bash")
    assert real is not None
    folder.mkdir()
    fake = folder / "bash"
    fake.write_text(f'#!{real}\necho {marker}\nexec {real} "$@"\n', encoding="utf-8")
    fake.chmod(0o755)
    return fake


def test_bash_is_the_one_the_commands_path_finds(tmp_path: Path) -> None:
    """bash is looked up once per PATH, on the commands' PATH (not the plugin's), and a
    bash that went away is looked up again."""
    first = _fake_bash(tmp_path / "one", "first bash")
    second = _fake_bash(tmp_path / "two", "second bash")
    base = os.environ["PATH"]
    for folder, marker in ((first.parent, "first bash"), (second.parent, "second bash")):
        env = {**os.environ, "PATH": f"{folder}{os.pathsep}{base}"}
        for _ in range(2):
            result = run_script("echo ran", tmp_path, env)
            assert result.ok, result.stderr
            assert result.stdout.splitlines() == [marker, "ran"]
    first.unlink()
    env = {**os.environ, "PATH": f"{first.parent}{os.pathsep}{base}"}
    result = run_script("echo $0", tmp_path, env)
    assert result.ok and result.stdout.splitlines() == ["bash"]  # argv[0] stays bash


def test_a_command_that_closed_its_output_still_times_out(tmp_path: Path) -> None:
    """Pipes closed, process still running: the wait for its exit keeps the deadline."""
    started = time.monotonic()
    result = run("exec >&- 2>&-; sleep 600", tmp_path, timeout=1)
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < DEADLINE


def test_a_command_that_closed_its_output_is_waited_for(tmp_path: Path) -> None:
    result = run("exec >&- 2>&-; sleep 0.2; exit 3", tmp_path, timeout=600)
    assert (result.exit_code, result.timed_out) == (3, False)
