"""A local OCI registry and a buildah that keeps off system state, for the demo and the tests.

Registries are Debian's docker-registry (distribution v2) on free 127.0.0.1 ports, with
htpasswd Basic auth when a user name is given.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 20.0


class MissingTool(RuntimeError):
    """A system tool is not installed; the message names the package that provides it."""


@dataclass(frozen=True)
class RunningRegistry:
    """A registry on 127.0.0.1; `process` is None for in-process fronts."""

    hostport: str
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def creds(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"{tool} not installed (apt-get install {package})")
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _registry_config(root: Path, port: int, htpasswd: Path | None) -> str:
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {root / 'data'}",
        "  delete:",
        "    enabled: true",
        "http:",
        f"  addr: 127.0.0.1:{port}",
        f"  secret: {secrets.token_hex(16)}",
    ]
    if htpasswd is not None:
        lines += ["auth:", "  htpasswd:", "    realm: test-registry", f"    path: {htpasswd}"]
    return "\n".join(lines) + "\n"


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /v2/ until it answers (200 or 401), the process dies, or the deadline passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/v2/", timeout=1):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"docker-registry at {url} not ready after {READY_TIMEOUT}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start_registry(root: Path, *, username: str | None = None) -> RunningRegistry:
    """Start docker-registry under `root`; with `username` it requires htpasswd Basic auth."""
    binary = require("docker-registry", "docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    password: str | None = None
    htpasswd: Path | None = None
    if username is not None:
        tool = require("htpasswd", "apache2-utils")
        password = secrets.token_urlsafe(18)
        entry = subprocess.run(
            [tool, "-Bbn", username, password], check=True, capture_output=True, text=True
        ).stdout.strip()
        htpasswd = root / "htpasswd"
        htpasswd.write_text(entry + "\n")
    last_error: Exception | None = None
    for attempt in range(3):  # another process may grab the free port before we bind it
        port = _free_port()
        config = root / f"config-{attempt}.yml"
        config.write_text(_registry_config(root, port, htpasswd))
        log = root / f"registry-{attempt}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=sink, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(url, process, log)
        except RuntimeError as exc:
            stop(process)
            last_error = exc
            continue
        return RunningRegistry(f"127.0.0.1:{port}", url, username, password, process)
    raise RuntimeError(f"could not start docker-registry: {last_error}")


def buildah_env(base: Path) -> tuple[list[str], dict[str, str]]:
    """Global flags and environment that keep buildah off system and user state."""
    storage = base / "storage"
    run = base / "run"
    tmp = base / "tmp"
    for directory in (storage, run, tmp):
        directory.mkdir(parents=True, exist_ok=True)
    policy = base / "policy.json"
    policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    registries = base / "registries.conf"
    registries.write_text("unqualified-search-registries = []\n")
    auth = base / "auth.json"
    auth.write_text('{"auths": {}}\n')
    storage_conf = base / "storage.conf"
    storage_conf.write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{storage}"\nrunroot = "{run}"\n'
    )
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(base),
        "TMPDIR": str(tmp),
        "BUILDAH_ISOLATION": "chroot",
        "CONTAINERS_REGISTRIES_CONF": str(registries),
        "CONTAINERS_STORAGE_CONF": str(storage_conf),
        "REGISTRY_AUTH_FILE": str(auth),
    }
    flags = ["--root", str(storage), "--runroot", str(run), "--storage-driver", "vfs"]
    return flags, env
