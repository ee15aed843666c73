"""A real Kubernetes control plane and Flux, as local processes on 127.0.0.1.

etcd, kube-apiserver (TLS, service-account keys, a client-certificate admin and a
token user), kube-controller-manager, kube-scheduler, kwok (fake Ready nodes, Pods
Running without a kubelet), Flux's source- and kustomize-controller, a smart-HTTP git
server and Debian's docker-registry. Binaries come from ``build.sh``'s cache; every
wait polls with a deadline (``INFRATASK_CLUSTER_TIMEOUT`` seconds, default 180).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from localregistry import start_registry
from localregistry import stop as stop_registry

from .gitserver import GitServer
from .pki import CA, Pair, service_account_keys

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build.sh"
REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "source-controller",
    "kustomize-controller",
)
OPTIONAL = ("helm-controller",)
ADMIN_CONTEXT = "dev"
VIEWER_CONTEXT = "viewer"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
FLUX_NAMESPACE = "flux-system"
NODE = "kwok-node-0"


class StackError(Exception):
    """The stack could not be started; the message carries the component's log tail."""


def timeout() -> float:
    """The readiness deadline in seconds: loaded machines need more, so it is settable."""
    return float(os.environ.get("INFRATASK_CLUSTER_TIMEOUT", "180"))


def component_dirs() -> dict[str, Path]:
    """Each component's cache directory, as build.sh computes it (empty without Go)."""
    if shutil.which("go") is None:
        return {}
    out = subprocess.run(
        ["bash", str(BUILD), "--paths"], capture_output=True, text=True, check=False
    )
    dirs = {}
    for line in out.stdout.splitlines():
        name, _, path = line.partition(" ")
        dirs[name] = Path(path)
    return dirs


def missing_components() -> list[str]:
    """Required components whose binary is not in the cache (all of them without Go)."""
    dirs = component_dirs()
    return [n for n in REQUIRED if n not in dirs or not (dirs[n] / n).is_file()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    what: str,
    probe: Callable[[], bool],
    deadline: float,
    alive: Callable[[], None] = lambda: None,
    interval: float = 0.25,
) -> None:
    """Poll ``probe`` until it is true; ``alive`` raises when a process died meanwhile."""
    while True:
        alive()
        try:
            if probe():
                return
        except (OSError, urllib.error.URLError, ValueError, subprocess.SubprocessError):
            pass
        if time.monotonic() > deadline:
            raise StackError(f"timed out waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        handle = self.log.open("ab")
        handle.write(f"$ {' '.join(self.argv)}\n".encode())
        handle.flush()
        self.popen = subprocess.Popen(
            self.argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        handle.close()
        return self

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise StackError(
                f"{self.name} exited with status {self.popen.returncode}\n{self.tail()}"
            )

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(f"  {self.name}| {line}" for line in text)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=15)


class Stack:
    """Start with :meth:`start`, stop with :meth:`stop` (also on a failed start)."""

    def __init__(self, workdir: Path, dirs: dict[str, Path] | None = None) -> None:
        self.dir = workdir
        self.dirs = dirs if dirs is not None else component_dirs()
        self.logs = workdir / "logs"
        self.processes: list[Process] = []
        self.git: GitServer | None = None
        self.registry: Any = None
        self.ports: dict[str, int] = {}
        self.kubeconfig = workdir / "kubeconfig"
        self.server = ""
        self.storage_url = ""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, registry: bool = True) -> Stack:
        self.logs.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout()
        try:
            self._pki()
            self._etcd(deadline)
            self._apiserver(deadline)
            self._bootstrap(deadline)
            self._controllers(deadline)
            self.git = GitServer(self.dir / "git").start()
            if registry:
                self._registry()
            self._flux(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        if self.git is not None:
            self.git.stop()
            self.git = None
        if self.registry is not None:
            if self.registry.process is not None:
                stop_registry(self.registry.process)
            self.registry = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(p.tail(lines) for p in self.processes)

    def binary(self, name: str) -> str:
        return str(self.dirs[name] / name)

    def _spawn(self, name: str, argv: list[str], **env: str) -> Process:
        proc = Process(name, [self.binary(name), *argv], self.logs / f"{name}.log", env)
        self.processes.append(proc.start())
        return proc

    # -- control plane -----------------------------------------------------------------

    def _pki(self) -> None:
        pki = self.dir / "pki"
        self.ca = CA(pki)
        self.serving = self.ca.issue("apiserver", "kube-apiserver", server=True)
        self.admin: Pair = self.ca.issue("admin", "infratask-admin", "system:masters", server=False)
        self.sa = service_account_keys(pki)
        self.tokens = pki / "tokens.csv"
        self.tokens.write_text(f'{VIEWER_TOKEN},viewer,viewer-uid,"infratask-viewers"\n')

    def _etcd(self, deadline: float) -> None:
        client, peer = free_port(), free_port()
        self.ports["etcd"] = client
        url = f"http://127.0.0.1:{client}"
        proc = self._spawn(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                return bool(json.load(response).get("health") == "true")

        wait_for("etcd /health", healthy, deadline, proc.check_alive)

    def _apiserver(self, deadline: float) -> None:
        port = free_port()
        self.ports["apiserver"] = port
        self.server = f"https://127.0.0.1:{port}"
        proc = self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.dir / 'apiserver'}",
                f"--tls-cert-file={self.serving.cert}",
                f"--tls-private-key-file={self.serving.key}",
                f"--client-ca-file={self.ca.cert}",
                f"--service-account-key-file={self.sa.cert}",
                f"--service-account-signing-key-file={self.sa.key}",
                f"--service-account-issuer={self.server}",
                f"--token-auth-file={self.tokens}",
                # Only an allocation range for Service objects: nothing ever dials it.
                "--service-cluster-ip-range=10.96.0.0/24",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
            ],
        )
        self.write_kubeconfig(self.kubeconfig)
        context = self.ssl_context()

        def ready() -> bool:
            request = urllib.request.Request(f"{self.server}/readyz")
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return bool(response.status == 200)

        wait_for("kube-apiserver /readyz", ready, deadline, proc.check_alive)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return context

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, context: str = ADMIN_CONTEXT
    ) -> subprocess.CompletedProcess[str]:
        """kubectl against this cluster with the stack's own kubeconfig."""
        proc = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", f"--context={context}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout(),
        )
        if check and proc.returncode:
            raise StackError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def apply(self, *objects: dict[str, Any] | str) -> None:
        """Server-side apply manifests (dicts or YAML text) as the admin."""
        docs = [o if isinstance(o, str) else yaml.safe_dump(o) for o in objects]
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=infratask-tests",
            "-f",
            "-",
            stdin="\n---\n".join(docs),
        )

    def _bootstrap(self, deadline: float) -> None:
        crds = sorted((self.dirs["source-controller"] / "crds").glob("*.yaml"))
        crds += sorted((self.dirs["kustomize-controller"] / "crds").glob("*.yaml"))
        helm = self.dirs.get("helm-controller")
        if helm is not None and (helm / "helm-controller").is_file():
            crds += sorted((helm / "crds").glob("*.yaml"))
        self.apply(*(p.read_text() for p in crds))
        self.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": FLUX_NAMESPACE}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "infratask-viewers"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "view",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Group",
                        "name": "infratask-viewers",
                    }
                ],
            },
        )
        remaining = max(1, int(deadline - time.monotonic()))
        self.kubectl(
            "wait", "--for=condition=Established", "crd", "--all", f"--timeout={remaining}s"
        )

    def _controllers(self, deadline: float) -> None:
        kcm = self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--service-account-private-key-file={self.sa.key}",
                f"--root-ca-file={self.ca.cert}",
                "--use-service-account-credentials=false",
                f"--cluster-signing-cert-file={self.ca.cert}",
                f"--cluster-signing-key-file={self.ca.key}",
                "--controllers=*,-nodeipam,-service-lb-controller,-route",
                # kwok's heartbeats may come late on a loaded machine; a node marked
                # NotReady would take its pods' Ready condition with it.
                "--node-monitor-grace-period=10m",
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                f"--kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        kwok_dir = self.dirs["kwok"]
        kwok = self._spawn(
            "kwok",
            [
                f"--kubeconfig={self.kubeconfig}",
                f"--config={kwok_dir / 'stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                # Addresses written into fake status fields only; nothing dials them.
                "--cidr=10.244.0.1/24",
                "--node-ip=10.244.0.1",
                "--node-lease-duration-seconds=40",
            ],
        )
        capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": NODE,
                    "annotations": {"kwok.x-k8s.io/node": "fake"},
                    "labels": {"kubernetes.io/hostname": NODE, "type": "kwok"},
                },
                "status": {"allocatable": capacity, "capacity": capacity},
            }
        )

        def alive() -> None:
            for proc in (kcm, scheduler, kwok):
                proc.check_alive()

        def node_ready() -> bool:
            out = self.kubectl("get", "node", NODE, "-o", "json").stdout
            conditions = json.loads(out).get("status", {}).get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        def default_sa() -> bool:
            return self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0

        wait_for(f"kwok to mark node {NODE} Ready", node_ready, deadline, alive)
        wait_for(
            "kube-controller-manager to create the default service account",
            default_sa,
            deadline,
            alive,
        )

    # -- git, registry, Flux -----------------------------------------------------------

    def _registry(self) -> None:
        if shutil.which("docker-registry") is None:
            return
        self.registry = start_registry(self.dir / "registry")

    def _flux(self, deadline: float) -> None:
        storage = free_port()
        self.storage_url = f"http://127.0.0.1:{storage}"
        env = {
            "RUNTIME_NAMESPACE": FLUX_NAMESPACE,
            "KUBECONFIG": str(self.kubeconfig),
            "TMPDIR": str(self.dir / "tmp"),
        }
        for folder in ("tmp", "artifacts"):
            (self.dir / folder).mkdir(exist_ok=True)
        health: dict[str, int] = {}
        procs = []
        for name, extra in (
            (
                "source-controller",
                [
                    f"--storage-path={self.dir / 'artifacts'}",
                    f"--storage-addr=127.0.0.1:{storage}",
                    f"--storage-adv-addr=127.0.0.1:{storage}",
                ],
            ),
            # A Kustomization created with its source waits for the first artifact:
            # check again after 2s rather than the default 30s.
            ("kustomize-controller", ["--requeue-dependency=2s"]),
        ):
            health[name] = free_port()
            procs.append(
                self._spawn(
                    name,
                    [
                        f"--metrics-addr=127.0.0.1:{free_port()}",
                        f"--health-addr=127.0.0.1:{health[name]}",
                        "--enable-leader-election=false",
                        *extra,
                    ],
                    **env,
                )
            )

        def alive() -> None:
            for proc in procs:
                proc.check_alive()

        for name, port in health.items():

            def ready(port: int = port) -> bool:
                url = f"http://127.0.0.1:{port}/readyz"
                with urllib.request.urlopen(url, timeout=5) as response:
                    return bool(response.status == 200)

            wait_for(f"{name} /readyz", ready, deadline, alive)

    # -- kubeconfigs -------------------------------------------------------------------

    def write_kubeconfig(
        self,
        path: Path,
        contexts: Iterable[tuple[str, str]] | None = None,
        current: str | None = ADMIN_CONTEXT,
        server: str | None = None,
        relative: bool = False,
    ) -> Path:
        """A real kubeconfig: ``contexts`` maps context names to users (admin/viewer).

        ``relative`` writes certificate paths relative to the file, as kubectl allows.
        """

        def ref(file: Path) -> str:
            return os.path.relpath(file, path.parent) if relative else str(file)

        pairs = (
            list(contexts)
            if contexts is not None
            else [(ADMIN_CONTEXT, "admin"), (VIEWER_CONTEXT, "viewer")]
        )
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority": ref(self.ca.cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": ref(self.admin.cert),
                        "client-key": ref(self.admin.key),
                    },
                },
                {"name": "viewer", "user": {"token": VIEWER_TOKEN}},
                {"name": "stranger", "user": {"token": "not-a-known-token"}},
            ],
            "contexts": [
                {"name": name, "context": {"cluster": "local", "user": user}}
                for name, user in pairs
            ],
        }
        if current:
            config["current-context"] = current
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path
