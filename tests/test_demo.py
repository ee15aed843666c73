"""The demo end to end: registry, buildah, the stand-in API server and four example tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_commits_the_build_and_the_deployment() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run.py")], cwd=ROOT, capture_output=True,
        text=True, timeout=180, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "TASK-001: Build and push service images v0.1.18" in output
    assert "TASK-002: Deploy api 0.1.18 to prod through Flux" in output
    assert "local stand-in" in output
