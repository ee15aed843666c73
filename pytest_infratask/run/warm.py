"""A shell started ahead of its block: while the run records one criterion, the task's
fork server starts the next one's ``bash``, which waits for its block. Taking it costs
a write, not bash's start-up (about a millisecond, spent meanwhile on another core).

The shell is ``bash -e -o pipefail -c LOADER``, started in the directory and with the
environment, output pipes and failure report of the command before. ``LOADER`` waits
for its go (a pipe closing), reads the block from an in-memory file, closes both,
resets ``SECONDS`` and evaluates the block. The block sees what ``bash -e -o pipefail
-c BLOCK`` shows it (``$0``, ``$$``, options, variables, line numbers, descriptors),
except ``BASH_EXECUTION_STRING`` and the process's command line, which hold LOADER.

Only a command in the same directory (the same one, not another made at its path),
with the same shell, no overlays and the same environment but the run's own variables
(``INFRATASK_*``: the attempt's token, exported before the block, on its first line),
takes the shell; any other lets it go: its go comes with no block, and it exits at
once. The shell's own ``/proc/PID/environ`` keeps the variables it started with; the
processes it starts carry the new ones. Nothing is started ahead for a
``BASH_ENV`` (bash reads it at start-up, and must read it when the block runs).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_infratask.run.failure import FailureReport
from pytest_infratask.run.served import ForkServer, Served, ServerGone

__all__ = ["LOADER", "Warm", "start", "take"]

VARIABLE = "__infratask_block"
LOADER = (
    f"read -r -u 3 {VARIABLE} || :; exec 3<&-; "
    f'IFS= read -r -d "" -u 4 {VARIABLE} || :; exec 4<&-; '
    f'SECONDS=0; eval "unset {VARIABLE}; ${VARIABLE}"'
)
GO, BLOCK = 3, 4
OWN = "INFRATASK_"
"""The run's own variables (an attempt's token): set by the loader when they differ."""


@dataclass
class Warm:
    """A started shell and the run's ends of what it was given."""

    ticket: int
    """Its spawn request's, for the server's answer (its pid)."""
    exe: str
    argv: list[str]
    cwd: Path
    where: tuple[int, int]
    env: dict[str, str]
    report: FailureReport
    out: int
    err: int
    go: int
    block: int

    def fits(self, shell: str, cwd: Path, env: Mapping[str, str]) -> str | None:
        """The line that gives the shell ``env`` (its own variables may differ), or None
        when it does not fit a command with ``shell``, ``cwd`` and ``env``."""
        if shell != self.exe or cwd != self.cwd or _where(cwd) != self.where:
            return None
        return _changes(self.env, env)

    def close(self) -> None:
        """Close the run's ends: with no block to read, the shell exits."""
        for fd in (self.block, self.go, self.out, self.err):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.report.close()


def _changes(had: Mapping[str, str], env: Mapping[str, str]) -> str | None:
    """``export``s and ``unset``s that turn ``had`` into ``env``; None when another
    variable than the run's own (``OWN``, plain values bash gives no meaning) differs."""
    line = ""
    for name in had.keys() | env.keys():
        value = env.get(name)
        if value == had.get(name):
            continue
        if not name.startswith(OWN) or not name.isidentifier():
            return None
        line += f"unset -v {name}; " if value is None else f"export {name}={shlex.quote(value)}; "
    return line


def _where(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def start(
    server: ForkServer, shell: Sequence[str], exe: str, cwd: Path, env: Mapping[str, str]
) -> None:
    """Have ``server`` start a shell for a command like the one that just ran: ``shell``
    is its argv but ``-c BLOCK``, ``exe`` its program."""
    where = _where(cwd)
    if server.ahead is not None or where is None or "BASH_ENV" in env:
        return
    report = FailureReport()
    go, block = os.pipe(), os.memfd_create("infratask-block", os.MFD_CLOEXEC)
    argv = [*shell, "-c", LOADER]
    fds = [go[0], block, report.fd]
    try:
        ticket, out, err = server.send(argv, exe, cwd, env, fds, [GO, BLOCK, report.fd], [])
    except ServerGone:
        for fd in (go[1], block):
            os.close(fd)
        report.close()
        return
    finally:
        os.close(go[0])
    server.ahead = Warm(ticket, exe, argv, cwd, where, dict(env), report, out, err, go[1], block)


def take(
    server: ForkServer, shell: str, script: str, cwd: Path, env: Mapping[str, str], usable: bool
) -> tuple[Served, FailureReport] | None:
    """The shell ``server`` started ahead, running ``script`` (which ``FailureReport``
    wraps); None when there is none that fits, or none is ``usable`` (the command is
    started the usual way, and the shell let go)."""
    warm, server.ahead = server.ahead, None
    if not isinstance(warm, Warm):
        if warm is not None:
            warm.close()
        return None
    try:
        reply = server.answer(warm.ticket)
    except (ServerGone, OSError, subprocess.TimeoutExpired):
        warm.close()
        return None
    pid = reply.get("started")
    line = warm.fits(shell, cwd, env) if usable else None
    if pid is None or line is None or server.exited(pid):
        _let_go(server, warm, pid)
        return None
    # On the block's first line: its line numbers stay its own.
    text = line + warm.report.script(script)
    data = memoryview(text.encode("utf-8", "surrogateescape"))
    offset = 0
    while offset < len(data):
        offset += os.pwrite(warm.block, data[offset:], offset)
    os.close(warm.block)
    os.close(warm.go)
    argv = [*warm.argv[:-1], script]
    return Served(server, pid, argv, warm.out, warm.err), warm.report


def _let_go(server: ForkServer, warm: Warm, pid: int | None) -> None:
    """Close ``warm``'s ends (it exits), and have nobody wait for its end."""
    warm.close()
    if pid is None:
        return
    told = [m for m in server.pending if m.get("exited") == pid]
    if told:
        server.pending.remove(told[0])
    else:
        server.ignored.add(pid)
