"""The fork server inside a task's sandbox: started once per task, it starts each of
the task's command blocks as its own session (own process group), so a criterion
costs at most the ``bash`` exec, not a new sandbox (``run.warm`` starts that ahead).

It runs as a script (``python -I -S forkserver.py FD [KEEP]``), from the standard
library alone, and talks over the ``SOCK_SEQPACKET`` socket ``FD`` one ``marshal``ed
dict at a time. The server's start is a task's first command's wait, so it imports
neither ``json``, ``typing``, ``contextlib`` nor the ``enum``-built ``signal`` and
``socket`` (their C halves ``_signal`` and ``_socket`` serve): a third of it.

- ``{"op": "spawn", "argv", "exe", "cwd", "env", "fds", "layers"}`` with the
  descriptors to give the command (``fds`` says which number each gets) answers
  ``{"started": pid}`` once the command's program runs, or ``{"error": why}``;
- ``{"exited": pid, "code": status}`` follows when the command's first process has
  ended (``-N`` for signal N) and its group and every process that left it (the
  server is their subreaper) are killed and reaped;
- ``{"op": "end", "pid"}`` does that at once, and answers ``{"ended": pid}``;
- ``{"op": "ping"}`` answers ``{"ok": True}``: the sandbox is set up;
- ``{"op": "mount", "pid", "layers", "reuse"}`` mounts ``layers`` for command ``pid`` (a
  shell started ahead, ``run.warm``, before its block), as a spawn's are, taken away
  when it ends; answers ``{"mounted": pid}`` or ``{"refused": why}``. With ``reuse``
  the same overlays left standing by the command before are taken on as they are.

``layers`` are overlays of the work tree (``run.overlay``) the command sees. Run as
root (``KEEP`` given: the capabilities a command keeps) the server forks a helper
that keeps every capability and mounts each command's overlays in the sandbox's mount
namespace, and takes them away when the next command starts, unless that command
takes them on (``reuse``: its run vouches that neither the work tree nor the
overlay's directories changed since they were mounted, which spares an unmount and
a mount per criterion); the server itself keeps only ``KEEP``.
As another user a command with overlays is forked, and mounts them in a user
namespace of its own.

The server cannot be traced or read through ``/proc`` by the commands it starts, and
holds nothing of the run's environment. When the socket closes (the task ended, or
the run died) the server kills what is left and exits; its sandbox's pid namespace
ends with it.
"""

from __future__ import annotations

import ctypes
import fcntl
import marshal
import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # not imported at run time (the server's start)
    import signal
    import socket
    from collections.abc import Iterable
    from types import TracebackType
    from typing import TypedDict
else:
    import _signal as signal
    import _socket as socket

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
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

Plan = list[tuple[str, str, str | None, str]]
"""Overlays to mount: each work tree, its overlay options, its ``.git`` to bind back,
and the overlay's work directory."""
Encoded = list[tuple[bytes, bytes, bytes | None, bytes]]


if TYPE_CHECKING:

    class Request(TypedDict, total=False):
        op: str  # "spawn", "end", "ping" or "mount"
        pid: int
        argv: list[str]
        exe: str
        cwd: str
        env: dict[str, str]
        fds: list[int]
        layers: Plan
        reuse: bool
        stand: bool  # a spawn that leaves standing overlays be (it starts outside them)

    class Reply(TypedDict, total=False):
        ok: bool
        started: int
        error: str
        exited: int
        code: int
        ended: int
        mounted: int
        refused: str

    class MountRequest(TypedDict):
        op: str  # "mount" or "unmount"
        layers: Plan


_LIBC: list[ctypes.CDLL] = []


class ignored:
    """``contextlib.suppress``, without importing ``contextlib``."""

    def __init__(self, *kinds: type[BaseException]) -> None:
        self.kinds = kinds

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> bool:
        return kind is not None and issubclass(kind, self.kinds)


def recv_fds(sock: socket.socket, size: int, most: int) -> tuple[bytes, list[int]]:
    """``socket.recv_fds`` (close-on-exec), on the ``_socket`` object."""
    data, ancillary, _, _ = sock.recvmsg(size, socket.CMSG_LEN(most * 4), socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, kind, cdata in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - len(cdata) % 4
            fds += [int.from_bytes(cdata[i : i + 4], sys.byteorder) for i in range(0, usable, 4)]
    return data, fds


def dumps(message: Request | Reply | MountRequest) -> bytes:
    """One message as sent: a dict of str, int, bytes, lists and tuples."""
    return marshal.dumps(dict(message))


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


def mount_layers(plan: Encoded, as_root: bool) -> None:
    """Make this process's own mount namespace (and, not as root, a user namespace
    mapping its own ids) and mount ``plan`` there."""
    lib = libc()
    uid, gid = os.geteuid(), os.getegid()
    _check(lib.unshare(CLONE_NEWNS if as_root else CLONE_NEWNS | CLONE_NEWUSER), "unshare")
    if not as_root:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _check(lib.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    mount_plan(plan)


def mount_plan(plan: Encoded) -> None:
    """Mount each overlay of ``plan`` (root, options, ``.git`` to bind back or None,
    work directory), outer roots first, in this process's mount namespace."""
    lib = libc()
    for root, options, git, work in plan:
        if b"volatile" in options:
            _clear_volatile(work)
        fd = os.open(git, os.O_PATH | os.O_DIRECTORY) if git is not None else -1
        try:
            _check(lib.mount(b"overlay", root, b"overlay", 0, options), "mount overlay")
            if git is not None:
                source = f"/proc/self/fd/{fd}".encode()
                _check(lib.mount(source, git, None, MS_BIND | MS_REC, None), "bind .git")
        finally:
            if fd >= 0:
                os.close(fd)


def _clear_volatile(work: bytes) -> None:
    """A volatile overlay (no syncs: what it wrote is applied or dropped by the run,
    never kept) leaves a mark in its work directory that refuses the next mount over
    it; an attempt's next block mounts the same directories, so the mark goes."""
    mark = work + b"/work/incompat/volatile"
    with ignored(FileNotFoundError):
        os.unlink(mark + b"/dirty")
    with ignored(FileNotFoundError):
        os.rmdir(mark)


def unmount_plan(plan: Encoded) -> None:
    """Take ``plan``'s mounts away again, inner first (lazily: the kernel frees each once
    nothing uses it)."""
    lib = libc()
    for root, _, git, _ in reversed(plan):
        for target in (git, root):
            if target is not None:
                _check(lib.umount2(target, MNT_DETACH), "umount")


def encoded(plan: Iterable[tuple[str, str, str | None, str]]) -> Encoded:
    """``plan`` as ``mount_layers`` takes it: paths and options as bytes."""
    return [(r.encode(), o.encode(), g.encode() if g else None, w.encode()) for r, o, g, w in plan]


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
        with ignored(OSError):
            os.write(report, f"{request['argv'][0]}: {exc}".encode(errors="replace"))
    finally:
        os._exit(127)


class Server:
    """Starts each command with ``posix_spawn`` (no copy of the server's memory). Run
    as root, overlays are mounted by a privileged helper (``Mounter``) in the
    sandbox's own mount namespace, which the commands share, and the server itself
    keeps only the commands' capabilities; as another user a command with overlays is
    forked, and makes a user namespace of its own to mount them."""

    def __init__(self, sock: socket.socket, mounter: Mounter | None) -> None:
        self.sock = sock
        self.mounter = mounter
        self.commands: set[int] = set()
        self.mounted: dict[int, Plan] = {}
        self.standing: Plan | None = None
        """The overlays of the command that ended last, still mounted."""

    def send(self, message: Reply) -> None:
        self.sock.send(dumps(message))

    def spawn(self, request: Request, received: list[int]) -> None:
        # Above every target number, so placing one never overwrites another's source.
        floor = max([*request["fds"], 2]) + 1
        fds = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in received]
        for fd in received:
            os.close(fd)
        layers = request["layers"]
        try:
            if not request.get("stand"):
                self._unstand()
            if not layers and self.mounter is not None:
                self.mounter.settle()  # it starts in the work tree, not in an overlay
            if layers and self.mounter is None:
                pid = self._forked(request, fds)
            else:
                if layers and self.mounter is not None:
                    self.mounter.ask({"op": "mount", "layers": layers})
                try:
                    pid = self._spawned(request, fds)
                except OSError:
                    if layers and self.mounter is not None:
                        self.mounter.ask({"op": "unmount", "layers": layers})
                    raise
                if layers:
                    self.mounted[pid] = layers
        except OSError as exc:
            self.send({"error": f"{request['argv'][0]}: {exc}"})
            return
        finally:
            for fd in fds:
                os.close(fd)
        self.commands.add(pid)
        self.send({"started": pid})

    def mount_for(self, pid: int, layers: Plan, reuse: bool) -> None:
        """Mount ``layers`` for a running command, as ``spawn`` mounts a new one's, or
        with ``reuse`` take on the same ones standing."""
        try:
            if self.mounter is None or pid not in self.commands or pid in self.mounted:
                raise OSError(f"no overlays can be mounted for {pid} here")
            if reuse and self.standing == layers:
                self.standing = None  # taken on as they stand
            else:
                self._unstand()
                self.mounter.ask({"op": "mount", "layers": layers})
        except OSError as exc:
            self.send({"refused": str(exc)})
            return
        self.mounted[pid] = layers
        self.send({"mounted": pid})

    def _spawned(self, request: Request, fds: list[int]) -> int:
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]]
        actions = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
        actions += [(os.POSIX_SPAWN_DUP2, fd, t) for fd, t in zip(fds, request["fds"], strict=True)]
        os.chdir(request["cwd"])  # the server has one thread: the child starts here
        try:
            return os.posix_spawn(
                request["exe"],
                request["argv"],
                request["env"],
                file_actions=actions,
                setsid=True,
                setsigdef=DEFAULT_SIGNALS,
            )
        finally:
            os.chdir("/")  # never keep an overlay busy

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
            self._ended(pid, code)

    def _ended(self, pid: int, code: int) -> None:
        """Tell a command's exit status; its overlays stand, for the next command to
        take on or take away (``mount_for``, ``spawn``)."""
        layers = self.mounted.pop(pid, None)
        if layers is not None and self.mounter is not None:
            self._unstand()
            self.standing = layers
        self.send({"exited": pid, "code": code})

    def _unstand(self) -> None:
        """Have the standing overlays taken away (the helper works in order: before
        the next mount, and before ``Mounter.settle`` returns)."""
        layers, self.standing = self.standing, None
        if layers is not None and self.mounter is not None:
            with ignored(OSError):
                self.mounter.ask({"op": "unmount", "layers": layers}, wait=False)

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
                with ignored(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
                    left = True
            others = self.commands - ({pid} if pid is not None else set())
            if self.mounter is not None:
                others.add(self.mounter.pid)
            for child in children() - others:
                left = True
                with ignored(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            ended = self._collect()
            for command, code in ended:
                self._ended(command, code)
            if not left:
                return
            if not ended:
                time.sleep(0.002)

    def serve(self, wake: int) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), wake], [], [])
            if wake in ready:
                with ignored(BlockingIOError):
                    os.read(wake, 4096)
                self.reap()
            if self.sock.fileno() in ready:
                data, fds = recv_fds(self.sock, MESSAGE, MAX_FDS)
                if not data:
                    return
                request: Request = marshal.loads(data)
                if request["op"] == "spawn":
                    self.spawn(request, fds)
                elif request["op"] == "ping":
                    self.send({"ok": True})
                elif request["op"] == "mount":
                    self.mount_for(request["pid"], request["layers"], request.get("reuse", False))
                else:
                    self.clear(request["pid"])
                    self.send({"ended": request["pid"]})


class Mounter:
    """The privileged helper: forked before the server drops its capabilities, it
    mounts and unmounts overlays on the server's request and does nothing else."""

    def __init__(self, run_socket: socket.socket) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:
            ours.close()
            run_socket.close()
            try:
                _mount_on_request(theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.sock = ours
        self.unanswered = 0

    def ask(self, request: MountRequest, wait: bool = True) -> None:
        """Have ``request`` done; raises ``OSError`` with the helper's reason. Without
        ``wait`` its answer is read before the next request's (the helper works in
        order, so an unmount is done before the next mount), and its failure is that
        request's."""
        self.sock.send(dumps(request))
        if not wait:
            self.unanswered += 1
            return
        self.settle()
        reply = self._answer()
        if "error" in reply:
            raise OSError(reply["error"])

    def settle(self) -> None:
        """Wait for the requests sent without waiting: once this returns, the overlays
        of every command that ended are gone. Raises ``OSError`` for one that failed (a
        mount left in place would show through the next)."""
        while self.unanswered:
            self.unanswered -= 1
            earlier = self._answer()
            if "error" in earlier:
                raise OSError(f"an earlier overlay is still mounted: {earlier['error']}")

    def _answer(self) -> Reply:
        data = self.sock.recv(MESSAGE)
        reply: Reply = marshal.loads(data) if data else {"error": "the mount helper ended"}
        return reply


def _mount_on_request(sock: socket.socket) -> None:
    while data := sock.recv(MESSAGE):
        request: MountRequest = marshal.loads(data)
        plan = encoded(request["layers"])
        reply: Reply = {"ok": True}
        try:
            (mount_plan if request["op"] == "mount" else unmount_plan)(plan)
        except OSError as exc:
            reply = {"error": str(exc)}
        sock.send(dumps(reply))


def children(pid: int | str = "self") -> set[int]:
    """The children of process ``pid`` (this one by default), from every thread's
    ``children`` list in /proc; none when /proc cannot tell."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        with ignored(OSError, ValueError), open(f"/proc/{pid}/task/{tid}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found


def main(fd: int, keep: list[int] | None) -> None:
    """``keep``: run as root, the capabilities a command keeps; the server starts with
    all of them, forks its mount helper, then keeps only ``keep``."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # Commands run as the same user: none may trace the server or read its /proc files
    # (its socket to the run among them). Each command is dumpable again once it execs.
    libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    mounter = None
    if keep is not None:
        mounter = Mounter(sock)
        keep_only(keep)
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    server = Server(sock, mounter)
    try:
        server.serve(wake_read)
    finally:
        if mounter is not None:
            mounter.sock.close()  # it exits
        server.commands.update(children())
        server.clear(None)


if __name__ == "__main__":
    main(int(sys.argv[1]), [int(cap) for cap in sys.argv[2].split(",")] if sys.argv[2:] else None)
    os._exit(0)  # all is ended: the sandbox ends now, not after the interpreter's teardown
