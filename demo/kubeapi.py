"""In-memory Kubernetes API server, with a simulated Flux controller.

It serves the real API paths over HTTP on 127.0.0.1 and the real ``kubernetes`` client
reaches it through a real kubeconfig. It starts in milliseconds, so the fast test tier and
``make demo`` use it. The real stack (``kubestack/``: the ``cluster`` tier and ``make
demo-cluster``) shows that it reads Kubernetes and Flux right; this stand-in also serves
the HelmRelease paths the real stack lacks (helm-controller cannot be built from the Go
module proxy, see ``kubestack/versions.env``).

Only what the plugin uses is served: discovery, apps/v1 workloads, pods, and the Flux
objects it reconciles. Every request is recorded so tests can assert what was (not) sent.

Its Flux reads git the way Flux does: a ``GitRepository`` whose ``url`` is a local
repository (a bare ``origin``) fetches its branch from there when reconciled, never from
anyone's work tree; a ``Kustomization`` applies the manifests under its ``path`` at the
revision its source fetched, labels what it applied, and reports that revision as
``lastAppliedRevision`` (``main@sha1:<sha>``). A commit that was not pushed never arrives.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TOKEN = "kubeapi-test-token"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def flux(self) -> bool:
        return self.group.endswith(".toolkit.fluxcd.io")

    @property
    def qualified(self) -> str:
        """Name used in API error messages, e.g. ``helmreleases.helm.toolkit.fluxcd.io``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = (
    Resource("", "v1", "pods", "Pod"),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("apps", "v1", "statefulsets", "StatefulSet"),
    Resource("apps", "v1", "daemonsets", "DaemonSet"),
    Resource("helm.toolkit.fluxcd.io", "v2", "helmreleases", "HelmRelease"),
    Resource("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization"),
    Resource("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository"),
    Resource("source.toolkit.fluxcd.io", "v1", "helmrepositories", "HelmRepository"),
    Resource("source.toolkit.fluxcd.io", "v1", "ocirepositories", "OCIRepository"),
)


def resource_for(kind: str) -> Resource:
    """Look a resource up by kind (any case) or plural."""
    wanted = kind.lower()
    for res in RESOURCES:
        if wanted in (res.kind.lower(), res.plural):
            return res
    raise KeyError(kind)


@dataclass
class Behaviour:
    """How the simulated Flux controller answers a reconcile of one object.

    ``delay`` counts steps that still see the reconcile in progress: a controller step
    every ``KubeAPIServer.TICK`` seconds, and every read of the object (so a test reading
    it sees it progress); ``delay_seconds`` additionally holds it back for a wall-clock time.
    """

    delay: int = 0
    delay_seconds: float = 0.0
    fail: tuple[str, str] | None = None
    stalled: tuple[str, str] | None = None
    never_ready: bool = False
    progress_message: str = "Reconciliation in progress"


@dataclass(frozen=True)
class _Event:
    revision: int
    type: str
    key: tuple[Resource, str, str]
    object: Obj


def _field_selector(text: str) -> dict[str, str]:
    """``metadata.name=x,metadata.namespace=y``: the field selectors every kind supports."""
    fields = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        field, sep, value = term.replace("==", "=").partition("=")
        if not sep or field not in ("metadata.name", "metadata.namespace") or "!" in field:
            raise ApiError(
                400,
                "BadRequest",
                f'"{field}" is not a known field selector: only '
                '"metadata.name", "metadata.namespace"',
            )
        fields[field] = value
    return fields


@dataclass
class _Watch:
    """One open watch: what it selects, where it stands, and how it must end."""

    server: KubeAPIServer
    res: Resource
    namespace: str | None
    labels: str
    fields: dict[str, str]
    since: int | None
    """The resourceVersion to resume after; None: start with the current objects."""
    bookmarks: bool
    until: float
    expired: bool = False
    dropped: bool = False

    def lines(self) -> Iterator[bytes]:
        """The watch's events, one JSON document a line, as the API server streams them.
        Raises ``ConnectionAbortedError`` when the connection is to be cut."""
        server = self.server
        with server._lock:
            server._watches.append(self)
        try:
            yield from self._events()
        finally:
            with server._lock:
                server._watches.remove(self)

    def _events(self) -> Iterator[bytes]:
        server = self.server
        with server._lock:
            if self.since is not None and self.since < server._compacted:
                yield self._gone(self.since)
                return
            if self.since is None:
                self.since = server._revision
                objects = sorted(server._objects.items(), key=lambda kv: kv[0][1:])
                initial = [o for k, o in objects if server._matches(self, k, o)]
            else:
                initial = []
        for obj in initial:
            yield _line("ADDED", obj)
        next_bookmark = time.monotonic() + server.bookmark_every
        while True:
            with server._lock:
                batch = self._pending()
                if not batch and not (self.expired or self.dropped):
                    now = time.monotonic()
                    wake = min(self.until, next_bookmark if self.bookmarks else self.until)
                    server._changed.wait(max(0.0, wake - now))
                    batch = self._pending()
                if self.dropped:
                    raise ConnectionAbortedError("watch connection cut")
                if self.expired and not batch:
                    yield self._gone(self.since or 0)
                    return
                current = server._revision
            for event in batch:
                self.since = event.revision
                yield _line(event.type, event.object)
            now = time.monotonic()
            if self.bookmarks and now >= next_bookmark and not batch:
                self.since = max(self.since or 0, current)
                yield _line("BOOKMARK", self._bookmark(current))
                next_bookmark = now + server.bookmark_every
            if now >= self.until:
                return

    def _pending(self) -> list[_Event]:
        since = self.since or 0
        return [
            e
            for e in self.server._events
            if e.revision > since and self.server._matches(self, e.key, e.object)
        ]

    def _bookmark(self, revision: int) -> Obj:
        return {
            "kind": self.res.kind,
            "apiVersion": self.res.api_version,
            "metadata": {"resourceVersion": str(revision)},
        }

    def _gone(self, since: int) -> bytes:
        error = ApiError(
            410, "Expired", f"too old resource version: {since} ({self.server._compacted})"
        )
        return _line("ERROR", error.status())


def _line(type_: str, obj: Obj) -> bytes:
    return json.dumps({"type": type_, "object": obj}).encode() + b"\n"


@dataclass
class _Pending:
    requested_at: str | None
    reads_left: int
    not_before: float


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(res: Resource, name: str) -> ApiError:
    details: Obj = {"name": name, "kind": res.plural}
    if res.group:
        details["group"] = res.group
    return ApiError(404, "NotFound", f'{res.qualified} "{name}" not found', details)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _match_labels(labels: Mapping[str, str], selector: str) -> bool:
    """Match equality/existence selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = (p.strip() for p in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (p.strip() for p in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif any(c in term for c in " ()"):
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        elif term not in labels:
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_condition(obj: Obj, type_: str, status: str, reason: str, message: str) -> None:
    conditions: list[Obj] = obj.setdefault("status", {}).setdefault("conditions", [])
    cond = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": obj["metadata"].get("generation", 1),
        "lastTransitionTime": _now(),
    }
    for i, existing in enumerate(conditions):
        if existing.get("type") == type_:
            conditions[i] = cond
            return
    conditions.append(cond)


def _drop_condition(obj: Obj, type_: str) -> None:
    status = obj.get("status") or {}
    status["conditions"] = [c for c in status.get("conditions", []) if c.get("type") != type_]


class KubeAPIServer:
    """The server, its object store and the simulated Flux controller.

    Use as a context manager (or the ``kube_api`` fixture); ``url`` is valid while running.
    """

    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        self.token = token
        self._lock = threading.RLock()
        self._objects: dict[tuple[Resource, str, str], Obj] = {}
        self._behaviour: dict[tuple[Resource, str, str], Behaviour] = {}
        self._pending: dict[tuple[Resource, str, str], _Pending] = {}
        self._requests: list[RecordedRequest] = []
        self._revision = 1000
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition(self._lock)
        self._events: list[_Event] = []
        self._compacted = 0
        self._watches: list[_Watch] = []
        self._stopping = threading.Event()
        self.forbidden: set[str] = set()
        """Verbs (get, list, watch) refused with 403, as RBAC refuses a user without them."""
        self._controller: threading.Thread | None = None

    # lifecycle

    def start(self) -> KubeAPIServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler, self)
        # A short poll interval keeps shutdown (once per test) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        self._stopping.clear()
        self._controller = threading.Thread(target=self._step_controller, daemon=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.drop_watches()
        if self._controller is not None:
            self._controller.join(timeout=5)
            self._controller = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path, context: str = "dev") -> Path:
        """Write a kubeconfig whose only (and current) context points here."""
        return write_kubeconfig(path, {context: self}, current_context=context)

    # request log

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def patches(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PATCH"]

    # object store

    def add(self, obj: Obj, **behaviour: Any) -> Obj:
        """Store an object as given (status included); Flux behaviour may be set alongside."""
        kind = obj["kind"]
        res = resource_for(kind)
        obj = copy.deepcopy(obj)
        obj.setdefault("apiVersion", res.api_version)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("generation", 1)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        with self._lock:
            key = (res, meta["namespace"], meta["name"])
            if behaviour:
                suspended = behaviour.pop("suspended", None)
                if suspended is not None:
                    obj.setdefault("spec", {})["suspend"] = bool(suspended)
                self._set_behaviour(key, **behaviour)
            self._store(key, obj)
            return copy.deepcopy(obj)

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        """Current stored object, without counting as a status read."""
        with self._lock:
            return copy.deepcopy(self._objects[(resource_for(kind), namespace, name)])

    def update(self, kind: str, namespace: str, name: str, patch: Obj) -> Obj:
        """Merge-patch an object server-side (status included), as a controller would."""
        with self._lock:
            key = (resource_for(kind), namespace, name)
            obj = merge_patch(self._objects[key], patch)
            self._store(key, obj)
            return copy.deepcopy(obj)

    def behave(self, kind: str, namespace: str, name: str, **behaviour: Any) -> None:
        """Configure how the Flux controller answers reconciles of this object.

        Keywords are :class:`Behaviour` fields plus ``suspended`` (sets ``spec.suspend``).
        """
        with self._lock:
            key = (resource_for(kind), namespace, name)
            if key not in self._objects:
                raise KeyError(key)
            self._set_behaviour(key, **behaviour)

    def _set_behaviour(self, key: tuple[Resource, str, str], **behaviour: Any) -> None:
        suspended = behaviour.pop("suspended", None)
        if suspended is not None:
            obj = copy.deepcopy(self._objects[key])
            obj.setdefault("spec", {})["suspend"] = bool(suspended)
            self._store(key, obj)
        current = self._behaviour.get(key, Behaviour())
        self._behaviour[key] = Behaviour(**{**current.__dict__, **behaviour})

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _store(self, key: tuple[Resource, str, str], obj: Obj) -> None:
        """Every write: a new resourceVersion, and an event for watchers (as etcd keeps)."""
        kind = "MODIFIED" if key in self._objects else "ADDED"
        obj["metadata"]["resourceVersion"] = self._next_revision()
        self._objects[key] = obj
        self._events.append(_Event(self._revision, kind, key, copy.deepcopy(obj)))
        del self._events[: -self.HISTORY]
        self._changed.notify_all()

    # watches

    TICK = 0.01
    """Seconds per step of the simulated controllers (``Behaviour.delay`` counts steps)."""
    HISTORY = 1000
    """Events kept for watches resuming from a resourceVersion; older ones are compacted."""
    bookmark_every = 1.0
    """Seconds between BOOKMARK events of a watch that asked for them."""

    def compact(self) -> None:
        """Forget the event history, as etcd's compaction does: a watch resuming from an
        older resourceVersion gets 410 Gone, and open watches end with it too (the
        server's watch cache, re-initialised, expires its watchers the same way)."""
        with self._lock:
            self._compacted = self._revision
            self._events.clear()
            for watch in self._watches:
                watch.expired = True
            self._changed.notify_all()

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream, as a restarting server or a
        broken network does (no final chunk)."""
        with self._lock:
            for watch in self._watches:
                watch.dropped = True
            self._changed.notify_all()

    @property
    def watch_positions(self) -> list[int]:
        """For each open watch, the resourceVersion of the last event it sent."""
        with self._lock:
            return [w.since or 0 for w in self._watches]

    def _watch(self, res: Resource, namespace: str | None, query: dict[str, list[str]]) -> _Watch:
        def arg(name: str, default: str = "") -> str:
            return query.get(name, [default])[0]

        version = arg("resourceVersion")
        timeout = float(arg("timeoutSeconds") or 1800)
        return _Watch(
            self,
            res,
            namespace,
            arg("labelSelector"),
            _field_selector(arg("fieldSelector")),
            int(version) if version not in ("", "0") else None,
            arg("allowWatchBookmarks") in ("true", "1"),
            time.monotonic() + timeout,
        )

    def _matches(self, w: _Watch, key: tuple[Resource, str, str], obj: Obj) -> bool:
        res, namespace, name = key
        meta = obj["metadata"]
        return (
            res == w.res
            and (w.namespace is None or namespace == w.namespace)
            and all(
                {"metadata.name": name, "metadata.namespace": namespace}.get(f) == v
                for f, v in w.fields.items()
            )
            and _match_labels(meta.get("labels") or {}, w.labels)
        )

    def _step_controller(self) -> None:
        """Time passing for the simulated controllers: one step of every reconcile."""
        while not self._stopping.wait(self.TICK):
            with self._lock:
                for key in list(self._pending):
                    self._observe(key)

    # builders for the objects tests need most

    def add_helmrelease(
        self,
        name: str,
        namespace: str = "flux-system",
        *,
        chart: str = "podinfo",
        version: str = "6.5.0",
        managed_by: str | None = None,
        values: Obj | None = None,
        **behaviour: Any,
    ) -> Obj:
        """A HelmRelease already reconciled at ``version`` and Ready; ``managed_by``
        names the Kustomization (``namespace/name`` or ``name`` in flux-system) whose
        labels Flux puts on what it applies."""
        metadata: Obj = {"name": name, "namespace": namespace}
        if managed_by:
            metadata["labels"] = _managed_labels(managed_by)
        obj: Obj = {
            "kind": "HelmRelease",
            "metadata": metadata,
            "spec": {
                "interval": "10m",
                "chart": {
                    "spec": {
                        "chart": chart,
                        "version": version,
                        "sourceRef": {"kind": "HelmRepository", "name": chart},
                    }
                },
                **({"values": values} if values is not None else {}),
            },
            "status": {
                "observedGeneration": 1,
                "history": [_snapshot(name, namespace, chart, version, 1, _digest(values))],
            },
        }
        _set_condition(obj, "Ready", "True", "UpgradeSucceeded", _hr_message(obj, 1))
        return self.add(obj, **behaviour)

    def add_kustomization(
        self,
        name: str,
        namespace: str = "flux-system",
        *,
        path: str = "./",
        source: str = "flux-system",
        revision: str | None = None,
        **behaviour: Any,
    ) -> Obj:
        """A Kustomization reading GitRepository ``source``; ``revision`` is what it
        reports as applied before any reconcile."""
        status: Obj = {"observedGeneration": 1}
        if revision:
            status |= {"lastAppliedRevision": revision, "lastAttemptedRevision": revision}
        obj: Obj = {
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "interval": "10m",
                "path": path,
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": source},
            },
            "status": status,
        }
        _set_condition(obj, "Ready", "True", "ReconciliationSucceeded", "Applied revision: main")
        return self.add(obj, **behaviour)

    def add_source(
        self,
        kind: str,
        name: str,
        namespace: str = "flux-system",
        *,
        url: str = "https://example.invalid/repo",
        branch: str = "main",
        **behaviour: Any,
    ) -> Obj:
        """A GitRepository, HelmRepository or OCIRepository. A GitRepository whose
        ``url`` is a local path fetches ``branch`` from it (at once, and on reconcile)."""
        res = resource_for(kind)
        spec: Obj = {"interval": "1m", "url": url}
        if res.kind == "GitRepository":
            spec["ref"] = {"branch": branch}
        obj: Obj = {
            "kind": res.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
            "status": {"observedGeneration": 1},
        }
        if res.kind == "GitRepository" and _local(url):
            _fetch(obj)
        _set_condition(obj, "Ready", "True", "Succeeded", "stored artifact for revision main")
        return self.add(obj, **behaviour)

    def add_workload(
        self,
        kind: str,
        name: str,
        namespace: str = "default",
        *,
        replicas: int = 1,
        ready: int | None = None,
        updated: int | None = None,
        available: int | None = None,
        generation: int = 1,
        observed_generation: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Obj:
        """A Deployment, StatefulSet or DaemonSet; counts default to fully rolled out."""
        res = resource_for(kind)
        labels = dict(labels or {"app": name})
        ready = replicas if ready is None else ready
        updated = replicas if updated is None else updated
        available = ready if available is None else available
        observed = generation if observed_generation is None else observed_generation
        spec: Obj = {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}},
        }
        status: Obj = {"observedGeneration": observed}
        if res.kind == "DaemonSet":
            status |= {
                "desiredNumberScheduled": replicas,
                "currentNumberScheduled": replicas,
                "updatedNumberScheduled": updated,
                "numberReady": ready,
                "numberAvailable": available,
            }
        else:
            spec["replicas"] = replicas
            status |= {
                "replicas": replicas,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": available,
            }
        obj: Obj = {
            "kind": res.kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "generation": generation,
                "labels": labels,
            },
            "spec": spec,
            "status": status,
        }
        return self.add(obj)

    def add_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        labels: Mapping[str, str] | None = None,
        ready: bool = True,
        phase: str = "Running",
    ) -> Obj:
        obj: Obj = {
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "main", "image": "example/main:1"}]},
            "status": {
                "phase": phase,
                "conditions": [
                    {"type": "Ready", "status": "True"}
                    if ready
                    else {"type": "Ready", "status": "False", "reason": "ContainersNotReady"}
                ],
            },
        }
        return self.add(obj)

    # request handling (called from handler threads)

    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], raw: bytes
    ) -> Obj | _Watch:
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        with self._lock:
            self._requests.append(
                RecordedRequest(method, parts.path, query, dict(headers), copy.deepcopy(body))
            )
            if headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            return self._route(method, parts.path, query, headers, body)

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: Any,
    ) -> Obj | _Watch:
        segs = [s for s in path.split("/") if s]
        discovery = self._discovery(segs)
        if discovery is not None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")
            return discovery
        if segs[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise _unknown_path()
        namespace: str | None = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            raise _unknown_path()
        res = next(
            (r for r in RESOURCES if (r.group, r.version, r.plural) == (group, version, rest[0])),
            None,
        )
        if res is None:
            raise _unknown_path()
        if len(rest) == 1:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on lists")
            watch = query.get("watch", [""])[0] in ("true", "1")
            self._allow("watch" if watch else "list", res, namespace)
            if watch:
                return self._watch(res, namespace, query)
            fields = _field_selector(query.get("fieldSelector", [""])[0])
            return self._list(res, namespace, query.get("labelSelector", [""])[0], fields)
        if namespace is None:
            raise _unknown_path()
        key = (res, namespace, rest[1])
        if key not in self._objects:
            raise _not_found(res, rest[1])
        if method == "GET":
            self._allow("get", res, namespace)
            self._observe(key)
            return copy.deepcopy(self._objects[key])
        if method == "PATCH":
            return self._patch(key, headers.get("content-type", ""), body)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _allow(self, verb: str, res: Resource, namespace: str | None) -> None:
        if verb in self.forbidden:
            where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
            raise ApiError(
                403,
                "Forbidden",
                f'{res.qualified} is forbidden: User "test" cannot {verb} resource '
                f'"{res.plural}" in API group "{res.group}"{where}',
            )

    def _discovery(self, segs: list[str]) -> Obj | None:
        if segs == ["version"]:
            return {
                "major": "1",
                "minor": "30",
                "gitVersion": "v1.30.0",
                "gitCommit": "7c48c2bd72b9bf5c44d21d7338cc7bea77d0ad2a",
                "gitTreeState": "clean",
                "buildDate": "2024-04-17T17:27:03Z",
                "goVersion": "go1.22.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if segs == ["api"]:
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.split("//")[1]}
                ],
            }
        groups = sorted({r.group for r in RESOURCES if r.group})
        if segs == ["apis"]:
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(g) for g in groups],
            }
        if len(segs) == 2 and segs[0] == "apis" and segs[1] in groups:
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(segs[1])}
        if segs == ["api", "v1"] or (
            len(segs) == 3
            and segs[0] == "apis"
            and segs[1] in groups
            and any(r.version == segs[2] for r in RESOURCES if r.group == segs[1])
        ):
            group = "" if segs[0] == "api" else segs[1]
            version = segs[-1]
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [
                    {
                        "name": r.plural,
                        "singularName": r.kind.lower(),
                        "namespaced": True,
                        "kind": r.kind,
                        "verbs": ["get", "list", "patch"],
                    }
                    for r in RESOURCES
                    if (r.group, r.version) == (group, version)
                ],
            }
        return None

    @staticmethod
    def _group(group: str) -> Obj:
        versions = sorted({r.version for r in RESOURCES if r.group == group})
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _list(
        self, res: Resource, namespace: str | None, selector: str, fields: dict[str, str]
    ) -> Obj:
        wanted = _Watch(self, res, namespace, selector, fields, None, False, 0.0)
        items = [
            copy.deepcopy(obj)
            for key, obj in sorted(self._objects.items(), key=lambda kv: kv[0][1:])
            if self._matches(wanted, key, obj)
        ]
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(self._revision)},
            "items": items,
        }

    def _patch(self, key: tuple[Resource, str, str], content_type: str, body: Any) -> Obj:
        if content_type.split(";")[0].strip() != MERGE_PATCH:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown "
                f"format - accepted media types include: {MERGE_PATCH}",
            )
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "merge patch body must be a JSON object")
        old = self._objects[key]
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv is not None and wanted_rv != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                "the object has been modified; please apply your changes "
                "to the latest version and try again",
            )
        new = merge_patch(old, body)
        # Identity is immutable and status belongs to the status subresource.
        for field_name in ("name", "namespace", "uid", "creationTimestamp"):
            new["metadata"][field_name] = old["metadata"][field_name]
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if key[0].flux:
            self._maybe_start_reconcile(key, old, new)
        self._store(key, new)
        return copy.deepcopy(new)

    # simulated Flux controller

    def _maybe_start_reconcile(self, key: tuple[Resource, str, str], old: Obj, new: Obj) -> None:
        if (new.get("spec") or {}).get("suspend"):
            return
        requested = (new["metadata"].get("annotations") or {}).get(REQUESTED_AT)
        handled = (new.get("status") or {}).get("lastHandledReconcileAt")
        new_request = requested is not None and requested != handled
        if not new_request and new["metadata"]["generation"] == old["metadata"]["generation"]:
            return
        behaviour = self._behaviour.get(key, Behaviour())
        self._pending[key] = _Pending(
            requested, behaviour.delay, time.monotonic() + behaviour.delay_seconds
        )
        self._mark_progressing(new, behaviour)

    def _mark_progressing(self, obj: Obj, behaviour: Behaviour) -> None:
        _set_condition(obj, "Reconciling", "True", "Progressing", behaviour.progress_message)
        _set_condition(obj, "Ready", "Unknown", "Progressing", behaviour.progress_message)

    def _observe(self, key: tuple[Resource, str, str]) -> None:
        """A status read: lets an in-flight reconcile move on, as time passing would."""
        pending = self._pending.get(key)
        if pending is None:
            return
        behaviour = self._behaviour.get(key, Behaviour())
        if behaviour.never_ready:
            return
        if pending.reads_left > 0 or time.monotonic() < pending.not_before:
            pending.reads_left = max(0, pending.reads_left - 1)
            return
        del self._pending[key]
        self._finish(key, pending, behaviour)

    def _finish(self, key: tuple[Resource, str, str], pending: _Pending, b: Behaviour) -> None:
        obj = self._objects[key]
        status = obj.setdefault("status", {})
        generation = obj["metadata"].get("generation", 1)
        if pending.requested_at is not None:
            status["lastHandledReconcileAt"] = pending.requested_at
        status["observedGeneration"] = generation
        _drop_condition(obj, "Reconciling")
        failure = None
        if b.stalled is None and b.fail is None:
            if key[0].kind == "GitRepository" and _local(obj["spec"].get("url", "")):
                failure = _fetch(obj)
            elif key[0].kind == "Kustomization":
                failure = self._apply(obj)
        if failure is not None:
            _set_condition(obj, "Ready", "False", *failure)
        elif b.stalled is not None:
            reason, message = b.stalled
            _set_condition(obj, "Stalled", "True", reason, message)
            _set_condition(obj, "Ready", "False", reason, message)
        elif b.fail is not None:
            _drop_condition(obj, "Stalled")
            _set_condition(obj, "Ready", "False", *b.fail)
        else:
            _drop_condition(obj, "Stalled")
            message = "Reconciliation succeeded"
            if status.get("lastAppliedRevision"):
                message = f"Applied revision: {status['lastAppliedRevision']}"
            if key[0].kind == "HelmRelease":
                message = self._record_release(obj)
            _set_condition(obj, "Ready", "True", "ReconciliationSucceeded", message)
        self._store(key, obj)

    def _apply(self, obj: Obj) -> tuple[str, str] | None:
        """Apply the source's artifact under ``spec.path``, as kustomize-controller does:
        objects this server holds get the spec from git and Flux's labels; the revision
        is reported as applied. A source with no local artifact changes nothing."""
        ref = obj["spec"].get("sourceRef") or {}
        meta = obj["metadata"]
        source = self._objects.get(
            (
                resource_for(ref.get("kind", "GitRepository")),
                ref.get("namespace") or meta["namespace"],
                ref.get("name", ""),
            )
        )
        if source is None:
            return ("ArtifactFailed", f"Source '{ref.get('kind')}/{ref.get('name')}' not found")
        artifact = (source.get("status") or {}).get("artifact") or {}
        revision = artifact.get("revision")
        if not revision or not _local(source["spec"].get("url", "")):
            return None
        repo, sha = _local_path(source["spec"]["url"]), revision.rsplit(":", 1)[1]
        path = obj["spec"].get("path", "./").strip().removeprefix("./").strip("/")
        listed = _git(repo, "ls-tree", "-r", "--name-only", sha, "--", *([path] if path else []))
        if listed is None:
            return ("BuildFailed", f"path {path!r} not found at {revision}")
        for name in listed.splitlines():
            if not name.endswith((".yaml", ".yml")):
                continue
            for doc in yaml.safe_load_all(_git(repo, "show", f"{sha}:{name}") or ""):
                self._apply_one(doc, meta)
        obj["status"]["lastAppliedRevision"] = revision
        obj["status"]["lastAttemptedRevision"] = revision
        return None

    def _apply_one(self, doc: Any, owner: Obj) -> None:
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            return
        try:
            res = resource_for(str(doc.get("kind", "")))
        except KeyError:
            return
        key = (res, doc["metadata"].get("namespace") or "default", doc["metadata"].get("name"))
        old = self._objects.get(key)
        if old is None:
            return  # this stand-in only updates objects a test created
        new = copy.deepcopy(old)
        labels = new["metadata"].setdefault("labels", {})
        labels.update(_managed_labels(f"{owner['namespace']}/{owner['name']}"))
        # Server-side apply: fields the manifest does not set (spec.suspend set by
        # ``flux suspend``) keep their values.
        spec = merge_patch(old.get("spec") or {}, doc.get("spec") or {})
        if spec != old.get("spec"):
            new["spec"] = spec
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if res.flux:
            self._maybe_start_reconcile(key, old, new)
        self._store(key, new)

    @staticmethod
    def _record_release(obj: Obj) -> str:
        chart_spec = obj["spec"]["chart"]["spec"]
        history: list[Obj] = obj["status"].setdefault("history", [])
        digest = _digest(obj["spec"].get("values"))
        if (
            not history
            or history[0].get("chartVersion") != chart_spec.get("version")
            or history[0].get("configDigest") != digest
        ):
            release_version = (history[0].get("version", 0) if history else 0) + 1
            meta = obj["metadata"]
            history.insert(
                0,
                _snapshot(
                    meta["name"],
                    meta["namespace"],
                    chart_spec["chart"],
                    chart_spec.get("version", ""),
                    release_version,
                    digest,
                ),
            )
        return _hr_message(obj, history[0]["version"])


def _managed_labels(owner: str) -> dict[str, str]:
    namespace, _, name = owner.rpartition("/")
    return {
        "kustomize.toolkit.fluxcd.io/name": name,
        "kustomize.toolkit.fluxcd.io/namespace": namespace or "flux-system",
    }


def _digest(values: Any) -> str:
    data = json.dumps(values or {}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _local(url: str) -> bool:
    return url.startswith(("/", "file://"))


def _local_path(url: str) -> str:
    return url.removeprefix("file://")


def _git(repo: str, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "--git-dir", repo, *args], capture_output=True, text=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def _fetch(obj: Obj) -> tuple[str, str] | None:
    """A GitRepository's fetch: the branch's head on the remote becomes its artifact."""
    url = obj["spec"]["url"]
    branch = (obj["spec"].get("ref") or {}).get("branch", "main")
    repo = _local_path(url)
    if not Path(repo).exists():
        return ("GitOperationFailed", f"failed to checkout and determine revision: {url}")
    head = (_git(repo, "rev-parse", "--verify", "-q", f"refs/heads/{branch}") or "").strip()
    if not head:
        return ("GitOperationFailed", f"unable to clone '{url}': branch {branch!r} not found")
    revision = f"{branch}@sha1:{head}"
    obj.setdefault("status", {})["artifact"] = {"revision": revision, "lastUpdateTime": _now()}
    _set_condition(obj, "Ready", "True", "Succeeded", f"stored artifact for revision '{revision}'")
    return None


def _snapshot(
    name: str, namespace: str, chart: str, version: str, release: int, digest: str = ""
) -> Obj:
    return {
        "name": name,
        "namespace": namespace,
        "version": release,
        "chartName": chart,
        "chartVersion": version,
        "configDigest": digest or _digest(None),
        "status": "deployed",
        "firstDeployed": _now(),
        "lastDeployed": _now(),
    }


def _hr_message(obj: Obj, release: int) -> str:
    meta = obj["metadata"]
    spec = obj["spec"]["chart"]["spec"]
    return (
        f"Helm upgrade succeeded for release {meta['namespace']}/{meta['name']}.v{release} "
        f"with chart {spec['chart']}@{spec.get('version', '')}"
    )


def _unknown_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], api: KubeAPIServer
    ) -> None:
        self.api = api
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _HTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            code, body = 200, self.server.api.handle(self.command, self.path, headers, raw)
            if isinstance(body, _Watch):
                self._stream(body)
                return
        except ApiError as err:
            code, body = err.code, err.status()
        except Exception as exc:  # a server bug must answer, not hang the client
            code, body = 500, ApiError(500, "InternalError", repr(exc)).status()
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, watch: _Watch) -> None:
        """A watch answers 200 at once, then its events in chunks as they happen."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            for line in watch.lines():
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:  # cut on purpose (ConnectionAbortedError), or the client left
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)  # no final chunk: a broken stream

    do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; the request log is on the server object."""


@dataclass
class KubeContext:
    """One kubeconfig context; ``server`` may point anywhere, e.g. a closed port."""

    server: str
    token: str = DEFAULT_TOKEN
    namespace: str = "default"


def write_kubeconfig(
    path: Path,
    contexts: Mapping[str, KubeAPIServer | KubeContext | str],
    current_context: str | None = None,
) -> Path:
    """Write a kubeconfig with one cluster and bearer-token user per context."""
    entries = {
        name: (
            KubeContext(target.url, target.token)
            if isinstance(target, KubeAPIServer)
            else KubeContext(target)
            if isinstance(target, str)
            else target
        )
        for name, target in contexts.items()
    }
    config: Obj = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": f"{name}-cluster", "cluster": {"server": ctx.server}}
            for name, ctx in entries.items()
        ],
        "users": [
            {"name": f"{name}-user", "user": {"token": ctx.token}} for name, ctx in entries.items()
        ],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": f"{name}-cluster",
                    "user": f"{name}-user",
                    "namespace": ctx.namespace,
                },
            }
            for name, ctx in entries.items()
        ],
    }
    if current_context is not None:
        config["current-context"] = current_context
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def kube_api() -> Iterator[KubeAPIServer]:
    """A running test API server; write a kubeconfig with ``kube_api.write_kubeconfig``."""
    with KubeAPIServer() as server:
        yield server
