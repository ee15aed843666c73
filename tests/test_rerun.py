"""Rerunning tasks: a finished task reports what is true of it, and ``--lf`` reruns a
task's ``::verify`` with its criteria.

Real git repositories with a bare ``origin`` in temp dirs; pytest's own cache (``--lf``)
on, as a user has it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import git, opt_in, push_to_new_origin
from helpers import meta_task as write_task

QUIET = (
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:benchmark",
    "-p",
    "no:metadata",
    "-p",
    "no:xdist",
    "-p",
    "no:json-report",
)
STAGED_ADVICE = "review the staged changes"


@pytest.fixture
def repo(
    pytester: pytest.Pytester, git_identity: None, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pytester directory as a git checkout pushed to a bare ``origin``."""
    root = pytester.path
    (root / "pytest.ini").write_text("[pytest]\ninfratask_retry_delay = 0\n")
    (root / ".gitignore").write_text(".pytest_cache/\nreports/\nready.txt\n")
    origin = tmp_path_factory.mktemp("remote") / "origin.git"
    push_to_new_origin(root, origin)
    return root


def run(pytester: pytest.Pytester, *args: str, cache: bool = False) -> pytest.RunResult:
    """pytest on the checkout, reports in ``reports/``; the cache only when asked."""
    flags = () if cache else ("-p", "no:cacheprovider")
    return pytester.runpytest(
        *QUIET,
        *flags,
        "--infratask-report-dir=reports",
        "--junitxml=reports/junit.xml",
        "--infratask-summary=reports/s.md",
        *opt_in(pytester.path, *args),
    )


def contract(root: Path, task_id: str) -> dict:
    return json.loads((root / "reports" / f"{task_id}.json").read_text())


def verify_properties(root: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for case in ET.parse(root / "reports" / "junit.xml").getroot().iter("testcase"):
        if case.get("name") == "verify":
            for prop in case.iter("property"):
                found.setdefault(prop.get("name", ""), []).append(prop.get("value", ""))
    return found


def head(root: Path, ref: str = "HEAD") -> str:
    return git(root, "rev-parse", ref).strip()


def origin_head(root: Path) -> str:
    return git(root, "ls-remote", "origin", "refs/heads/main").split()[0]


def rotate_task(root: Path, **meta: object) -> Path:
    path = write_task(
        root / "TASK-005.md",
        {"id": "TASK-005", "title": "Rotate", **meta},
        [("Rotated", "echo rotated > rotated.txt"), ("Noted", "echo noted > notes.txt")],
        "## Verification\n```bash\ntest -f rotated.txt\n```\n",
    )
    git(root, "add", "TASK-005.md")
    git(root, "commit", "-q", "-m", "Add TASK-005")
    git(root, "push", "-q")
    return path


# -- a rerun reports what is true ------------------------------------------------------


def test_rerun_of_a_committed_and_pushed_task_reports_its_commit_and_push(
    pytester: pytest.Pytester,
    repo: Path,
) -> None:
    path = rotate_task(repo)
    first = run(pytester, "--infratask-push")
    first.assert_outcomes(passed=3)
    task_commit = head(repo)
    assert origin_head(repo) == task_commit
    assert contract(repo, "TASK-005")["pushed"][repo.name] == {
        "remote": git(repo, "remote", "get-url", "origin").strip(),
        "branch": "main",
        "commit": task_commit,
    }
    before = path.read_bytes()
    origin = git(repo, "remote", "get-url", "origin").strip()

    again = run(pytester, "--infratask-push")
    again.assert_outcomes(passed=1, skipped=2)
    assert again.ret == 0
    data = contract(repo, "TASK-005")
    assert data["success"] is True
    assert data["status"] == "committed"
    assert data["commits"] == {repo.name: task_commit}
    assert data["pushed"] == {
        repo.name: {
            "remote": git(repo, "remote", "get-url", "origin").strip(),
            "branch": "main",
            "commit": task_commit,
            "earlier": True,
        }
    }
    assert data["next_steps"] == "task complete"
    # Nothing new: no commit, no push, the task file untouched.
    assert head(repo) == task_commit == origin_head(repo)
    assert path.read_bytes() == before
    assert git(repo, "status", "--porcelain").strip() == ""
    # Every place a person or a tool reads says the same, and none asks for a commit.
    out = again.stdout.str()
    again.stdout.fnmatch_lines(
        [
            "TASK-005 [[]generic] committed: 2/2 criteria complete, checks 1/1 passed",
            f"    commit: {repo.name} {task_commit[:10]}, pushed to main at {origin}"
            " by an earlier run",
            "    next: task complete",
        ]
    )
    summary = (repo / "reports" / "s.md").read_text()
    assert f"{task_commit[:10]}, pushed to main at {origin} by an earlier run" in summary
    properties = verify_properties(repo)
    assert properties["status"] == ["committed"]
    assert properties["commit"] == [f"{repo.name}@{task_commit}"]
    for text in (out, json.dumps(data), summary):
        assert STAGED_ADVICE not in text


def test_a_plain_rerun_reports_the_commit_and_what_the_upstream_holds(
    pytester: pytest.Pytester,
    repo: Path,
) -> None:
    """Without --infratask-push the push state is still shown, from the remote-tracking
    ref (no fetch): a commit the upstream lacks is committed, not pushed."""
    rotate_task(repo)
    run(pytester, "--infratask-commit").assert_outcomes(passed=3)
    task_commit = head(repo)
    assert origin_head(repo) != task_commit
    plain = run(pytester)
    plain.assert_outcomes(passed=1, skipped=2)
    data = contract(repo, "TASK-005")
    assert (data["status"], data["commits"]) == ("committed", {repo.name: task_commit})
    assert "pushed" not in data
    assert STAGED_ADVICE not in plain.stdout.str()
    git(repo, "push", "-q")
    pushed = run(pytester)
    pushed.assert_outcomes(passed=1, skipped=2)
    assert contract(repo, "TASK-005")["pushed"][repo.name]["earlier"] is True


def test_a_rerun_with_nothing_to_verify_reports_the_commit_too(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """No ::verify is collected (no checks, no --infratask-commit): the contract is
    still built from what is true."""
    write_task(
        repo / "TASK-007.md",
        {"id": "TASK-007", "title": "Note"},
        [("Noted", "echo noted > notes.txt")],
    )
    run(pytester, "--infratask-push").assert_outcomes(passed=2)
    plain = run(pytester)
    plain.assert_outcomes(skipped=1)
    data = contract(repo, "TASK-007")
    assert data["status"] == "committed"
    assert data["commits"] == {repo.name: head(repo)}
    assert data["pushed"][repo.name]["earlier"] is True
    assert STAGED_ADVICE not in plain.stdout.str()


def test_a_rerun_with_push_pushes_a_commit_an_earlier_run_left_unpushed(
    pytester: pytest.Pytester,
    repo: Path,
) -> None:
    rotate_task(repo)
    run(pytester, "--infratask-commit").assert_outcomes(passed=3)
    task_commit = head(repo)
    again = run(pytester, "--infratask-push")
    again.assert_outcomes(passed=1, skipped=2)
    assert origin_head(repo) == task_commit
    data = contract(repo, "TASK-005")
    assert data["status"] == "committed"
    assert data["commits"] == {repo.name: task_commit}
    assert "earlier" not in data["pushed"][repo.name], "this run pushed it"


def test_a_task_file_edited_since_its_commit_is_not_reported_committed(
    pytester: pytest.Pytester,
    repo: Path,
) -> None:
    """The task's own file is part of what it commits: a later edit is uncommitted."""
    path = rotate_task(repo)
    run(pytester, "--infratask-commit").assert_outcomes(passed=3)
    path.write_text(path.read_text() + "- 2024-01-02 10:00: reviewed by hand\n")
    again = run(pytester)
    again.assert_outcomes(passed=1, skipped=2)
    data = contract(repo, "TASK-005")
    assert data["status"] == "ready_for_verification"
    assert "commits" not in data


def test_a_rerun_of_a_task_never_committed_by_the_plugin_stays_ready_for_verification(
    pytester: pytest.Pytester,
    repo: Path,
) -> None:
    rotate_task(repo)
    run(pytester).assert_outcomes(passed=3)
    git(repo, "commit", "-q", "-m", "committed by hand, without the task's trailer")
    again = run(pytester)
    again.assert_outcomes(passed=1, skipped=2)
    data = contract(repo, "TASK-005")
    assert data["status"] == "ready_for_verification"
    assert "commits" not in data


# -- --lf keeps a task's ::verify ------------------------------------------------------


FLAKY = [("Ready", "test -f ready.txt && echo ok > out.txt"), ("Second", "echo two > two.txt")]


@pytest.mark.parametrize("target", ["TASK-006.md", "."])
def test_last_failed_with_push_runs_verify_commits_and_pushes(
    pytester: pytest.Pytester,
    repo: Path,
    target: str,
) -> None:
    """The failed run had no ::verify (nothing to verify, no --infratask-push), so
    pytest's cache never saw it; the rerun of the failed criterion still brings it.
    With the directory as argument pytest filters the file's items at collection,
    with the file as argument among the items: both keep it."""
    write_task(repo / "TASK-006.md", {"id": "TASK-006", "title": "Flaky"}, FLAKY)
    git(repo, "add", "TASK-006.md")
    git(repo, "commit", "-q", "-m", "Add TASK-006")
    git(repo, "push", "-q")
    first = run(pytester, target, cache=True)
    first.assert_outcomes(passed=1, failed=1)
    assert "TASK-006.md::verify" not in first.stdout.str()
    (repo / "ready.txt").write_text("")
    again = run(pytester, target, "--lf", "--infratask-push", "-v", cache=True)
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*TASK-006.md::ac1-ready PASSED*", "*TASK-006.md::verify PASSED*"])
    assert git(repo, "log", "-1", "--format=%s").strip() == "TASK-006: Flaky"
    assert origin_head(repo) == head(repo)
    committed = set(git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"TASK-006.md", "out.txt", "two.txt"}
    data = contract(repo, "TASK-006")
    assert (data["status"], data["success"]) == ("committed", True)
    assert data["pushed"][repo.name]["commit"] == head(repo)
    # Nothing is left as last failed: the next --lf has nothing of the task to rerun.
    assert json.loads((repo / ".pytest_cache/v/cache/lastfailed").read_text()) == {}


def test_last_failed_leaves_verify_out_when_the_keyword_does(
    pytester: pytest.Pytester,
    repo: Path,
) -> None:
    """Deselected by -k, a requeued ::verify does not stay in the last-failed set."""
    write_task(repo / "TASK-006.md", {"id": "TASK-006", "title": "Flaky"}, FLAKY)
    run(pytester, "TASK-006.md", cache=True).assert_outcomes(passed=1, failed=1)
    (repo / "ready.txt").write_text("")
    again = run(
        pytester, "TASK-006.md", "--lf", "--infratask-commit", "-k", "not verify", cache=True
    )
    again.assert_outcomes(passed=1, deselected=2)
    lastfailed = json.loads((repo / ".pytest_cache/v/cache/lastfailed").read_text())
    assert lastfailed == {}
    assert git(repo, "log", "-1", "--format=%s").strip() == "init"
