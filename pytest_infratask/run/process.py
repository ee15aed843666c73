"""Run one command block as its own process group, with a deadline.

Nothing the command started outlives it: when it ends (passed, failed, timed
out, or the run was interrupted by Ctrl-C, SIGTERM, SIGHUP or pytest-timeout) its
process group is killed, and so is every process that left the group (``setsid``,
double forks): the run is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so such
orphans become its children and are ended and reaped. A command that runs in the
task's sandbox (``run.sandbox``) is started by the sandbox's fork server
(``run.forkserver``), which does the same inside it; the sandbox's pid namespace dies
with the run even after SIGKILL.

A criterion that starts a long-lived service on purpose passes ``service=True``: once
it passed, its processes are left running. In a sandbox a holder process keeps its
namespace alive until the run ends (``end_services``); outside one they are plain
processes, left to themselves (their group id may be another's by the run's end).
stdin is closed so a command waiting for input fails instead of hanging the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_infratask.core.results import CommandResult
from pytest_infratask.run import warm
from pytest_infratask.run.failure import FailureReport
from pytest_infratask.run.forkserver import children
from pytest_infratask.run.overlay import Layer, mounter, plan
from pytest_infratask.run.served import (
    ForkServer,
    Served,
    ServerGone,
    spawn_request,
    wait_exit,
)
from pytest_infratask.util.gitdir import command_started
from pytest_infratask.util.scripts import delivered

OUTPUT_LIMIT = 256 * 1024
QUIET_TICK = 0.1  # the longest a read of a command's output waits
EXIT_GRACE = 2.0
REAP_DEADLINE = 10.0
PR_SET_CHILD_SUBREAPER = 36
SHELL = ("bash", "-e", "-o", "pipefail")
# A service's sandbox ends when its first process does: this one runs the command,
# writes its exit status to fd $1, and stays (when it passed) until the run ends it.
HOLDER = (
    'fd=$1; shift; "$@" {fd}>&-; status=$?; echo "$status" >&"$fd"; '
    'exec {fd}>&- >/dev/null 2>&1; [ "$status" -eq 0 ] || exit "$status"; exec sleep infinity'
)

if TYPE_CHECKING:
    from pytest_infratask.run.sandbox import Sandbox


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
        text = b"".join(self.chunks).decode("utf-8", "replace")
        if self.dropped:
            # The cut may have split a secret, and its suffix is not recognisable:
            # drop the partial first word, so what is kept can be masked whole.
            # Secrets hold no white space, so the first one ends any partial secret.
            cut = re.search(r"\s", text)
            text = text[cut.end() :] if cut else ""
        return text


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


_REAPER: list[bool] = []


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux), once."""
    if not _REAPER:
        ok = False
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                ok = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        _REAPER.append(ok)
    return _REAPER[0]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


Proc = subprocess.Popen[bytes] | Served


def end_everything(proc: Proc, known: set[int]) -> None:
    """Kill the command's process group and every orphan it left to us (children
    that were not ours before the command), until none is left; reap them."""
    __tracebackhide__ = True
    if isinstance(proc, Served):
        proc.end()  # the fork server does it in the sandbox
        return
    deadline = time.monotonic() + REAP_DEADLINE
    group = proc.pid
    while True:
        _kill_group(group)
        proc.poll()  # reap the main process once dead: a zombie still counts in its group
        leftovers = children() - known
        reaped = False
        for pid in leftovers:
            if not _zombie(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                reaped = os.waitpid(pid, os.WNOHANG)[0] != 0 or reaped
        group_left = False
        if become_subreaper():  # else dead members may wait on a parent that never reaps
            try:
                os.killpg(group, 0)
                group_left = True
            except (ProcessLookupError, PermissionError):
                pass
        if (not leftovers and not group_left) or time.monotonic() > deadline:
            return
        if not reaped:  # look again at once after a reap: its orphans come next
            time.sleep(0.002)


_FOUND: dict[tuple[str, str], str] = {}


def executable(name: str, env: Mapping[str, str]) -> str:
    """``name`` as a spawn with ``env`` would find it on PATH, looked up once per PATH:
    spawned by absolute path, each spawn spares a failed ``execve`` per PATH entry
    before the program's directory.

    A PATH with a relative or empty entry (the child's directory) is left to the
    spawn's own search, as is a program that is gone or no longer executable.
    """
    search = env.get("PATH", os.defpath)
    found = _FOUND.get((name, search))
    if found is not None and os.access(found, os.X_OK):
        return found
    if not all(os.path.isabs(entry) for entry in search.split(os.pathsep)):
        return name
    found = shutil.which(name, path=search)
    if found is None:
        return name  # the spawn fails as it would have, naming the program
    _FOUND[(name, search)] = found
    return found


def shell(env: Mapping[str, str]) -> str:
    """The commands' ``bash`` (see ``executable``)."""
    return executable(SHELL[0], env)


def _wait(proc: Proc, timeout: float | None) -> int:
    """``proc.wait(timeout)``, without ``Popen``'s sleep loop (``wait_exit``). Raises
    ``subprocess.TimeoutExpired``."""
    if isinstance(proc, Served):
        return proc.wait(timeout)
    return wait_exit(proc, timeout)


@dataclass
class _Launch:
    """What to start for a command: argv, program, fds to pass, and for a service in a
    sandbox the pipe its holder reports the command's exit status on."""

    argv: list[str]
    executable: str
    fds: tuple[int, ...] = ()
    status: int | None = None
    told: bytes = b""
    mount: Callable[[], None] | None = None
    """Run in the child before the sandbox starts: its overlays (``run.overlay``)."""
    server: ForkServer | None = None
    """The task's fork server, which starts the command in its sandbox."""
    layers: tuple[Layer, ...] = ()

    def code(self, proc: Proc) -> int | None:
        """The command's exit status once it is known, else None."""
        if self.status is not None and self.told.endswith(b"\n"):
            return int(self.told)
        return proc.poll()


def _launch(
    argv: list[str],
    script_fds: tuple[int, ...],
    cwd: Path,
    env: Mapping[str, str],
    service: bool,
    served: bool = True,
) -> _Launch:
    """``argv`` (bash and how the block reaches it) as started: in the sandbox a
    ``CommandEnv`` carries (by its fork server, unless ``served`` is false), and for a
    service under a holder that outlives it."""
    sandbox: Sandbox | None = getattr(env, "sandbox", None)
    if sandbox is None:
        # argv[0] stays "bash", as bash's messages name it
        return _Launch(argv, shell(env), script_fds)
    layers: tuple[Layer, ...] = getattr(env, "layers", ())
    if not service and served and (sandbox.layered or not layers):
        server = sandbox.served(bool(layers))
        if server is not None:
            return _Launch(argv, shell(env), script_fds, server=server, layers=layers)
    if not service:
        wrapped, fds = sandbox.command(argv, cwd)
        mount = mounter(layers) if layers else None
        return _Launch(wrapped, sandbox.bwrap, (*script_fds, *fds), mount=mount)
    read, write = os.pipe()
    held = [SHELL[0], "-c", HOLDER, "infratask-service", str(write), *argv]
    wrapped, fds = sandbox.command(held, cwd)
    return _Launch(wrapped, sandbox.bwrap, (*script_fds, *fds, write), read)


_KEPT: list[subprocess.Popen[bytes]] = []


def end_services() -> None:
    """End the sandboxes kept for services, and reap what was in them."""
    while _KEPT:
        proc = _KEPT.pop()
        before = children()
        _kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=REAP_DEADLINE)
        deadline = time.monotonic() + REAP_DEADLINE
        while (left := children() - before) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)


def run_script(
    script: str,
    cwd: Path,
    env: Mapping[str, str],
    *,
    timeout: float | None = None,
    service: bool = False,
    on_output: Callable[[bytes, int], None] | None = None,
) -> CommandResult:
    """Run ``script`` in ``cwd`` with ``env`` (in the sandbox a ``CommandEnv`` carries),
    its output kept (the last OUTPUT_LIMIT bytes of each stream).

    ``service``: the command starts a long-lived service on purpose; when it
    passes, what it left running is left alone.

    ``on_output`` gets every chunk read with its stream (1 or 2), and ``(b"", 0)``
    while the command is quiet (every QUIET_TICK seconds), so a live display can keep its
    clock moving.
    """
    __tracebackhide__ = True  # keep ``env`` out of tracebacks that print locals
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    become_subreaper()
    known = children()
    command_started()  # it may make or remove a .git
    proc, launch, report = _started(script, cwd, env, service, known)
    assert proc.stdout is not None and proc.stderr is not None
    known.add(proc.pid if launch.server is None else launch.server.proc.pid)
    out, err = _Tail(OUTPUT_LIMIT), _Tail(OUTPUT_LIMIT)
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    exit_code: int | None = None
    timed_out = False
    try:
        timed_out = _follow(proc, launch, streams, known, deadline, service, on_output)
        exit_code, timed_out = _exit(proc, launch, deadline, timed_out)
    finally:
        # Also on Ctrl-C, SIGTERM or a pytest-timeout expiry raised in the middle.
        _let_go(proc, launch, known, exit_code, service and not timed_out)
        failed_line, failed_command = report.read(exit_code)
    if exit_code is not None and launch.server is not None:
        warm.start(launch.server, SHELL, launch.executable, cwd, env, bool(launch.layers))
    return CommandResult(
        script=script,
        cwd=str(cwd),
        exit_code=exit_code if not timed_out else -signal.SIGKILL,
        stdout=out.text(),
        stderr=err.text(),
        duration=time.monotonic() - started,
        timed_out=timed_out,
        truncated=out.dropped or err.dropped,
        failed_line=failed_line if exit_code and not timed_out else None,
        failed_command=failed_command if exit_code and not timed_out else "",
    )


def mount_ahead(env: Mapping[str, str], layers: tuple[Layer, ...], reuse: bool = False) -> None:
    """Mount ``layers`` for the next command's shell, started ahead in ``env``'s
    sandbox, while the run records this one (``run.warm.mount_ahead``: the caller
    vouches that the work trees stay as they are until it runs, or calls
    ``let_go_ahead``; ``reuse`` as ``ForkServer.mount`` takes it)."""
    sandbox, server = _serving(env)
    if sandbox is not None and server is not None and sandbox.layered:
        warm.mount_ahead(server, plan(layers), reuse)


def let_go_ahead(env: Mapping[str, str]) -> None:
    """Let the shell started ahead in ``env``'s sandbox go if it has overlays mounted
    ahead (``run.warm.let_go``)."""
    _, server = _serving(env)
    if server is not None:
        warm.let_go(server)


def _serving(env: Mapping[str, str]) -> tuple[Sandbox | None, ForkServer | None]:
    """The sandbox ``env`` carries (a ``CommandEnv``'s), and its running fork server."""
    sandbox: Sandbox | None = getattr(env, "sandbox", None)
    return sandbox, None if sandbox is None else sandbox.running


def _let_go(
    proc: Proc,
    launch: _Launch,
    known: set[int],
    exit_code: int | None,
    service: bool,
) -> None:
    """End what the command left running, unless it is a service that started (then
    its sandbox ends with the run, ``end_services``), and close its pipes."""
    if exit_code is None or not (service and exit_code == 0):
        end_everything(proc, known)
    elif launch.status is not None and isinstance(proc, subprocess.Popen):
        _KEPT.append(proc)
    if exit_code is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=REAP_DEADLINE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    if launch.status is not None:
        os.close(launch.status)


def _started(
    script: str, cwd: Path, env: Mapping[str, str], service: bool, known: set[int]
) -> tuple[Proc, _Launch, FailureReport]:
    """The command running: in the shell its fork server started ahead (``run.warm``)
    where one fits, else started now."""
    __tracebackhide__ = True  # keep ``env`` out of tracebacks that print locals
    sandbox, server = _serving(env)
    layers: tuple[Layer, ...] = getattr(env, "layers", ())
    if sandbox is not None and server is not None:
        # A service, or overlays the server does not mount, lets the shell go.
        usable = not service and (not layers or sandbox.layered)
        exe = shell(env)
        taken = warm.take(server, exe, script, cwd, env, plan(layers) if usable else None)
        if taken is not None:
            served, report = taken
            launch = _Launch(served.args, exe, server=server, layers=layers)
            return served, launch, report
    report = FailureReport()
    proc, launch = _spawn(script, cwd, env, service, report, known)
    return proc, launch, report


def _spawn(
    script: str,
    cwd: Path,
    env: Mapping[str, str],
    service: bool,
    report: FailureReport,
    known: set[int],
) -> tuple[Proc, _Launch]:
    """Start the shell on ``script`` in its own session (in the sandbox when one is
    asked for); on Ctrl-C meanwhile, whatever it already started is ended."""
    __tracebackhide__ = True  # keep ``env`` out of tracebacks that print locals
    try:
        with delivered(report.script(script), *SHELL[1:]) as (arguments, script_fds):
            fds = (*script_fds, report.fd)
            launch = _launch([SHELL[0], *arguments], fds, cwd, env, service)
            served = _served(launch, cwd, env)
            if served is not None:
                return served, launch
            if launch.server is not None:
                launch = _launch([SHELL[0], *arguments], fds, cwd, env, service, served=False)
            try:
                proc = subprocess.Popen(
                    launch.argv,
                    executable=launch.executable,
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    pass_fds=launch.fds,
                    preexec_fn=launch.mount,
                )
            except BaseException:
                if launch.status is not None:
                    os.close(launch.status)
                raise
            finally:
                if launch.status is not None:
                    os.close(launch.fds[-1])  # the holder's end of its status pipe
    except BaseException:  # Ctrl-C while spawning: the child may exist already
        report.read(None)
        for pid in children() - known:
            _kill_group(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        raise
    return proc, launch


def _served(launch: _Launch, cwd: Path, env: Mapping[str, str]) -> Served | None:
    """The command started by the task's fork server; None where it cannot be (the
    server ended, or could not mount the overlay): the caller starts it itself."""
    if launch.server is None:
        return None
    sandbox: Sandbox = getattr(env, "sandbox")  # noqa: B009 - a server comes with one
    layers = plan(launch.layers)
    try:
        request = spawn_request(launch.argv, launch.executable, cwd, env, launch.fds, layers)
        return launch.server.spawn(request, launch.fds)
    except ServerGone:
        sandbox.serving = False
    except OSError:
        if layers:
            sandbox.layered = False
    return None


def _exit(proc: Proc, launch: _Launch, deadline: float | None, timed_out: bool) -> tuple[int, bool]:
    """The exit code once both pipes are closed, and whether the deadline passed."""
    code = launch.code(proc)
    if launch.status is not None and code == 0 and not timed_out:
        return 0, timed_out  # the holder stays: it keeps the service's sandbox alive
    # Both pipes are closed, but the process may still be exiting (tools close
    # their streams in atexit handlers): let it finish before ending the group.
    try:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return _wait(proc, remaining), timed_out
    except subprocess.TimeoutExpired:
        if isinstance(proc, Served):
            proc.end()
        else:
            _kill_group(proc.pid)
        return proc.wait(), True


def _follow(
    proc: Proc,
    launch: _Launch,
    streams: dict[int, _Tail],
    known: set[int],
    deadline: float | None,
    service: bool,
    on_output: Callable[[bytes, int], None] | None,
) -> bool:
    """Read the command's output until it is done; whether it timed out."""
    assert proc.stdout is not None
    timed_out = False
    exited: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in (*streams, *([launch.status] if launch.status is not None else [])):
            selector.register(fd, selectors.EVENT_READ)
        if isinstance(proc, Served):
            selector.register(proc.fileno(), selectors.EVENT_READ, proc)
        while selector.get_map():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                # Checked on every pass, not only when the pipes are idle: a command
                # that keeps them busy would otherwise never time out.
                timed_out = launch.code(proc) is None
                end_everything(proc, known)
                deadline = None
            code = launch.code(proc)
            if exited is None and code is not None:
                # The command is done: whatever still holds the pipes is a leftover; end
                # it (unless it is a service that started fine), then collect what is
                # buffered.
                exited = now
                if not (service and code == 0 and not timed_out):
                    end_everything(proc, known)
            if exited is not None and now - exited > EXIT_GRACE:
                break  # something outside our reach holds the pipes
            # Never block without a bound: a background child keeps the pipes open
            # after the main process exits, and only polling notices that exit.
            wait = QUIET_TICK if deadline is None else min(QUIET_TICK, max(0.0, deadline - now))
            events = selector.select(wait)
            if on_output is not None and not events:
                on_output(b"", 0)
            if not events:
                if exited is not None:
                    break
                continue
            for key, _ in events:
                _take(key, selector, proc, launch, streams, on_output)
    return timed_out


def _take(
    key: selectors.SelectorKey,
    selector: selectors.BaseSelector,
    proc: Proc,
    launch: _Launch,
    streams: dict[int, _Tail],
    on_output: Callable[[bytes, int], None] | None,
) -> None:
    """Take what one ready descriptor has: output, an exit status, or an end of file."""
    assert proc.stdout is not None
    if key.data is proc:  # the fork server's news
        proc.feed()
        if proc.poll() is not None:
            selector.unregister(key.fd)
        return
    data = os.read(key.fd, 65536)
    if not data:
        selector.unregister(key.fd)
    elif key.fd == launch.status:
        launch.told += data
    else:
        streams[key.fd].add(data)
        if on_output is not None:
            on_output(data, 1 if key.fd == proc.stdout.fileno() else 2)
