"""The fork server inside a task's sandbox: started once per task, it forks each of the
task's command blocks as its own session (own process group), so a criterion costs a
fork and the ``bash`` exec, not a new sandbox.

It runs as a script (``python -I -S forkserver.py FD``), from the standard library alone,
and talks over the ``SOCK_SEQPACKET`` socket ``FD`` one JSON message at a time:

- ``{"op": "spawn", "argv", "exe", "cwd", "env", "fds", "layers", "keep"}`` with the
  descriptors to give the command (``fds`` says which number each gets) answers
  ``{"started": pid}`` once the command's program runs, or ``{"error": why}``;
- ``{"exited": pid, "code": status}`` follows when the command's first process ends
  (``-N`` for signal N);
- ``{"op": "end", "pid"}`` kills the command's process group and every process that left
  it (the server is their subreaper), reaps them, and answers ``{"ended": pid}``.

The server cannot be traced or read through ``/proc`` by the commands it starts, and
holds nothing of the run's environment. When the socket closes (the task ended, or
the run died) the server kills what is left and exits; its sandbox's pid namespace
ends with it.

``layers`` are overlays of the work tree (``run.overlay``) the command sees: the child
makes its own mount namespace and mounts them before it execs. Run as root the server
holds every capability for that; each child keeps only ``keep`` (what a command would
have been given by bubblewrap) before its program starts.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterable
from typing import TypedDict

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
MESSAGE = 1 << 22
MAX_FDS = 64
REAP_DEADLINE = 10.0
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
"""Ignored by Python, and so by the server: a command starts with their defaults."""

Plan = list[tuple[str, str, str | None]]
"""Overlays to mount: each work tree, its overlay options, its ``.git`` to bind back."""


class Request(TypedDict, total=False):
    op: str  # "spawn" or "end"
    pid: int
    argv: list[str]
    exe: str
    cwd: str
    env: dict[str, str]
    fds: list[int]
    layers: Plan
    keep: list[int] | None


class Reply(TypedDict, total=False):
    started: int
    error: str
    exited: int
    code: int
    ended: int


_LIBC: list[ctypes.CDLL] = []


def libc() -> ctypes.CDLL:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def mount_layers(plan: list[tuple[bytes, bytes, bytes | None]], as_root: bool) -> None:
    """Make this process's own mount namespace (and, not as root, a user namespace
    mapping its own ids) and mount each overlay of ``plan`` (root, options, ``.git`` to
    bind back or None), outer roots first."""
    lib = libc()
    uid, gid = os.geteuid(), os.getegid()
    _check(lib.unshare(CLONE_NEWNS if as_root else CLONE_NEWNS | CLONE_NEWUSER), "unshare")
    if not as_root:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _check(lib.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    for root, options, git in plan:
        fd = os.open(git, os.O_PATH | os.O_DIRECTORY) if git is not None else -1
        try:
            _check(lib.mount(b"overlay", root, b"overlay", 0, options), "mount overlay")
            if git is not None:
                source = f"/proc/self/fd/{fd}".encode()
                _check(lib.mount(source, git, None, MS_BIND | MS_REC, None), "bind .git")
        finally:
            if fd >= 0:
                os.close(fd)


def encoded(plan: Iterable[tuple[str, str, str | None]]) -> list[tuple[bytes, bytes, bytes | None]]:
    """``plan`` as ``mount_layers`` takes it: paths and options as bytes."""
    return [(r.encode(), o.encode(), g.encode() if g else None) for r, o, g in plan]


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def keep_only(caps: list[int]) -> None:
    """Drop every capability but ``caps``, which stay ambient so the program keeps
    them across its exec, as bubblewrap gives them to a command."""
    lib = libc()
    mask = sum(1 << cap for cap in caps)
    low, high = mask & 0xFFFFFFFF, mask >> 32
    data = (_Data * 2)(_Data(low, low, low), _Data(high, high, high))
    _check(lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient")
    _check(lib.capset(ctypes.byref(_Header(CAPABILITY_VERSION_3, 0)), data), "capset")
    for cap in caps:
        _check(lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "raise ambient")


def _child(request: Request, fds: list[int], report: int) -> None:
    """In the forked child: become the command, or write why not to ``report``."""
    try:
        os.setsid()
        libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # its own /proc files, for its uid_map
        if request["layers"]:
            mount_layers(encoded(request["layers"]), os.geteuid() == 0)
        if request["keep"] is not None:
            keep_only(request["keep"])
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        # Every other descriptor of the server closes on exec.
        for fd, target in zip(fds, request["fds"], strict=True):
            os.dup2(fd, target)
        os.chdir(request["cwd"])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.execve(request["exe"], request["argv"], request["env"])
    except BaseException as exc:  # every failure is reported, then _exit
        with contextlib.suppress(OSError):
            os.write(report, f"{request['argv'][0]}: {exc}".encode(errors="replace"))
    finally:
        os._exit(127)


class Server:
    """``privileged``: run as root with every capability (to mount overlays); each
    command is then forked and keeps only ``keep``. Otherwise a command without
    overlays is started with ``posix_spawn`` (no copy of the server's memory)."""

    def __init__(self, sock: socket.socket, privileged: bool) -> None:
        self.sock = sock
        self.privileged = privileged
        self.commands: set[int] = set()

    def send(self, message: Reply) -> None:
        self.sock.send(json.dumps(message).encode())

    def spawn(self, request: Request, received: list[int]) -> None:
        # Above every target number, so placing one never overwrites another's source.
        floor = max([*request["fds"], 2]) + 1
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in received]
        for fd in received:
            os.close(fd)
        try:
            if request["layers"] or self.privileged:
                pid = self._forked(request, fds)
            else:
                pid = self._spawned(request, fds)
        except OSError as exc:
            self.send({"error": f"{request['argv'][0]}: {exc}"})
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.commands.add(pid)
        self.send({"started": pid})

    def _spawned(self, request: Request, fds: list[int]) -> int:
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]]
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
        actions += [(os.POSIX_SPAWN_DUP2, fd, t) for fd, t in zip(fds, request["fds"], strict=True)]
        os.chdir(request["cwd"])  # the server has one thread: the child starts here
        return os.posix_spawn(
            request["exe"],
            request["argv"],
            request["env"],
            file_actions=actions,
            setsid=True,
            setsigdef=DEFAULT_SIGNALS,
        )

    def _forked(self, request: Request, fds: list[int]) -> int:
        read, write = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _child(request, fds, write)
        os.close(write)
        why = b""
        while chunk := os.read(read, 4096):
            why += chunk
        os.close(read)
        if why:
            os.waitpid(pid, 0)
            raise OSError(why.decode(errors="replace"))
        return pid

    def reap(self) -> None:
        """Collect ended processes; a command that ended has its group and the
        processes that left it killed before its exit status is told."""
        for pid, code in self._collect():
            self.clear(pid)
            self.send({"exited": pid, "code": code})

    def _collect(self) -> list[tuple[int, int]]:
        ended: list[tuple[int, int]] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            if pid == 0:
                return ended
            if pid in self.commands:
                self.commands.discard(pid)
                ended.append((pid, os.waitstatus_to_exitcode(status)))

    def clear(self, pid: int | None) -> None:
        """Kill ``pid``'s group (every command's when None) and every orphan that is no
        other command's, until none is left."""
        deadline = time.monotonic() + REAP_DEADLINE
        while time.monotonic() < deadline:
            groups = [pid] if pid is not None else sorted(self.commands)
            left = False
            for group in groups:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
                    left = True
            others = self.commands - ({pid} if pid is not None else set())
            for child in _children() - others:
                left = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            ended = self._collect()
            for command, code in ended:
                self.send({"exited": command, "code": code})
            if not left:
                return
            if not ended:
                time.sleep(0.002)

    def serve(self, wake: int) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), wake], [], [])
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake, 4096)
                self.reap()
            if self.sock.fileno() in ready:
                data, fds, _, _ = socket.recv_fds(
                    self.sock, MESSAGE, MAX_FDS, socket.MSG_CMSG_CLOEXEC
                )
                if not data:
                    return
                request: Request = json.loads(data)
                if request["op"] == "spawn":
                    self.spawn(request, fds)
                else:
                    self.clear(request["pid"])
                    self.send({"ended": request["pid"]})


def _children() -> set[int]:
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError, ValueError), open(f"/proc/self/task/{tid}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


def main(fd: int, privileged: bool) -> None:
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Commands run as the same user: none may trace the server or read its /proc files
    # (its socket to the run among them). Each command is dumpable again once it execs.
    libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    server = Server(sock, privileged)
    try:
        server.serve(wake_read)
    finally:
        server.commands.update(_children())
        server.clear(None)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2:] == ["--privileged"])
