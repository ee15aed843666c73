"""The ``infratask`` command as a shell user meets it: ``--version``, a reader that
stops early (``| head -1``), and a path that does not exist, each run as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import item, task_md, write_task

import pytest_infratask
from pytest_infratask.cli import BROKEN_PIPE

# the subprocess imports the package this test imported, wherever it is installed from
PACKAGE_ROOT = str(Path(pytest_infratask.__file__).resolve().parents[1])
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p),
}


def infratask(
    *args: str, cwd: Path | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_infratask.cli", *args],
        capture_output="stdout" not in kwargs,
        text=True,
        timeout=60,
        env=ENV,
        cwd=cwd,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def test_version_is_the_installed_distributions() -> None:
    proc = infratask("--version")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == f"infratask {version('pytest-infratask')}\n"
    # the package's own __version__ says the same
    assert pytest_infratask.__version__ == version("pytest-infratask")


def test_a_reader_that_went_away_ends_the_command_quietly(tmp_path: Path) -> None:
    for n in range(1, 4):
        text = task_md(item("Step", "true"), meta=f"id: TASK-00{n}\ntitle: T{n}")
        write_task(tmp_path, f"TASK-00{n}.md", text)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes its first byte
    try:
        proc = infratask("scan", "--json", str(tmp_path), stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert proc.stderr == ""  # no BrokenPipeError, no "Exception ignored" on exit
    assert proc.returncode == BROKEN_PIPE == 141


def test_head_in_a_pipeline_sees_the_first_line(tmp_path: Path) -> None:
    write_task(tmp_path, "TASK-001.md", task_md(item("Step", "true")))
    command = f"{sys.executable} -m pytest_infratask.cli scan --json {tmp_path} | head -1"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[\n", "")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("scan", "nope/"), "nope"),
        (("scan", "--json", ".", "nope/"), "nope"),
        (("set", "nope.yaml", "image.tag", "v2"), "nope.yaml"),
    ],
    ids=["scan", "scan among others", "set"],
)
def test_a_missing_path_is_one_line_naming_it(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    proc = infratask(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"infratask {args[0]}: error: {named}: no such file")
