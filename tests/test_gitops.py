"""Staging, verification and commits in real git repositories."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import HELMRELEASE, git, item

if TYPE_CHECKING:
    from pytest_infratask.record.git import Tracker


@pytest.fixture
def repo(pytester: pytest.Pytester, git_identity: None) -> Path:
    root = pytester.path
    (root / "apps" / "api").mkdir(parents=True)
    (root / "apps" / "api" / "helmrelease.yaml").write_text(HELMRELEASE)
    (root / "apps" / "api" / "kustomization.yaml").write_text("resources:\n- helmrelease.yaml\n")
    (root / "tasks").mkdir()
    (root / "notes.txt").write_text("someone's notes\n")
    (root / ".gitignore").write_text(".pytest_cache/\nreports/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def task(root: Path, body: str, *, verification: str = "", extra: str = "") -> Path:
    text = textwrap.dedent(f"""\
        ---
        id: TASK-007
        title: Deploy api 0.1.18
        labels: [deployment]
        workdir: ..
        updated: 2024-01-01
        {extra}
        ---
        ## Acceptance Criteria
        """) + textwrap.dedent(body)
    if verification:
        text += "\n## Verification\n```bash\n" + verification + "\n```\n"
    path = root / "tasks" / "TASK-007.md"
    path.write_text(text)
    git(root, "add", "tasks/TASK-007.md")
    git(root, "commit", "-q", "-m", "add task")
    return path


BUMP = """\
- [ ] Bump the chart
  ```bash
  infratask set apps/api/helmrelease.yaml spec.chart.spec.version 0.1.18
  ```
- [ ] Note it
  ```bash
  echo "api 0.1.18" > RELEASE.txt
  ```
"""


def report(root: Path) -> dict:
    return json.loads((root / "reports" / "TASK-007.json").read_text())


def staged(root: Path) -> set[str]:
    return set(git(root, "diff", "--cached", "--name-only").split())


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "tasks/TASK-007.md", "-p", "no:cacheprovider", "--infratask-report-dir=reports", *args
    )


def test_changes_are_attributed_and_staged_not_committed(
    pytester: pytest.Pytester, repo: Path
) -> None:
    task(repo, BUMP)
    git(repo, "rm", "-q", "--cached", "notes.txt")  # someone else's staged work
    run(pytester).assert_outcomes(passed=2)
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    assert staged(repo) == {
        "apps/api/helmrelease.yaml",
        "RELEASE.txt",
        "tasks/TASK-007.md",
        "notes.txt",
    }
    data = report(repo)
    assert data["status"] == "ready_for_verification"
    assert data["changes"]["files_modified"] == [
        "apps/api/helmrelease.yaml",
        "RELEASE.txt",
        "tasks/TASK-007.md",
    ]
    per_criterion = {r["number"]: r["files"] for r in data["criteria_results"]}
    assert per_criterion == {1: ["apps/api/helmrelease.yaml"], 2: ["RELEASE.txt"]}


def checks_first(repo: Path, *rest: str) -> None:
    """The task: a check that changes no file, then ``rest``. The test run's own output
    files (pytester writes them into the repository as the run goes) are kept out of
    what a criterion that runs git sees change."""
    (repo / ".git" / "info" / "exclude").write_text("stdout\nstderr\n")
    task(repo, "\n".join([item("Check the notes", "test -f notes.txt"), *rest]) + "\n")


def test_the_ticks_of_criteria_that_change_no_file_are_staged_at_the_tasks_end(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """A criterion whose commands changed no file writes no index: its tick waits for
    the next criterion that stages files, or for the task's end. Once the run is over
    the index holds the task file as written."""
    checks_first(
        repo,
        item("The index still holds it as committed", "git diff --cached --quiet -- tasks/"),
        item("Check again", "true"),
    )
    run(pytester).assert_outcomes(passed=3)
    assert staged(repo) == {"tasks/TASK-007.md"}
    assert git(repo, "diff", "--name-only") == ""  # nothing of it left unstaged
    assert (repo / "tasks" / "TASK-007.md").read_text().count("- [x]") == 3


def test_a_tick_waiting_for_the_index_is_staged_with_the_next_files(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """The task file is staged with the next criterion's files, as that criterion
    wrote it (its own tick included)."""
    ticks = "git show :tasks/TASK-007.md | grep -c '^- \\[x\\]'"
    checks_first(
        repo,
        item("Note it", "echo noted > NOTE.txt"),
        item("The index holds both ticks", f'test "$({ticks})" = 2'),
    )
    run(pytester).assert_outcomes(passed=3)
    assert staged(repo) == {"tasks/TASK-007.md", "NOTE.txt"}
    assert git(repo, "diff", "--name-only") == ""


def test_unrelated_dirty_files_are_never_staged(pytester: pytest.Pytester, repo: Path) -> None:
    task(repo, BUMP)
    (repo / "notes.txt").write_text("edited, not ours\n")
    run(pytester).assert_outcomes(passed=2)
    assert "notes.txt" not in staged(repo)
    assert git(repo, "status", "--short", "notes.txt").startswith(" M")


def test_commit_after_verification_with_trailers(pytester: pytest.Pytester, repo: Path) -> None:
    task(
        repo,
        BUMP,
        verification="grep -q 'version: \"0.1.18\"' apps/api/helmrelease.yaml",
        extra="validate: [apps/api]",
    )
    git(repo, "rm", "-q", "--cached", "notes.txt")
    run(pytester, "--infratask-commit").assert_outcomes(passed=3)
    message = git(repo, "log", "-1", "--format=%B")
    assert message.startswith("TASK-007: Deploy api 0.1.18\n")
    assert "Infratask-Task: TASK-007" in message
    assert "Infratask-Criteria: 1,2" in message
    committed = set(git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"apps/api/helmrelease.yaml", "RELEASE.txt", "tasks/TASK-007.md"}
    assert staged(repo) == {"notes.txt"}, "the user's own staged work stays staged"
    data = report(repo)
    assert data["status"] == "committed"
    assert data["commits"][repo.name] == git(repo, "rev-parse", "HEAD").strip()
    assert "- [x] Note it" in git(repo, "show", "HEAD:tasks/TASK-007.md")


def test_failed_verification_commits_nothing(pytester: pytest.Pytester, repo: Path) -> None:
    path = task(repo, BUMP, verification="grep -q 'version: \"9.9.9\"' apps/api/helmrelease.yaml")
    result = run(pytester, "--infratask-commit", "--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "Verification command failed (exit 1): "
            "`grep -q 'version: \"9.9.9\"' apps/api/helmrelease.yaml` printed nothing",
            "FAILED tasks/TASK-007.md::verify - Verification command failed (exit 1)*",
        ]
    )
    assert 'failures="1"' in (repo / "junit.xml").read_text()
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    assert {"apps/api/helmrelease.yaml", "RELEASE.txt"} <= staged(repo)
    data = report(repo)
    assert data["status"] == "ready_for_verification"
    assert "Verification command failed" in data["next_steps"]
    assert data["success"] is False
    assert "Verification failed" in path.read_text().split("## Progress Log")[1]
    # Fixed (here: the check itself) and rerun: every box is ticked, nothing reruns,
    # but the task is verified and what it changed is committed.
    path.write_text(path.read_text().replace("9.9.9", "0.1.18"))
    again = run(pytester, "--infratask-commit")
    again.assert_outcomes(passed=1, skipped=2)
    assert again.ret == 0
    data = report(repo)
    assert data["success"] is True
    assert data["status"] == "committed"
    assert {"check": "verification", "ok": True, "message": "Verification section passed"} in (
        data["verification"]
    )
    committed = set(git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"apps/api/helmrelease.yaml", "RELEASE.txt", "tasks/TASK-007.md"}
    assert "Verification passed" in git(repo, "show", "HEAD:tasks/TASK-007.md")
    assert git(
        repo, "status", "--porcelain", "--untracked-files=no"
    ).strip() == "M  notes.txt" or "tasks/TASK-007.md" not in git(repo, "status", "--porcelain")
    # A third run of the finished, committed task: verified again, nothing written.
    before = path.read_bytes()
    third = run(pytester, "--infratask-commit")
    third.assert_outcomes(passed=1, skipped=2)
    assert path.read_bytes() == before
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "3"


def test_failing_validator_blocks_the_commit(pytester: pytest.Pytester, repo: Path) -> None:
    task(
        repo,
        """\
        - [ ] Bump the chart
          ```bash
          infratask set apps/api/helmrelease.yaml spec.chart.spec.version 0.1.18
          ```
        - [ ] Break the kustomization
          ```bash
          echo '- missing.yaml' >> apps/api/kustomization.yaml
          ```
        """,
        extra="validate: [apps/api]",
    )
    result = run(pytester, "--infratask-commit")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*kustomize build apps/api failed*missing.yaml*"])
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    assert "- [ ] Break the kustomization" in (repo / "tasks" / "TASK-007.md").read_text()
    assert "apps/api/kustomization.yaml" not in staged(repo)


def test_skip_verification_never_commits(pytester: pytest.Pytester, repo: Path) -> None:
    task(repo, BUMP)
    result = run(pytester, "--infratask-commit", "--infratask-skip-verification", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*not verified: --infratask-skip-verification*"])
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    assert report(repo)["status"] == "ready_for_verification"


def test_changing_a_file_with_your_edits_fails_and_puts_it_back(
    pytester: pytest.Pytester, repo: Path
) -> None:
    """Only running tells which files a command changes: the criterion fails (it ran, so
    it is not BLOCKED), its change is rolled back, and your edit is as it was."""
    task(repo, BUMP)
    helm = repo / "apps" / "api" / "helmrelease.yaml"
    mine = helm.read_text().replace("interval: 5m", "interval: 1m")
    helm.write_text(mine)
    result = run(pytester)
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "the commands ran and changed apps/api/helmrelease.yaml, which held your uncommitted "
            "edits (kept as they were); its changes were rolled back: apps/api/helmrelease.yaml",
        ]
    )
    assert helm.read_text() == mine
    assert "apps/api/helmrelease.yaml" not in staged(repo)
    data = report(repo)
    assert data["status"] == "partially_complete"
    [undone] = data["criteria_results"][0]["rolled_back"]
    assert undone["files"] == ["apps/api/helmrelease.yaml"]
    assert '+      version: "0.1.18"' in undone["diff"]


def test_allow_dirty_relaxes_the_check(pytester: pytest.Pytester, repo: Path) -> None:
    task(repo, BUMP)
    (repo / "pytest.ini").write_text("[pytest]\ninfratask_allow_dirty = true\n")
    helm = repo / "apps" / "api" / "helmrelease.yaml"
    helm.write_text(helm.read_text().replace("interval: 5m", "interval: 1m"))
    run(pytester).assert_outcomes(passed=2)
    assert "apps/api/helmrelease.yaml" in staged(repo)


def test_task_finished_over_two_runs_commits_everything(
    pytester: pytest.Pytester, repo: Path
) -> None:
    task(repo, BUMP)
    run(pytester, "-k", "bump").assert_outcomes(passed=1, deselected=1)
    run(pytester, "--infratask-commit").assert_outcomes(passed=2, skipped=1)
    committed = set(git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"apps/api/helmrelease.yaml", "RELEASE.txt", "tasks/TASK-007.md"}


def test_commit_hooks_run_and_can_refuse(pytester: pytest.Pytester, repo: Path) -> None:
    task(repo, BUMP)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'policy: no Friday deploys' >&2\nexit 1\n")
    hook.chmod(0o755)
    result = run(pytester, "--infratask-commit")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*git commit failed*policy: no Friday deploys*"])
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
    data = report(repo)
    assert data["status"] == "ready_for_verification"
    assert data["success"] is False
    assert data["error"] == "Commit failed"
    assert "git commit failed" in data["next_steps"]


def test_deleted_and_renamed_files_are_attributed(pytester: pytest.Pytester, repo: Path) -> None:
    task(
        repo,
        """\
        - [ ] Move and delete
          ```bash
          git mv apps/api/kustomization.yaml apps/api/kustomization.yml
          rm notes.txt
          ```
        """,
    )
    run(pytester).assert_outcomes(passed=1)
    files = report(repo)["criteria_results"][0]["files"]
    assert set(files) == {"apps/api/kustomization.yaml", "apps/api/kustomization.yml", "notes.txt"}


def test_dry_run_stages_nothing(pytester: pytest.Pytester, repo: Path) -> None:
    task(repo, BUMP)
    run(pytester, "--infratask-dry-run").assert_outcomes(skipped=2)
    assert staged(repo) == set()
    assert (
        git(repo, "status", "--short") == "?? reports/\n"
        or git(repo, "status", "--short", "--untracked-files=no") == ""
    )


def test_remembered_paths_are_rewritten_only_when_new(repo: Path) -> None:
    """Every passing criterion re-remembers the task file; that rewrites nothing."""
    from pytest_infratask.record.git import RepoTracker

    tracker = RepoTracker(repo, "repo", "main")
    tracker.remember("TASK-007", ["b", "a"])
    compact = json.dumps({"TASK-007": ["a", "b"], "TASK-008": ["x"]})
    tracker.state_file.write_text(compact)  # as another worker would have left it
    tracker.remember("TASK-007", ["a"])
    assert tracker.state_file.read_text() == compact  # not rewritten
    tracker.remember("TASK-007", ["a", "c"])
    assert tracker.remembered("TASK-007") == ["a", "b", "c"]
    assert tracker.remembered("TASK-008") == ["x"]


def _tracked(repo: Path) -> Tracker:
    from pytest_infratask.record.git import Tracker

    tracker = Tracker("TASK-007", repo / "tasks" / "TASK-007.md")
    tracker.track([repo], {})
    return tracker


def _criterion(
    tracker: Tracker, command: Callable[[], object] = lambda: None, keep: bool = False
) -> list[str]:
    """One criterion as a task runs it: its turn on the repository, the state before,
    the command, attribution, staging (with the task file, as after a tick)."""
    with tracker.turns(60, keep=keep):
        before = tracker.snapshots()
        command()
        files = tracker.attribute(before)
        assert tracker.stage(files, with_task_file=True) == []
    return sorted(p for paths in files.values() for p in paths)


def _failing_criterion(tracker: Tracker, command: Callable[[], object]) -> None:
    """A criterion whose command changed files and failed: nothing attributed or staged."""
    with tracker.turns(60):
        tracker.snapshots()
        command()


def test_a_criterion_opens_with_the_previous_ones_status_only_while_nobody_else_came(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `git status` per criterion boundary: the state after a criterion is the next
    one's state before, unless another run held the repository in between, the index
    changed (a commit, a checkout) or REUSE_WINDOW passed. Only an edit from outside
    the plugin within that window is taken for the next criterion's."""
    import subprocess
    import sys

    from pytest_infratask.record import git as gitops

    monkeypatch.setattr(gitops, "REUSE_WINDOW", 3600.0)
    task(repo, "- [ ] x\n")
    tracker = _tracked(repo)
    assert _criterion(tracker) == []
    (repo / "outside.txt").write_text("between criteria, by no run\n")
    assert _criterion(tracker) == ["outside.txt"]  # the window: nothing saw it come
    assert _criterion(tracker) == []

    another_run = (
        "from pathlib import Path\n"
        "from pytest_infratask.util.locks import lock_for\n"
        f"lock = lock_for(Path({str(repo / '.git')!r}), 'worktree', 'repo', turns=True)\n"
        "with lock.holding(60):\n"
        f"    Path({str(repo / 'theirs.txt')!r}).write_text('another run\\n')\n"
    )
    subprocess.run([sys.executable, "-c", another_run], check=True)
    assert _criterion(tracker) == []
    assert _criterion(tracker) == []

    git(repo, "add", "outside.txt")
    git(repo, "commit", "-q", "-m", "someone commits between criteria")
    assert _criterion(tracker) == []  # else outside.txt, gone from the status, was "changed"

    monkeypatch.setattr(gitops, "REUSE_WINDOW", 0.0)
    (repo / "late.txt").write_text("after the window\n")
    assert _criterion(tracker) == []


def test_a_task_holding_the_repository_sees_another_tasks_turn_in_between(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --infratask-commit a task keeps the repository's lock, which is reentrant in
    one process: another task's turn there (a failed criterion, nothing staged) still
    ends the reuse."""
    from pytest_infratask.record import git as gitops

    monkeypatch.setattr(gitops, "REUSE_WINDOW", 3600.0)
    task(repo, "- [ ] x\n")
    tracker = _tracked(repo)
    try:
        assert _criterion(tracker, keep=True) == []
        other_task = gitops.Tracker("TASK-008", repo / "tasks" / "TASK-008.md")
        other_task.track([repo], {})
        _failing_criterion(other_task, lambda: (repo / "b.txt").write_text("b\n"))
        assert _criterion(tracker, keep=True) == []
    finally:
        tracker.release()


def test_a_command_switching_branch_is_seen_by_the_next_criterion(repo: Path) -> None:
    task(repo, "- [ ] x\n")
    git(repo, "branch", "other")
    tracker = _tracked(repo)
    assert _criterion(tracker, lambda: git(repo, "switch", "-q", "other")) == []
    (repo / "later.txt").write_text("on other\n")
    git(repo, "switch", "-q", "main")  # between criteria: the index changes
    assert _criterion(tracker) == []


def test_git_is_run_by_absolute_path(repo: Path) -> None:
    """GitPython would search PATH for git on every call (a failed execve per entry)."""
    import shutil

    from pytest_infratask.record.git import RepoTracker

    tracker = RepoTracker(repo, "repo", "main")
    assert shutil.which("git") == tracker.repo.git.GIT_PYTHON_GIT_EXECUTABLE
    assert tracker.snapshot() == {}


def test_trailer_lists_what_the_commit_completes(pytester: pytest.Pytester, repo: Path) -> None:
    """Criteria ticked by an earlier run that did not commit are the commit's; a commit
    that completes nothing (a failed run's progress lines) has no empty trailer."""
    task(repo, BUMP)
    run(pytester).assert_outcomes(passed=2)  # ticked and staged, not committed
    run(pytester, "--infratask-commit").assert_outcomes(passed=1, skipped=2)
    message = git(repo, "log", "-1", "--format=%B")
    assert "Infratask-Task: TASK-007" in message
    assert "Infratask-Criteria: 1,2\n" in message
    path = repo / "tasks" / "TASK-007.md"
    path.write_text(path.read_text() + "- 2024-01-02 10:00: Noted by hand\n")
    assert run(pytester, "--infratask-commit").ret == 0
    message = git(repo, "log", "-1", "--format=%B")
    assert "Infratask-Task: TASK-007" in message
    assert "Infratask-Criteria" not in message
