"""``--infratask-status``: Backlog.md's ``status`` follows the run, byte-exactly.

In progress while a task's commands run, done once it is verified (and committed
with ``--infratask-commit``), put back when a run passed nothing; the statuses come
from the project's ``backlog/config.yml`` as Backlog.md reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from helpers import QUIET, changes, encode, git, item
from hypothesis import given
from hypothesis import strategies as st

from pytest_infratask.read.statuses import BoardStatuses, board_statuses
from pytest_infratask.record import writeback

CONFIG = 'project_name: "Demo"\nstatuses: ["To Do", "In Progress", "Done"]\n'
NAME = "task-1 - Roll-out.md"


def backlog_task(
    root: Path,
    *items: str,
    status: str | None = "status: To Do",
    config: str | None = CONFIG,
    newline: str = "\n",
    extra: str = "",
) -> Path:
    """A task file as Backlog.md writes it, in a Backlog.md project's tasks folder."""
    folder = root / "backlog" / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (root / "backlog" / "config.yml").write_text(config)
    meta = ["id: TASK-1", "title: Roll out", *([status] if status else [])]
    text = "\n".join(
        [
            "---",
            *meta,
            "assignee: []",
            "created_date: '2025-06-01 09:15'",
            "updated_date: '2025-06-01 09:15'",
            "labels: []",
            "dependencies: []",
            "---",
            "",
            "## Acceptance Criteria",
            "<!-- AC:BEGIN -->",
            *(line.rstrip("\n") for line in items),
            "<!-- AC:END -->",
            extra,
        ]
    )
    path = folder / NAME
    path.write_bytes(encode(text, newline=newline))
    return path


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, "--infratask-status", *args, "backlog")


def status_line(path: Path) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith("status:"))


@pytest.mark.parametrize(
    ("before", "newline", "after"),
    [
        ("status: To Do", "\n", "status: Done"),
        ("status: 'To Do'", "\r\n", "status: 'Done'"),
        ('status:  "To Do"  # the board', "\n", 'status:  "Done"  # the board'),
    ],
)
def test_a_verified_task_is_done_and_nothing_else_changed(
    pytester: pytest.Pytester, before: str, newline: str, after: str
) -> None:
    path = backlog_task(
        pytester.path,
        item("#1 config written", "true"),
        item("#2 service checked", "true"),
        status=before,
        newline=newline,
    )
    old = path.read_bytes()
    run(pytester).assert_outcomes(passed=3)  # the ::verify item writes the done status
    new = path.read_bytes()
    found = changes(old.decode(), new.decode(), status=True)
    assert found.status == [(before, after)]
    assert len(found.ticked) == 2 and len(found.updated) == 1
    assert new.count(b"\r\n") == new.count(b"\n") if newline == "\r\n" else b"\r" not in new


def test_while_its_commands_run_the_task_is_in_progress(pytester: pytest.Pytester) -> None:
    path = backlog_task(pytester.path, item("#1 status read", f"grep '^status:' '{NAME}' > seen"))
    run(pytester).assert_outcomes(passed=2)
    assert (path.parent / "seen").read_text() == "status: In Progress\n"
    assert status_line(path) == "status: Done"


@pytest.mark.parametrize(
    ("second", "expected"),
    [("exit 1", "status: In Progress"), (None, "status: In Progress")],
    ids=["one-passed-one-failed", "one-passed-one-manual"],
)
def test_a_task_that_got_somewhere_stays_in_progress(
    pytester: pytest.Pytester, second: str | None, expected: str
) -> None:
    criteria = [item("#1 config written", "true")]
    criteria.append(item("#2 checked", second) if second else "- [ ] #2 owners told")
    path = backlog_task(pytester.path, *criteria)
    old = path.read_text()
    run(pytester)
    found = changes(old, path.read_text(), status=True)
    assert found.status == [("status: To Do", expected)]


def test_a_complete_task_verified_again_becomes_done(pytester: pytest.Pytester) -> None:
    path = backlog_task(
        pytester.path, item("#1 config written", "true", box="x"), status="status: In Progress"
    )
    old = path.read_text()
    run(pytester).assert_outcomes(passed=1, skipped=1)  # #1 done already; ::verify passes
    found = changes(old, path.read_text(), status=True)
    assert found.status == [("status: In Progress", "status: Done")] and not found.entries


def test_a_run_that_passed_nothing_puts_the_status_back(pytester: pytest.Pytester) -> None:
    path = backlog_task(pytester.path, item("#1 config written", "exit 2"))
    old = path.read_text()
    run(pytester).assert_outcomes(failed=1, skipped=1)
    found = changes(old, path.read_text(), status=True)
    assert found.status == [] and status_line(path) == "status: To Do"
    assert found.entry_texts()[0].startswith("Failed #1")


def test_a_failed_verification_leaves_it_in_progress(pytester: pytest.Pytester) -> None:
    verification = "\n## Verification\n\n```bash\nexit 4\n```\n"
    path = backlog_task(pytester.path, item("#1 config written", "true"), extra=verification)
    run(pytester)
    assert status_line(path) == "status: In Progress"


def test_the_configured_statuses_are_used(pytester: pytest.Pytester) -> None:
    config = "statuses: [Backlog, 'in progress', Review, Shipped]\n"
    path = backlog_task(
        pytester.path,
        item("#1 status read", f"grep '^status:' '{NAME}' > seen"),
        status="status: Backlog",
        config=config,
    )
    run(pytester).assert_outcomes(passed=2)
    assert (path.parent / "seen").read_text() == "status: in progress\n"
    assert status_line(path) == "status: Shipped"


def test_without_an_in_progress_status_a_running_task_keeps_its_own(
    pytester: pytest.Pytester,
) -> None:
    path = backlog_task(
        pytester.path,
        item("#1 status read", f"grep '^status:' '{NAME}' > seen"),
        config="statuses: [Open, Closed]\n",
        status="status: Open",
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert (path.parent / "seen").read_text() == "status: Open\n"
    assert status_line(path) == "status: Closed"
    assert "has no 'In Progress' status" in result.stdout.str() + result.stderr.str()


def test_a_file_without_status_gets_none(pytester: pytest.Pytester) -> None:
    path = backlog_task(pytester.path, item("#1 config written", "true"), status=None)
    old = path.read_text()
    run(pytester).assert_outcomes(passed=1)
    assert changes(old, path.read_text()).status == []  # status=False: any change fails


@pytest.mark.parametrize("options", [(), ("--infratask-status", "--infratask-no-writeback")])
def test_without_the_option_the_status_is_left_alone(
    pytester: pytest.Pytester, options: tuple[str, ...]
) -> None:
    path = backlog_task(pytester.path, item("#1 config written", "true"))
    pytester.runpytest(*QUIET, *options, "backlog").assert_outcomes(passed=1)
    assert status_line(path) == "status: To Do"


def test_the_commit_carries_done(pytester: pytest.Pytester, git_identity: None) -> None:
    path = backlog_task(pytester.path, item("#1 config written", "echo v2 > ../../app.conf"))
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-qm", "init")
    run(pytester, "--infratask-commit").assert_outcomes(passed=2)
    committed = git(pytester.path, "show", f"HEAD:backlog/tasks/{NAME}")
    assert "\nstatus: Done\n" in committed and committed == path.read_text()
    assert git(pytester.path, "status", "--porcelain") == ""


def test_a_commit_that_fails_puts_the_status_back(
    pytester: pytest.Pytester, git_identity: None
) -> None:
    path = backlog_task(pytester.path, item("#1 config written", "echo v2 > ../../app.conf"))
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-qm", "init")
    hook = pytester.path / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho refused >&2\nexit 1\n")
    hook.chmod(0o755)
    result = run(pytester, "--infratask-commit")
    result.assert_outcomes(passed=1, failed=1)
    assert status_line(path) == "status: In Progress"
    assert git(pytester.path, "log", "--oneline").count("\n") == 1


def test_statuses_are_read_as_backlog_reads_them(tmp_path: Path) -> None:
    task = backlog_task(tmp_path, item("#1 x", "true"), config=None)
    assert board_statuses(task) == BoardStatuses("In Progress", "Done", None)
    (tmp_path / "backlog.config.yml").write_text("statuses: [Todo, In  progress, Done!]\n")
    assert board_statuses(task) == BoardStatuses(
        "In  progress", "Done!", tmp_path / "backlog.config.yml"
    )


@given(
    quote=st.sampled_from(["", "'", '"']),
    comment=st.sampled_from(["", "  # the board"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    value=st.text(st.characters(codec="utf-8", exclude_categories=["C", "Zl", "Zp"]), min_size=1),
)
def test_any_status_value_is_written_as_yaml_reads_it(
    quote: str, comment: str, newline: str, value: str
) -> None:
    lines = ["---", "id: T", f"status: {quote}To Do{quote}{comment}", "updated: 2024-01-01", "---"]
    text = newline.join([*lines, "- [ ] #1 a", ""])
    now = datetime(2026, 1, 2, tzinfo=UTC)
    new = writeback.apply(text, writeback.Change(None, [], now, status=value))
    old_lines, new_lines = text.split(newline), new.split(newline)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert changed == ([2, 3] if value != "To Do" else [3])
    assert yaml.safe_load(newline.join(new_lines[1:4]))["status"] == value
    assert new_lines[2].endswith(comment) and new_lines[2].startswith("status: ")
