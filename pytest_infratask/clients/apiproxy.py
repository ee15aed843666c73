"""The read-only path to a cluster: ``kubectl proxy`` behind a gate only the task's
commands can pass.

``kubectl proxy`` refuses every write method but authenticates nobody, so it listens
on a unix socket in a directory only this user can enter (mode 0700), never on a
port. The commands reach it through ``Gate``: a listener on 127.0.0.1 that splices a
connection to the socket only when the request's path starts with the run's secret
token, which only the commands' kubeconfig holds (``server:
http://127.0.0.1:PORT/<token>``; kubectl sends no credentials over plain HTTP, so the
token travels in the path). The proxy dies with the process that started it
(``PR_SET_PDEATHSIG``), so a killed run leaves no proxy behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO

READ_ONLY_METHODS = "^(POST|PUT|PATCH|DELETE)$"
START_TIMEOUT = 60.0
HEAD_LIMIT = 64 * 1024
HEAD_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1
SOCKET_DIR_PREFIX = "infratask-proxy-"
# /tmp, whatever TMPDIR says: it is private in every sandbox, and its paths are short
# enough for a unix socket (108 bytes).
SOCKET_PARENT = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
_SERVING = re.compile(r"Starting to serve on (\S+)")


def die_with_parent() -> None:
    """``preexec_fn``: the child is killed when the process that started it dies."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


class ProxyError(Exception):
    """The read-only proxy could not start."""


class ReadOnlyProxy:
    """``kubectl proxy`` for one context that refuses every write method, on a private
    unix socket, behind a ``Gate``.

    Commands reach the cluster only through it, so a write fails at the API
    boundary whatever its spelling (``$k apply``, a function, ``python -c``...).
    """

    def __init__(self, kubeconfig_fd: int, context: str, env: Mapping[str, str]) -> None:
        self.kubeconfig_fd = kubeconfig_fd
        self.context = context
        self.env = dict(env)
        self.process: subprocess.Popen[str] | None = None
        self.folder: Path | None = None
        self.gate: Gate | None = None
        self.token = secrets.token_urlsafe(32)

    def start(self, kubectl: str) -> str:
        """Start the proxy and its gate; the URL (holding the token) commands use."""
        sweep_stale()
        prefix = f"{SOCKET_DIR_PREFIX}{os.getpid()}-"
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=SOCKET_PARENT))
        sock = self.folder / "api.sock"
        fd = self.kubeconfig_fd
        self.process = subprocess.Popen(
            [
                kubectl, "proxy", "--kubeconfig", f"/proc/self/fd/{fd}",
                "--context", self.context, "--unix-socket", str(sock),
                f"--reject-methods={READ_ONLY_METHODS}",
                "--accept-hosts=^(localhost|127\\.0\\.0\\.1)$",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            pass_fds=(fd,),
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )  # fmt: skip
        line = _first_line(self.process)
        if _SERVING.search(line) is None or not sock.exists():
            self.stop()
            raise ProxyError(
                f"cannot start the read-only API proxy (kubectl proxy): {line.strip()}"
            )
        self.gate = Gate(sock, self.token)
        return f"http://127.0.0.1:{self.gate.start()}/{self.token}"

    def stop(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.stop()
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        folder, self.folder = self.folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _first_line(process: subprocess.Popen[str]) -> str:
    """The proxy's first line (it prints one when it listens), then its output drained
    for as long as it runs: a full pipe would stall it (it logs every refused request)."""
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True).start()
    try:
        return lines.get(timeout=START_TIMEOUT)
    except queue.Empty:
        return f"no output after {START_TIMEOUT:g}s"


def _drain(stream: IO[str], first: queue.Queue[str]) -> None:
    """Hand over the first line, then read (and drop) the rest until the proxy exits."""
    told = False
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            if not told:
                first.put(line)
                told = True
    if not told:
        first.put("")  # exited without a word
    with contextlib.suppress(OSError):
        stream.close()


def sweep_stale() -> None:
    """Remove socket directories of runs that were killed (SIGKILL leaves them)."""
    with contextlib.suppress(OSError):
        for entry in Path(SOCKET_PARENT).glob(f"{SOCKET_DIR_PREFIX}*"):
            pid = entry.name.removeprefix(SOCKET_DIR_PREFIX).partition("-")[0]
            if not pid.isdigit() or entry.stat().st_uid != os.geteuid() or _running(int(pid)):
                continue
            shutil.rmtree(entry, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refusal() -> bytes:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": "this read-only API proxy serves only the commands of its task",
        }
    ).encode()
    return (
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )


def _admitted(head: bytes, token: bytes) -> bytes | None:
    """The request head to forward (token stripped from the path, one request per
    connection), or None when the path does not carry the token."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    method, target, version = parts
    prefix = b"/" + token
    rest = target[len(prefix) :]
    if not target.startswith(prefix) or rest[:1] not in (b"", b"/", b"?"):
        return None
    target = rest if rest.startswith(b"/") else b"/" + rest
    headers = lines[1:]
    if not any(h.lower().startswith(b"upgrade:") for h in headers):
        # One request per connection: a second request on it would pass unchecked.
        drop = (b"connection:", b"keep-alive:", b"proxy-connection:")
        headers = [h for h in headers if not h.lower().startswith(drop)]
        headers.append(b"Connection: close")
    return b"\r\n".join([b" ".join([method, target, version]), *headers]) + b"\r\n\r\n"


class Gate:
    """127.0.0.1 listener in front of the proxy's unix socket: a connection whose first
    request's path starts with ``/<token>`` is spliced to the socket; any other is
    refused with 403."""

    def __init__(self, socket_path: Path, token: str) -> None:
        self.socket_path = socket_path
        self.token = token.encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> int:
        threading.Thread(target=self._accept, daemon=True).start()
        return int(self.listener.getsockname()[1])

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self.lock:
            connections, self.open = self.open, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *conns: socket.socket) -> None:
        with self.lock:
            self.open.update(conns)

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        self._track(client)
        try:
            head, rest = _read_head(client)
            forward = _admitted(head, self.token) if head else None
            if forward is None:
                client.sendall(_refusal())
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._track(upstream)
            upstream.connect(str(self.socket_path))
            upstream.sendall(forward + rest)
            _splice(client, upstream)
        except OSError:
            pass
        finally:
            for conn in (client, upstream):
                if conn is not None:
                    with self.lock:
                        self.open.discard(conn)
                    conn.close()


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    """The first request's head and the bytes read past it; empty when there is none."""
    client.settimeout(HEAD_TIMEOUT)
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > HEAD_LIMIT:
            return b"", b""
        chunk = client.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
    client.settimeout(None)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _splice(a: socket.socket, b: socket.socket) -> None:
    """Copy both ways until both sides are done."""
    peers = {a: b, b: a}
    open_ = {a, b}
    while open_:
        ready, _, _ = select.select(list(open_), [], [])
        for sock in ready:
            data = sock.recv(65536)
            if data:
                peers[sock].sendall(data)
                continue
            open_.discard(sock)
            with contextlib.suppress(OSError):
                peers[sock].shutdown(socket.SHUT_WR)
            if peers[sock] not in open_:
                return
