"""Render a kustomization the way Flux will, so it can be checked before it is applied."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_NAMES = ("kubectl.exe", "kubectl") if os.name == "nt" else ("kubectl",)


@dataclass(frozen=True)
class RenderResult:
    """Rendered YAML on success; kustomize's own message on failure."""

    ok: bool
    manifests: str
    error: str


def kubectl_binary() -> str | None:
    """The kubectl installed with this Python first, so the pinned kustomize version wins."""
    beside = Path(sys.executable).parent
    for name in _NAMES:
        candidate = beside / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("kubectl")


def render(directory: Path, timeout: float = 60) -> RenderResult:
    """Run ``kubectl kustomize`` on ``directory``; never raises for kustomize failures."""
    binary = kubectl_binary()
    if binary is None:
        return RenderResult(False, "", "kubectl not found beside the Python interpreter or on PATH")
    command = [binary, "kustomize", str(directory)]
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return RenderResult(
            False, "", f"kubectl kustomize {directory} timed out after {timeout:g}s"
        )
    except OSError as exc:
        return RenderResult(False, "", f"cannot run {binary}: {exc.strerror or exc}")
    if completed.returncode != 0:
        message = _trim(completed.stderr) or f"kubectl kustomize exited {completed.returncode}"
        return RenderResult(False, "", message)
    return RenderResult(True, completed.stdout, "")


def _trim(stderr: str) -> str:
    text = stderr.strip()
    return text[len("error: ") :] if text.startswith("error: ") else text
