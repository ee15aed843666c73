"""Read kubeconfigs and build the private ones commands run with.

Every command gets a kubeconfig of its own: with only the pinned context (files it
names read into it, so it works where the user's files are out of sight), or with
no context at all when the task pins none, so a stray ``kubectl`` fails instead of
reaching the user's default cluster (or kubectl's ``localhost:8080``). ``kubectl
config use-context`` in another terminal cannot redirect a run. Tasks without
``allow_direct_apply`` get the read-only form: the context's server is the gate of
a ``kubectl proxy`` that refuses every write method (``apiproxy``), and the config
holds no credentials.

A kubeconfig holding credentials never touches the disk: it lives in memory
(``MemFile``, a memfd), reached by path through ``/proc`` while the run lives.
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pytest_infratask.clients.apiproxy import ProxyError, ReadOnlyProxy
from pytest_infratask.clients.kustomize import kubectl_binary
from pytest_infratask.core.credentials import kubeconfig_paths

Kubeconfig = dict[str, Any]
"""A kubeconfig, or one of its entries, as its YAML gives it: any shape."""


class KubeconfigError(Exception):
    """A kubeconfig that exists but cannot be read."""


def _load(path: Path) -> Kubeconfig:
    """A missing file is empty, as for kubectl; a broken one is an error, not "no context"."""

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {_where(exc)}") from None
    return data if isinstance(data, dict) else {}


def _where(exc: yaml.YAMLError) -> str:
    """A YAML error by position only: PyYAML's own text quotes the offending line, which
    in a kubeconfig may be a token."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return "invalid YAML"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}"


# Fields kubectl resolves relative to the kubeconfig file that holds them.
_PATH_FIELDS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key", "tokenFile")),
}


def _absolute(section: str, entry: object, folder: Path) -> object:
    if section not in _PATH_FIELDS or not isinstance(entry, dict):
        return entry
    inner_key, fields = _PATH_FIELDS[section]
    inner = entry.get(inner_key)
    if not isinstance(inner, dict):
        return entry
    inner = dict(inner)
    for name in fields:
        value = inner.get(name)
        if isinstance(value, str) and value and not os.path.isabs(value):
            inner[name] = str(folder / value)
    command = (inner.get("exec") or {}).get("command") if section == "users" else None
    if isinstance(command, str) and "/" in command and not os.path.isabs(command):
        inner["exec"] = {**inner["exec"], "command": str(folder / command)}
    return {**entry, inner_key: inner}


def merged(env: Mapping[str, str] | None = None) -> Kubeconfig:
    """Merge like kubectl: the first file to name an entry or current-context wins.
    Relative file paths in entries are made absolute against their own file."""
    result: Kubeconfig = {"apiVersion": "v1", "kind": "Config"}
    for path in kubeconfig_paths(env):
        data = _load(path)
        folder = path.expanduser().absolute().parent
        if data.get("current-context") and "current-context" not in result:
            result["current-context"] = data["current-context"]
        for section in ("clusters", "contexts", "users"):
            entries = result.setdefault(section, [])
            names = {e.get("name") for e in entries}
            for entry in data.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") not in names:
                    entries.append(_absolute(section, entry, folder))
    return result


def active_context(env: Mapping[str, str] | None = None) -> str | None:
    value = merged(env).get("current-context")
    return str(value) if value else None


def contexts(env: Mapping[str, str] | None = None) -> list[str]:
    return [str(c.get("name")) for c in merged(env).get("contexts", [])]


def only(context: str, env: Mapping[str, str] | None = None) -> Kubeconfig:
    """A kubeconfig holding ``context`` alone (current), with its cluster and user."""
    config = merged(env)
    found = next((c for c in config.get("contexts", []) if c.get("name") == context), None)
    if found is None:
        raise KubeconfigError(f"context {context!r} is not in the kubeconfig")
    inner = found.get("context") or {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [c for c in config["clusters"] if c.get("name") == inner.get("cluster")],
        "users": [u for u in config["users"] if u.get("name") == inner.get("user")],
        "contexts": [found],
        "current-context": context,
    }


NO_CONTEXT = "infratask-no-kube-context"


def empty() -> Kubeconfig:
    """A kubeconfig with no context at all. Its current context names none that exists:
    an empty config would make kubectl fall back to ``localhost:8080``; this one makes
    it fail, also with ``--server``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "contexts": [],
        "users": [],
        "current-context": NO_CONTEXT,
    }


def through_proxy(context: str, namespace: str | None, url: str) -> Kubeconfig:
    """The read-only form: the context's server is the proxy; no credentials at all."""
    inner = {"cluster": "infratask-read-only", "user": "infratask-read-only"}
    if namespace:
        inner["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "infratask-read-only", "cluster": {"server": url}}],
        "users": [{"name": "infratask-read-only", "user": {}}],
        "contexts": [{"name": context, "context": inner}],
        "current-context": context,
    }


_DATA = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


def _entries(config: Kubeconfig) -> list[Kubeconfig]:
    """The cluster and user mappings of ``config`` (copied, so they can be edited)."""
    found = []
    for section, (inner_key, _) in _PATH_FIELDS.items():
        for entry in config.get(section) or []:
            if isinstance(entry, dict) and isinstance(entry.get(inner_key), dict):
                entry[inner_key] = dict(entry[inner_key])
                found.append(entry[inner_key])
    return found


def inlined(config: Kubeconfig) -> Kubeconfig:
    """``config`` with the files it names read into it (``client-key`` into
    ``client-key-data``, ``tokenFile`` into ``token``): it works where they are hidden."""
    config = yaml.safe_load(yaml.safe_dump(config))
    for inner in _entries(config):
        for field, data in (*_DATA.items(), ("tokenFile", "token")):
            path = inner.pop(field, None)
            if not isinstance(path, str) or not path:
                continue
            try:
                raw = Path(path).expanduser().read_bytes()
            except OSError as exc:
                raise KubeconfigError(f"cannot read {path} ({field}): {exc.strerror}") from None
            inner[data] = raw.decode().strip() if field == "tokenFile" else _b64(raw)
    return config


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class MemFile:
    """Bytes in memory (a memfd), reached by ``path`` while this process lives; a 0600
    temporary file where memfds do not exist. ``close`` frees it."""

    def __init__(self, name: str, data: bytes) -> None:
        self.temp: str | None = None
        if hasattr(os, "memfd_create"):
            self.fd = os.memfd_create(f"infratask-{name}")
        else:  # not Linux
            self.fd, self.temp = tempfile.mkstemp(prefix=f"infratask-{name}-")
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    @property
    def path(self) -> str:
        return self.temp or f"/proc/{os.getpid()}/fd/{self.fd}"

    def rewound(self) -> int:
        """The fd, read from the start by whoever reads it next."""
        os.lseek(self.fd, 0, os.SEEK_SET)
        return self.fd

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self.temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.temp)


def dump(config: Kubeconfig) -> bytes:
    return str(yaml.safe_dump(config)).encode()


class PrivateKube:
    """The kubeconfigs of one task run, made on first use and freed by ``close``.

    ``direct`` is a path to the pinned context with its credentials, for the plugin's
    own cluster calls (such as asking Flux to reconcile); ``for_commands`` is the
    kubeconfig task commands get: the read-only proxy form unless ``read_only`` is off.
    ``token`` opens the proxy's gate (``None`` until it runs): mask it.
    """

    def __init__(self, context: str | None, read_only: bool, env: Mapping[str, str]) -> None:
        self.context = context
        self.read_only = read_only
        self.env = dict(env)
        self.files: dict[str, MemFile] = {}
        self.commands: bytes | None = None
        self.proxy: ReadOnlyProxy | None = None

    @property
    def token(self) -> str | None:
        return self.proxy.token if self.proxy is not None else None

    def _pinned(self) -> Kubeconfig | None:
        """The pinned context's config; None when nothing is pinned or the kubeconfig
        lacks it (commands then get no context: the kube context check blocks any
        command it sees reaching a cluster, and a stray one finds no cluster)."""
        if not self.context:
            return None
        try:
            return only(self.context, self.env)
        except KubeconfigError:
            return None

    def _file(self, name: str, data: bytes) -> MemFile:
        if name not in self.files:
            self.files[name] = MemFile(name, data)
        return self.files[name]

    def direct(self) -> str:
        """The pinned context with credentials, as a path. Certificate and key data
        become in-memory files too: the Kubernetes client would write them to disk."""
        if "direct" not in self.files:
            config = self._pinned() or empty()
            for n, inner in enumerate(_entries(config)):
                for field, data in _DATA.items():
                    value = inner.pop(data, None)
                    if isinstance(value, str) and value:
                        raw = base64.b64decode(value)
                        inner[field] = self._file(f"{field}-{n}", raw).path
            self._file("direct", dump(config))
        return self.files["direct"].path

    def for_commands(self) -> bytes:
        """The kubeconfig commands get. Raises ``KubeconfigError``."""
        if self.commands is None:
            pinned = self._pinned()
            if pinned is None:
                self.commands = dump(empty())
            elif not self.read_only:
                self.commands = dump(inlined(pinned))
            else:
                namespace = (pinned["contexts"][0].get("context") or {}).get("namespace")
                url = self._start_proxy(pinned)
                self.commands = dump(through_proxy(str(self.context), namespace, url))
        return self.commands

    def _start_proxy(self, pinned: Kubeconfig) -> str:
        kubectl = kubectl_binary()
        if kubectl is None:
            raise KubeconfigError("kubectl is not installed: no read-only path to the cluster")
        source = self._file("proxy", dump(pinned))
        self.proxy = ReadOnlyProxy(source.fd, str(self.context), self.env)
        try:
            return self.proxy.start(kubectl)
        except ProxyError as exc:
            self.proxy = None
            raise KubeconfigError(str(exc)) from None

    def command_file(self) -> str:
        """``for_commands`` as a path, for commands that run outside a sandbox."""
        return self._file("commands", self.for_commands()).path

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        for memfile in self.files.values():
            memfile.close()
        self.files.clear()
        self.commands = None
