"""Handlers end to end: real task files run by pytest against real back ends.

Build tasks push with buildah to Debian's docker-registry (anonymous, Basic and a
Bearer-token front); deployment and verification tasks talk to the in-memory API
server of ``kubeapi.py`` through the real ``kubernetes`` client and a real
kubeconfig; configuration tasks render with the packaged kubectl. Each test states
what the inner run reported (outcome, failure text, JUnit, the JSON contract), what
the task file became, and what the back end saw.
"""

from __future__ import annotations

import json
import secrets
import shlex
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import pytest
from helpers import HELMRELEASE, QUIET, Ran, git, opt_in
from helpers import meta_task as write_task
from kubeapi import REQUESTED_AT, KubeAPIServer, KubeContext, kube_api, write_kubeconfig
from registry_support import RunningRegistry, TokenFront, _buildah_env, buildah_push

pytest_plugins = ["registry_support"]

# ``kube_api`` is imported for pytest to find (as in test_cluster.py); the kubernetes client
# is imported up front so in-process inner runs do not import it afresh every time.
__all__ = ["kube_api", "kubernetes"]

# Plugins the inner sessions do not need; they only cost time.
HR_PATH = "/apis/helm.toolkit.fluxcd.io/v2/namespaces/prod/helmreleases/api"


# -- task files and runs -----------------------------------------------------------


def ini(folder: Path, *settings: str) -> None:
    (folder / "pytest.ini").write_text(
        "[pytest]\ninfratask_retry_delay = 0\n" + "\n".join(settings) + "\n"
    )


@dataclass
class Run(Ran):
    junit: Path
    elapsed: float

    def junit_failures(self) -> list[ET.Element]:
        return [
            f
            for case in ET.parse(self.junit).getroot().iter("testcase")
            for f in case.findall("failure")
        ]

    def text_of_everything(self, task_file: Path) -> str:
        """Every output a run leaves: terminal, JSON contracts, JUnit and the task file."""
        contracts = "".join(p.read_text() for p in sorted(self.reports.glob("*.json")))
        return "\n".join(
            [
                self.out,
                self.result.stderr.str(),
                contracts,
                self.junit.read_text(),
                task_file.read_text(),
            ]
        )


@pytest.fixture
def run(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """pytest in-process in the pytester directory; reports live outside it (and its git)."""

    def runner(*args: str) -> Run:
        out = tmp_path_factory.mktemp("reports")
        reports, junit = out / "tasks", out / "junit.xml"
        start = time.monotonic()
        result = pytester.runpytest(
            *QUIET,
            f"--infratask-report-dir={reports}",
            f"--junitxml={junit}",
            *opt_in(pytester.path, *args),
        )
        return Run(result, reports, junit, time.monotonic() - start)

    return runner


def box(task_file: Path, text: str) -> str:
    """The checkbox character of the criterion ``text`` in the file as it is now."""
    [line] = [ln for ln in task_file.read_text().splitlines() if ln.endswith(f"] {text}")]
    return line.split("[", 1)[1][0]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- build tasks -----------------------------------------------------------------------


def build_meta(registry: str, version: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "TASK-001",
        "title": "Build api",
        "labels": ["builds", "registry"],
        "registry": registry,
        "version": version,
        "images": ["api"],
        **extra,
    }


def unique_version() -> str:
    """The session's registries are shared: each test pushes a tag of its own."""
    return f"0.1.18-{secrets.token_hex(4)}"


@pytest.fixture
def buildah(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """buildah configured through the environment, off system state; returns its base."""
    base = tmp_path / "buildah"
    flags, env = _buildah_env(base)
    for key, value in env.items():
        if key not in ("PATH", "HOME"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("BUILDAH_FLAGS", shlex.join(flags))
    monkeypatch.setenv("SIGNATURE_POLICY", str(base / "policy.json"))
    return base


BUILD_AND_PUSH = """\
mkdir -p ctx
echo "api $VERSION" > ctx/payload.txt
printf 'FROM scratch\\nCOPY payload.txt /payload.txt\\n' > ctx/Containerfile
buildah $BUILDAH_FLAGS bud --quiet --isolation chroot --signature-policy "$SIGNATURE_POLICY" \\
  -t "$REGISTRY_URL/api:$VERSION" ctx
buildah $BUILDAH_FLAGS push --quiet --tls-verify=false --signature-policy "$SIGNATURE_POLICY" \\
  --digestfile digest.txt {creds} "$REGISTRY_URL/api:$VERSION"
echo "pushed $REGISTRY_URL/api:$VERSION"
"""


def test_build_push_is_verified_and_its_digest_reported(
    pytester: pytest.Pytester,
    run: Any,
    registry: RunningRegistry,
    buildah: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The environment names another registry and version: the frontmatter wins, and the
    # commands see what the handler exported.
    monkeypatch.setenv("REGISTRY_URL", "elsewhere.invalid:5000")
    monkeypatch.setenv("VERSION", "0.0.0")
    version = unique_version()
    ini(pytester.path, f"infratask_writable = {buildah}")  # buildah's storage
    task = write_task(
        pytester.path / "TASK-001.md",
        build_meta(registry.hostport, version),
        [
            ("Exported settings recorded", ['echo "$REGISTRY_URL $VERSION" > exported.txt']),
            ("Image built and pushed", [BUILD_AND_PUSH.format(creds="")]),
        ],
    )
    r = run()
    r.result.assert_outcomes(passed=3)
    assert (pytester.path / "exported.txt").read_text() == f"{registry.hostport} {version}\n"
    pushed = (pytester.path / "digest.txt").read_text().strip()
    assert pushed.startswith("sha256:")
    assert box(task, "Image built and pushed") == "x"
    contract = r.contract("TASK-001")
    assert contract["task_type"] == "build"
    assert contract["images"] == [
        {"name": "api", "tag": version, "registry": registry.hostport, "digest": pushed}
    ]
    assert contract["status"] == "ready_for_verification"
    assert contract["success"] is True
    assert {
        "check": "registry",
        "ok": True,
        "message": f"1 image(s) in {registry.hostport}",
    } in contract["verification"]


def test_push_without_the_image_fails_naming_image_and_registry(
    pytester: pytest.Pytester,
    run: Any,
    registry: RunningRegistry,
) -> None:
    version = unique_version()
    ini(pytester.path)
    task = write_task(
        pytester.path / "TASK-001.md",
        build_meta(registry.hostport, version),
        [
            ("Images pushed", ['echo "docker push $REGISTRY_URL/api:$VERSION (pretend)"']),
        ],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    wanted = f"image api:{version} not found in registry {registry.hostport}"
    assert wanted in r.out
    assert "post-condition failed" in r.out
    assert box(task, "Images pushed") == " "
    contract = r.contract("TASK-001")
    assert contract["status"] == "partially_complete"
    assert contract["success"] is False
    assert wanted in contract["message"]
    assert "images" not in contract
    [failure] = r.junit_failures()
    assert wanted in failure.get("message", "") + (failure.text or "")


def test_auth_registry_with_env_credentials_never_shows_the_password(
    pytester: pytest.Pytester,
    run: Any,
    auth_registry: RunningRegistry,
    buildah: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert auth_registry.username and auth_registry.password
    monkeypatch.setenv("REGISTRY_USERNAME", auth_registry.username)
    monkeypatch.setenv("REGISTRY_PASSWORD", auth_registry.password)
    version = unique_version()
    ini(pytester.path, f"infratask_writable = {buildah}")  # buildah's storage
    push = BUILD_AND_PUSH.format(creds='--creds "$REGISTRY_USERNAME:$REGISTRY_PASSWORD"')
    # The last line printed carries the password: it must be masked in the report's output.
    push += 'echo "logged in as $REGISTRY_USERNAME with $REGISTRY_PASSWORD"\n'
    task = write_task(
        pytester.path / "TASK-001.md",
        build_meta(auth_registry.hostport, version),
        [("Image pushed with credentials", [push])],
    )
    r = run()
    r.result.assert_outcomes(passed=2)
    pushed = (pytester.path / "digest.txt").read_text().strip()
    contract = r.contract("TASK-001")
    assert [i["digest"] for i in contract["images"]] == [pushed]
    assert "with ***" in contract["completed_criteria"][0]["output"]
    assert auth_registry.password not in r.text_of_everything(task)


def test_wrong_password_fails_with_authentication_failed_and_no_password(
    pytester: pytest.Pytester,
    run: Any,
    auth_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert auth_registry.creds is not None and auth_registry.password is not None
    version = unique_version()
    buildah_push(tmp_path, auth_registry.hostport, "api", version, creds=auth_registry.creds)
    wrong = "not-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("REGISTRY_USERNAME", auth_registry.username or "")
    monkeypatch.setenv("REGISTRY_PASSWORD", wrong)
    ini(pytester.path)
    task = write_task(
        pytester.path / "TASK-001.md",
        build_meta(auth_registry.hostport, version),
        [("Image pushed", ['echo "push done by the release pipeline"'])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    assert f"authentication failed for registry {auth_registry.hostport}" in r.out
    assert "authentication failed" in r.contract("TASK-001")["message"]
    assert box(task, "Image pushed") == " "
    everything = r.text_of_everything(task)
    assert wrong not in everything
    assert auth_registry.password not in everything


def test_bearer_registry_verifies_through_a_token(
    pytester: pytest.Pytester,
    run: Any,
    registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front = TokenFront(backend=registry)
    bearer = front.start()
    try:
        version = unique_version()
        pushed = buildah_push(tmp_path, registry.hostport, "api", version)
        monkeypatch.setenv("REGISTRY_USERNAME", front.username)
        monkeypatch.setenv("REGISTRY_PASSWORD", front.password)
        ini(pytester.path)
        task = write_task(
            pytester.path / "TASK-001.md",
            build_meta(bearer.hostport, version),
            [("Image pushed", ['echo "push done by the release pipeline"'])],
        )
        r = run()
        r.result.assert_outcomes(passed=2)
        assert r.contract("TASK-001")["images"] == [
            {"name": "api", "tag": version, "registry": bearer.hostport, "digest": pushed}
        ]
        assert {"scope": "repository:api:pull", "service": "test"} in front.token_requests
        assert front.password not in r.text_of_everything(task)
    finally:
        front.stop()


def test_images_without_a_registry_fail_instead_of_passing_unchecked(
    pytester: pytest.Pytester,
    run: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REGISTRY_URL", raising=False)
    meta = build_meta("unused", unique_version())
    del meta["registry"]
    ini(pytester.path)
    task = write_task(
        pytester.path / "TASK-001.md",
        meta,
        [("Images pushed", ['echo "docker push api (pretend)"'])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    assert "registry" in r.contract("TASK-001")["message"]
    assert box(task, "Images pushed") == " "


# -- deployment tasks ----------------------------------------------------------------

BUMP_CHART = "infratask set apps/api/helmrelease.yaml spec.chart.spec.version 0.1.18"
BUMP_TAG = "infratask set apps/api/helmrelease.yaml spec.values.image.tag 0.1.18"


def deploy_meta(task_id: str = "TASK-002", **extra: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "title": "Deploy api 0.1.18",
        "labels": ["deployment", "flux"],
        "kube_context": "dev",
        "reconcile": ["helmrelease/prod/api"],
        "wait": 5,
        "poll_interval": 0.05,
        **extra,
    }


@pytest.fixture
def kubeconfig(
    kube_api: KubeAPIServer,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    path = kube_api.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config", context="dev")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def gitops(pytester: pytest.Pytester) -> Path:
    """The pytester directory as a GitOps checkout: ini and the HelmRelease (not in git)."""
    ini(pytester.path)
    (pytester.path / "apps" / "api").mkdir(parents=True)
    (pytester.path / "apps" / "api" / "helmrelease.yaml").write_text(HELMRELEASE)
    return pytester.path


def reconcile_patches(api: KubeAPIServer) -> list[Any]:
    return [r for r in api.patches() if r.path == HR_PATH]


def test_helmrelease_edit_requests_a_reconcile_and_passes_when_ready(
    gitops: Path,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
) -> None:
    """Outside git there is no revision to wait for: the objects must be Ready, and the
    contract says the revision was not checked."""
    kube_api.add_helmrelease("api", "prod", chart="api", version="0.1.17", delay=2)
    kube_api.add_source("GitRepository", "flux-system")
    kube_api.add_kustomization("apps", "flux-system", path="./apps")
    meta = deploy_meta(reconcile=["helmrelease/prod/api", "kustomization/apps"])
    task = write_task(gitops / "TASK-002.md", meta, [("Chart bumped to 0.1.18", [BUMP_CHART])])
    r = run()
    r.result.assert_outcomes(passed=2)
    assert 'version: "0.1.18"' in (gitops / "apps/api/helmrelease.yaml").read_text()
    assert box(task, "Chart bumped to 0.1.18") == "x"
    assert [p.path for p in kube_api.patches()] == [
        HR_PATH,
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/flux-system",
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/apps",
    ]
    [patch] = reconcile_patches(kube_api)
    assert patch.headers["content-type"].startswith("application/merge-patch+json")
    requested = patch.body["metadata"]["annotations"][REQUESTED_AT]
    assert set(patch.body) == {"metadata"}, "a reconcile request changes only the annotation"
    hr = kube_api.get("HelmRelease", "prod", "api")
    assert hr["status"]["lastHandledReconcileAt"] == requested
    reconciled, kustomization = r.contract("TASK-002")["reconciled"]
    assert reconciled["object"] == "helmrelease/prod/api"
    assert reconciled["requested_at"] == requested
    assert reconciled["ok"] is True
    assert "Ready=True" in reconciled["message"]
    assert (
        "revision not checked: the task's directory is not in a git repository"
        in (reconciled["message"])
    )
    assert reconciled["revision"] is None
    assert kustomization["object"] == "kustomization/flux-system/apps"
    assert kustomization["ok"] is True


def test_never_ready_times_out_showing_the_last_condition(
    gitops: Path,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
) -> None:
    kube_api.add_helmrelease(
        "api", "prod", chart="api", never_ready=True, progress_message="Running 'upgrade' action"
    )
    task = write_task(
        gitops / "TASK-002.md", deploy_meta(wait=1), [("Chart bumped to 0.1.18", [BUMP_CHART])]
    )
    r = run()
    r.result.assert_outcomes(passed=1, failed=1)
    message = r.contract("TASK-002")["message"]
    assert "timed out after 1s waiting for helmrelease/prod/api" in message
    assert "last condition Ready=Unknown Progressing: Running 'upgrade' action" in message
    assert "last condition Ready=Unknown Progressing" in r.out
    # The edit was made (its box is ticked); the deployment is what failed.
    assert box(task, "Chart bumped to 0.1.18") == "x"
    assert "Verification failed" in task.read_text()


@pytest.mark.parametrize(
    ("behaviour", "expected", "requests"),
    [
        ({"fail": ("InstallFailed", "chart pull error")}, "InstallFailed: chart pull error", 1),
        ({"suspended": True}, "resource is suspended", 0),  # nothing asked of a suspended one
    ],
)
def test_terminal_reconcile_failures_end_the_wait_at_once(
    gitops: Path,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
    behaviour: dict[str, Any],
    expected: str,
    requests: int,
) -> None:
    kube_api.add_helmrelease("api", "prod", chart="api", **behaviour)
    write_task(
        gitops / "TASK-002.md", deploy_meta(wait=60), [("Chart bumped to 0.1.18", [BUMP_CHART])]
    )
    r = run()
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    assert f"helmrelease/prod/api: {expected}" in r.out
    assert expected in r.contract("TASK-002")["message"]
    assert r.contract("TASK-002")["success"] is False
    [failure] = r.junit_failures()
    assert expected in failure.get("message", "")
    assert len(reconcile_patches(kube_api)) == requests
    assert r.elapsed < 30, f"waited {r.elapsed:.1f}s for a failure that cannot clear"


def test_unreachable_api_server_blocks_naming_server_and_context(
    gitops: Path,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = closed_port_url()
    config = write_kubeconfig(tmp_path / "config", {"dev": KubeContext(server)}, "dev")
    monkeypatch.setenv("KUBECONFIG", str(config))
    runs = gitops / "runs.log"
    write_task(
        gitops / "TASK-002.md",
        deploy_meta(wait=60, retries=2),
        [
            ("Chart bumped to 0.1.18", [f"echo ran >> {runs}\n{BUMP_CHART}"]),
            ("Release noted", ["echo noted > notes.txt"]),
        ],
    )
    r = run()
    r.result.assert_outcomes(passed=2, failed=1)
    assert runs.read_text() == "ran\n", "the command was retried"
    assert r.elapsed < 30, f"waited {r.elapsed:.1f}s on a server that is not there"
    assert f"BLOCKED: cannot reach Kubernetes API server {server} (context 'dev')" in r.out
    contract = r.contract("TASK-002")
    assert contract["success"] is False
    assert contract["error"] == "Verification blocked"
    assert contract["message"].startswith("BLOCKED:")
    assert server in contract["message"] and "'dev'" in contract["message"]
    [failure] = r.junit_failures()
    junit_text = failure.get("message", "") + (failure.text or "")
    assert f"BLOCKED: cannot reach Kubernetes API server {server}" in junit_text


def test_unreachable_api_server_junit_message_starts_with_blocked(
    gitops: Path,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = closed_port_url()
    config = write_kubeconfig(tmp_path / "config", {"dev": KubeContext(server)}, "dev")
    monkeypatch.setenv("KUBECONFIG", str(config))
    write_task(
        gitops / "TASK-002.md", deploy_meta(wait=60), [("Chart bumped to 0.1.18", [BUMP_CHART])]
    )
    r = run()
    [failure] = r.junit_failures()
    assert failure.get("message", "").startswith("BLOCKED:"), failure.get("message")


def test_missing_pinned_context_blocks_before_anything_runs_and_sends_nothing(
    gitops: Path,
    run: Any,
    kube_api: KubeAPIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube_api.add_helmrelease("api", "prod", chart="api")
    config = write_kubeconfig(tmp_path / "config", {"prod": kube_api}, "prod")
    monkeypatch.setenv("KUBECONFIG", str(config))
    marker = gitops / "marker"
    task = write_task(
        gitops / "TASK-002.md",
        deploy_meta(),
        [("Chart bumped to 0.1.18", [f"touch {marker}\n{BUMP_CHART}"])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    assert not marker.exists(), "a command ran under the wrong context"
    assert (
        "BLOCKED: kube context: the task pins kube context 'dev', which the kubeconfig "
        "does not have (it has 'prod')"
    ) in r.out
    assert kube_api.requests == []
    assert 'version: "0.1.17"' in (gitops / "apps/api/helmrelease.yaml").read_text()
    assert r.contract("TASK-002")["status"] == "blocked"
    assert box(task, "Chart bumped to 0.1.18") == " "


@pytest.mark.parametrize("option", ["--infratask-dry-run", "--infratask-skip-verification"])
def test_dry_run_and_skip_verification_send_no_request(
    gitops: Path,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
    option: str,
) -> None:
    kube_api.add_helmrelease("api", "prod", chart="api")
    write_task(
        gitops / "TASK-002.md",
        deploy_meta(),
        [("Chart bumped to 0.1.18", [f"echo ran > ran.txt\n{BUMP_CHART}"])],
    )
    r = run(option)
    if option == "--infratask-dry-run":
        r.result.assert_outcomes(skipped=2)
    else:
        r.result.assert_outcomes(passed=1, skipped=1)
    assert kube_api.requests == []
    ran = (gitops / "ran.txt").exists()
    assert ran is (option == "--infratask-skip-verification")
    assert "reconciled" not in r.contract("TASK-002")


class GitOpsAPI(KubeAPIServer):
    """Records the origin's head at every PATCH; its Flux reads the origin."""

    def __init__(self, origin: Path) -> None:
        super().__init__()
        self.origin = origin
        self.origin_at_patch: list[str] = []

    def _patch(self, key: Any, content_type: str, body: Any) -> Any:
        self.origin_at_patch.append(git(self.origin, "log", "-1", "--format=%s").strip())
        return super()._patch(key, content_type, body)


@pytest.fixture
def repo(
    gitops: Path,
    git_identity: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, GitOpsAPI]]:
    """``gitops`` as a git repository on main with a bare origin, and Flux reading it."""
    origin = tmp_path_factory.mktemp("origin") / "origin.git"
    git(gitops, "init", "-q", "-b", "main")
    git(gitops, "config", "commit.gpgsign", "false")
    git(gitops.parent, "init", "-q", "--bare", "-b", "main", str(origin))
    git(gitops, "remote", "add", "origin", str(origin))
    with GitOpsAPI(origin) as api:
        api.add_source("GitRepository", "flux-system", url=str(origin))
        api.add_kustomization("apps", path="./apps")
        api.add_helmrelease(
            "api", "prod", chart="api", version="0.1.17", managed_by="flux-system/apps"
        )
        config = api.write_kubeconfig(gitops.parent / f"{gitops.name}-kubeconfig", "dev")
        monkeypatch.setenv("KUBECONFIG", str(config))
        yield gitops, api


def commit_all(repo: Path) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "GitOps repository")
    git(repo, "push", "-q", "-u", "origin", "main")


def test_commit_mode_reconciles_once_after_the_push(
    repo: tuple[Path, GitOpsAPI],
    run: Any,
) -> None:
    path, api = repo
    write_task(
        path / "TASK-002.md",
        deploy_meta(),
        [
            ("Chart bumped to 0.1.18", [BUMP_CHART]),
            ("Image tag bumped to 0.1.18", [BUMP_TAG]),
        ],
    )
    commit_all(path)
    r = run("--infratask-commit", "--infratask-push")
    r.result.assert_outcomes(passed=3)
    log = git(path, "log", "--format=%s").splitlines()
    assert log == ["TASK-002: Deploy api 0.1.18", "GitOps repository"]
    assert api.origin_at_patch == ["TASK-002: Deploy api 0.1.18"] * 3, "reconcile before push"
    assert len(reconcile_patches(api)) == 1
    contract = r.contract("TASK-002")
    assert contract["status"] == "committed"
    [reconciled] = contract["reconciled"]
    assert reconciled["ok"] is True
    assert reconciled["chart_version"] == "0.1.18"
    history = api.get("HelmRelease", "prod", "api")["status"]["history"]
    assert history[0]["chartVersion"] == "0.1.18"


def test_without_commit_mode_the_deployment_is_not_claimed(
    repo: tuple[Path, GitOpsAPI],
    run: Any,
) -> None:
    """Flux reconciles what the remote has: a staged edit is not a deployment."""
    path, api = repo
    bump_interval = "infratask set apps/api/helmrelease.yaml spec.interval 10m"
    write_task(
        path / "TASK-002.md",
        deploy_meta(),
        [
            ("Image tag bumped to 0.1.18", [BUMP_TAG]),
            ("Interval relaxed", [bump_interval]),
        ],
    )
    commit_all(path)
    r = run()
    r.result.assert_outcomes(passed=2, failed=1)
    assert git(path, "log", "--format=%s").splitlines() == ["GitOps repository"]
    assert api.patches() == []
    contract = r.contract("TASK-002")
    assert contract["status"] == "ready_for_verification"
    assert contract["success"] is False
    assert "changes are not committed" in contract["message"]
    staged = git(path, "diff", "--cached", "--name-only").split()
    assert staged == ["TASK-002.md", "apps/api/helmrelease.yaml"]


def test_bad_reconcile_entry_fails_the_task_with_a_message(
    gitops: Path,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
) -> None:
    kube_api.add_helmrelease("api", "prod", chart="api")
    meta = deploy_meta(reconcile=["helmrelease/prod/api", "deployment/prod/api"])
    task = write_task(gitops / "TASK-002.md", meta, [("Chart bumped to 0.1.18", [BUMP_CHART])])
    r = run()
    r.result.assert_outcomes(passed=1, failed=1)
    contract = r.contract("TASK-002")
    assert contract["success"] is False
    assert "deployment/prod/api is not a Flux object" in contract["message"]
    assert "Verification failed" in task.read_text()


def test_bad_reconcile_entry_in_commit_mode_still_reports(
    repo: tuple[Path, GitOpsAPI],
    run: Any,
) -> None:
    path, _ = repo
    write_task(
        path / "TASK-002.md",
        deploy_meta(reconcile=["helmrelese/prod/api"]),
        [("Chart bumped to 0.1.18", [BUMP_CHART])],
    )
    commit_all(path)
    r = run("--infratask-commit")
    r.result.assert_outcomes(passed=1, failed=1)
    contract = r.contract("TASK-002")
    assert contract["success"] is False
    assert "helmrelese" in json.dumps(contract["verification"])


# -- configuration tasks -----------------------------------------------------------

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: web
          image: registry.example.com/web:1.4.2
          securityContext:
            allowPrivilegeEscalation: false
            privileged: false
          resources:
            limits:
              cpu: 500m
              memory: 256Mi
"""
PRIVILEGED = (
    "infratask set apps/web/deployment.yaml "
    "spec.template.spec.containers.0.securityContext.privileged true"
)
LATEST = (
    "infratask set apps/web/deployment.yaml "
    "spec.template.spec.containers.0.image registry.example.com/web:latest"
)


@pytest.fixture
def manifests(pytester: pytest.Pytester) -> Path:
    ini(pytester.path)
    web = pytester.path / "apps" / "web"
    web.mkdir(parents=True)
    (web / "kustomization.yaml").write_text(KUSTOMIZATION)
    (web / "deployment.yaml").write_text(DEPLOYMENT)
    return pytester.path


def config_meta(**extra: Any) -> dict[str, Any]:
    return {
        "id": "TASK-003",
        "title": "Web hardening",
        "labels": ["infrastructure"],
        "validate": ["apps/web"],
        **extra,
    }


def test_privileged_container_fails_with_the_rule_and_is_reported(
    manifests: Path,
    run: Any,
) -> None:
    task = write_task(
        manifests / "TASK-003.md",
        config_meta(),
        [
            ("Replicas raised", ["infratask set apps/web/deployment.yaml spec.replicas 2"]),
            ("Web runs privileged", [PRIVILEGED]),
        ],
    )
    r = run()
    r.result.assert_outcomes(passed=1, failed=1, skipped=1)
    assert "security rule privileged-container (high) on Deployment/shop/web" in r.out
    assert box(task, "Replicas raised") == "x"
    assert box(task, "Web runs privileged") == " "
    contract = r.contract("TASK-003")
    assert contract["success"] is False
    assert "privileged-container" in contract["message"]
    [finding] = [f for f in contract["security_findings"] if f["rule_id"] == "privileged-container"]
    assert finding["severity"] == "high"
    assert (finding["kind"], finding["namespace"], finding["name"]) == ("Deployment", "shop", "web")
    assert finding["file"] == "apps/web"
    assert {f["rule_id"] for f in contract["security_findings"]} == {"privileged-container"}


def test_medium_finding_is_reported_without_failing(manifests: Path, run: Any) -> None:
    task = write_task(manifests / "TASK-003.md", config_meta(), [("Web follows latest", [LATEST])])
    r = run()
    r.result.assert_outcomes(passed=2)
    assert box(task, "Web follows latest") == "x"
    contract = r.contract("TASK-003")
    assert contract["success"] is True
    [finding] = contract["security_findings"]
    assert (finding["rule_id"], finding["severity"]) == ("image-tag", "medium")
    assert (finding["kind"], finding["namespace"], finding["name"]) == ("Deployment", "shop", "web")
    assert (
        "1 security finding(s) below high severity reported"
        in (contract["completed_criteria"][0]["notes"])
    )


def test_security_skip_lets_the_rule_pass(manifests: Path, run: Any) -> None:
    task = write_task(
        manifests / "TASK-003.md",
        config_meta(security={"skip": ["privileged-container"]}),
        [("Web runs privileged", [PRIVILEGED])],
    )
    r = run()
    r.result.assert_outcomes(passed=2)
    assert box(task, "Web runs privileged") == "x"
    contract = r.contract("TASK-003")
    assert contract["security_findings"] == []
    assert "privileged: true" in (manifests / "apps/web/deployment.yaml").read_text()


def test_a_conftest_security_rule_runs_after_the_builtin_rules(
    manifests: Path,
    run: Any,
    pytester: pytest.Pytester,
) -> None:
    """Built-in rules and a team's come from one hook call, the built-in ones first;
    ``security.skip`` names a team rule as it names a built-in one."""
    pytester.makeconftest("""
        from pytest_infratask import Rule


        def owner(obj):
            labels = (obj.get("metadata") or {}).get("labels") or {}
            return [] if "team" in labels else ["no team label"]


        def pytest_infratask_security_rules(task, config):
            return [Rule("team-label", "medium", "objects name their team", owner)]
    """)
    write_task(manifests / "TASK-003.md", config_meta(), [("Web follows latest", [LATEST])])
    r = run()
    r.result.assert_outcomes(passed=2)
    found = r.contract("TASK-003")["security_findings"]
    assert [f["rule_id"] for f in found] == ["image-tag", "team-label"]
    write_task(
        manifests / "TASK-003.md",
        config_meta(security={"skip": ["team-label"]}),
        [("Replicas raised", ["infratask set apps/web/deployment.yaml spec.replicas 3"])],
    )
    r = run()
    r.result.assert_outcomes(passed=2)
    assert [f["rule_id"] for f in r.contract("TASK-003")["security_findings"]] == ["image-tag"]


def test_broken_kustomization_fails_with_kustomize_naming_the_file(
    manifests: Path,
    run: Any,
) -> None:
    task = write_task(
        manifests / "TASK-003.md",
        config_meta(),
        [
            (
                "Config map added",
                ["echo '  - missing-configmap.yaml' >> apps/web/kustomization.yaml"],
            ),
        ],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    assert "kustomize build apps/web failed" in r.out
    assert "missing-configmap.yaml" in r.contract("TASK-003")["message"]
    assert box(task, "Config map added") == " "


def test_security_skip_accepts_a_single_rule_id_string(manifests: Path, run: Any) -> None:
    write_task(
        manifests / "TASK-003.md",
        config_meta(security={"skip": "privileged-container"}),
        [("Web runs privileged", [PRIVILEGED])],
    )
    run().result.assert_outcomes(passed=2)


# -- verification tasks ------------------------------------------------------------


class StatusServer:
    """A local HTTP endpoint answering every GET with ``status``."""

    def __init__(self) -> None:
        self.status = 200
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"ok" if owner.status < 400 else b"unavailable"
                self.send_response(owner.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/healthz"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def endpoint() -> Iterator[StatusServer]:
    server = StatusServer()
    try:
        yield server
    finally:
        server.stop()


def verify_meta(checks: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "TASK-004",
        "title": "Verify api",
        "labels": ["verification"],
        "kube_context": "dev",
        "wait": 1,
        "poll_interval": 0.05,
        "checks": checks,
        **extra,
    }


@pytest.fixture
def healthy(kube_api: KubeAPIServer) -> KubeAPIServer:
    kube_api.add_helmrelease("api", "prod", chart="api")
    kube_api.add_workload("Deployment", "api", "prod", replicas=2, labels={"app": "api"})
    for i in range(2):
        kube_api.add_pod(f"api-{i}", "prod", labels={"app": "api"})
    return kube_api


def test_all_checks_healthy_pass_and_are_reported(
    pytester: pytest.Pytester,
    run: Any,
    healthy: KubeAPIServer,
    kubeconfig: Path,
    endpoint: StatusServer,
) -> None:
    ini(pytester.path)
    checks = [
        {"rollout": "deployment/prod/api"},
        {"flux": "helmrelease/prod/api"},
        {"pods": {"namespace": "prod", "selector": "app=api"}},
        {"http": endpoint.url, "status": 200},
    ]
    task = write_task(
        pytester.path / "TASK-004.md", verify_meta(checks), [("Release looked at", ["echo looked"])]
    )
    r = run()
    r.result.assert_outcomes(passed=2)
    assert box(task, "Release looked at") == "x"
    health = r.contract("TASK-004")["health_checks"]
    assert [(h["check"], h["ok"]) for h in health] == [
        ("rollout deployment/prod/api", True),
        ("ready helmrelease/prod/api", True),
        ("pods prod/app=api", True),
        (f"http {endpoint.url}", True),
    ]
    messages = " | ".join(h["message"] for h in health)
    assert "2/2 ready" in messages and "2/2 pods ready" in messages
    assert "-> 200 (expected 200)" in messages
    paths = {req.path for req in healthy.requests}
    assert "/apis/apps/v1/namespaces/prod/deployments" in paths  # listed by name, watched
    assert "/api/v1/namespaces/prod/pods" in paths


@pytest.mark.parametrize("ready", [2, 1])
def test_a_finished_verification_task_checks_the_state_again(
    pytester: pytest.Pytester,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
    ready: int,
) -> None:
    """Every box ticked earlier: no command runs, but the checks still do."""
    kube_api.add_workload("Deployment", "api", "prod", replicas=2, ready=ready)
    ini(pytester.path)
    task = write_task(
        pytester.path / "TASK-004.md",
        verify_meta([{"rollout": "deployment/prod/api"}]),
        [("Release looked at", ["echo looked"])],
        box="x",
    )
    before = task.read_text()
    r = run()
    if ready == 2:
        r.result.assert_outcomes(passed=1, skipped=1)
        [check] = r.contract("TASK-004")["health_checks"]
        assert check["ok"] is True
    else:
        r.result.assert_outcomes(failed=1, skipped=1)
        assert "1/2 ready" in r.contract("TASK-004")["message"]
        [failure] = r.junit_failures()
        assert "1/2 ready" in failure.get("message", "")
    assert task.read_text() == before


def test_half_ready_deployment_fails_with_what_it_last_saw(
    pytester: pytest.Pytester,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
) -> None:
    kube_api.add_workload("Deployment", "api", "prod", replicas=2, ready=1)
    ini(pytester.path)
    task = write_task(
        pytester.path / "TASK-004.md",
        verify_meta([{"rollout": "deployment/prod/api"}]),
        [("Release looked at", ["echo looked"])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    seen = "timed out after 1s: deployment/prod/api: 2/2 updated, 1/2 ready, 1/2 available"
    assert seen in r.out
    [check] = r.contract("TASK-004")["health_checks"]
    assert check["ok"] is False and seen in check["message"]
    assert box(task, "Release looked at") == " "


def test_http_check_against_503_fails(
    pytester: pytest.Pytester,
    run: Any,
    endpoint: StatusServer,
) -> None:
    endpoint.status = 503
    ini(pytester.path)
    task = write_task(
        pytester.path / "TASK-004.md",
        verify_meta([{"http": endpoint.url, "status": 200}]),
        [("Release looked at", ["echo looked"])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    assert f"GET {endpoint.url} -> 503 (expected 200)" in r.out
    [check] = r.contract("TASK-004")["health_checks"]
    assert check["ok"] is False
    assert box(task, "Release looked at") == " "


def test_verification_against_an_unreachable_server_fails_and_holds_the_rest_back(
    pytester: pytest.Pytester,
    run: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The criterion's command ran before its check found the server unreachable, so
    it fails (BLOCKED means nothing ran) and, like a block, holds the rest back."""
    server = closed_port_url()
    config = write_kubeconfig(tmp_path / "config", {"dev": KubeContext(server)}, "dev")
    monkeypatch.setenv("KUBECONFIG", str(config))
    ini(pytester.path)
    write_task(
        pytester.path / "TASK-004.md",
        verify_meta([{"rollout": "deployment/prod/api"}], wait=60),
        [("Release looked at", ["echo looked"])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    assert (
        f"the commands ran, then: cannot reach Kubernetes API server {server} (context 'dev')"
    ) in r.out
    assert r.contract("TASK-004")["status"] == "partially_complete"
    assert r.elapsed < 30, f"polled {r.elapsed:.1f}s a server that is not there"


def test_bad_rollout_check_fails_with_a_message(
    pytester: pytest.Pytester,
    run: Any,
    kube_api: KubeAPIServer,
    kubeconfig: Path,
) -> None:
    kube_api.add_helmrelease("api", "prod", chart="api")
    ini(pytester.path)
    write_task(
        pytester.path / "TASK-004.md",
        verify_meta([{"rollout": "helmrelease/prod/api"}]),
        [("Release looked at", ["echo looked"])],
    )
    r = run()
    r.result.assert_outcomes(failed=1, skipped=1)
    contract = r.contract("TASK-004")
    assert contract["criteria"]["failed"] == 1
    assert "not a workload" in contract["message"]
