"""A user with credentials everywhere, and two TLS API servers that log who called.

The user's kubeconfig has a ``prod`` context (current) and a ``dev`` one, both in
``~/.kube/config`` and in the files ``KUBECONFIG`` names (with a third, ``stage``,
pointing at prod); registry logins sit in every place container tools look. Every
credential holds a unique value (``User.secrets``), so any output can be scanned for
a leak. The servers are ``demo/kubeapi.py`` behind TLS: kubectl sends tokens only
over TLS, and each request is logged with its ``Authorization`` header.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeapi import KubeAPIServer, RecordedRequest, _Handler, _HTTPServer
from kubestack.pki import CA, Pair

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class TLSServer(KubeAPIServer):
    """The in-memory API server over TLS."""

    def __init__(self, token: str, pair: Pair) -> None:
        super().__init__(token)
        self.pair = pair

    def start(self) -> TLSServer:
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler, self)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pair.cert, self.pair.key)
        # The handshake happens in the request's thread: a client that connects and
        # says nothing must not stall the server.
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return super().url.replace("http://", "https://", 1)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def called_with(self, tokens: set[str]) -> list[RecordedRequest]:
        """Requests that carried one of ``tokens``: the ones a real server would serve."""
        bearers = {f"Bearer {t}" for t in tokens}
        return [r for r in self.requests if r.headers.get("authorization") in bearers]


@dataclass
class User:
    home: Path
    kubeconfig: Path
    dev: TLSServer
    prod: TLSServer
    secrets: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def tokens(self) -> dict[str, str]:
        return {k: v for k, v in self.secrets.items() if k.endswith("token")}

    def leaks(self, text: str, allowed: tuple[str, ...] = ()) -> list[str]:
        """Names of the user's secrets found in ``text`` (raw or base64-encoded)."""
        found = []
        for name, value in self.secrets.items():
            forms = (value, base64.b64encode(value.encode()).decode()[:-4])
            if name not in allowed and any(form in text for form in forms):
                found.append(name)
        return found


def _secret(name: str) -> str:
    return f"{name.upper()}-{secrets.token_hex(12)}"


def _kubeconfig(folder: Path, ca: Path, contexts: dict[str, tuple[str, str]], current: str) -> Path:
    """A kubeconfig in ``folder``, its CA beside it under a relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(ca.read_bytes())
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": f"{n}-cluster", "cluster": {"server": url, "certificate-authority": "ca.crt"}}
            for n, (url, _) in contexts.items()
        ],
        "users": [{"name": f"{n}-user", "user": {"token": t}} for n, (_, t) in contexts.items()],
        "contexts": [
            {"name": n, "context": {"cluster": f"{n}-cluster", "user": f"{n}-user",
                                    "namespace": "default"}}
            for n in contexts
        ],
        "current-context": current,
    }  # fmt: skip
    path = folder / ("config" if folder.name == ".kube" else f"{current}.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _login(path: Path, secret: str) -> Path:
    """A registry login file as docker and podman write it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"robot:{secret}".encode()).decode()
    path.write_text(
        json.dumps({"auths": {"registry.example": {"auth": auth, "identitytoken": secret}}})
    )
    return path


@contextlib.contextmanager
def credentials(home: Path, pki: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[User]:
    """The user, with ``home`` as HOME, while the servers run."""
    ca = CA(pki)
    pair = ca.issue("server", "127.0.0.1", server=True)
    names = ("dev token", "prod token", "stage token")
    values = {name: _secret(name.split()[0]) for name in names}
    with TLSServer(values["dev token"], pair) as dev, TLSServer(values["prod token"], pair) as prod:
        for server in (dev, prod):
            server.add_pod("api")
        both = {"prod": (prod.url, values["prod token"]), "dev": (dev.url, values["dev token"])}
        files = [_kubeconfig(home / ".kube", ca.cert, both, "prod")]
        main = _kubeconfig(home / "kubeconfigs", ca.cert, both, "prod")
        stage = {"stage": (prod.url, values["stage token"])}
        files += [main, _kubeconfig(home / "kubeconfigs", ca.cert, stage, "stage")]
        env = {
            "HOME": str(home),
            "KUBECONFIG": os.pathsep.join(str(f) for f in files[1:]),
            "DOCKER_CONFIG": str(home / "dockercfg"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "XDG_CONFIG_HOME": str(home / "xdg"),
            "REGISTRY_AUTH_FILE": str(home / "secrets" / "registry.json"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        logins = {
            "docker login": home / ".docker" / "config.json",
            "DOCKER_CONFIG login": home / "dockercfg" / "config.json",
            "podman login": home / ".config" / "containers" / "auth.json",
            "XDG_CONFIG_HOME login": home / "xdg" / "containers" / "auth.json",
            "XDG_RUNTIME_DIR login": home / "run" / "containers" / "auth.json",
            "REGISTRY_AUTH_FILE login": home / "secrets" / "registry.json",
        }
        for name, path in logins.items():
            values[name] = _secret(name.split()[0].replace("_", ""))
            files.append(_login(path, values[name]))
        yield User(home, main, dev, prod, values, files)
