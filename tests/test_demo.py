"""The demo end to end: registry, buildah, the stand-in API server and four example tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_commits_the_build_and_the_deployment(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run.py"), "--reports", str(reports)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "TASK-001: Build and push service images v0.1.18" in output
    assert "TASK-002: Deploy api 0.1.18 to prod through Flux" in output
    assert "local stand-in" in output
    # The printed report paths outlive the scratch directory.
    assert (reports / "TASK-001.json").is_file() and (reports / "junit.xml").is_file()
    assert f"{reports / 'TASK-001.json'}" in output


def test_demo_help_is_whole() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "demo" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "--keep" in result.stdout and "--reports DIR" in result.stdout
    description = result.stdout.split("\n\n")[1]
    assert description.rstrip().endswith(".")
