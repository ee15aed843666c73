"""Running from a virtual environment nobody activated: the commands find ``infratask``."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import item, task_md, write_task

from pytest_infratask.run.pathenv import with_scripts_dir

Run = Callable[..., pytest.RunResult]


def test_scripts_dir_goes_last_once() -> None:
    """Last: the user's own tools of the same name keep their precedence."""
    scripts = sysconfig.get_path("scripts")
    assert with_scripts_dir({"PATH": "/usr/bin:/bin"})["PATH"] == f"/usr/bin:/bin:{scripts}"
    already = {"PATH": f"{scripts}:/usr/bin"}
    assert with_scripts_dir(already) == already
    assert with_scripts_dir({})["PATH"].endswith(os.pathsep + scripts)


def test_commands_find_infratask_without_activation(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``.venv/bin/pytest tasks/`` runs in CI: PATH lacks the venv's bin directory."""
    scripts = Path(sysconfig.get_path("scripts"))
    assert (scripts / "infratask").exists(), "the package's console script is installed"
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    (pytester.path / "values.yaml").write_text("image:\n  tag: '1'\n")
    path = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(
            item(
                "Bump the tag",
                f'test "$(command -v infratask)" = "{scripts}/infratask"\n'
                "infratask set values.yaml .image.tag 2",
            )
        ),
    )
    run(str(path)).assert_outcomes(passed=1)
    assert (pytester.path / "values.yaml").read_text() == "image:\n  tag: '2'\n"


def test_make_installs_only_when_pyproject_changed(tmp_path: Path) -> None:
    """``make demo`` runs pip once per change of pyproject.toml: a stamp in the virtual
    environment newer than it means the install is current."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parent.parent
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    stamp = venv / ".installed"
    stamp.touch()
    newer = (root / "pyproject.toml").stat().st_mtime + 10
    os.utime(stamp, (newer, newer))

    def plan(*extra: str) -> str:
        args = ["make", "-n", "-C", str(root), f"VENV={venv}", "install", *extra]
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout

    assert "pip install" not in plan()
    assert "pip install" in plan("-W", "pyproject.toml")  # as if pyproject.toml changed
