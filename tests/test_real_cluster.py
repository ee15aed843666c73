"""Against a real Kubernetes API server and real Flux controllers (the ``cluster`` tier).

The stand-in of ``kubeapi.py`` agrees with our own reading of Kubernetes and Flux; these
tests run the same task files against kube-apiserver, kube-controller-manager,
kube-scheduler, kwok and Flux's source- and kustomize-controller built from source
(demo/kubestack), so a misreading shows up as a failure here. The stack starts once per
session; each test works in its own namespace, git repository and Flux objects.
"""

from __future__ import annotations

import itertools
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import QUIET, Ran, git
from helpers import meta_task as write_task
from kubestack.stack import ADMIN_CONTEXT, VIEWER_CONTEXT, Stack, timeout

from pytest_infratask.clients.cluster import (
    REQUESTED_AT,
    ObjectRef,
    check_flux_ready,
    check_pods_ready,
    check_rollout,
    load_api,
    request_reconcile,
    wait_ready,
)

pytest_plugins = ["kubestack_fixtures"]
pytestmark = pytest.mark.cluster

_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{secrets.token_hex(3)}"


def get(cluster: Stack, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    data: dict[str, Any] = json.loads(cluster.kubectl(*args).stdout)
    return data


def poll(what: str, probe: Callable[[], Any], deadline: float | None = None) -> Any:
    """The first truthy value of ``probe``, or a failure naming ``what`` at the deadline."""
    end = time.monotonic() + (deadline if deadline is not None else timeout())
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


def deployment(
    name: str, namespace: str, image: str, replicas: int = 2, **pod_spec: Any
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": name, "image": image}], **pod_spec},
            },
        },
    }


def namespace(cluster: Stack, name: str) -> str:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# -- pytest runs on task files -----------------------------------------------------------


@pytest.fixture
def run(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> Any:
    (pytester.path / "pytest.ini").write_text("[pytest]\ninfratask_retry_delay = 0\n")

    def runner(*args: str) -> Ran:
        reports = tmp_path_factory.mktemp("reports") / "tasks"
        result = pytester.runpytest(*QUIET, f"--infratask-report-dir={reports}", *args)
        return Ran(result, reports)

    return runner


@pytest.fixture
def kubeconfig(
    cluster: Stack, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A kubeconfig of the test's own (contexts dev = admin, viewer = read-only token)."""
    path = cluster.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def box(task_file: Path, text: str) -> str:
    [line] = [ln for ln in task_file.read_text().splitlines() if ln.endswith(f"] {text}")]
    return line.split("[", 1)[1][0]


# -- verification tasks ------------------------------------------------------------------


def verify_meta(checks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "TASK-010",
        "title": "Verify web",
        "labels": ["verification"],
        "kube_context": ADMIN_CONTEXT,
        "wait": 5,
        "poll_interval": 0.5,
        "checks": checks,
        **extra,
    }


def test_verification_sees_a_rollout_and_its_pods_running_under_kwok(
    cluster: Stack,
    kubeconfig: Path,
    pytester: pytest.Pytester,
    run: Any,
) -> None:
    ns = namespace(cluster, unique("verify"))
    cluster.apply(deployment("web", ns, "registry.invalid/web:1.0", replicas=3))
    checks = [
        {"rollout": f"deployment/{ns}/web"},
        {"pods": {"namespace": ns, "selector": "app=web"}},
    ]
    task = write_task(
        pytester.path / "TASK-010.md",
        verify_meta(checks, wait=timeout()),
        [("Web is rolled out", ["echo checking"])],
    )
    r = run("TASK-010.md")
    r.result.assert_outcomes(passed=2)
    assert box(task, "Web is rolled out") == "x"
    seen = {c["check"]: c for c in r.contract("TASK-010")["health_checks"]}
    rollout = seen[f"rollout deployment/{ns}/web"]
    assert rollout["ok"] and "3/3 updated, 3/3 ready, 3/3 available" in rollout["message"]
    assert seen[f"pods {ns}/app=web"]["message"] == "3/3 pods ready"
    # What the check read is what the cluster holds: three pods, scheduled and Running.
    pods = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    assert sorted(p["status"]["phase"] for p in pods) == ["Running"] * 3
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-node-0"}


def test_verification_of_unschedulable_pods_fails_with_what_it_saw(
    cluster: Stack,
    kubeconfig: Path,
    pytester: pytest.Pytester,
    run: Any,
) -> None:
    ns = namespace(cluster, unique("pending"))
    cluster.apply(
        deployment("web", ns, "registry.invalid/web:1.0", nodeSelector={"pool": "does-not-exist"})
    )
    poll(
        "pods to exist",
        lambda: json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"],
    )
    checks = [
        {"pods": {"namespace": ns, "selector": "app=web"}},
        {"rollout": f"deployment/{ns}/web"},
    ]
    task = write_task(
        pytester.path / "TASK-010.md",
        verify_meta(checks, wait=2),
        [("Web is rolled out", ["echo checking"])],
    )
    r = run("TASK-010.md")
    r.result.assert_outcomes(failed=1, skipped=1)
    message = r.contract("TASK-010")["message"]
    assert "0/2 pods ready" in message and "(Pending" in message
    assert "0/2 ready" in message
    assert box(task, "Web is rolled out") == " "


def test_health_checks_read_the_real_server(cluster: Stack, kubeconfig: Path) -> None:
    """The check functions on objects the real controllers made, not ones a test wrote."""
    ns = namespace(cluster, unique("direct"))
    cluster.apply(deployment("api", ns, "registry.invalid/api:2.0", replicas=2))
    api = load_api(str(kubeconfig), ADMIN_CONTEXT)
    ref = ObjectRef.parse(f"deployment/{ns}/api")
    rolled = poll("the rollout", lambda: (r := check_rollout(api, ref)).ok and r)
    assert rolled.message == f"{ref}: 2/2 updated, 2/2 ready, 2/2 available"
    assert check_pods_ready(api, ns, "app=api").message == "2/2 pods ready"
    # A new template is a new generation: not rolled out until the controllers catch up.
    cluster.apply(deployment("api", ns, "registry.invalid/api:2.1", replicas=2))
    poll("the new rollout", lambda: check_rollout(api, ref).ok)
    replicasets = json.loads(cluster.kubectl("get", "replicasets", "-n", ns, "-o", "json").stdout)[
        "items"
    ]
    assert len(replicasets) == 2


# -- Flux on a GitOps repository served over smart HTTP ----------------------------------


@dataclass
class App:
    """A GitOps checkout (``gitops/`` in the pytester directory) whose origin Flux reconciles.

    Task files live beside it, outside git: the plugin then reconciles right after a
    criterion, which is what the failure tests need (the revision does not matter there).
    """

    name: str
    repo: Path
    url: str

    @property
    def kustomization(self) -> str:
        return f"kustomization/flux-system/{self.name}"


def web_manifest(app: str, tag: str, replicas: int = 2) -> str:
    doc = deployment("web", "placeholder", f"registry.invalid/web:{tag}", replicas)
    del doc["metadata"]["namespace"]  # the Kustomization's targetNamespace places it
    return f"# web for {app}\n" + yaml.safe_dump(doc, sort_keys=False)


def applied(cluster: Stack, name: str, revision: str) -> dict[str, Any] | None:
    obj = get(cluster, "kustomization", name, "flux-system")
    ready = condition(obj, "Ready")
    status = obj.get("status") or {}
    if ready and ready["status"] == "True" and revision in status.get("lastAppliedRevision", ""):
        return obj
    return None


@pytest.fixture
def app(cluster: Stack, pytester: pytest.Pytester, git_identity: None) -> Iterator[App]:
    """A pushed GitOps repository, its GitRepository and Kustomization, applied once."""
    assert cluster.git is not None
    name = unique("app")
    namespace(cluster, name)
    url = cluster.git.create(name)
    repo = pytester.path / "gitops"
    (repo / "apps").mkdir(parents=True)
    (repo / "apps" / "web.yaml").write_text(web_manifest(name, "0.1.17"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "commit.gpgsign", "false")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "GitOps repository")
    git(repo, "remote", "add", "origin", url)
    git(repo, "push", "-q", "-u", "origin", "main")
    cluster.apply(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": "flux-system"},
            "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1h", "timeout": "30s"},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": "flux-system"},
            "spec": {
                "interval": "1h",
                "path": "./apps",
                "prune": True,
                "wait": True,
                "timeout": "2m",
                "targetNamespace": name,
                "sourceRef": {"kind": "GitRepository", "name": name},
            },
        },
    )
    head = git(repo, "rev-parse", "HEAD").strip()
    poll(f"Kustomization {name} to apply {head[:8]}", lambda: applied(cluster, name, head))
    yield App(name, repo, url)
    cluster.kubectl(
        "delete",
        "kustomization,gitrepository",
        name,
        "-n",
        "flux-system",
        "--wait=false",
        check=False,
    )


def deploy_meta(app: App, **extra: Any) -> dict[str, Any]:
    return {
        "id": "TASK-020",
        "title": "Deploy web 0.1.18",
        "labels": ["deployment", "flux"],
        "kube_context": ADMIN_CONTEXT,
        "reconcile": [app.kustomization],
        "wait": timeout(),
        "poll_interval": 0.5,
        **extra,
    }


IMAGE = "spec.template.spec.containers.0.image"
BUMP_TAG = f"infratask set apps/web.yaml {IMAGE} registry.invalid/web:0.1.18"
"""Run from the task's directory: the checkout's root."""
BUMP_TAG_OUTSIDE = f"infratask set gitops/apps/web.yaml {IMAGE} registry.invalid/web:0.1.18"
"""Run from beside the checkout, for tasks kept outside git."""


def image_in_cluster(cluster: Stack, app: App) -> str:
    web = get(cluster, "deployment", "web", app.name)
    return str(web["spec"]["template"]["spec"]["containers"][0]["image"])


def task_in_repo(app: App, *criteria: tuple[str, list[str]], **extra: Any) -> Path:
    """The task file committed and pushed in the checkout, as a team would keep it."""
    task = write_task(app.repo / "TASK-020.md", deploy_meta(app, **extra), list(criteria))
    git(app.repo, "add", "TASK-020.md")
    git(app.repo, "commit", "-q", "-m", "Add TASK-020")
    git(app.repo, "push", "-q")
    return task


def head(app: App) -> str:
    return git(app.repo, "rev-parse", "HEAD").strip()


def annotations(cluster: Stack, kind: str, name: str) -> dict[str, str]:
    meta = get(cluster, kind, name, "flux-system")["metadata"]
    return dict(meta.get("annotations") or {})


def test_an_image_tag_bump_is_pushed_and_applied_at_the_pushed_revision(
    cluster: Stack,
    kubeconfig: Path,
    app: App,
    run: Any,
) -> None:
    task = task_in_repo(app, ("Image bumped to 0.1.18", [BUMP_TAG]))
    r = run("gitops/TASK-020.md", "--infratask-push")
    r.result.assert_outcomes(passed=2)
    assert r.result.ret == 0
    pushed = head(app)
    assert git(app.repo, "log", "-1", "--format=%s").strip() == "TASK-020: Deploy web 0.1.18"
    assert cluster.git is not None and cluster.git.head(app.name) == pushed
    assert box(task, "Image bumped to 0.1.18") == "x"
    # Flux fetched the pushed commit (reconciled with its source) and applied it.
    source = get(cluster, "gitrepository", app.name, "flux-system")
    assert source["status"]["artifact"]["revision"] == f"main@sha1:{pushed}"
    assert REQUESTED_AT in annotations(cluster, "gitrepository", app.name)
    kustomization = get(cluster, "kustomization", app.name, "flux-system")
    assert kustomization["status"]["lastAppliedRevision"] == f"main@sha1:{pushed}"
    assert image_in_cluster(cluster, app) == "registry.invalid/web:0.1.18"
    # The Kustomization waited for health: the new ReplicaSet's Pods are Running.
    pods = json.loads(cluster.kubectl("get", "pods", "-n", app.name, "-o", "json").stdout)
    new = [
        p
        for p in pods["items"]
        if not p["metadata"].get("deletionTimestamp")
        and p["spec"]["containers"][0]["image"].endswith(":0.1.18")
    ]
    assert [p["status"]["phase"] for p in new] == ["Running", "Running"]
    contract = r.contract("TASK-020")
    assert contract["success"] is True
    [reconciled] = contract["reconciled"]
    assert reconciled["ok"] is True
    assert reconciled["applied_revision"] == f"main@sha1:{pushed}"


def test_a_commit_left_unpushed_is_not_reported_as_reconciled(
    cluster: Stack,
    kubeconfig: Path,
    app: App,
    run: Any,
) -> None:
    task_in_repo(app, ("Image bumped to 0.1.18", [BUMP_TAG]))
    before = head(app)
    r = run("gitops/TASK-020.md", "--infratask-commit")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    assert head(app) != before
    assert cluster.git is not None and cluster.git.head(app.name) == before
    assert "committed locally" in r.out and "rerun with --infratask-push" in r.out
    assert r.contract("TASK-020")["success"] is False
    # Nothing was asked of Flux, and the cluster still runs the old image.
    assert REQUESTED_AT not in annotations(cluster, "kustomization", app.name)
    assert image_in_cluster(cluster, app) == "registry.invalid/web:0.1.17"
    # The suggested fix: the rerun pushes the same commit and waits for it.
    again = run("gitops/TASK-020.md", "--infratask-push")
    again.result.assert_outcomes(passed=1, skipped=1)
    assert cluster.git.head(app.name) == head(app)
    assert image_in_cluster(cluster, app) == "registry.invalid/web:0.1.18"
    kustomization = get(cluster, "kustomization", app.name, "flux-system")
    assert kustomization["status"]["lastAppliedRevision"] == f"main@sha1:{head(app)}"
    assert again.contract("TASK-020")["success"] is True


@pytest.mark.parametrize(
    ("kind", "cli"), [("kustomization", "kustomization"), ("gitrepository", "source git")]
)
def test_a_suspended_object_of_the_chain_blocks_and_nothing_is_asked_of_flux(
    cluster: Stack,
    kubeconfig: Path,
    app: App,
    run: Any,
    kind: str,
    cli: str,
) -> None:
    """The declared Kustomization, or the GitRepository it reads, suspended by its
    operator: both are read before any request, and neither gets one."""
    cluster.kubectl(
        "patch",
        kind,
        app.name,
        "-n",
        "flux-system",
        "--type=merge",
        "-p",
        '{"spec":{"suspend":true}}',
    )
    task_in_repo(app, ("Image bumped to 0.1.18", [BUMP_TAG]))
    started = time.monotonic()
    r = run("gitops/TASK-020.md", "--infratask-push")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    assert time.monotonic() - started < timeout(), "waited on a suspended object"
    ref = f"{kind}/flux-system/{app.name}"
    assert f"BLOCKED: {ref}: resource is suspended: nothing was asked of Flux" in r.out
    assert f"`flux resume {cli} {app.name} -n flux-system`" in r.out
    contract = r.contract("TASK-020")
    assert contract["success"] is False and contract["status"] == "blocked"
    assert contract["error"] == "Verification blocked"
    for asked in ("gitrepository", "kustomization"):
        assert REQUESTED_AT not in annotations(cluster, asked, app.name), asked
    assert cluster.git is not None and cluster.git.head(app.name) == head(app)
    assert image_in_cluster(cluster, app) == "registry.invalid/web:0.1.17"


def test_a_change_the_api_server_rejects_fails_with_flux_s_reason(
    cluster: Stack,
    kubeconfig: Path,
    app: App,
    run: Any,
) -> None:
    """The real server validates what Flux applies: no stand-in knows this name is bad."""
    bad_name = "infratask set apps/web.yaml spec.template.spec.containers.0.name Web_Bad"
    task_in_repo(app, ("Container renamed", [bad_name]))
    r = run("gitops/TASK-020.md", "--infratask-push")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    kustomization = get(cluster, "kustomization", app.name, "flux-system")
    ready = condition(kustomization, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert "Web_Bad" in ready["message"]
    message = r.contract("TASK-020")["message"]
    assert f"{ready['reason']}: " in message and "Web_Bad" in message
    assert kustomization["status"]["lastAttemptedRevision"] == f"main@sha1:{head(app)}"
    assert image_in_cluster(cluster, app) == "registry.invalid/web:0.1.17"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def outside_task(app: App, **extra: Any) -> Path:
    """A task file beside the checkout, outside git: no push, the objects still checked."""
    return write_task(
        app.repo.parent / "TASK-020.md",
        deploy_meta(app, **extra),
        [("Image bumped to 0.1.18", [BUMP_TAG_OUTSIDE])],
    )


def test_unreachable_api_server_blocks_naming_server_and_context(
    cluster: Stack,
    app: App,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = f"https://127.0.0.1:{closed_port()}"
    config = cluster.write_kubeconfig(tmp_path / "down", server=server)
    monkeypatch.setenv("KUBECONFIG", str(config))
    outside_task(app)
    r = run("TASK-020.md")
    assert r.result.ret == 1
    contract = r.contract("TASK-020")
    assert contract["success"] is False
    assert f"cannot reach Kubernetes API server {server} (context 'dev')" in r.out
    assert REQUESTED_AT not in annotations(cluster, "kustomization", app.name)


def test_the_pin_holds_whatever_context_is_current(
    cluster: Stack,
    run: Any,
    pytester: pytest.Pytester,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Current context ``prod`` (a server that is not there); the task pins ``dev``."""
    config = cluster.write_kubeconfig(
        tmp_path / "config", [(ADMIN_CONTEXT, "admin")], current="prod"
    )
    data = yaml.safe_load(config.read_text())
    data["clusters"].append(
        {
            "name": "elsewhere",
            "cluster": {
                "server": f"https://127.0.0.1:{closed_port()}",
                "insecure-skip-tls-verify": True,
            },
        }
    )
    data["contexts"].append({"name": "prod", "context": {"cluster": "elsewhere", "user": "admin"}})
    config.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("KUBECONFIG", str(config))
    ns = namespace(cluster, unique("pinned"))
    cluster.apply(deployment("web", ns, "registry.invalid/web:1.0", replicas=1))
    task = write_task(
        pytester.path / "TASK-010.md",
        verify_meta([{"rollout": f"deployment/{ns}/web"}], wait=timeout()),
        [
            (
                "Context seen",
                [
                    "kubectl config current-context > context.txt\n"
                    f"kubectl get namespace {ns} -o name > namespace.txt"
                ],
            ),
        ],
    )
    r = run("TASK-010.md")
    r.result.assert_outcomes(passed=2)
    assert (pytester.path / "context.txt").read_text().strip() == ADMIN_CONTEXT
    assert (pytester.path / "namespace.txt").read_text().strip() == f"namespace/{ns}"
    assert box(task, "Context seen") == "x"
    [check] = r.contract("TASK-010")["health_checks"]
    assert check["ok"] and "1/1 ready" in check["message"]


def test_a_pinned_context_the_kubeconfig_lacks_blocks_before_anything_runs(
    cluster: Stack,
    app: App,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = cluster.write_kubeconfig(tmp_path / "config", [("prod", "admin")], current="prod")
    monkeypatch.setenv("KUBECONFIG", str(config))
    marker = app.repo / "marker"
    task = write_task(
        app.repo.parent / "TASK-020.md",
        deploy_meta(app),
        [("Image bumped to 0.1.18", [f"touch {marker}\n{BUMP_TAG_OUTSIDE}"])],
    )
    r = run("TASK-020.md")
    assert r.result.ret == 1
    assert not marker.exists(), "a command ran without the pinned context"
    assert "the task pins kube context 'dev', which the kubeconfig does not have" in r.out
    assert r.contract("TASK-020")["status"] == "blocked"
    assert box(task, "Image bumped to 0.1.18") == " "
    assert REQUESTED_AT not in annotations(cluster, "kustomization", app.name)


@pytest.mark.parametrize(
    ("context", "user", "status", "words"),
    [
        (VIEWER_CONTEXT, "viewer", 403, "forbidden"),
        ("stranger", "stranger", 401, "Unauthorized"),
    ],
)
def test_the_real_server_s_authentication_decides_for_the_pinned_context(
    cluster: Stack,
    app: App,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    context: str,
    user: str,
    status: int,
    words: str,
) -> None:
    config = cluster.write_kubeconfig(tmp_path / "config", [(context, user)], current=context)
    monkeypatch.setenv("KUBECONFIG", str(config))
    outside_task(app, kube_context=context)
    r = run("TASK-020.md")
    assert r.result.ret == 1
    contract = r.contract("TASK-020")
    assert contract["success"] is False
    text = json.dumps(contract)
    assert f"{status}" in text and words in text
    assert REQUESTED_AT not in annotations(cluster, "kustomization", app.name)


def test_flux_handles_the_request_token_as_the_plugin_expects(
    cluster: Stack,
    kubeconfig: Path,
    app: App,
) -> None:
    """The contract wait_ready relies on: Flux echoes requestedAt in lastHandledReconcileAt."""
    api = load_api(str(kubeconfig), ADMIN_CONTEXT)
    for text in (f"gitrepository/flux-system/{app.name}", app.kustomization):
        ref = ObjectRef.parse(text)
        requested = request_reconcile(api, ref)
        result = wait_ready(api, ref, requested, timeout=timeout(), interval=0.25)
        assert result.ok, result.message
        assert (
            get(cluster, ref.kind, app.name, "flux-system")["status"]["lastHandledReconcileAt"]
            == requested
        )
        assert check_flux_ready(api, ref).ok


def test_the_wait_returns_with_the_reconcile_not_on_a_poll(
    cluster: Stack,
    kubeconfig: Path,
    app: App,
) -> None:
    """poll_interval 60 s: only a watch can return the verdict within the reconcile."""
    api = load_api(str(kubeconfig), ADMIN_CONTEXT)
    ref = ObjectRef.parse(app.kustomization)
    requested = request_reconcile(api, ref)
    result = wait_ready(api, ref, requested, timeout=timeout(), interval=60)
    assert result.ok, result.message
    assert result.elapsed < 30, f"{result.elapsed:.1f}s: the wait slept a poll interval"
    handled = get(cluster, ref.kind, app.name, "flux-system")["status"]
    assert handled["lastHandledReconcileAt"] == requested


# -- tasks pinned to a context: the read-only path ---------------------------------------------


def test_pinned_commands_read_through_the_proxy_and_writes_are_refused(
    cluster: Stack,
    pytester: pytest.Pytester,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes spelled past the text checks still stop at the API boundary."""
    config = cluster.write_kubeconfig(tmp_path / "config", relative=True)
    monkeypatch.setenv("KUBECONFIG", str(config))
    ns = namespace(cluster, unique("config"))
    cluster.apply(deployment("web", ns, "registry.invalid/web:1.0", replicas=2))
    scale = (
        f"python3 -c 'from kubernetes import client, config; config.load_kube_config(); "
        f'client.AppsV1Api().patch_namespaced_deployment_scale("web", "{ns}", '
        f'{{"spec": {{"replicas": 5}}}})\''
    )
    meta = {
        "id": "TASK-030",
        "title": "Inspect web",
        # a type without the no-direct-apply text check (a configuration task's would
        # refuse `$k scale` before it ran): the API boundary alone must stop the writes
        "labels": ["inspection"],
        "kube_context": ADMIN_CONTEXT,
    }
    task = write_task(
        pytester.path / "TASK-030.md",
        meta,
        [
            (
                "Replicas read",
                [
                    f"kubectl get deployment web -n {ns} -o jsonpath='{{.spec.replicas}}'"
                    " > replicas.txt"
                ],
            ),
            ("Scaled by a variable", [f"k=kubectl\n$k -n {ns} scale deployment web --replicas=5"]),
            ("Scaled from Python", [scale]),
        ],
    )
    r = run("TASK-030.md")
    assert (pytester.path / "replicas.txt").read_text() == "2"
    assert box(task, "Replicas read") == "x"
    assert box(task, "Scaled by a variable") == " "
    assert r.result.ret == 1
    assert "Forbidden" in r.out or "forbidden" in r.out
    web = get(cluster, "deployment", "web", ns)
    assert web["spec"]["replicas"] == 2 and web["metadata"]["generation"] == 1


# -- an OCI source from docker-registry --------------------------------------------------


def push_manifests(cluster: Stack, base: Path, repository: str, tag: str, manifest: str) -> None:
    """buildah a FROM-scratch image whose one layer holds ``web.yaml``, push it."""
    from registry_support import _buildah_env, _require, _run_buildah

    binary = _require("buildah", "buildah")
    flags, env = _buildah_env(base / "buildah")
    context = base / "context"
    context.mkdir(parents=True)
    (context / "web.yaml").write_text(manifest)
    (context / "Containerfile").write_text("FROM scratch\nCOPY web.yaml /web.yaml\n")
    policy = str(base / "buildah" / "policy.json")
    local = f"localhost/{repository}:{tag}"
    _run_buildah(
        [
            binary,
            *flags,
            "bud",
            "--isolation",
            "chroot",
            "--signature-policy",
            policy,
            "-f",
            str(context / "Containerfile"),
            "-t",
            local,
            str(context),
        ],
        env,
    )
    _run_buildah(
        [
            binary,
            *flags,
            "push",
            "--tls-verify=false",
            "--signature-policy",
            policy,
            local,
            f"docker://{cluster.registry.hostport}/{repository}:{tag}",
        ],
        env,
    )


def test_an_oci_source_in_the_registry_is_verified_ready_and_rolled_out(
    cluster: Stack,
    kubeconfig: Path,
    pytester: pytest.Pytester,
    run: Any,
    tmp_path: Path,
) -> None:
    if cluster.registry is None:
        pytest.skip("docker-registry not installed (apt-get install docker-registry)")
    name = unique("oci")
    ns = namespace(cluster, name)
    push_manifests(cluster, tmp_path, f"manifests/{name}", "v1", web_manifest(name, "3.0"))
    cluster.apply(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": name, "namespace": "flux-system"},
            "spec": {
                "url": f"oci://{cluster.registry.hostport}/manifests/{name}",
                "ref": {"tag": "v1"},
                "insecure": True,
                "interval": "1h",
                "layerSelector": {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "operation": "extract",
                },
            },
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": "flux-system"},
            "spec": {
                "interval": "1h",
                "path": "./",
                "prune": True,
                "wait": True,
                "timeout": "2m",
                "targetNamespace": ns,
                "sourceRef": {"kind": "OCIRepository", "name": name},
            },
        },
    )
    checks = [
        {"flux": f"ocirepository/flux-system/{name}"},
        {"flux": f"kustomization/flux-system/{name}"},
        {"rollout": f"deployment/{ns}/web"},
    ]
    task = write_task(
        pytester.path / "TASK-010.md",
        verify_meta(checks, wait=timeout()),
        [("Web from the OCI source is live", ["echo checking"])],
    )
    r = run("TASK-010.md")
    r.result.assert_outcomes(passed=2)
    assert box(task, "Web from the OCI source is live") == "x"
    seen = {c["check"]: c for c in r.contract("TASK-010")["health_checks"]}
    assert "Ready=True" in seen[f"ready ocirepository/flux-system/{name}"]["message"]
    image = get(cluster, "deployment", "web", ns)["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "registry.invalid/web:3.0"
