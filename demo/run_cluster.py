"""Run demo/cluster_tasks/ against a real kube-apiserver, kwok and Flux.

    python demo/run_cluster.py [--keep] [--reports DIR]

The stack is the one of the ``cluster`` test tier (demo/kubestack, built by ``make
cluster-build``): etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok
(a fake Node: Pods go Running without a kubelet) and Flux's source- and
kustomize-controller, as processes on 127.0.0.1. The GitOps repository's ``origin``
is served over smart HTTP; Flux's GitRepository reads it, and a Kustomization applies
``apps/worker`` from it. TASK-101 edits the worker Deployment, commits and pushes
(``--infratask-push``) and waits until the Kustomization has applied the pushed commit
and is Ready; TASK-102 checks with kubectl that the new Pods are Running.

Everything, the stack included, is stopped when the demo ends, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from kubestack import Stack, StackError, missing_components
from kubestack.stack import timeout, wait_for
from run import (
    ROOT,
    banner,
    copy_reports,
    git,
    git_identity,
    parse_args,
    pytest_command,
    show_task_changes,
    task_statuses,
)

EXPECTED = {"TASK-101": "committed", "TASK-102": "committed"}
CONTEXT = "demo"
KUSTOMIZATION = "worker"


def make_repo(base: Path, origin: str) -> Path:
    """The GitOps work tree, pushed to the served ``origin`` that Flux reads."""
    repo = base / "gitops"
    shutil.copytree(ROOT / "demo" / "gitops", repo)
    (repo / "tasks").mkdir(exist_ok=True)
    for task in sorted((ROOT / "demo" / "cluster_tasks").glob("TASK-*.md")):
        shutil.copy(task, repo / "tasks" / task.name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Platform GitOps repository")
    git(repo, "remote", "add", "origin", origin)
    git(repo, "push", "-q", "-u", "origin", "main")
    return repo


def flux_objects(url: str) -> list[dict[str, Any]]:
    """The namespace, and the source and Kustomization a Flux bootstrap would create."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}},
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {"name": "flux-system", "namespace": "flux-system"},
            "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1h", "timeout": "30s"},
        },
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": KUSTOMIZATION, "namespace": "flux-system"},
            "spec": {
                "interval": "1h",
                "path": "./apps/worker",
                "prune": True,
                "wait": True,
                "timeout": "2m",
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
            },
        },
    ]


def kustomization(stack: Stack) -> dict[str, Any]:
    out = stack.kubectl("get", "kustomization", KUSTOMIZATION, "-n", "flux-system", "-o", "json")
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def applied(stack: Stack, commit: str) -> bool:
    status = kustomization(stack)
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return bool(
        ready
        and ready[0].get("status") == "True"
        and status.get("lastAppliedRevision") == f"main@sha1:{commit}"
    )


def start(stack: Stack) -> None:
    """The stack up, with the wheel's kubectl first on PATH (the tasks' commands too)."""
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    banner("real Kubernetes API, kwok and Flux")
    began = time.monotonic()
    stack.start(registry=False)
    print(f"kube-apiserver at {stack.server}, up in {time.monotonic() - began:.1f}s")
    print(f"kwok node {stack.kubectl('get', 'nodes', '-o', 'name').stdout.strip()} Ready")
    print("Flux source-controller and kustomize-controller running")
    print(f"component logs: {stack.logs}")


def run_tasks(stack: Stack, base: Path, args: argparse.Namespace) -> int:
    assert stack.git is not None
    origin = stack.git.create("gitops")
    repo = make_repo(base, origin)
    head = git(repo, "rev-parse", "HEAD").strip()
    stack.apply(*flux_objects(origin))
    what = f"Kustomization {KUSTOMIZATION} to apply {head[:10]}"
    wait_for(what, lambda: applied(stack, head), time.monotonic() + timeout())
    print(f"throwaway GitOps repository: {repo} (Flux reads its origin, {origin})")
    print(f"Flux applied main@sha1:{head[:10]}: deployment/prod/worker, one replica")
    kubeconfig = stack.write_kubeconfig(
        base / "kubeconfig", contexts=[(CONTEXT, "admin")], current=CONTEXT
    )
    print(f"kubeconfig {kubeconfig}, context '{CONTEXT}'")
    reports = base / "reports"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    command = pytest_command(reports)
    banner("pytest " + " ".join(command[3:]))
    result = subprocess.run(command, cwd=repo, env=env, check=False)

    banner("what changed")
    print(git(repo, "log", "--format=%h %s%n%b", "-n", "3"))
    print("origin/main is at", (stack.git.head("gitops") or "-")[:10])
    print("Flux applied", kustomization(stack).get("lastAppliedRevision"))
    show_waits(reports)
    print(stack.kubectl("get", "pods", "-n", "prod", "-o", "wide").stdout)
    show_task_changes(repo)
    copy_reports(reports, args.reports)
    statuses = task_statuses(reports, EXPECTED)
    print(f"\ntask status: {statuses}")
    if statuses != EXPECTED or result.returncode != 0:
        print(f"unexpected outcome: wanted {EXPECTED}, pytest exit code 0", file=sys.stderr)
        return 1
    return 0


def show_waits(reports: Path) -> None:
    """What each task waited for in the cluster, as its report recorded it."""
    for task in EXPECTED:
        report = reports / f"{task}.json"
        waited = json.loads(report.read_text()).get("reconciled") if report.is_file() else None
        for entry in waited or []:
            print(f"{task} waited for {entry['object']}: {entry['message']}")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args(__doc__, "GitOps repo, cluster state and component logs")
    missing = missing_components()
    if missing:
        print(
            f"the cluster stack is not built ({', '.join(missing)} missing): "
            "run `make cluster-build` first (25-45 min cold, seconds when warm)",
            file=sys.stderr,
        )
        return 1
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="infratask-demo-cluster-"))
    print(f"scratch directory {base}", flush=True)
    git_identity()
    # SIGTERM ends the demo as Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, _terminate)
    stack = Stack(base / "cluster")
    try:
        start(stack)
        code = run_tasks(stack, base, args)
        print(f"demo finished in {time.monotonic() - started:.1f}s")
        return code
    except StackError as exc:
        print(f"cluster stack: {exc}\n{stack.log_tails()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: stopping the cluster stack", file=sys.stderr)
        return 130
    finally:
        stack.stop()
        print("cluster stack stopped", flush=True)
        if args.keep:
            print(f"scratch directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            print(f"scratch directory {base} removed; rerun with --keep to look around")


if __name__ == "__main__":
    raise SystemExit(main())
