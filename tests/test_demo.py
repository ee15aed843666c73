"""The demos end to end: `make demo` (registry, buildah, the stand-in API server, four
example tasks) and `make demo-cluster` (the real kube-apiserver, kwok and Flux)."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kubestack_fixtures import require_built

ROOT = Path(__file__).resolve().parent.parent


def _terminal_env() -> dict[str, str]:
    """What a newcomer's terminal has: 80 columns, and no CI variable, under which
    pytest would print the short summary's lines uncut."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER")}
    return {**env, "COLUMNS": "80"}


def _run_demo(
    script: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``demo/<script>`` run from the checkout, as its make target runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "demo" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def test_demo_commits_the_build_and_the_deployment(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    result = _run_demo("run.py", "--reports", str(reports), timeout=180, env=_terminal_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "TASK-001: Build and push service images v0.1.18" in output
    assert "TASK-002: Deploy api 0.1.18 to prod through Flux" in output
    assert "local stand-in" in output
    # The printed report paths outlive the scratch directory.
    assert (reports / "TASK-001.json").is_file() and (reports / "junit.xml").is_file()
    assert f"{reports / 'TASK-001.json'}" in output
    assert _comparable(_pytest_part(result.stdout)) == _comparable(_readme_transcript())


# What differs between two runs of the demo: the scratch directory, ports, commit ids,
# times, and the padding pytest fits to them.
_VARYING = [
    (re.compile(r"\S*/infratask-demo-[^/\s]+"), "<scratch>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\b[0-9a-f]{10}\b"), "<commit>"),
    (re.compile(r" in \d+(\.\d+)?s\b"), " in <time>"),
    (re.compile(r"^[=_-]+ | [=_-]+$"), ""),
    (re.compile(r" {2,}"), " "),
]


def _comparable(lines: list[str]) -> list[str]:
    for pattern, replacement in _VARYING:
        lines = [pattern.sub(replacement, line) for line in lines]
    return lines


def _pytest_part(output: str) -> list[str]:
    """The demo's pytest run, from the collection line to pytest's last line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if "collected " in line)
    end = next(i for i in range(start, len(lines)) if re.search(r" in \d+\.\d+s =+$", lines[i]))
    return [line.removeprefix("collecting ... ") for line in lines[start : end + 1]]


def _readme_transcript() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- demo-transcript -->\n```console\n", 1)[1].split("\n```", 1)[0]
    return [line.removeprefix("collecting ... ") for line in block.splitlines()]


@pytest.mark.parametrize("script", ["run.py", "run_cluster.py"])
def test_demo_help_is_whole(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--keep" in result.stdout and "--reports DIR" in result.stdout
    description = result.stdout.split("\n\n")[1]
    assert description.rstrip().endswith(".")


# -- make demo-cluster: the real kube-apiserver, kwok and Flux ----------------------------


def test_demo_cluster_without_the_built_stack_says_how_to_build_it(tmp_path: Path) -> None:
    empty = {**os.environ, "INFRATASK_CLUSTER_CACHE": str(tmp_path / "empty-cache")}
    result = _run_demo("run_cluster.py", timeout=120, env=empty)
    assert result.returncode == 1
    assert "the cluster stack is not built (etcd, kube-apiserver" in result.stderr
    assert "run `make cluster-build` first" in result.stderr
    assert result.stdout == ""  # nothing was started


def _survivors(scratch: str) -> list[str]:
    """Processes whose command line or environment names the demo's scratch directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            seen = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if scratch.encode() in seen:
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
    return found


def _scratch(output: str) -> str:
    first = output.splitlines()[0]
    assert first.startswith("scratch directory /"), output[:2000]
    return first.removeprefix("scratch directory ")


@pytest.mark.cluster
def test_demo_cluster_deploys_through_flux_and_sees_pods_running(tmp_path: Path) -> None:
    require_built()
    reports = tmp_path / "reports"
    result = _run_demo("run_cluster.py", "--reports", str(reports), timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "kube-apiserver at https://127.0.0.1:" in output
    assert "kwok node node/kwok-node-0 Ready" in output
    for item in (
        "TASK-101.md::ac1-worker-image-bumped-to-0-1-18 PASSED",
        "TASK-101.md::verify PASSED",
        "TASK-102.md::ac1-three-worker-pods-run-the-0-1-18-image PASSED",
        "TASK-102.md::verify PASSED",
    ):
        assert item in output, output[-6000:]
    # Flux applied the commit TASK-101 pushed, and the run waited for it to be Ready.
    task = json.loads((reports / "TASK-101.json").read_text())
    pushed = task["pushed"]["gitops"]["commit"]
    assert task["commits"]["gitops"] == pushed
    [waited] = task["reconciled"]
    revision = f"main@sha1:{pushed}"
    assert waited["ok"] and waited["applied_revision"] == revision, waited
    assert "TASK-101 waited for kustomization/flux-system/worker: Ready=True" in output
    assert f"Flux applied {revision}" in output
    # Three Pods of the new ReplicaSet, Running on kwok's node, as the demo printed them.
    pods = [line.split() for line in output.splitlines() if line.startswith("worker-")]
    assert len(pods) == 3 and all(p[2] == "Running" and "kwok-node-0" in p for p in pods), pods
    assert "task status: {'TASK-101': 'committed', 'TASK-102': 'committed'}" in output
    assert "cluster stack stopped" in output
    assert _survivors(_scratch(output)) == []


@pytest.mark.cluster
def test_demo_cluster_interrupted_stops_the_stack(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the demo's process group) once the stack is up leaves nothing."""
    require_built()
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "demo" / "run_cluster.py"), "--reports", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in demo.stdout or []])
    reader.start()
    seen: list[str] = []
    deadline = time.monotonic() + 300
    try:
        while not any(line.startswith("kube-apiserver at ") for line in seen):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(seen)
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=1))
        running = _survivors(_scratch("".join(seen)))
        assert len(running) >= 7, running  # etcd, the control plane, kwok, Flux: seen here
        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=120) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    reader.join(timeout=30)
    while not lines.empty():
        seen.append(lines.get())
    output = "".join(seen)
    assert "interrupted: stopping the cluster stack" in output
    assert "cluster stack stopped" in output
    assert _survivors(_scratch(output)) == []
