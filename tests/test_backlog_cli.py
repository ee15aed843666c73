"""The real Backlog.md CLI as the other party: it creates the tasks, the plugin runs
them, the CLI reads the result back and edits the files in its own way afterwards.

The CLI comes from ``tests/backlogcli/install.sh`` (``make backlog-cli``). Without it
these tests are skipped, naming that command; ``INFRATASK_REQUIRE_BACKLOG=1`` (set by
``.ci/run``) makes them fail instead. Every CLI call runs in the test's git
repository with HOME and the XDG directories in a temporary directory.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import DEADLINE, QUIET, assert_recent, changes, git, updated_value

pytestmark = pytest.mark.backlog

PINNED = (Path(__file__).parent / "backlogcli" / "version.env").read_text()
VERSION = re.findall(r"^BACKLOG_VERSION=(\S+)$", PINNED, re.M)[0]
CACHE = Path(os.environ.get("INFRATASK_BACKLOG_CACHE", "~/.cache/pytest-infratask/backlog"))
BACKLOG = CACHE.expanduser() / VERSION / "node_modules" / ".bin" / "backlog"


@pytest.fixture(scope="session")
def backlog_bin() -> Path:
    if not os.access(BACKLOG, os.X_OK):
        reason = (
            f"Backlog.md CLI {VERSION} not installed ({BACKLOG}): run `make backlog-cli` "
            "(tests/backlogcli/install.sh, needs npm)"
        )
        if os.environ.get("INFRATASK_REQUIRE_BACKLOG") == "1":
            pytest.fail(f"{reason}; INFRATASK_REQUIRE_BACKLOG is set", pytrace=False)
        pytest.skip(reason)
    return BACKLOG


@dataclass
class Project:
    """A git repository with a Backlog.md project in it, and the CLI to work on it."""

    root: Path
    bin: Path

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bin), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )
        assert done.returncode == 0, f"backlog {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def create(self, title: str, *criteria: str) -> Path:
        """``backlog task create`` with one ``--ac`` per criterion; the file it wrote."""
        out = self.cli(
            "task", "create", title, *(a for c in criteria for a in ("--ac", c)), "--plain"
        )
        found = re.search(r"^File: (.+\.md)$", out, re.M)
        assert found, out
        return Path(found[1])

    def view(self, task_id: str) -> str:
        return self.cli("task", "view", task_id, "--plain")

    def board(self) -> dict[str, list[str]]:
        """``backlog task list --plain``: the task lines under each status heading."""
        columns: dict[str, list[str]] = {}
        column: list[str] = []
        for line in self.cli("task", "list", "--plain").splitlines():
            if line and not line.startswith(" ") and line.endswith(":"):
                column = columns.setdefault(line[:-1], [])
            elif line.strip():
                column.append(line.strip())
        return columns


@pytest.fixture
def project(
    pytester: pytest.Pytester,
    backlog_bin: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    git_identity: None,
) -> Project:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in ("CONFIG", "DATA", "CACHE", "STATE"):
        monkeypatch.setenv(f"XDG_{name}_HOME", str(home / name.lower()))
    root = pytester.path
    git(root, "init", "-q", "-b", "main")
    made = Project(root, backlog_bin)
    made.cli("init", "Demo", "--defaults", "--integration-mode", "none")
    assert (root / "backlog" / "config.yml").is_file()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "Backlog.md project")
    return made


def with_blocks(path: Path, scripts: dict[int, str]) -> bytes:
    """Give criteria command blocks as a person would: a fenced bash block indented
    under the item. Returns the file's bytes after the edit."""
    lines = path.read_text().splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(line)
        found = re.match(r"^- \[ \] #(\d+) ", line)
        if found and int(found[1]) in scripts:
            block = scripts[int(found[1])].splitlines()
            out += ["  ```bash\n", *(f"  {b}\n" for b in block), "  ```\n"]
    path.write_text("".join(out))
    return path.read_bytes()


def run_plugin(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args, "backlog")


def test_the_cli_reads_the_ticks_and_nothing_else_changed(
    pytester: pytest.Pytester, project: Project
) -> None:
    path = project.create("Roll out", "config written", "service checked", "owners told")
    before = with_blocks(path, {1: "echo ok > written.txt", 2: "exit 3"})
    result = run_plugin(pytester)
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    after = path.read_bytes()
    found = changes(before.decode(), after.decode())
    assert found.ticked == ["- [ ] #1 config written"]
    assert [e.split(": ", 1)[0] for e in found.entry_texts()] == ["Completed #1", "Failed #2"]
    assert found.updated == []  # Backlog.md wrote no updated_date yet: none is added

    view = project.view("TASK-1")
    assert "- [x] #1 config written" in view
    assert "- [ ] #2 service checked" in view and "- [ ] #3 owners told" in view
    assert project.board() == {"To Do": ["TASK-1 - Roll out (ac: 1/3)"]}


def test_the_cli_edits_keep_the_log_and_the_blocks(
    pytester: pytest.Pytester, project: Project
) -> None:
    path = project.create("Rotate", "key issued", "key installed", "owners told")
    with_blocks(path, {1: "echo issued > issued.txt", 2: "echo installed > installed.txt"})
    run_plugin(pytester).assert_outcomes(passed=2, skipped=1)
    logged = [line for line in path.read_text().splitlines() if re.match(r"^- \d{4}-", line)]
    assert len(logged) == 2

    project.cli(
        "task", "edit", "TASK-1", "--status", "In Progress", "--append-notes", "CA told",
        "--check-ac", "3", "--ac", "backup made",
    )  # fmt: skip
    text = path.read_text()
    assert all(line in text.splitlines() for line in logged), text
    for script in ("echo issued > issued.txt", "echo installed > installed.txt"):
        assert f"  ```bash\n  {script}\n  ```\n" in text
    assert "status: In Progress" in text and "CA told" in text
    view = project.view("TASK-1")
    assert "- [x] #3 owners told" in view and "- [ ] #4 backup made" in view

    # The CLI's layout (its updated_date, the log moved where it put it) is the
    # plugin's next starting point: only the new criterion runs, its line joins the log.
    before = with_blocks(path, {4: "echo saved > backup.txt"})
    run_plugin(pytester).assert_outcomes(passed=1, skipped=3)  # #1-#3 done already
    found = changes(before.decode(), path.read_text())
    assert found.ticked == ["- [ ] #4 backup made"]
    assert found.entry_texts() == ["Completed #4: backup made"]
    assert len(found.updated) <= 1  # the CLI's updated_date, unchanged within its minute
    assert_recent(updated_value(path.read_text(), "updated_date") or "", "%Y-%m-%d %H:%M")
    lines = path.read_text().splitlines()
    assert lines.index(found.entries[0]) == lines.index(logged[-1]) + 1
    view = project.view("TASK-1")
    assert all(f"- [x] #{n} " in view for n in (1, 2, 3, 4)), view
    assert project.board() == {"In Progress": ["TASK-1 - Rotate (ac: 4/4)"]}


def test_the_cli_sees_the_status_the_run_wrote(pytester: pytest.Pytester, project: Project) -> None:
    done = project.create("Ship", "built", "deployed")
    half = project.create("Migrate", "copied", "switched")
    none = project.create("Retire", "stopped")
    olds = {
        done: with_blocks(done, {1: "true", 2: "true"}),
        half: with_blocks(half, {1: "true", 2: "exit 1"}),
        none: with_blocks(none, {1: "exit 1"}),
    }
    run_plugin(pytester, "--infratask-status")
    assert project.board() == {
        "To Do": ["TASK-3 - Retire (ac: 0/1)"],
        "In Progress": ["TASK-2 - Migrate (ac: 1/2)"],
        "Done": ["TASK-1 - Ship (ac: 2/2)"],
    }
    for path, old in olds.items():
        changes(old.decode(), path.read_text(), status=True)  # nothing else changed
    assert "Status: ✔ Done" in project.view("TASK-1")
