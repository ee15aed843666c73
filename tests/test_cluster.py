"""Cluster work end to end: the real kubernetes client, a real kubeconfig, the test API server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from kubeapi import KubeAPIServer, KubeContext, kube_api, write_kubeconfig

from pytest_infratask.clients.cluster import (
    REQUESTED_AT,
    CheckResult,
    ClusterError,
    ClusterUnreachable,
    ObjectNotFound,
    ObjectRef,
    Suspended,
    check_flux_ready,
    check_http,
    check_pods_ready,
    check_rollout,
    load_api,
    poll,
    request_reconcile,
    wait_ready,
)
from pytest_infratask.clients.kubeconfig import KubeconfigError
from pytest_infratask.clients.kubeconfig import active_context as _active_context

# Re-exported so pytest finds the fixture here; tests request it by name.
__all__ = ["kube_api"]

HR = ObjectRef.parse("helmrelease/prod/api")
FAST = 0.001
"""Poll interval: the test server answers at once, so polls need not wait."""


@pytest.fixture
def kubeconfig(kube_api: KubeAPIServer, tmp_path: Path) -> str:
    return str(kube_api.write_kubeconfig(tmp_path / "kubeconfig", context="dev"))


@pytest.fixture
def api(kubeconfig: str) -> Any:
    return load_api(kubeconfig, "dev")


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ObjectRef


def test_object_ref_parses_and_defaults_namespaces() -> None:
    assert ObjectRef.parse("helmrelease/prod/api") == ObjectRef("helmrelease", "prod", "api")
    assert ObjectRef.parse("HelmRelease/api").namespace == "flux-system"
    assert ObjectRef.parse("kustomization/apps").namespace == "flux-system"
    assert ObjectRef.parse("ocirepository/charts").namespace == "flux-system"
    assert ObjectRef.parse("deployment/web").namespace == "default"
    assert str(ObjectRef.parse("statefulset/db/pg")) == "statefulset/db/pg"


@pytest.mark.parametrize("text", ["helmrelease", "pod/default/x", "deployment//web", "a/b/c/d"])
def test_object_ref_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError):
        ObjectRef.parse(text)


# kubeconfig and context pinning


def active_context(path: str | None) -> str | None:
    return _active_context({"KUBECONFIG": path} if path else None)


def test_active_context_reads_current_context(tmp_path: Path, kube_api: KubeAPIServer) -> None:
    path = write_kubeconfig(tmp_path / "kc", {"dev": kube_api, "prod": kube_api}, "prod")
    assert active_context(str(path)) == "prod"
    bare = write_kubeconfig(tmp_path / "bare", {"dev": kube_api})
    assert active_context(str(bare)) is None


def test_kubeconfig_env_with_several_paths(
    tmp_path: Path, kube_api: KubeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clusters = write_kubeconfig(tmp_path / "clusters", {"dev": kube_api})
    current = tmp_path / "current"
    current.write_text("apiVersion: v1\nkind: Config\ncurrent-context: dev\n")
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{clusters}:{current}")
    assert active_context(None) == "dev"
    kube_api.add_helmrelease("api", "prod")
    assert check_flux_ready(load_api(None, "dev"), HR).ok


def test_context_pinning_ignores_current_context(tmp_path: Path, kube_api: KubeAPIServer) -> None:
    with KubeAPIServer(token="prod-token") as prod:
        for server in (kube_api, prod):
            server.add_helmrelease("api", "prod")
        path = write_kubeconfig(tmp_path / "kc", {"dev": kube_api, "prod": prod}, "prod")
        assert active_context(str(path)) == "prod"

        api = load_api(str(path), "dev")
        # A context switch after loading must not redirect the work either.
        write_kubeconfig(tmp_path / "kc", {"dev": kube_api, "prod": prod}, "dev")
        requested = request_reconcile(api, HR)
        assert wait_ready(api, HR, requested, timeout=5, interval=FAST).ok

        assert kube_api.patches()
        assert prod.requests == []


def test_unknown_context_is_an_error(kubeconfig: str, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="'staging'"):
        load_api(kubeconfig, "staging")
    broken = tmp_path / "broken"
    broken.write_text("current-context: [unclosed\n")
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        active_context(str(broken))


def test_unreachable_server_names_server_and_context(
    tmp_path: Path, kube_api: KubeAPIServer
) -> None:
    down = closed_port_url()
    path = write_kubeconfig(tmp_path / "kc", {"dev": kube_api, "staging": down}, "dev")
    api = load_api(str(path), "staging")
    with pytest.raises(ClusterUnreachable) as info:
        request_reconcile(api, HR)
    assert info.value.server == down
    assert info.value.context == "staging"
    assert down in str(info.value) and "'staging'" in str(info.value)
    with pytest.raises(ClusterUnreachable):
        wait_ready(api, HR, "x", timeout=1, interval=FAST)
    with pytest.raises(ClusterUnreachable):
        check_rollout(api, ObjectRef.parse("deployment/web"))
    assert kube_api.requests == []


def test_wrong_token_is_rejected(tmp_path: Path, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod")
    path = write_kubeconfig(tmp_path / "kc", {"dev": KubeContext(kube_api.url, "wrong")}, "dev")
    with pytest.raises(ClusterError) as info:
        request_reconcile(load_api(str(path), "dev"), HR)
    assert info.value.status == 401


def test_discovery_is_served(api: Any, kube_api: KubeAPIServer) -> None:
    from kubernetes import client, dynamic

    assert client.VersionApi(api).get_code().git_version == "v1.30.0"
    kube_api.add_helmrelease("api", "prod", version="1.2.0")
    dynamic_client = cast(Callable[[Any], Any], dynamic.DynamicClient)(api)
    releases = dynamic_client.resources.get(
        api_version="helm.toolkit.fluxcd.io/v2", kind="HelmRelease"
    )
    found = releases.get(name="api", namespace="prod")
    assert found.spec.chart.spec.version == "1.2.0"


# reconcile and wait


def test_reconcile_succeeds(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", version="1.2.0")
    moment = datetime(2024, 5, 1, 14, 0, 0, 123450, tzinfo=timezone(timedelta(hours=2)))
    requested = request_reconcile(api, HR, now=moment)
    assert requested == "2024-05-01T12:00:00.12345Z"

    (patch,) = kube_api.patches()
    assert patch.path == "/apis/helm.toolkit.fluxcd.io/v2/namespaces/prod/helmreleases/api"
    assert patch.headers["content-type"] == "application/merge-patch+json"
    # Conditional on the version read: a change in between (a suspend) makes it a 409.
    version = kube_api.requests[0]  # the read before the request
    assert version.method == "GET" and version.path == patch.path
    assert patch.body["metadata"]["annotations"] == {REQUESTED_AT: requested}
    assert set(patch.body) == {"metadata"}
    assert set(patch.body["metadata"]) == {"annotations", "resourceVersion"}

    result = wait_ready(api, HR, requested, timeout=5, expect_chart_version="1.2.0", interval=FAST)
    assert result.ok, result.message
    assert result.ref == HR
    assert result.last_condition is not None
    assert result.last_condition["reason"] == "ReconciliationSucceeded"
    stored = kube_api.get("helmrelease", "prod", "api")
    assert stored["status"]["lastHandledReconcileAt"] == requested
    assert stored["metadata"]["annotations"][REQUESTED_AT] == requested


def test_chart_bump_then_reconcile(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", version="1.2.0")
    # What kustomize-controller does once the bump lands from git.
    bump = {"spec": {"chart": {"spec": {"version": "1.3.0"}}}}
    before = kube_api.get("helmrelease", "prod", "api")["metadata"]
    from kubernetes import client

    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "helm.toolkit.fluxcd.io", "v2", "prod", "helmreleases", "api", bump
    )
    after = kube_api.get("helmrelease", "prod", "api")
    assert after["metadata"]["generation"] == before["generation"] + 1
    requested = request_reconcile(api, HR)
    result = wait_ready(api, HR, requested, timeout=5, expect_chart_version="1.3.0", interval=FAST)
    assert result.ok, result.message
    history = kube_api.get("helmrelease", "prod", "api")["status"]["history"]
    assert [h["chartVersion"] for h in history] == ["1.3.0", "1.2.0"]


def test_slow_readiness_within_deadline(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", delay=5)
    requested = request_reconcile(api, HR)
    result = wait_ready(api, HR, requested, timeout=10, interval=FAST)
    assert result.ok, result.message
    reads = [r for r in kube_api.requests if r.method == "GET" and not r.query.get("watch")]
    assert len(reads) == 2  # the read before the request and one in the wait: no polling


def test_readiness_after_a_duration(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", delay_seconds=0.05)
    requested_at = time.monotonic()  # the controller counts from the request
    result = wait_ready(api, HR, request_reconcile(api, HR), timeout=10, interval=FAST)
    assert result.ok, result.message
    assert time.monotonic() - requested_at >= 0.05


def test_other_flux_kinds_reconcile(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_kustomization("apps", delay=1)
    kube_api.add_source("gitrepository", "flux-system")
    for text in ("kustomization/apps", "gitrepository/flux-system"):
        ref = ObjectRef.parse(text)
        result = wait_ready(api, ref, request_reconcile(api, ref), timeout=5, interval=FAST)
        assert result.ok, result.message


def test_never_ready_times_out_with_last_condition(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease(
        "api", "prod", never_ready=True, progress_message="Running 'upgrade' action"
    )
    requested = request_reconcile(api, HR)
    result = wait_ready(api, HR, requested, timeout=0.2, interval=0.01)
    assert not result.ok
    assert result.message == (
        "timed out after 0.2s waiting for helmrelease/prod/api: "
        "last condition Ready=Unknown Progressing: Running 'upgrade' action"
    )
    assert result.elapsed >= 0.2


def test_ready_false_is_surfaced(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", fail=("InstallFailed", "chart pull error"))
    requested = request_reconcile(api, HR)
    result = wait_ready(api, HR, requested, timeout=30, interval=FAST)
    assert not result.ok
    assert result.message == "InstallFailed: chart pull error"
    assert result.elapsed < 30


def test_stalled_is_surfaced(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod")
    kube_api.behave(
        "helmrelease", "prod", "api", stalled=("InvalidChartReference", "chart not found")
    )
    requested = request_reconcile(api, HR)
    result = wait_ready(api, HR, requested, timeout=30, interval=FAST)
    assert not result.ok
    assert result.message == "stalled: InvalidChartReference: chart not found"
    assert result.last_condition is not None and result.last_condition["type"] == "Stalled"


@pytest.mark.parametrize(
    "text", ["helmrelease/prod/api", "kustomization/apps", "gitrepository/flux-system"]
)
def test_nothing_is_requested_of_a_suspended_object(
    api: Any, kube_api: KubeAPIServer, text: str
) -> None:
    kube_api.add_helmrelease("api", "prod", suspended=True)
    kube_api.add_kustomization("apps", suspended=True)
    kube_api.add_source("gitrepository", "flux-system", suspended=True)
    ref = ObjectRef.parse(text)
    with pytest.raises(Suspended) as info:
        request_reconcile(api, ref)
    assert str(info.value) == f"{ref}: resource is suspended"
    assert (
        info.value.resume
        == {
            "helmrelease": "flux resume helmrelease api -n prod",
            "kustomization": "flux resume kustomization apps -n flux-system",
            "gitrepository": "flux resume source git flux-system -n flux-system",
        }[ref.kind]
    )
    assert [r.method for r in kube_api.requests] == ["GET"]


def test_a_suspend_between_the_read_and_the_request_is_refused_by_the_server(
    api: Any, kube_api: KubeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request carries the version read: the server refuses it (409) once the
    object changed, and the object read again is suspended."""
    from pytest_infratask.clients import cluster

    kube_api.add_helmrelease("api", "prod")
    stale = kube_api.get("helmrelease", "prod", "api")
    kube_api.behave("helmrelease", "prod", "api", suspended=True)  # someone runs flux suspend
    kube_api.update("helmrelease", "prod", "api", {})  # a new resourceVersion, as the server's
    reads = iter([stale])
    real = cluster.get_object
    monkeypatch.setattr(cluster, "get_object", lambda a, r: next(reads, None) or real(a, r))
    with pytest.raises(Suspended):
        request_reconcile(api, HR)
    assert [r.method for r in kube_api.requests] == ["PATCH", "GET"]
    stored = kube_api.get("helmrelease", "prod", "api")
    assert REQUESTED_AT not in (stored["metadata"].get("annotations") or {})


def test_suspended_during_the_wait_fails_at_once(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod")
    requested = request_reconcile(api, HR)
    kube_api.behave("helmrelease", "prod", "api", suspended=True)
    result = wait_ready(api, HR, requested, timeout=30, interval=FAST)
    assert not result.ok
    assert result.message == "resource is suspended"
    assert [r.method for r in kube_api.requests] == ["GET", "PATCH", "GET"]


def test_chart_version_mismatch_is_reported(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod", version="1.2.0")
    requested = request_reconcile(api, HR)
    result = wait_ready(
        api, HR, requested, timeout=0.2, interval=0.01, expect_chart_version="1.3.0"
    )
    assert not result.ok
    assert result.message.startswith("timed out after 0.2s waiting for helmrelease/prod/api")
    assert "chart version 1.2.0 in history, expected 1.3.0" in result.message
    assert result.last_condition is not None and result.last_condition["status"] == "True"


def test_missing_object(api: Any, kube_api: KubeAPIServer) -> None:
    with pytest.raises(ObjectNotFound, match='"api" not found'):
        request_reconcile(api, HR)
    result = wait_ready(api, HR, "x", timeout=30, interval=FAST)
    assert not result.ok and "not found" in result.message
    with pytest.raises(ValueError):
        request_reconcile(api, ObjectRef.parse("deployment/web"))


def test_check_flux_ready(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod")
    assert check_flux_ready(api, HR).ok
    kube_api.behave("helmrelease", "prod", "api", suspended=True)
    result = check_flux_ready(api, HR)
    assert not result.ok and "suspended" in result.message


# server semantics the plugin relies on


def test_merge_patch_generation_and_resource_version(api: Any, kube_api: KubeAPIServer) -> None:
    from kubernetes import client

    kube_api.add_helmrelease("api", "prod")
    custom = client.CustomObjectsApi(api)

    def patch(body: dict[str, Any]) -> dict[str, Any]:
        custom.patch_namespaced_custom_object(
            "helm.toolkit.fluxcd.io", "v2", "prod", "helmreleases", "api", body
        )
        return kube_api.get("helmrelease", "prod", "api")

    start = kube_api.get("helmrelease", "prod", "api")["metadata"]
    meta = patch({"metadata": {"annotations": {"a": "1"}}})["metadata"]
    assert meta["generation"] == start["generation"]
    assert int(meta["resourceVersion"]) > int(start["resourceVersion"])
    obj = patch({"metadata": {"annotations": {"a": None}}, "spec": {"interval": "5m"}})
    assert obj["metadata"]["annotations"] == {}
    assert obj["metadata"]["generation"] == start["generation"] + 1
    assert obj["spec"]["chart"]["spec"]["version"] == "6.5.0"


# workload health


def test_rollout_checks(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_workload("deployment", "web", replicas=3)
    kube_api.add_workload("deployment", "slow", replicas=3, ready=2)
    kube_api.add_workload("deployment", "stale", replicas=3, generation=4, observed_generation=3)
    kube_api.add_workload("statefulset", "db", "data", replicas=2)
    kube_api.add_workload("daemonset", "agent", "kube-system", replicas=4, updated=3)

    ok = check_rollout(api, ObjectRef.parse("deployment/web"))
    assert ok == CheckResult(
        "rollout deployment/default/web",
        True,
        "deployment/default/web: 3/3 updated, 3/3 ready, 3/3 available",
    )
    slow = check_rollout(api, ObjectRef.parse("deployment/slow"))
    assert not slow.ok and "2/3 ready" in slow.message
    stale = check_rollout(api, ObjectRef.parse("deployment/stale"))
    assert not stale.ok and "generation 4 not yet observed" in stale.message
    assert check_rollout(api, ObjectRef.parse("statefulset/data/db")).ok
    agent = check_rollout(api, ObjectRef.parse("daemonset/kube-system/agent"))
    assert not agent.ok and "3/4 updated" in agent.message
    missing = check_rollout(api, ObjectRef.parse("deployment/nope"))
    assert not missing.ok and "not found" in missing.message
    with pytest.raises(ValueError):
        check_rollout(api, HR)


def test_poll_reports_progress_and_last_seen(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_workload("deployment", "web", replicas=3, ready=1)
    ref = ObjectRef.parse("deployment/web")
    calls = 0

    def rolling() -> CheckResult:
        nonlocal calls
        calls += 1
        if calls == 3:
            status = {"readyReplicas": 3, "availableReplicas": 3}
            kube_api.update("deployment", "default", "web", {"status": status})
        return check_rollout(api, ref)

    assert poll(rolling, timeout=10, interval=0.001).ok
    assert calls == 3

    stuck = poll(lambda: check_rollout(api, ObjectRef.parse("deployment/nope")), 0.05, 0.01)
    assert not stuck.ok
    assert stuck.message.startswith("timed out after 0.05s: get deployment/default/nope: 404")


def test_pods_ready_with_label_selector(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_pod("web-1", labels={"app": "web", "tier": "front"})
    kube_api.add_pod("web-2", labels={"app": "web", "tier": "back"})
    kube_api.add_pod("job-1", labels={"app": "web", "tier": "back"}, phase="Succeeded")
    kube_api.add_pod("worker-1", labels={"app": "worker"}, ready=False)
    kube_api.add_pod("worker-2", labels={"app": "worker"}, phase="Pending", ready=False)
    kube_api.add_pod("web-x", "other", labels={"app": "web"}, ready=False)

    web = check_pods_ready(api, "default", "app=web")
    assert web.ok and web.message == "2/2 pods ready"
    assert check_pods_ready(api, "default", "app=web,tier=front").message == "1/1 pods ready"
    worker = check_pods_ready(api, "default", "app=worker")
    assert not worker.ok
    assert "0/2 pods ready" in worker.message
    assert "worker-1 (Running, Ready=False ContainersNotReady)" in worker.message
    assert "worker-2 (Pending" in worker.message
    none = check_pods_ready(api, "default", "app=nothing")
    assert not none.ok and "no pods match" in none.message
    (listing,) = [r for r in kube_api.requests if r.query.get("labelSelector") == ["app=worker"]]
    assert listing.path == "/api/v1/namespaces/default/pods"


# HTTP


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/healthz" else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_check(http_url: str) -> None:
    assert check_http(f"{http_url}/healthz", timeout=5).ok
    bad = check_http(f"{http_url}/broken", timeout=5)
    assert not bad.ok and "-> 503 (expected 200)" in bad.message
    assert check_http(f"{http_url}/broken", expect_status=503, timeout=5).ok
    down = check_http(f"{closed_port_url()}/healthz", timeout=5)
    assert not down.ok and "failed" in down.message


def test_rfc3339_from_naive_and_whole_seconds(api: Any, kube_api: KubeAPIServer) -> None:
    kube_api.add_helmrelease("api", "prod")
    assert request_reconcile(api, HR, now=datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05Z"
    aware = datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    assert request_reconcile(api, HR, now=aware) == "2024-01-02T03:04:05.6Z"
