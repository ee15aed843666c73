"""The run's side of a task's fork server (``run.forkserver``): started with the task's
sandbox on its first command, ended with the task. A command it starts is a ``Served``,
which ``run.process`` follows as it follows a process it spawned itself.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pytest_infratask.run import forkserver

if TYPE_CHECKING:
    from pytest_infratask.run.forkserver import Reply, Request

SEND_BUFFER = 1 << 22
START_TIMEOUT = 30.0
END_TIMEOUT = forkserver.REAP_DEADLINE + 5.0
CAPABILITIES = {"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETFCAP": 31}


class Ahead(Protocol):
    """What a server keeps started ahead of its next command (``run.warm``)."""

    def close(self) -> None:
        """Let it go: the server is closing."""


def spawn_request(
    argv: list[str],
    exe: str,
    cwd: Path,
    env: Mapping[str, str],
    at: Sequence[int],
    layers: forkserver.Plan,
    stand: bool = False,
) -> Request:
    """A request to start ``argv`` (program ``exe``) in ``cwd`` with ``env`` and
    ``layers``, its stdout and stderr as 1 and 2, and the descriptors sent with it at
    the numbers ``at`` names. ``stand``: it starts outside the work tree and gets its
    overlays later (``ForkServer.mount``), so those standing stay for it to take on."""
    return {
        "op": "spawn",
        "argv": argv,
        "exe": exe,
        "cwd": str(cwd),
        "env": dict(env),
        "fds": [1, 2, *at],
        "layers": layers,
        "stand": stand,
    }


class ServerGone(Exception):
    """The fork server cannot take the command (it ended, or refused the message): the
    caller starts the command the usual way."""


class ForkServer:
    """One task's fork server: ``bwrap <the task's mounts> -- python forkserver.py``."""

    def __init__(self, argv: list[str], fds: tuple[int, ...], keep: Sequence[str] | None) -> None:
        """``keep``: the capabilities a command keeps when the server holds them all (run
        as root, to mount overlays); None: the server has what a command has."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self.sock = ours
        self.keep = None if keep is None else [CAPABILITIES[name] for name in keep]
        self.pending: list[Reply] = []
        self.asked = self.answered = 0
        self.answers: dict[int, Reply] = {}
        self.ignored: set[int] = set()
        """Commands whose end nobody waits for (shells started ahead and let go)."""
        self.ahead: Ahead | None = None
        """A shell started ahead for the next command (``run.warm``)."""
        script = [sys.executable, "-I", "-S", "-B", forkserver.__file__, str(theirs.fileno())]
        if self.keep is not None:
            script.append(",".join(str(cap) for cap in self.keep))
        try:
            self.proc = subprocess.Popen(
                [*argv, "--chdir", "/", "--", *script],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={},  # a command reads nothing of the run's environment here
                start_new_session=True,
                pass_fds=(*fds, theirs.fileno()),
            )
        finally:
            theirs.close()

    @property
    def privileged(self) -> bool:
        return self.keep is not None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self.sock.fileno() >= 0

    def spawn(self, request: Request, fds: Sequence[int]) -> Served:
        """Start ``request``'s command in the sandbox (``fds`` at the numbers it names);
        raises ``ServerGone`` (nothing started) or ``OSError`` (it could not start)."""
        ticket, out, err = self.send(request, fds)
        try:
            reply = self.answer(ticket)
        except BaseException:
            os.close(out)
            os.close(err)
            raise
        if "error" in reply:
            os.close(out)
            os.close(err)
            raise OSError(reply["error"])
        return Served(self, reply["started"], request["argv"], out, err)

    def send(self, request: Request, fds: Sequence[int]) -> tuple[int, int, int]:
        """Ask for ``request``'s command to be started with ``fds`` (at the numbers it
        names after stdout and stderr); the ticket to ``answer`` and the read ends of
        its stdout and stderr. Raises ``ServerGone``: nothing was asked."""
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            message = forkserver.dumps(request)
            socket.send_fds(self.sock, [message], [out_write, err_write, *fds])
        except OSError as exc:
            os.close(out_read)
            os.close(err_read)
            raise ServerGone(str(exc)) from exc
        finally:
            os.close(out_write)
            os.close(err_write)
        self.asked += 1
        return self.asked - 1, out_read, err_read

    def answer(self, ticket: int) -> Reply:
        """The reply to spawn request ``ticket``: ``{"started": pid}`` or ``{"error"}``.
        The server answers its requests in order, so earlier answers are kept."""
        while ticket not in self.answers:
            reply = self.receive(lambda m: "started" in m or "error" in m, START_TIMEOUT)
            self.answers[self.answered] = reply
            self.answered += 1
        return self.answers.pop(ticket)

    def mount(
        self, pid: int, layers: forkserver.Plan, wait: bool = True, reuse: bool = False
    ) -> None:
        """Have ``layers`` mounted for command ``pid`` (run as root only: ``privileged``).
        Raises ``OSError`` with the server's reason, or ``ServerGone``. Without ``wait``,
        ``mounted`` reads the answer later. ``reuse``: the caller vouches that the work
        trees and the overlays' directories are as when the command before had them
        mounted, so the server may take those on as they stand."""
        message: Request = {"op": "mount", "pid": pid, "layers": layers, "reuse": reuse}
        try:
            self.sock.send(forkserver.dumps(message))
        except OSError as exc:
            raise ServerGone(str(exc)) from exc
        if wait:
            self.mounted(pid)

    def mounted(self, pid: int) -> None:
        """The answer to ``mount`` for ``pid``: raises as it does."""
        reply = self.receive(lambda m: m.get("mounted") == pid or "refused" in m, START_TIMEOUT)
        if "refused" in reply:
            raise OSError(reply["refused"])

    def end(self, pid: int) -> None:
        """Have command ``pid``'s group killed and reaped and its overlays taken away
        before the server takes another request. Raises ``ServerGone``, ``OSError`` or
        ``subprocess.TimeoutExpired``."""
        self.sock.send(forkserver.dumps({"op": "end", "pid": pid}))
        self.receive(lambda m: m.get("ended") == pid, END_TIMEOUT)

    def forget(self, pid: int) -> None:
        """Have nobody wait for ``pid``'s end: its message is dropped, told or not."""
        told = [message for message in self.pending if message.get("exited") == pid]
        if told:
            self.pending.remove(told[0])
        else:
            self.ignored.add(pid)

    def exited(self, pid: int) -> bool:
        """Whether ``pid`` is known to have ended, from the messages here by now."""
        while self.sock.fileno() >= 0 and select.select([self.sock], [], [], 0)[0]:
            try:
                message = self.read()
            except ServerGone:
                return True
            if message:
                self.pending.append(message)
        return any(message.get("exited") == pid for message in self.pending)

    def receive(self, wanted: Callable[[Reply], bool], timeout: float | None) -> Reply:
        """The first message ``wanted`` accepts; the others wait in ``pending``."""
        if self.sock.fileno() < 0:
            raise ServerGone("the fork server ended")
        for message in self.pending:
            if wanted(message):
                self.pending.remove(message)
                return message
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.sock], [], [], left)[0]:
                raise subprocess.TimeoutExpired("fork server", timeout or 0.0)
            message = self.read()
            if wanted(message):
                return message
            if message:
                self.pending.append(message)

    def read(self) -> Reply:
        """One message; raises ``ServerGone`` when the server ended."""
        try:
            data = self.sock.recv(forkserver.MESSAGE)
        except OSError as exc:
            raise ServerGone(str(exc)) from exc
        if not data:
            self.sock.close()
            raise ServerGone("the fork server ended")
        message: Reply = marshal.loads(data)
        if message.get("exited") in self.ignored:
            self.ignored.discard(message["exited"])
            return {}
        return message

    def ready(self) -> bool:
        """Whether the server answers, once its sandbox is set up (waits for it)."""
        try:
            self.sock.send(forkserver.dumps({"op": "ping"}))
            self.receive(lambda message: "ok" in message, START_TIMEOUT)
        except (ServerGone, OSError, subprocess.TimeoutExpired):
            return False
        return True

    def close(self, wait: bool = True) -> None:
        """End the server and whatever it still runs; its sandbox ends with it. Without
        ``wait`` its end is waited for later (``end_closed``, by the run's end at the
        latest), off the next task's path."""
        inner = _pidfds(forkserver.children(self.proc.pid))
        if self.ahead is not None:
            self.ahead.close()
            self.ahead = None
        self.sock.close()
        _CLOSED.append((self.proc, inner))
        end_closed(wait)  # without waiting, those that ended are reaped all the same


_CLOSED: list[tuple[subprocess.Popen[bytes], list[tuple[int, int]]]] = []
"""Servers told to end (their socket closed) whose end was not waited for yet."""


def end_closed(wait: bool = True) -> None:
    """Wait for the servers told to end and reap what their sandboxes leave; without
    ``wait``, only for those that ended already."""
    for proc, inner in list(_CLOSED):
        if not wait and proc.poll() is None:
            continue
        _CLOSED.remove((proc, inner))
        try:
            wait_exit(proc, END_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, 9)
            proc.wait()
        for pid, fd in inner:
            _reap_orphan(pid, fd)


def mount_points(server: ForkServer) -> set[str]:
    """Where ``server``'s sandbox has mounts of directories that still exist, from its
    first process's ``mountinfo`` (empty when it cannot be read). A bound directory
    removed outside since shows as ``//deleted`` (its mount point was removed too: it
    has no mount at all)."""
    found: set[str] = set()
    for pid in forkserver.children(server.proc.pid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/mountinfo", "rb") as info:
            for line in info:
                root, point = line.split(b" ", 5)[3:5]
                if not root.endswith(b"//deleted"):
                    found.add(_unescaped(point).decode("utf-8", "surrogateescape"))
    return found


def wait_exit(proc: subprocess.Popen[bytes], timeout: float | None) -> int:
    """``proc.wait(timeout)`` without its sleep loop (0.5 ms, then doubling, which
    oversleeps an exit by up to half the time waited): the process's pidfd says when
    it exits. Raises ``subprocess.TimeoutExpired``."""
    code = proc.poll()
    if code is not None or timeout is None:
        return proc.wait() if code is None else code
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+
        return proc.wait(timeout=timeout)
    try:
        poller = select.poll()  # not select(): a descriptor may be above FD_SETSIZE
        poller.register(fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(fd)
    return proc.wait()


def _unescaped(field: bytes) -> bytes:
    """A ``mountinfo`` field as the path it is: space, tab, newline and backslash come
    as octal escapes."""
    for code in (b"\\040", b"\\011", b"\\012", b"\\134"):
        field = field.replace(code, bytes([int(code[1:], 8)]))
    return field


def _pidfds(pids: set[int]) -> list[tuple[int, int]]:
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            found.append((pid, os.pidfd_open(pid)))
    return found


def _reap_orphan(pid: int, fd: int) -> None:
    """bwrap's own first process in the sandbox (``fd``: its pidfd), ending with it:
    when bwrap ends first, it is handed to the run (a subreaper, ``run.process``),
    which reaps it rather than keep a zombie per task. Reaped by bwrap: nothing to do."""
    try:
        if select.select([fd], [], [], END_TIMEOUT)[0]:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
    finally:
        os.close(fd)


class Served:
    """A command the fork server runs, with the parts of ``subprocess.Popen`` that
    ``run.process`` uses: its pipes, ``poll`` and ``wait``; ``end`` kills all it left."""

    def __init__(self, server: ForkServer, pid: int, argv: list[str], out: int, err: int) -> None:
        self.server = server
        self.pid = pid  # in the sandbox's pid namespace
        self.args = argv
        self.stdout = open(out, "rb", buffering=0)  # noqa: SIM115 - closed by run.process
        self.stderr = open(err, "rb", buffering=0)  # noqa: SIM115
        self.returncode: int | None = None

    def fileno(self) -> int:
        """Readable when the server has news (``feed``)."""
        return self.server.sock.fileno()

    def _mine(self, message: Reply) -> bool:
        return message.get("exited") == self.pid

    def _told(self, message: Reply) -> None:
        self.returncode = int(message["code"])

    def feed(self) -> None:
        """Take the server's next message (select said it is there)."""
        try:
            message = self.server.read()
        except ServerGone:
            self.returncode = -9 if self.returncode is None else self.returncode
            return
        if self._mine(message):
            self._told(message)
        elif message:
            self.server.pending.append(message)

    def poll(self) -> int | None:
        if self.returncode is None:
            for message in self.server.pending:
                if self._mine(message):
                    self.server.pending.remove(message)
                    self._told(message)
                    break
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.poll() is None:
            try:
                self._told(self.server.receive(self._mine, timeout))
            except ServerGone:
                self.returncode = -9
        assert self.returncode is not None
        return self.returncode

    def end(self) -> None:
        """Kill the command's process group and every process that left it; reap them.
        Once the command ended, the server has done so before it told."""
        if self.poll() is not None:
            return
        try:
            self.server.end(self.pid)
        except (ServerGone, OSError, subprocess.TimeoutExpired):
            self.server.close()  # its pid namespace, and all in it, ends with it
        if self.returncode is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(0)
            if self.returncode is None:
                self.returncode = -9
