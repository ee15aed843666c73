"""A shell started ahead of its block: while the run records one criterion, the task's
fork server starts the next one's ``bash``, which waits for its block. Taking it costs
a write, not bash's start-up (about a millisecond, spent meanwhile on another core).

The shell is ``bash -e -o pipefail -c LOADER``, started with the environment, output
pipes and failure report of the command before. ``LOADER`` waits for its go (a pipe
closing), reads the block from an in-memory file, closes both, resets ``SECONDS`` and
evaluates the block. The block sees what ``bash -e -o pipefail -c BLOCK`` shows it
(``$0``, ``$$``, options, variables, line numbers, descriptors), except
``BASH_EXECUTION_STRING`` and the process's command line, which hold LOADER.

A command without overlays takes a shell started in its directory (the same one,
not another made at its path). A command in overlays, which the server mounts (run
as root), takes one started in ``/``: the overlays are mounted for it, and it goes
to the command's directory first (``_entered``). Either way the environment must be
the same but the run's own variables (``INFRATASK_*``: the attempt's token, exported
before the block, on its first line). Any other command lets the shell go: its go
comes with no block, and it exits at once. The shell's own ``/proc/PID/environ``
keeps the variables it started with; the processes it starts carry the new ones.
Nothing is started ahead for a ``BASH_ENV`` (bash reads it at start-up, and must
read it when the block runs).
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
from pytest_infratask.run.forkserver import Plan
from pytest_infratask.run.served import ForkServer, Served, ServerGone, spawn_request

__all__ = ["LOADER", "Warm", "let_go", "mount_ahead", "start", "take"]

VARIABLE = "__infratask_block"
LOADER = (
    f"read -r -u 3 {VARIABLE} || :; exec 3<&-; "
    f'IFS= read -r -d "" -u 4 {VARIABLE} || :; exec 4<&-; '
    f'SECONDS=0; eval "unset {VARIABLE}; ${VARIABLE}"'
)
GO, BLOCK = 3, 4
ROOT = Path("/")
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
    """Where it started: ``/`` for one that will see overlays (``layered``)."""
    where: tuple[int, int]
    env: dict[str, str]
    layered: bool
    report: FailureReport
    out: int
    err: int
    go: int
    block: int
    pid: int | None = None
    """Its pid, once the server's answer was read (``mount_ahead``)."""
    ahead: Plan | None = None
    """The overlays ``mount_ahead`` asked for (its answer not read yet)."""

    def fits(self, shell: str, cwd: Path, env: Mapping[str, str], layered: bool) -> str | None:
        """The line that gives the shell ``env`` (its own variables may differ) and, when
        ``layered``, takes it to ``cwd``; None when it does not fit a command with
        ``shell``, ``cwd``, ``env`` and overlays or not."""
        if shell != self.exe or layered != self.layered:
            return None
        if not layered and (cwd != self.cwd or _where(cwd) != self.where):
            return None
        line = _changes(self.env, env)
        if line is None or not layered:
            return line
        entered = _entered(cwd, env)
        return None if entered is None else line + entered

    def close(self) -> None:
        """Close the run's ends: with no block to read, the shell exits."""
        for fd in (self.block, self.go, self.out, self.err):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.report.close()


def _entered(cwd: Path, env: Mapping[str, str]) -> str | None:
    """The line that takes a shell started in ``/`` to ``cwd`` (in its overlay, mounted
    since) as a shell started there is: ``PWD`` as bash sets it at start-up (the
    environment's ``PWD`` where it names ``cwd`` in the sandbox, else the physical
    path), and ``OLDPWD`` as it was. None for a ``PWD`` bash would tidy first (``..``,
    ``//``)."""
    logical = env.get("PWD", "")
    if logical.startswith("/") and os.path.normpath(logical) != logical:
        return None
    here, named = shlex.quote(str(cwd)), shlex.quote(logical)
    saved, had = f"{VARIABLE}_old", f"{VARIABLE}_had"
    return (
        f"{saved}=${{OLDPWD-}} {had}=${{OLDPWD+x}}; "
        f"if [[ {named} == /* && {named} -ef {here} ]]; then builtin cd -L -- {named}; "
        f"else builtin cd -P -- {here}; fi || exit 127; "
        f'if [ -n "${had}" ]; then OLDPWD=${saved}; else unset -v OLDPWD; declare -x OLDPWD; fi; '
        f"unset -v {saved} {had}; "
    )


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
    server: ForkServer,
    shell: Sequence[str],
    exe: str,
    cwd: Path,
    env: Mapping[str, str],
    layered: bool,
) -> None:
    """Have ``server`` start a shell for a command like the one that just ran: ``shell``
    is its argv but ``-c BLOCK``, ``exe`` its program, ``layered`` whether it saw
    overlays (then the shell starts in ``/``, and its block's overlays are mounted
    before the block: run as root only, where the server mounts them)."""
    if server.ahead is not None or (layered and not server.privileged) or "BASH_ENV" in env:
        return
    folder = ROOT if layered else cwd
    where = _where(folder)
    if where is None:
        return
    report = FailureReport()
    go, block = os.pipe(), os.memfd_create("infratask-block", os.MFD_CLOEXEC)
    argv = [*shell, "-c", LOADER]
    fds = [go[0], block, report.fd]
    try:
        request = spawn_request(argv, exe, folder, env, [GO, BLOCK, report.fd], [], layered)
        ticket, out, err = server.send(request, fds)
    except ServerGone:
        for fd in (go[1], block):
            os.close(fd)
        report.close()
        return
    finally:
        os.close(go[0])
    ends = (report, out, err, go[1], block)
    server.ahead = Warm(ticket, exe, argv, folder, where, dict(env), layered, *ends)


def mount_ahead(server: ForkServer, layers: Plan, reuse: bool = False) -> None:
    """Mount ``layers`` now for the shell started ahead (a command in overlays ran
    before it), while the run records that command: the next block in the same overlays
    finds them mounted. The caller vouches that nothing changes the work trees under
    them until that block runs, or calls ``let_go``; ``reuse`` as ``ForkServer.mount``
    takes it."""
    warm = server.ahead
    if not isinstance(warm, Warm) or not warm.layered or warm.pid is not None or not layers:
        return
    try:
        pid = server.answer(warm.ticket).get("started")
        if pid is None or server.exited(pid):
            raise OSError("the shell started ahead is gone")
        server.mount(pid, layers, wait=False, reuse=reuse)
    except (ServerGone, OSError, subprocess.TimeoutExpired):
        server.ahead = None
        warm.close()
        return
    except BaseException:  # Ctrl-C: the shell exits, as the server ends with the task
        server.ahead = None
        warm.close()
        raise
    warm.pid, warm.ahead = pid, layers


def let_go(server: ForkServer) -> None:
    """Let the shell started ahead go if it has overlays mounted ahead (the work trees
    under them changed); one without is mounted for when its block comes, and stays."""
    warm = server.ahead
    if isinstance(warm, Warm) and warm.ahead is not None:
        server.ahead = None
        _let_go(server, warm, warm.pid)


def take(
    server: ForkServer,
    shell: str,
    script: str,
    cwd: Path,
    env: Mapping[str, str],
    layers: Plan | None,
) -> tuple[Served, FailureReport] | None:
    """The shell ``server`` started ahead, running ``script`` (which ``FailureReport``
    wraps) with ``layers`` mounted; None when there is none that fits, or ``layers`` is
    None (the command cannot use one): the command is started the usual way, and the
    shell let go."""
    warm, server.ahead = server.ahead, None
    if not isinstance(warm, Warm):
        if warm is not None:
            warm.close()
        return None
    pid = warm.pid
    try:
        if pid is None:
            pid = warm.pid = server.answer(warm.ticket).get("started")
    except (ServerGone, OSError, subprocess.TimeoutExpired):
        warm.close()
        return None
    except BaseException:  # Ctrl-C: the shell exits, as the server ends with the task
        warm.close()
        raise
    line = None if layers is None else warm.fits(shell, cwd, env, bool(layers))
    if pid is None or line is None or server.exited(pid) or not _mounted(server, warm, layers):
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


def _mounted(server: ForkServer, warm: Warm, layers: Plan | None) -> bool:
    """Whether ``layers`` (if any) are mounted for ``warm``'s shell, now or ahead; if
    not, its block is started the usual way, which finds out why."""
    assert warm.pid is not None
    if not layers:
        return warm.ahead is None
    if warm.ahead is not None and warm.ahead != layers:
        return False
    try:
        if warm.ahead is None:
            server.mount(warm.pid, layers)
        else:
            warm.ahead = None
            server.mounted(warm.pid)
    except (ServerGone, OSError, subprocess.TimeoutExpired):
        return False
    return True


def _let_go(server: ForkServer, warm: Warm, pid: int | None) -> None:
    """Close ``warm``'s ends (it exits), and have nobody wait for its end. A shell with
    overlays mounted ahead is ended now: they are gone before the next command starts
    (one that sees the work tree itself, or its own overlays)."""
    warm.close()
    if pid is None:
        return
    if warm.ahead is not None:
        with contextlib.suppress(ServerGone, OSError, subprocess.TimeoutExpired):
            server.mounted(pid)
            server.end(pid)
    server.forget(pid)
