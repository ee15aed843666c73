"""Generated inputs: task files, equivalent Python tests, a shell script, a playbook."""

from __future__ import annotations

import sys
from pathlib import Path

SHELL = ["bash", "-e", "-o", "pipefail", "-c"]


def task_text(task_id: str, criteria: int, command: str = "true") -> str:
    """A task file of ``criteria`` open criteria, each one ```bash block running ``command``."""
    lines = [
        "---",
        f"id: {task_id}",
        f"title: Benchmark {task_id}",
        "status: To Do",
        "labels: [benchmark]",
        "updated_date: '2024-01-15 14:30'",
        "---",
        f"# Benchmark {task_id}",
        "",
        "## Acceptance Criteria",
    ]
    for n in range(1, criteria + 1):
        lines += [f"- [ ] step {n} runs {command}", "  ```bash", f"  {command}", "  ```"]
    lines += ["", "## Progress Log", "- 2024-01-15 14:30: Task created", ""]
    return "\n".join(lines)


def write_task(path: Path, criteria: int, command: str = "true") -> Path:
    path.write_text(task_text(path.stem, criteria, command), encoding="utf-8")
    return path


def count_ticked(path: Path) -> int:
    return sum(
        1 for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("- [x] ")
    )


def count_log_lines(path: Path) -> int:
    text = path.read_text(encoding="utf-8")
    log = text.split("## Progress Log", 1)[1]
    return sum(1 for line in log.splitlines() if line.startswith("- "))


def plain_tests(path: Path, count: int, command: str = "true") -> Path:
    """``count`` test functions, each spawning the command as the plugin would."""
    body = ["import subprocess", ""]
    for n in range(1, count + 1):
        body += [
            f"def test_step_{n}():",
            f"    subprocess.run({[*SHELL, command]!r}, check=True)",
            "",
        ]
    path.write_text("\n".join(body), encoding="utf-8")
    return path


def python_module(path: Path, tests: int) -> Path:
    path.write_text(
        "".join(f"def test_{n}():\n    pass\n\n" for n in range(tests)), encoding="utf-8"
    )
    return path


def bash_floor(path: Path, count: int, command: str = "true") -> Path:
    """The floor: the same ``count`` shell processes, spawned by a shell script."""
    line = " ".join(SHELL) + f" '{command}'"
    path.write_text("set -e\n" + f"{line}\n" * count, encoding="utf-8")
    return path


def playbook(path: Path, count: int, command: str = "true") -> Path:
    tasks = "".join(
        f"    - name: step {n}\n      ansible.builtin.command: {command!r}\n"
        for n in range(1, count + 1)
    )
    path.write_text(
        "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n" + tasks,
        encoding="utf-8",
    )
    return path


def ansible_playbook() -> Path | None:
    """ansible-playbook of this interpreter's environment (not a pyenv shim: no shim cost)."""
    import shutil

    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file():
        return beside
    found = shutil.which("ansible-playbook")
    return Path(found) if found else None


def ansible_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }


def pytest_ini(folder: Path) -> None:
    """Pin the rootdir and keep any ini file above the temp directory out of the run."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def git_repo(folder: Path, env: dict[str, str]) -> dict[str, str]:
    """Make ``folder`` (with its files) a git repository with one commit; return the
    environment to run in it (a commit identity added)."""
    import subprocess

    gitenv = {**env, **GIT_IDENTITY}
    for args in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(args, cwd=folder, env=gitenv, check=True, capture_output=True)
    return gitenv


def git_reset(folder: Path, env: dict[str, str]) -> None:
    """Back to the committed state between runs: nothing staged, no remembered stage."""
    import shutil
    import subprocess

    subprocess.run(["git", "reset", "-q"], cwd=folder, env=env, check=True)
    shutil.rmtree(folder / ".git" / "infratask", ignore_errors=True)
