"""Read kubeconfigs and build the private ones commands run with.

Every command gets ``KUBECONFIG`` pointing at a private file: with only the pinned
context (paths made absolute, so the copy works anywhere), or with no context at
all when the task pins none, so a stray ``kubectl`` fails instead of reaching the
user's default cluster. ``kubectl config use-context`` in another terminal cannot
redirect a run. Tasks without ``allow_direct_apply`` get the read-only form: the
context's server is a local ``kubectl proxy`` that refuses every write method, and
the file holds no credentials.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pytest_infratask.clients.credentials import kubeconfig_paths
from pytest_infratask.clients.kustomize import kubectl_binary


class KubeconfigError(Exception):
    """A kubeconfig that exists but cannot be read."""


def _load(path: Path) -> dict[str, Any]:
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


# ``key: value`` of a user's secret fields, in block or flow style, quoted or not.
_SECRET_FIELD = re.compile(
    r"""(?:^|[\s{,])["']?(token|password|client-key-data|id-token|refresh-token|access-token"""
    r"""|client-secret)["']?[ \t]*:[ \t]*(?:"([^"\r\n]*)"|'([^'\r\n]*)'"""
    r"""|((?:[^\s,{}\[\]#"':]|:(?!\s|$))+))""",
    re.M,
)


def secret_values(text: str) -> set[str]:
    """The values of a kubeconfig's secret fields, read line by line without parsing:
    a file that is not valid YAML still holds its tokens, and commands may print them."""
    return {next(v for v in m.groups()[1:] if v is not None) for m in _SECRET_FIELD.finditer(text)}


# Fields kubectl resolves relative to the kubeconfig file that holds them.
_PATH_FIELDS = {
    "clusters": ("cluster", ("certificate-authority",)),
    "users": ("user", ("client-certificate", "client-key", "tokenFile")),
}


def _absolute(section: str, entry: Any, folder: Path) -> Any:
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


def merged(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merge like kubectl: the first file to name an entry or current-context wins.
    Relative file paths in entries are made absolute against their own file."""
    result: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
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


def only(context: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
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


def empty() -> dict[str, Any]:
    """A kubeconfig with no context at all: kubectl fails rather than guess a cluster."""
    return {"apiVersion": "v1", "kind": "Config", "clusters": [], "contexts": [], "users": []}


def through_proxy(context: str, namespace: str | None, url: str) -> dict[str, Any]:
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


def write_private(config: dict[str, Any]) -> Path:
    """A new file only this user can read (it may hold credentials); the caller deletes it."""

    fd, name = tempfile.mkstemp(prefix="infratask-kubeconfig-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle)
    return Path(name)


def pin(context: str, env: Mapping[str, str] | None = None) -> Path:
    """Write a private kubeconfig with only ``context``; the caller deletes it."""
    return write_private(only(context, env))


READ_ONLY_METHODS = "^(POST|PUT|PATCH|DELETE)$"
_SERVING = re.compile(r"Starting to serve on (\S+):(\d+)")


class ReadOnlyProxy:
    """``kubectl proxy`` for one context that refuses every write method.

    Commands reach the cluster only through it, so a write fails at the API
    boundary whatever its spelling (``$k apply``, a function, ``python -c``...).
    """

    def __init__(self, kubeconfig: Path, context: str) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, kubectl: str) -> str:
        self.process = subprocess.Popen(
            [
                kubectl, "proxy", "--kubeconfig", str(self.kubeconfig),
                "--context", self.context, "--port", "0", "--address", "127.0.0.1",
                f"--reject-methods={READ_ONLY_METHODS}",
                "--accept-hosts=^(localhost|127\\.0\\.0\\.1)$",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        # Read its output for as long as it runs: a full pipe would stall the proxy
        # (it logs every refused request).
        threading.Thread(target=_drain, args=(self.process.stdout, lines), daemon=True).start()
        try:
            line = lines.get(timeout=START_TIMEOUT)  # it prints one line when it listens
        except queue.Empty:
            line = f"no output after {START_TIMEOUT:g}s"
        match = _SERVING.search(line)
        if match is None:
            self.stop()
            raise KubeconfigError(
                f"cannot start the read-only API proxy (kubectl proxy): {line.strip()}"
            )
        self.url = f"http://{match[1]}:{match[2]}"
        return self.url

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


START_TIMEOUT = 60.0


def _drain(stream: Any, first: queue.Queue[str]) -> None:
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


class PrivateKube:
    """The kubeconfigs of one task run, made on first use and deleted by ``close``.

    ``direct`` holds the pinned context with its credentials (for the plugin's own
    cluster calls, such as asking Flux to reconcile); ``for_commands`` is what task
    commands get: the read-only proxy form unless ``read_only`` is off.
    """

    def __init__(self, context: str | None, read_only: bool, env: Mapping[str, str]) -> None:
        self.context = context
        self.read_only = read_only
        self.env = dict(env)
        self.files: dict[str, Path] = {}
        self.proxy: ReadOnlyProxy | None = None

    def _pinned(self) -> dict[str, Any] | None:
        """The pinned context's config; None when nothing is pinned or the kubeconfig
        lacks it (commands then get no context: the kube context check blocks any
        command it sees reaching a cluster, and a stray one finds no cluster)."""
        if not self.context:
            return None
        try:
            return only(self.context, self.env)
        except KubeconfigError:
            return None

    def direct(self) -> Path:
        if "direct" not in self.files:
            self.files["direct"] = write_private(self._pinned() or empty())
        return self.files["direct"]

    def for_commands(self) -> Path:
        pinned = self._pinned()
        if pinned is None or not self.read_only:
            return self.direct()
        if "commands" not in self.files:

            kubectl = kubectl_binary()
            if kubectl is None:
                raise KubeconfigError("kubectl is not installed: no read-only path to the cluster")
            namespace = (pinned["contexts"][0].get("context") or {}).get("namespace")
            self.proxy = ReadOnlyProxy(self.direct(), str(self.context))
            url = self.proxy.start(kubectl)
            self.files["commands"] = write_private(through_proxy(str(self.context), namespace, url))
        return self.files["commands"]

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        for path in self.files.values():
            with contextlib.suppress(OSError):
                path.unlink()
        self.files.clear()
