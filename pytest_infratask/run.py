"""Run one command block as its own process group, with a deadline.

A timeout or a background child left behind must not outlive the criterion,
so the whole group is killed; stdin is closed so a command waiting for input
fails instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

OUTPUT_LIMIT = 256 * 1024
POLL = 0.1
EXIT_GRACE = 2.0
SHELL = ("bash", "-e", "-o", "pipefail", "-c")


@dataclass(frozen=True)
class CommandResult:
    script: str
    cwd: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class _Tail:
    """Keep the last ``limit`` bytes: a command printing megabytes must not eat memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.dropped = False

    def add(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        while self.size > self.limit and len(self.chunks) > 1:
            self.size -= len(self.chunks.pop(0))
            self.dropped = True
        if self.size > self.limit:
            self.chunks = [self.chunks[0][-self.limit :]]
            self.size = self.limit
            self.dropped = True

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", "replace")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_script(
    script: str,
    cwd: Path,
    env: Mapping[str, str],
    *,
    timeout: float | None = None,
    stream: bool = False,
    on_output: Callable[[bytes, int], None] | None = None,
) -> CommandResult:
    """Run ``script``; ``on_output`` gets every chunk read with its stream (1 or 2), and
    ``(b"", 0)`` while the command is quiet (every POLL seconds), so a live display can
    keep its clock moving."""
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    proc = subprocess.Popen(
        [*SHELL, script],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = _Tail(OUTPUT_LIMIT), _Tail(OUTPUT_LIMIT)
    tails = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sinks = {proc.stdout.fileno(): sys.stdout, proc.stderr.fileno(): sys.stderr}
    timed_out = False
    exited: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                # Checked on every pass, not only when the pipes are idle: a command
                # that keeps them busy would otherwise never time out.
                timed_out = proc.poll() is None
                _kill_group(proc.pid)
                deadline = None
            if proc.poll() is not None:
                # The main process is done: whatever still holds the pipes is a
                # leftover child; end the group, then collect what is buffered.
                _kill_group(proc.pid)
                exited = now if exited is None else exited
                if now - exited > EXIT_GRACE:
                    break  # something outside the group holds the pipes
            # Never block without a bound: a background child keeps the pipes open
            # after the main process exits, and only polling notices that exit.
            wait = POLL if deadline is None else min(POLL, max(0.0, deadline - now))
            events = selector.select(wait)
            if on_output is not None and not events:
                on_output(b"", 0)
            if not events:
                if exited is not None:
                    break
                continue
            for key, _ in events:
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                tails[key.fd].add(data)
                if on_output is not None:
                    on_output(data, 1 if key.fd == proc.stdout.fileno() else 2)
                if stream:
                    sink = sinks[key.fd]
                    sink.write(data.decode("utf-8", "replace"))
                    sink.flush()
    # Both pipes are closed, but the process may still be exiting (tools close
    # their streams in atexit handlers): let it finish before ending the group.
    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        exit_code = proc.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        exit_code = proc.wait()
    _kill_group(proc.pid)
    proc.stdout.close()
    proc.stderr.close()
    return CommandResult(
        script=script,
        cwd=str(cwd),
        exit_code=exit_code if not timed_out else -signal.SIGKILL,
        stdout=out.text(),
        stderr=err.text(),
        duration=time.monotonic() - started,
        timed_out=timed_out,
        truncated=out.dropped or err.dropped,
    )
