"""Real registries and real image pushes for tests.

Load from tests/conftest.py with ``pytest_plugins = ["tests.registry_support"]``.
Registries are the docker-registry processes of ``demo/localregistry.py`` (a tool that
is not installed skips the test); the Bearer-token registry is a small token-auth front
proxying to the anonymous one, because distribution's own token auth needs a signing PKI
that would only test our test set-up.

PYTEST_DONT_REWRITE: test modules import helpers from here as well as loading it as a plugin.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from localregistry import MissingTool, RunningRegistry, require, stop
from localregistry import buildah_env as _buildah_env
from localregistry import start_registry as _start_registry

BUILDAH_TIMEOUT = 180.0
_FORWARDED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Docker-Content-Digest",
    "Docker-Distribution-Api-Version",
    "Link",
    "Location",
    "Etag",
)
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:tags/list|manifests/[^/]+|blobs/[^/]+)$")


def _require(tool: str, package: str) -> str:
    try:
        return require(tool, package)
    except MissingTool as exc:
        pytest.skip(str(exc))


def start_registry(root: Path, *, username: str | None = None) -> RunningRegistry:
    """docker-registry under `root` (see localregistry); skips when it is not installed."""
    try:
        return _start_registry(root, username=username)
    except MissingTool as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Anonymous registry shared by the whole session."""
    running = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield running
    finally:
        assert running.process is not None
        stop(running.process)


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Registry requiring Basic auth as user `ci` with a generated password."""
    running = start_registry(tmp_path_factory.mktemp("auth-registry"), username="ci")
    try:
        yield running
    finally:
        assert running.process is not None
        stop(running.process)


# --- Bearer token front -------------------------------------------------------------------


@dataclass
class TokenFront:
    """Bearer-token auth in front of an anonymous registry, the way hosted registries work.

    `/token` checks Basic credentials and issues a token bound to the requested scope;
    `/v2/...` answers 401 with a Bearer challenge until a token for that repository is sent.
    """

    backend: RunningRegistry
    username: str = "ci"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    token_key: str = "token"
    service: str = "test"
    token_requests: list[dict[str, str]] = field(default_factory=list)
    _tokens: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"http://{self.hostport}/token"

    def start(self) -> RunningRegistry:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return RunningRegistry(
            self.hostport, f"http://{self.hostport}", self.username, self.password, None
        )

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def issue(self, scopes: set[str]) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = scopes
        return token

    def allows(self, authorization: str, scope: str | None) -> bool:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            granted = self._tokens.get(token.strip())
        return granted is not None and (scope is None or scope in granted)

    def basic_ok(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip()).decode()
        except ValueError:
            return False
        expected = f"{self.username}:{self.password}"
        return secrets.compare_digest(decoded.encode(), expected.encode())


def _handler_for(front: TokenFront) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def _handle(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/token":
                self._token(query)
                return
            match = _REPO_PATH_RE.match(path)
            scope = f"repository:{match.group(1)}:pull" if match else None
            if not front.allows(self.headers.get("Authorization", ""), scope):
                self._challenge(scope)
                return
            self._proxy()

        def _challenge(self, scope: str | None) -> None:
            challenge = f'Bearer realm="{front.realm}",service="{front.service}"'
            if scope is not None:
                challenge += f',scope="{scope}"'
            body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            self.send_response(401)
            self.send_header("WWW-Authenticate", challenge)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _token(self, query: str) -> None:
            params = dict(urllib.parse.parse_qsl(query))
            front.token_requests.append(params)
            if not front.basic_ok(self.headers.get("Authorization", "")):
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            scopes = {params["scope"]} if "scope" in params else set()
            body = json.dumps({front.token_key: front.issue(scopes), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _proxy(self) -> None:
            host, _, port = front.backend.hostport.rpartition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                headers = {"Accept": self.headers.get("Accept", "*/*")}
                conn.request(self.command, self.path, headers=headers)
                upstream = conn.getresponse()
                body = upstream.read()
                self.send_response(upstream.status)
                for name in _FORWARDED_HEADERS:
                    value = upstream.getheader(name)
                    if value is not None:
                        self.send_header(name, value)
                if upstream.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            finally:
                conn.close()

    return Handler


@pytest.fixture(scope="session")
def bearer_registry(registry: RunningRegistry) -> Iterator[RunningRegistry]:
    """Bearer-token registry (user `ci`) serving the same content as `registry`."""
    front = TokenFront(backend=registry)
    running = front.start()
    try:
        yield running
    finally:
        front.stop()


# --- buildah ------------------------------------------------------------------------------


def _run_buildah(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=BUILDAH_TIMEOUT, check=False
    )
    if result.returncode != 0:
        command = " ".join(a if not a.startswith("--creds=") else "--creds=***" for a in args)
        raise RuntimeError(f"{command} failed ({result.returncode}): {result.stderr[-2000:]}")


def buildah_push(
    tmp_path: Path,
    registry_hostport: str,
    name: str,
    tag: str,
    *,
    creds: tuple[str, str] | None = None,
) -> str:
    """Build a tiny FROM-scratch image and push it; return the pushed manifest digest.

    Storage lives beside the session's per-test tmp dirs, so it is shared by one session
    and needs no system state.
    """
    binary = _require("buildah", "buildah")
    flags, env = _buildah_env(tmp_path.parent / "buildah")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}-{tag}")
    context = tmp_path / f"build-{safe}"
    context.mkdir(parents=True, exist_ok=True)
    (context / "payload.txt").write_text(f"{name}:{tag} {secrets.token_hex(8)}\n")
    (context / "Containerfile").write_text("FROM scratch\nCOPY payload.txt /payload.txt\n")
    local = f"localhost/{name}:{tag}"
    policy = str(Path(env["HOME"]) / "policy.json")
    build = [binary, *flags, "bud", "--isolation", "chroot", "--signature-policy", policy]
    build += ["-f", str(context / "Containerfile"), "-t", local, str(context)]
    _run_buildah(build, env)
    digest_file = context / "digest"
    push = [binary, *flags, "push", "--tls-verify=false", "--signature-policy", policy]
    push += ["--digestfile", str(digest_file)]
    if creds is not None:
        push.append(f"--creds={creds[0]}:{creds[1]}")
    push += [local, f"docker://{registry_hostport}/{name}:{tag}"]
    _run_buildah(push, env)
    return digest_file.read_text().strip()
