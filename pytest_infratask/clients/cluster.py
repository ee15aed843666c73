"""Cluster work through the official Kubernetes client: Flux reconciles and health checks.

``kubernetes`` is imported inside functions only: it is slow to import and this package is
loaded by every pytest run. All API calls fetch raw JSON so every kind is read the same way
and nothing depends on the client's model classes.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from pytest_infratask.core.credentials import kubeconfig_paths
from pytest_infratask.core.results import CheckResult

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from urllib3 import BaseHTTPResponse

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
FLUX_NAMESPACE = "flux-system"
DEFAULT_NAMESPACE = "default"
REQUEST_TIMEOUT = 30.0
"""Seconds for one API request, so a silent server cannot hang a run."""

Obj = dict[str, Any]
"""A kubernetes object as the API server's JSON decodes: any shape."""
ApiCall = Callable[..., Any]
"""A method of the kubernetes client, keywords and all: their responses are untyped."""


@dataclass(frozen=True)
class Kind:
    name: str
    group: str
    version: str
    plural: str
    cli: str = ""
    """How the ``flux`` command names the kind (``source git``); Flux kinds only."""

    @property
    def flux(self) -> bool:
        return self.group.endswith(".toolkit.fluxcd.io")


KINDS: Mapping[str, Kind] = {
    k.name: k
    for k in (
        Kind("helmrelease", "helm.toolkit.fluxcd.io", "v2", "helmreleases", "helmrelease"),
        Kind(
            "kustomization", "kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "kustomization"
        ),
        Kind("gitrepository", "source.toolkit.fluxcd.io", "v1", "gitrepositories", "source git"),
        Kind("helmrepository", "source.toolkit.fluxcd.io", "v1", "helmrepositories", "source helm"),
        Kind("ocirepository", "source.toolkit.fluxcd.io", "v1", "ocirepositories", "source oci"),
        Kind("deployment", "apps", "v1", "deployments"),
        Kind("statefulset", "apps", "v1", "statefulsets"),
        Kind("daemonset", "apps", "v1", "daemonsets"),
    )
}
_READERS = {
    "deployment": "read_namespaced_deployment",
    "statefulset": "read_namespaced_stateful_set",
    "daemonset": "read_namespaced_daemon_set",
}
WORKLOAD_KINDS = frozenset(_READERS)


class ClusterError(Exception):
    """The API server answered with an error; ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ObjectNotFound(ClusterError):
    pass


class Suspended(ClusterError):
    """A Flux object with ``spec.suspend: true``: its operator stopped it on purpose, so
    nothing is asked of it (``flux reconcile`` refuses it too)."""

    def __init__(self, ref: ObjectRef) -> None:
        super().__init__(f"{ref}: resource is suspended")
        self.ref = ref

    @property
    def resume(self) -> str:
        """The command that resumes it, as its operator would run it."""
        ref = self.ref
        return f"flux resume {ref.spec.cli} {ref.name} -n {ref.namespace}"


class ClusterUnreachable(ClusterError):
    """No answer from the API server: the caller reports the task blocked, not failed."""

    def __init__(self, server: str, context: str, reason: str) -> None:
        super().__init__(
            f"cannot reach Kubernetes API server {server} (context {context!r}): {reason}"
        )
        self.server = server
        self.context = context
        self.reason = reason


@dataclass(frozen=True)
class ObjectRef:
    """``kind/namespace/name`` or ``kind/name``.

    Without a namespace, Flux kinds default to ``flux-system`` (where ``flux bootstrap``
    puts them) and workloads to ``default`` (as kubectl does).
    """

    kind: str
    namespace: str
    name: str

    @classmethod
    def parse(cls, text: str) -> ObjectRef:
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"expected kind/namespace/name or kind/name, got {text!r}")
        kind = parts[0].lower()
        if kind not in KINDS:
            raise ValueError(f"unknown kind {parts[0]!r}; expected one of {', '.join(KINDS)}")
        if len(parts) == 3:
            return cls(kind, parts[1], parts[2])
        namespace = FLUX_NAMESPACE if KINDS[kind].flux else DEFAULT_NAMESPACE
        return cls(kind, namespace, parts[1])

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ReconcileResult:
    ref: ObjectRef
    ok: bool
    message: str
    last_condition: Obj | None
    elapsed: float
    revision: str | None = None
    """The revision the object last reported as applied (or fetched, for a source)."""


# client and kubeconfig

_CONTEXTS: weakref.WeakKeyDictionary[ApiClient, str] = weakref.WeakKeyDictionary()


def _kubeconfig_paths(kubeconfig: str | None) -> str:
    """The kubeconfig path list as kubectl resolves it (KUBECONFIG may join several)."""
    if kubeconfig:
        return kubeconfig
    return os.pathsep.join(str(path) for path in kubeconfig_paths())


def load_api(kubeconfig: str | None, context: str) -> ApiClient:
    """A client bound to ``context`` by name, whatever the current-context is.

    Binding explicitly means a ``kubectl config use-context`` elsewhere during a run cannot
    redirect the work to another cluster.
    """
    from kubernetes import config  # kubernetes takes ~0.3 s to import; only cluster tasks pay it
    from kubernetes.config.config_exception import ConfigException

    paths = _kubeconfig_paths(kubeconfig)
    new_client = cast("Callable[..., ApiClient]", config.new_client_from_config)
    try:
        api = new_client(config_file=paths, context=context, persist_config=False)
    except (ConfigException, KeyError) as exc:
        raise ClusterError(
            f"cannot load context {context!r} from kubeconfig {paths}: {exc}"
        ) from exc
    _CONTEXTS[api] = context
    return api


def _server(api: ApiClient) -> str:
    return str(api.configuration.host)


def _call(api: ApiClient, what: str, request: ApiCall) -> Obj:
    """Run one raw API request and decode it, mapping failures to this module's errors."""
    import urllib3  # with kubernetes, for cluster tasks only
    from kubernetes.client.exceptions import ApiException

    try:
        response = request(_preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        body = json.loads(response.data)
    except ApiException as exc:
        if not exc.status:
            raise _unreachable(api, str(exc.reason)) from exc
        message = _status_message(exc.body) or str(exc.reason)
        error = ObjectNotFound if exc.status == 404 else ClusterError
        raise error(f"{what}: {exc.status} {message}", exc.status) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _unreachable(api, str(reason)) from exc
    except ValueError as exc:
        raise ClusterError(f"{what}: response is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ClusterError(f"{what}: unexpected response {body!r:.200}")
    return body


def _status_message(body: object) -> str | None:
    try:
        data = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return str(message) if message else None


def _unreachable(api: ApiClient, reason: str) -> ClusterUnreachable:
    return ClusterUnreachable(_server(api), _CONTEXTS.get(api, "<unknown>"), reason)


def get_object(api: ApiClient, ref: ObjectRef) -> Obj:
    """The object as the API server returns it, as a plain dict."""
    from kubernetes import client  # ~0.3 s: cluster tasks only

    kind = ref.spec
    if kind.flux:
        custom = client.CustomObjectsApi(api)
        return _call(
            api,
            f"get {ref}",
            lambda **kw: custom.get_namespaced_custom_object(
                kind.group, kind.version, ref.namespace, kind.plural, ref.name, **kw
            ),
        )
    apps = client.AppsV1Api(api)
    read = getattr(apps, _READERS[ref.kind])
    return _call(api, f"get {ref}", lambda **kw: read(ref.name, ref.namespace, **kw))


# Flux reconcile


def _rfc3339nano(moment: datetime) -> str:
    """Timestamp in Go's RFC3339Nano layout, as ``flux reconcile`` writes it."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def is_suspended(obj: Obj) -> bool:
    return bool((obj.get("spec") or {}).get("suspend"))


CONFLICT_RETRIES = 5
"""Reads of an object that kept changing between read and request, before giving up."""


def request_reconcile(api: ApiClient, ref: ObjectRef, now: datetime | None = None) -> str:
    """Ask Flux to reconcile ``ref`` now, like ``flux reconcile``; returns the request token.

    Never of a suspended object (``Suspended``): the object is read first, and the
    annotation carries the ``resourceVersion`` read, so the API server refuses it (409)
    if anything, a suspend included, changed the object in between; it is read again.
    """
    if not ref.spec.flux:
        raise ValueError(f"{ref} is not a Flux object; only Flux objects take reconcile requests")
    requested_at = _rfc3339nano(now or datetime.now(UTC))
    for _ in range(CONFLICT_RETRIES):
        obj = get_object(api, ref)
        if is_suspended(obj):
            raise Suspended(ref)
        meta: Obj = {"annotations": {REQUESTED_AT: requested_at}}
        if version := (obj.get("metadata") or {}).get("resourceVersion"):
            meta["resourceVersion"] = version
        try:
            _merge_patch(api, ref, {"metadata": meta})
        except ClusterError as exc:
            if exc.status != 409:
                raise
            continue
        return requested_at
    raise ClusterError(
        f"annotate {ref}: it changed on every one of {CONFLICT_RETRIES} tries; "
        "something keeps rewriting it",
        409,
    )


def _merge_patch(api: ApiClient, ref: ObjectRef, patch: Obj) -> Obj:
    from kubernetes import client  # ~0.3 s: cluster tasks only

    kind = ref.spec
    custom = client.CustomObjectsApi(api)
    return _call(
        api,
        f"annotate {ref}",
        lambda **kw: custom.patch_namespaced_custom_object(
            kind.group,
            kind.version,
            ref.namespace,
            kind.plural,
            ref.name,
            patch,
            _content_type="application/merge-patch+json",
            **kw,
        ),
    )


def _condition(obj: Obj, type_: str) -> Obj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def describe_condition(cond: Obj | None) -> str:
    """``Ready=Unknown Progressing: message``: the form used in every report."""
    if cond is None:
        return "none"
    text = f"{cond.get('type')}={cond.get('status')} {cond.get('reason') or ''}".rstrip()
    return f"{text}: {cond['message']}" if cond.get("message") else text


def _observed_generation(obj: Obj, ref: ObjectRef, ready: Obj | None) -> object:
    status = obj.get("status") or {}
    if ref.kind != "helmrelease" and ready is not None and "observedGeneration" in ready:
        return ready["observedGeneration"]
    return status.get("observedGeneration")


def _chart_version(obj: Obj) -> str | None:
    history = (obj.get("status") or {}).get("history") or []
    if history and isinstance(history[0], dict):
        version = history[0].get("chartVersion")
        return str(version) if version is not None else None
    return None


SOURCE_KINDS = frozenset({"gitrepository", "ocirepository", "helmrepository"})
MANAGED_BY = "kustomize.toolkit.fluxcd.io/name"
MANAGED_BY_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"


def source_ref(obj: Obj, ref: ObjectRef) -> ObjectRef | None:
    """The source an object reads (``spec.sourceRef``, a HelmRelease's chart source),
    as ``flux reconcile --with-source`` finds it; None for kinds it does not know."""
    spec = obj.get("spec") or {}
    found = spec.get("sourceRef")
    if ref.kind == "helmrelease":
        chart = (spec.get("chart") or {}).get("spec") or {}
        found = chart.get("sourceRef") or spec.get("chartRef")
    if not isinstance(found, dict) or not found.get("name"):
        return None
    kind = str(found.get("kind") or "").lower()
    if kind not in SOURCE_KINDS:
        return None
    return ObjectRef(kind, str(found.get("namespace") or ref.namespace), str(found["name"]))


def manager_ref(obj: Obj) -> ObjectRef | None:
    """The Flux Kustomization that applied ``obj``, from the labels Flux puts on it."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(MANAGED_BY), labels.get(MANAGED_BY_NAMESPACE)
    if not name or not namespace:
        return None
    return ObjectRef("kustomization", str(namespace), str(name))


def applied_revision(obj: Obj, ref: ObjectRef) -> str | None:
    """What the object reports as applied: a Kustomization's ``lastAppliedRevision``,
    a source's artifact revision (``main@sha1:<sha>``)."""
    status = obj.get("status") or {}
    if ref.kind == "kustomization":
        value = status.get("lastAppliedRevision")
    elif ref.kind in SOURCE_KINDS:
        value = (status.get("artifact") or {}).get("revision")
    else:
        value = status.get("lastAttemptedRevision")
    return str(value) if value else None


def revision_sha(revision: str | None) -> str | None:
    """The commit of a Flux revision: ``main@sha1:<sha>``, ``sha1:<sha>`` or the older
    ``main/<sha>``."""
    if not revision:
        return None
    if "@" in revision:
        revision = revision.rsplit("@", 1)[1]
    if ":" in revision:
        return revision.split(":", 1)[1] or None
    return revision.rsplit("/", 1)[-1] or None


@dataclass(frozen=True)
class Expect:
    """The git revision an object must report, and which later revisions also hold it."""

    revision: str
    sha: str
    contains: Callable[[str], bool] | None = None

    def met_by(self, revision: str | None) -> bool:
        sha = revision_sha(revision)
        if sha is None:
            return False
        return sha == self.sha or (self.contains is not None and self.contains(sha))


@dataclass(frozen=True)
class _Verdict:
    done: bool
    ok: bool
    message: str
    condition: Obj | None


def _assess(
    obj: Obj, ref: ObjectRef, requested_at: str, chart: str | None, expect: Expect | None = None
) -> _Verdict:
    """Judge one status read: finished (ok or not) or still waiting, and on what."""
    ready = _condition(obj, "Ready")
    if is_suspended(obj):
        return _Verdict(True, False, "resource is suspended", ready)
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    current = generation is None or _observed_generation(obj, ref, ready) == generation
    handled = status.get("lastHandledReconcileAt") == requested_at
    stalled = _condition(obj, "Stalled")
    # A stall judged on the current spec will not clear by waiting.
    if stalled is not None and stalled.get("status") == "True" and current:
        return _Verdict(True, False, f"stalled: {_reason(stalled)}", stalled)
    if ready is None or not (current and handled):
        waiting = (
            "reconcile request not yet handled"
            if not handled
            else (f"generation {generation} not yet observed")
        )
        return _Verdict(False, False, waiting, ready)
    if ready.get("status") == "False":
        return _Verdict(True, False, _reason(ready), ready)
    if ready.get("status") != "True":
        return _Verdict(False, False, describe_condition(ready), ready)
    if chart is not None and (found := _chart_version(obj)) != chart:
        # Not final: the bumped spec may still be on its way from git to the cluster.
        return _Verdict(False, False, f"chart version {found} in history, expected {chart}", ready)
    if expect is not None and not expect.met_by(revision := applied_revision(obj, ref)):
        if ref.kind in SOURCE_KINDS:
            # The source handled our request: what it fetched is what the remote has.
            return _Verdict(
                True,
                False,
                f"fetched revision {revision or 'none'}, expected {expect.revision}",
                ready,
            )
        return _Verdict(
            False,
            False,
            f"applied revision {revision or 'none'}, waiting for {expect.revision}",
            ready,
        )
    return _Verdict(True, True, describe_condition(ready), ready)


def _reason(cond: Obj) -> str:
    reason = cond.get("reason") or "Unknown"
    return f"{reason}: {cond['message']}" if cond.get("message") else str(reason)


def wait_ready(
    api: ApiClient,
    ref: ObjectRef,
    requested_at: str,
    *,
    timeout: float,
    interval: float = 2.0,
    expect_chart_version: str | None = None,
    expect_revision: Expect | None = None,
) -> ReconcileResult:
    """Wait until Flux has handled ``requested_at`` for the current spec and reports Ready.

    The object is watched (``follow``), so the verdict comes as soon as the API server
    has the change; ``interval`` is only the pause before reconnecting after an error.
    Terminal failures (suspended, stalled, Ready=False after handling the request) end the
    wait at once; server errors other than client errors are retried until the deadline.
    """
    start = time.monotonic()
    last: Obj | None = None
    waiting = ""
    revision: str | None = None
    with closing(follow(api, ref, start + timeout, interval)) as changes:
        for seen in changes:
            if isinstance(seen, ClusterError):
                if seen.status is not None and seen.status < 500 and seen.status != 429:
                    return ReconcileResult(ref, False, str(seen), last, time.monotonic() - start)
                waiting = str(seen)
                continue
            verdict = _assess(seen, ref, requested_at, expect_chart_version, expect_revision)
            last = verdict.condition
            revision = applied_revision(seen, ref)
            if verdict.done:
                return ReconcileResult(
                    ref, verdict.ok, verdict.message, last, time.monotonic() - start, revision
                )
            waiting = verdict.message
    message = (
        f"timed out after {timeout:g}s waiting for {ref}: last condition {describe_condition(last)}"
    )
    if last is None or last.get("status") == "True":
        message += f"; {waiting}"
    return ReconcileResult(ref, False, message, last, time.monotonic() - start, revision)


# watching one object

WATCH_SLACK = 5.0
"""Seconds a watch read may outlast its ``timeoutSeconds`` before the client gives up."""


class _Gone(Exception):
    """410 Gone: the resourceVersion to resume from is no longer kept; read afresh."""


class _Dropped(Exception):
    """The watch connection broke mid-stream; resume from the last version seen."""


def follow(
    api: ApiClient, ref: ObjectRef, deadline: float, backoff: float
) -> Generator[Obj | ClusterError, None, None]:
    """The object as read, then again at every change the API server reports, until
    ``deadline`` (``time.monotonic()``) or until the caller stops. A read that fails is
    yielded as its ``ClusterError`` and retried after ``backoff`` seconds, as is a broken
    watch (resumed from the last version seen); 410 Gone reads the object afresh. Where
    the server refuses to list or watch (403, 405) the object is read every ``backoff``.
    ``ClusterUnreachable`` is raised."""
    version: str | None = None
    polling = False
    first = True
    while first or time.monotonic() < deadline:
        if not first and polling:
            _pause(backoff, deadline)
        first = False
        if version is None or polling:
            try:
                obj, version = _read(api, ref, polling)
            except ClusterUnreachable:
                raise
            except ClusterError as exc:
                if exc.status in (403, 405) and not polling:
                    polling = first = True  # read it alone, at once
                    continue
                yield exc
                if not polling:
                    _pause(backoff, deadline)
                continue
            polling = polling or version is None
            yield obj
            continue
        try:
            for type_, obj in _watch(api, ref, version, deadline):
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if type_ == "DELETED":
                    version = None  # the read says what is there now (404)
                    break
                if type_ in ("ADDED", "MODIFIED"):
                    yield obj
        except _Gone:
            version = None
        except _Dropped:
            _pause(backoff, deadline)
        except ClusterError as exc:
            if exc.status in (403, 405):
                polling = True
                continue
            yield exc
            _pause(backoff, deadline)


def _read(api: ApiClient, ref: ObjectRef, alone: bool) -> tuple[Obj, str | None]:
    """The object and the version to watch it from: the list's, which is current, as
    the server keeps a watch history only so far back and an object left alone for
    long has an older one. ``alone``: the object read by itself, nothing to watch from.
    A missing object raises the server's own 404 for it."""
    version = None
    if not alone:
        body = _call(
            api,
            f"get {ref}",
            lambda **kw: _watch_request(api, ref)(field_selector=f"metadata.name={ref.name}", **kw),
        )
        version = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
        items = body.get("items") or []
        if items and isinstance(items[0], dict):
            return items[0], version
    return get_object(api, ref), version


def _pause(seconds: float, deadline: float) -> None:
    time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))


def _watch(
    api: ApiClient, ref: ObjectRef, version: str, deadline: float
) -> Iterator[tuple[str, Obj]]:
    """One watch request from ``version``: its events as (type, object), ending when the
    server closes it (``timeoutSeconds``, bounded by the deadline) or at the deadline."""
    import urllib3  # with kubernetes, for cluster tasks only
    from kubernetes.client.exceptions import ApiException

    remaining = deadline - time.monotonic()
    try:
        response = _watch_request(api, ref)(
            field_selector=f"metadata.name={ref.name}",
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=max(1, math.ceil(remaining)),
            watch=True,
            _preload_content=False,
            _request_timeout=(REQUEST_TIMEOUT, max(0.001, remaining) + WATCH_SLACK),
        )
    except ApiException as exc:
        if exc.status == 410:
            raise _Gone from exc
        if not exc.status:
            raise _unreachable(api, str(exc.reason)) from exc
        message = _status_message(exc.body) or str(exc.reason)
        raise ClusterError(f"watch {ref}: {exc.status} {message}", exc.status) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _unreachable(api, str(getattr(exc, "reason", None) or exc)) from exc
    try:
        # the socket read times out at the deadline even if events never stop coming
        _read_until(response, deadline)
        for line in _lines(response):
            yield _event(ref, line)
            if time.monotonic() >= deadline:
                return
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise _Dropped(str(exc)) from exc
    finally:
        response.close()  # a stream left unread cannot serve another request
        response.release_conn()


def _read_until(response: BaseHTTPResponse, deadline: float) -> None:
    """Let reads of ``response`` wait no longer than ``deadline``."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(0.001, deadline - time.monotonic()))


def _lines(response: BaseHTTPResponse) -> Iterator[bytes]:
    """The stream's lines as they arrive: the server sends one JSON event a line."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        yield from (line for line in lines if line.strip())


def _event(ref: ObjectRef, line: bytes) -> tuple[str, Obj]:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ClusterError(f"watch {ref}: event is not JSON: {exc}") from exc
    obj = event.get("object") if isinstance(event, dict) else None
    if not isinstance(obj, dict):
        raise ClusterError(f"watch {ref}: unexpected event {event!r:.200}")
    type_ = str(event.get("type") or "")
    if type_ == "ERROR":
        code = obj.get("code")
        if code == 410:
            raise _Gone
        status = code if isinstance(code, int) else None
        raise ClusterError(f"watch {ref}: {code} {obj.get('message') or ''}".rstrip(), status)
    return type_, obj


def _watch_request(api: ApiClient, ref: ObjectRef) -> ApiCall:
    """The list call that, with ``watch=True``, watches objects of ``ref``'s kind."""
    from kubernetes import client  # ~0.3 s: cluster tasks only

    kind = ref.spec
    if kind.flux:
        custom = client.CustomObjectsApi(api)
        return partial(
            custom.list_namespaced_custom_object,
            kind.group,
            kind.version,
            ref.namespace,
            kind.plural,
        )
    lister = getattr(client.AppsV1Api(api), _READERS[ref.kind].replace("read_", "list_"))
    return partial(lister, ref.namespace)


# health checks for verification tasks


def _count(status: Obj, key: str) -> int:
    value = status.get(key)
    return int(value) if isinstance(value, int) else 0


def check_rollout(api: ApiClient, ref: ObjectRef) -> CheckResult:
    """Is the workload fully rolled out at its current generation (as kubectl rollout status)?"""
    return _check_once(api, workload(ref), rollout_status)


def workload(ref: ObjectRef) -> ObjectRef:
    """``ref``, which must name a workload for a rollout check (ValueError otherwise)."""
    if ref.kind not in WORKLOAD_KINDS:
        raise ValueError(f"{ref} is not a workload; expected one of {sorted(WORKLOAD_KINDS)}")
    return ref


def _check_once(
    api: ApiClient, ref: ObjectRef, judge: Callable[[Obj, ObjectRef], CheckResult]
) -> CheckResult:
    try:
        obj = get_object(api, ref)
    except ClusterUnreachable:
        raise
    except ClusterError as exc:
        return CheckResult(judge({}, ref).name, False, str(exc))
    return judge(obj, ref)


def watch_check(
    api: ApiClient,
    ref: ObjectRef,
    judge: Callable[[Obj, ObjectRef], CheckResult],
    timeout: float,
    interval: float = 2.0,
) -> CheckResult:
    """``poll`` for a check of one object: judged at every change the API server reports
    (``follow``), so it passes as soon as the object does; ``interval`` is only the
    pause before reading again after an error."""
    result = judge({}, ref)
    with closing(follow(api, ref, time.monotonic() + timeout, interval)) as changes:
        for seen in changes:
            if isinstance(seen, ClusterError):
                result = CheckResult(result.name, False, str(seen))
                continue
            result = judge(seen, ref)
            if result.ok:
                return result
    return CheckResult(result.name, False, f"timed out after {timeout:g}s: {result.message}")


def rollout_status(obj: Obj, ref: ObjectRef) -> CheckResult:
    """The rollout check's verdict on one read of the workload."""
    name = f"rollout {ref}"
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation") or 0
    observed = _count(status, "observedGeneration")
    if ref.kind == "daemonset":
        desired = _count(status, "desiredNumberScheduled")
        counts = {
            "updated": _count(status, "updatedNumberScheduled"),
            "ready": _count(status, "numberReady"),
            "available": _count(status, "numberAvailable"),
        }
        total = desired
    else:
        replicas = (obj.get("spec") or {}).get("replicas")
        desired = replicas if isinstance(replicas, int) else 1
        counts = {
            "updated": _count(status, "updatedReplicas"),
            "ready": _count(status, "readyReplicas"),
            "available": _count(status, "availableReplicas"),
        }
        total = _count(status, "replicas")
    summary = ", ".join(f"{n}/{desired} {label}" for label, n in counts.items())
    problems = []
    if observed < generation:
        problems.append(f"generation {generation} not yet observed (observed {observed})")
    if total > counts["updated"] and counts["updated"] == desired:
        problems.append(f"{total - counts['updated']} old replicas pending termination")
    progressing = _condition(obj, "Progressing")
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        problems.append("progress deadline exceeded")
    ok = not problems and all(n == desired for n in counts.values())
    message = f"{ref}: {summary}" + "".join(f"; {p}" for p in problems)
    return CheckResult(name, ok, message)


def check_pods_ready(api: ApiClient, namespace: str, selector: str) -> CheckResult:
    """Are all live pods matching the label selector Running and Ready?

    Completed pods and pods being deleted are skipped: they are not meant to serve.
    """
    from kubernetes import client  # ~0.3 s: cluster tasks only

    name = f"pods {namespace}/{selector}"
    core = client.CoreV1Api(api)
    try:
        body = _call(
            api,
            f"list pods in {namespace} matching {selector!r}",
            lambda **kw: core.list_namespaced_pod(namespace, label_selector=selector, **kw),
        )
    except ClusterUnreachable:
        raise
    except ClusterError as exc:
        return CheckResult(name, False, str(exc))
    pods = [
        p
        for p in body.get("items") or []
        if not (p.get("metadata") or {}).get("deletionTimestamp")
        and (p.get("status") or {}).get("phase") != "Succeeded"
    ]
    if not pods:
        return CheckResult(name, False, f"no pods match {selector!r} in namespace {namespace}")
    not_ready = []
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase") or "Unknown"
        ready = _condition(pod, "Ready")
        if phase != "Running" or ready is None or ready.get("status") != "True":
            detail = phase if ready is None else f"{phase}, {describe_condition(ready)}"
            not_ready.append(f"{pod['metadata']['name']} ({detail})")
    message = f"{len(pods) - len(not_ready)}/{len(pods)} pods ready"
    if not_ready:
        message += "; not ready: " + ", ".join(not_ready)
    return CheckResult(name, not not_ready, message)


def check_flux_ready(api: ApiClient, ref: ObjectRef) -> CheckResult:
    """Is the Flux object Ready for its current spec and not suspended?"""
    return _check_once(api, ref, flux_status)


def flux_status(obj: Obj, ref: ObjectRef) -> CheckResult:
    """The Flux check's verdict on one read of the object."""
    name = f"ready {ref}"
    ready = _condition(obj, "Ready")
    if is_suspended(obj):
        return CheckResult(name, False, f"{ref}: resource is suspended")
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and _observed_generation(obj, ref, ready) != generation:
        return CheckResult(name, False, f"{ref}: generation {generation} not yet observed")
    ok = ready is not None and ready.get("status") == "True"
    return CheckResult(name, ok, f"{ref}: {describe_condition(ready)}")


def check_http(url: str, expect_status: int = 200, timeout: float = 10.0) -> CheckResult:
    """GET ``url`` and compare the status code; redirects are followed."""
    name = f"http {url}"
    request = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return CheckResult(name, False, f"GET {url} failed: {reason}")
    ok = status == expect_status
    return CheckResult(name, ok, f"GET {url} -> {status} (expected {expect_status})")


def poll(check: Callable[[], CheckResult], timeout: float, interval: float = 2.0) -> CheckResult:
    """Repeat ``check`` until it passes or ``timeout`` passes; report what it last saw."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result.ok:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return CheckResult(
                result.name, False, f"timed out after {timeout:g}s: {result.message}"
            )
        time.sleep(min(interval, remaining))
