"""Cluster guards that hold by construction, proven against the in-repo API server.

Every command gets a private kubeconfig holding only the pinned context; tasks without
``allow_direct_apply`` reach it only through a ``kubectl proxy`` that refuses writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import QUIET, item, task_md
from kubeapi import KubeAPIServer, write_kubeconfig

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
spec:
  containers:
    - name: main
      image: example/web:1
"""
_POST = (
    "import os, yaml, urllib.request as u; "
    "s = yaml.safe_load(open(os.environ['KUBECONFIG']))['clusters'][0]['cluster']['server']; "
    "u.urlopen(u.Request(s + '/api/v1/namespaces/default/pods', data=b'{}', method='POST'))"
)
# Ways to write to a cluster; a text check misses many of them, the proxy none.
SPELLINGS = [
    "kubectl apply -f pod.yaml",
    'kube""ctl apply -f pod.yaml',
    "k=kubectl; $k apply -f pod.yaml",
    "kubectl 'apply' -f pod.yaml",
    'kubectl "apply" -f pod.yaml',
    "kubectl \\\n  apply -f pod.yaml",
    "kubectl \\\n  --namespace default \\\n  apply -f pod.yaml",
    'f() { kubectl "$@"; }\nf apply -f pod.yaml',
    "python3 -c \"import subprocess; subprocess.run(['kubectl', 'apply', '-f', 'pod.yaml'], "
    'check=True)"',
    f'python3 -c "{_POST}"',
    "kubectl apply -f pod.yaml # --dry-run",
    "kubectl apply --dry-run=client -f pod.yaml --dry-run=none",
    'eval "kubectl apply -f pod.yaml"',
    "bash -c 'kubectl apply -f pod.yaml'",
    "echo 'kubectl apply -f pod.yaml' | sh",
    "$(command -v kubectl) apply -f pod.yaml",
    "env kubectl apply -f pod.yaml",
    "command kubectl apply -f pod.yaml",
    "echo pod.yaml | xargs kubectl apply -f",
    'kubectl --kubeconfig "$KUBECONFIG" create -f pod.yaml',
    "kubectl run web --image=example/web:1",
    "kubectl delete pod api",
    "kubectl label pod api team=web",
    "kubectl annotate pod api note=x",
    'kubectl patch pod api -p \'{"metadata": {"labels": {"a": "b"}}}\'',
]


class PlainHTTPServer(KubeAPIServer):
    """kubectl sends no bearer token over plain HTTP, so this test server (HTTP only)
    takes every request as authenticated; what the tests check is where requests go."""

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str], raw: bytes) -> Any:
        return super().handle(
            method, raw_path, {**headers, "authorization": f"Bearer {self.token}"}, raw
        )


@pytest.fixture
def clusters(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, KubeAPIServer]]:
    """Two clusters; the user's kubeconfig has both and ``prod`` is active."""
    with PlainHTTPServer() as dev, PlainHTTPServer() as prod:
        for server in (dev, prod):
            server.add_pod("api")
        path = pytester.path / "home-kube" / "config"
        path.parent.mkdir()
        write_kubeconfig(path, {"dev": dev, "prod": prod}, current_context="prod")
        monkeypatch.setenv("KUBECONFIG", str(path))
        (pytester.path / "pod.yaml").write_text(POD)
        yield {"dev": dev, "prod": prod}


def write_task(root: Path, scripts: list[str], meta: str = "") -> Path:
    criteria = [item(f"Step {i} <!-- independent -->", s) for i, s in enumerate(scripts, 1)]
    path = root / "TASK-001.md"
    path.write_text(task_md(*criteria, meta=f"id: TASK-001\nkube_context: dev\n{meta}"))
    return path


def methods(server: KubeAPIServer) -> set[str]:
    return {r.method for r in server.requests}


@pytest.mark.parametrize("labels", ["[docs]", "[infrastructure]"], ids=["generic", "configuration"])
def test_no_write_spelling_reaches_the_cluster(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer], labels: str
) -> None:
    assert len(SPELLINGS) == 25
    path = write_task(pytester.path, SPELLINGS, meta=f"labels: {labels}")
    result = pytester.runpytest(*QUIET, str(path))
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 25 and "passed" not in outcomes, result.stdout.str()
    assert not methods(clusters["dev"]) & WRITES, [
        (r.method, r.path) for r in clusters["dev"].requests
    ]
    assert clusters["prod"].requests == []
    assert "- [x]" not in path.read_text()


def test_generic_task_writes_fail_at_the_api_boundary(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer]
) -> None:
    """No text check applies to a generic task: the proxy alone refuses the write."""
    path = write_task(pytester.path, ["kubectl delete pod api"])
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*command failed*", "*Forbidden*"])
    assert "GET" not in methods(clusters["prod"])


@pytest.mark.parametrize(
    "spelling",
    [
        "kubectl get pods -o name",
        'kube""ctl get pods -o name',
        "k=kubectl; $k get pods -o name",
        'KUBECONFIG="$KUBECONFIG" kubectl get pods -o name',
        "kubectl --context dev get pods -o name",
        'env -u KUBECONFIG HOME="$HOME" kubectl get pods -o name 2>&1 || true',
    ],
)
def test_reads_go_to_the_pinned_context_whatever_is_active(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer], spelling: str
) -> None:
    out = pytester.path / "out.txt"
    path = write_task(pytester.path, [f"{{ {spelling}; }} > {out}"])
    pytester.runpytest(*QUIET, str(path)).assert_outcomes(passed=1)
    assert clusters["prod"].requests == []
    if "env -u" not in spelling:
        assert out.read_text().strip() == "pod/api"
        assert methods(clusters["dev"]) == {"GET"}


@pytest.mark.parametrize(
    "spelling", ["kubectl --context prod get pods", "kubectl config use-context prod"]
)
def test_other_contexts_do_not_exist_for_commands(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer], spelling: str
) -> None:
    path = write_task(pytester.path, [spelling], meta="environment: dev")
    result = pytester.runpytest(*QUIET, "--infratask-allow-protected", str(path))
    result.assert_outcomes(failed=1)
    assert clusters["prod"].requests == []


def test_commands_never_see_the_users_kubeconfig(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer]
) -> None:
    user = pytester.path / "home-kube" / "config"
    dump = pytester.path / "env.txt"
    seen = pytester.path / "kubeconfig.txt"
    path = write_task(pytester.path, [f'env > {dump}; cat "$KUBECONFIG" > {seen}'])
    pytester.runpytest(*QUIET, str(path)).assert_outcomes(passed=1)
    assert str(user) not in dump.read_text()
    private = yaml.safe_load(seen.read_text())
    assert [c["name"] for c in private["contexts"]] == ["dev"]
    assert private["users"] == [{"name": "infratask-read-only", "user": {}}]
    assert clusters["dev"].token not in seen.read_text()
    server = private["clusters"][0]["cluster"]["server"]
    assert server.startswith("http://127.0.0.1:") and server != clusters["dev"].url


def test_allow_direct_apply_reaches_the_pinned_cluster_with_credentials(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer]
) -> None:
    path = write_task(
        pytester.path, ["kubectl label pod api team=web"], meta="allow_direct_apply: hotfix"
    )
    pytester.runpytest(*QUIET, str(path))
    assert "PATCH" in methods(clusters["dev"])
    assert clusters["prod"].requests == []


def test_no_pinned_context_gets_a_kubeconfig_with_no_context(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer]
) -> None:
    pytester.makeini("[pytest]\ninfratask_require_kube_context = false\n")
    seen = pytester.path / "kubeconfig.txt"
    path = pytester.path / "TASK-001.md"
    path.write_text(task_md(item("Pods", f'cat "$KUBECONFIG" > {seen}; kube""ctl get pods')))
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    assert yaml.safe_load(seen.read_text())["contexts"] == []
    assert clusters["prod"].requests == [] and clusters["dev"].requests == []


def test_relative_certificate_paths_survive_the_private_copy(tmp_path: Path) -> None:
    from pytest_infratask.clients import kubeconfig

    folder = tmp_path / "kube"
    folder.mkdir()
    config = {
        "clusters": [
            {"name": "c", "cluster": {"server": "https://x", "certificate-authority": "ca.crt"}}
        ],
        "users": [
            {
                "name": "u",
                "user": {"client-certificate": "certs/me.crt", "client-key": "/abs/me.key"},
            }
        ],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "u"}}],
    }
    (folder / "config").write_text(yaml.safe_dump(config))
    pinned = kubeconfig.only("dev", {"KUBECONFIG": str(folder / "config")})
    assert pinned["clusters"][0]["cluster"]["certificate-authority"] == str(folder / "ca.crt")
    user = pinned["users"][0]["user"]
    assert user == {"client-certificate": str(folder / "certs/me.crt"), "client-key": "/abs/me.key"}


@pytest.mark.parametrize(
    "spelling",
    [
        "KUBECONFIG={user} kubectl get pods",
        "export KUBECONFIG={user}; kubectl get pods",
        "kubectl --kubeconfig {user} get pods",
        "kubectl --kubeconfig={user} get pods",
    ],
)
def test_a_command_choosing_its_own_kubeconfig_is_refused(
    pytester: pytest.Pytester, clusters: dict[str, KubeAPIServer], spelling: str
) -> None:
    """Construction cannot stop a command reading a file it names: a text check does."""
    user = pytester.path / "home-kube" / "config"
    path = write_task(pytester.path, [spelling.format(user=user)])
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*BLOCKED: kube context:*chooses its own kubeconfig*"])
    assert clusters["prod"].requests == [] and clusters["dev"].requests == []
