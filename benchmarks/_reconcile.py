"""Benchmark 8's rounds on the real cluster stack (demo/kubestack): how long after a
Kustomization turns Ready the plugin's wait returns, next to ``kubectl wait``.

Each round changes the Kustomization's spec (a new generation, so ``kubectl wait
--for=condition=Ready`` has something to wait for: it skips conditions of an older
generation) and asks for a reconcile in the same patch. Three observers start together:
a watch of our own (the official client's ``Watch``, not the plugin's code) that notes
the moment it sees Ready=True for the new generation; ``wait_ready`` in a thread of this
process; and ``kubectl wait`` as a subprocess. Each one's latency is its end minus that
moment.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parent.parent / "demo"
GROUP, VERSION, PLURAL = "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"
NAMESPACE = "flux-system"


@dataclass
class Round:
    ready_seen: float  # our own watch saw Ready=True for the new generation
    plugin: float  # wait_ready returned (ok)
    kubectl: float  # kubectl wait exited 0

    @property
    def plugin_after(self) -> float:
        return self.plugin - self.ready_seen

    @property
    def kubectl_after(self) -> float:
        return self.kubectl - self.ready_seen


def missing() -> list[str]:
    sys.path.insert(0, str(DEMO))
    from kubestack.stack import missing_components

    return missing_components()


def start_stack(workdir: Path) -> Any:
    sys.path.insert(0, str(DEMO))
    from kubestack.stack import Stack

    return Stack(workdir).start(registry=False)


def make_app(stack: Any, workdir: Path, name: str) -> None:
    """A pushed repository of one Deployment, its GitRepository and Kustomization."""
    repo = workdir / name
    (repo / "apps").mkdir(parents=True)
    (repo / "apps" / "web.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
        "spec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n"
        "  template:\n    metadata:\n      labels: {app: web}\n"
        "    spec:\n      containers: [{name: web, image: registry.invalid/web:1}]\n"
    )
    url = stack.git.create(name)
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        [
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            "app",
        ],
        ["push", "-q", url, "main"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    stack.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    stack.apply(
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1h"},
        },
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Kustomization",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "interval": "1h",
                "path": "./apps",
                "prune": True,
                "timeout": "2m",
                "targetNamespace": name,
                "sourceRef": {"kind": "GitRepository", "name": name},
            },
        },
    )
    stack.kubectl(
        "wait", "--for=condition=Ready", f"kustomization/{name}", "-n", NAMESPACE, "--timeout=120s"
    )


def _ready_for(obj: dict[str, Any], generation: int) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(
                cond.get("status") == "True"
                and cond.get("observedGeneration", generation) >= generation
            )
    return False


def _watch_ready(api: Any, name: str, version: str, generation: int, seen: list[float]) -> None:
    from kubernetes import client, watch

    custom = client.CustomObjectsApi(api)
    stream = watch.Watch().stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        field_selector=f"metadata.name={name}",
        resource_version=version,
        timeout_seconds=120,
    )
    for event in stream:
        if _ready_for(event["object"], generation):
            seen.append(time.monotonic())
            return


def one_round(stack: Any, api: Any, name: str, n: int) -> Round:
    from kubernetes import client

    from pytest_infratask.clients.cluster import REQUESTED_AT, ObjectRef, wait_ready

    custom = client.CustomObjectsApi(api)
    current = custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    generation = current["metadata"]["generation"] + 1
    seen: list[float] = []
    watcher = threading.Thread(
        target=_watch_ready,
        args=(api, name, current["metadata"]["resourceVersion"], generation, seen),
        daemon=True,
    )
    watcher.start()
    token = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        name,
        {
            "metadata": {"annotations": {REQUESTED_AT: token}},
            "spec": {"timeout": f"{120 + n % 2}s"},
        },
    )
    # both start now: kubectl started before the patch would find the old generation Ready
    kubectl = subprocess.Popen(
        [
            "kubectl",
            f"--kubeconfig={stack.kubeconfig}",
            "wait",
            "--for=condition=Ready",
            f"kustomization/{name}",
            "-n",
            NAMESPACE,
            "--timeout=120s",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    exited: list[float] = []
    reaper = threading.Thread(
        target=lambda: (kubectl.wait(), exited.append(time.monotonic())), daemon=True
    )
    reaper.start()
    ref = ObjectRef.parse(f"kustomization/{NAMESPACE}/{name}")
    result = wait_ready(api, ref, token, timeout=120, interval=2.0)
    plugin = time.monotonic()
    if not result.ok:
        raise RuntimeError(f"wait_ready: {result.message}")
    reaper.join(130)
    if kubectl.returncode or not exited:
        err = kubectl.stderr.read() if kubectl.stderr else ""
        raise RuntimeError(f"kubectl wait exited {kubectl.returncode}: {err.strip()}")
    watcher.join(130)
    if not seen:
        raise RuntimeError("our own watch never saw the Kustomization Ready")
    return Round(seen[0], plugin, exited[0])
