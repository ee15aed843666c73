"""Text checks (early, friendly refusals), allowed roots and CI checkouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import QUIET, git, item, task_md

from pytest_infratask.guard.checks import CI_BRANCH_VARIABLES
from pytest_infratask.guard.shell import is_dry_run, shell_view, strip_comment


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite itself may run in CI: its branch variables must not leak in."""
    for name in CI_BRANCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def write(root: Path, script: str, meta: str = "", name: str = "TASK-001.md") -> Path:
    marker = root / "ran"
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    body = item("Step", f"{script}\ntouch {marker}")
    path.write_text(task_md(body, meta=f"id: TASK-001\n{meta}"))
    return path


# -- text checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "dry"),
    [
        ("kubectl apply --dry-run=client -f x", True),
        ("kubectl apply --dry-run=server -f x", True),
        ("kubectl apply --dry-run -f x", True),
        ("kubectl apply --dry-run=client -f x --dry-run=none", False),
        ("kubectl apply --dry-run=none -f x --dry-run=server", True),
        ("kubectl apply -f x", False),
        ("kubectl apply --dry-run=false -f x", False),
    ],
)
def test_the_last_dry_run_flag_wins(command: str, dry: bool) -> None:
    assert is_dry_run(command) is dry


def test_comments_and_quotes_and_variables_in_the_shell_view() -> None:
    assert strip_comment("kubectl apply -f x # --dry-run") == "kubectl apply -f x "
    assert strip_comment("echo '# not a comment' a#b") == "echo '# not a comment' a#b"
    assert shell_view("kube\"\"ctl 'apply' -f x") == ["kubectl apply -f x"]
    assert shell_view("k=kubectl; $k apply -f x") == ["k=kubectl; kubectl apply -f x"]
    assert shell_view("psql -h ${DB_HOST}", {"DB_HOST": "prod-db"}) == ["psql -h prod-db"]
    assert shell_view("kubectl \\\n  apply -f x") == ["kubectl    apply -f x"]


@pytest.mark.parametrize(
    ("script", "meta", "reason"),
    [
        ("kubectl apply -f x.yaml # --dry-run", "", "no direct apply"),
        ("kubectl apply --dry-run=client -f x.yaml --dry-run=none", "", "no direct apply"),
        ("k=kubectl; $k apply -f x.yaml", "", "no direct apply"),
        ("kubectl 'apply' -f x.yaml", "", "no direct apply"),
        ('kube""ctl apply -f x.yaml', "", "no direct apply"),
        ("PGHOST=prod-db psql -c 'select 1'", "", "protected targets"),
        ('psql -h "$DB_HOST" -c "select 1"', "env:\n  DB_HOST: prod-db.internal", "protected"),
        ("psql -c 'select 1'", "env:\n  PGHOST: prod-db.internal", "protected targets"),
        ("ssh deploy@prod1.example.com uptime", "", "protected targets"),
        ("HOST=prod2.example.com; ssh $HOST uptime", "", "protected targets"),
    ],
)
def test_text_checks_refuse_early(
    pytester: pytest.Pytester, script: str, meta: str, reason: str
) -> None:
    path = write(pytester.path, script, meta=f"labels: [infrastructure]\nkube_context: dev\n{meta}")
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*BLOCKED: {reason}*"])
    assert not (pytester.path / "ran").exists()


@pytest.mark.parametrize(
    "script",
    [
        "echo product catalogue | psql-free-tool",
        "ssh build@staging.example.com uptime",
        "psql -h db.dev.internal -c 'select 1' # prod later",
        "kubectl diff -f x.yaml || true",
    ],
)
def test_text_checks_let_the_harmless_through(pytester: pytest.Pytester, script: str) -> None:
    from pytest_infratask.core.settings import DEFAULT_PROTECTED
    from pytest_infratask.guard.checks import check_no_direct_apply, check_protected
    from pytest_infratask.guard.context import SafetyContext, Target
    from pytest_infratask.read.taskfile import parse_task

    path = write(pytester.path, script, meta="labels: [infrastructure]")
    task = parse_task(path, path.read_bytes())
    target = Target(task, "configuration", task.criteria[0], pytester.path, None, (script,))
    safety = SafetyContext(
        (pytester.path,), (), None, False, DEFAULT_PROTECTED, False, False, False
    )
    assert check_no_direct_apply(target, safety).ok
    assert check_protected(target, safety).ok


# -- allowed roots -----------------------------------------------------------------------


@pytest.fixture
def project(pytester: pytest.Pytester, git_identity: None) -> Path:
    root = pytester.path / "proj"
    (root / "tasks").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    (root / "README").write_text("x\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "init")
    return root


def test_roots_are_the_task_files_repository_wherever_pytest_starts(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(project / "tasks", "pwd > out", meta="workdir: ..")
    monkeypatch.chdir(project / "tasks")
    pytester.runpytest(*QUIET, "TASK-001.md").assert_outcomes(passed=1)
    assert (project / "out").read_text().strip() == str(project)
    assert "- [x]" in path.read_text()


def test_a_workdir_outside_the_repository_is_blocked_naming_the_root(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project / "tasks", "true", meta="workdir: ../..")
    sibling = pytester.mkdir("sibling")
    monkeypatch.chdir(sibling)
    result = pytester.runpytest(*QUIET, str(project / "tasks" / "TASK-001.md"))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*outside the allowed roots ({project}: the task file's git repository)*",
            "*list the directory in ini infratask_roots*",
        ]
    )
    assert not (project / "tasks" / "ran").exists()


def test_ini_roots_are_relative_to_the_ini_file(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pytest.ini").write_text("[pytest]\ninfratask_roots = tasks\n")
    write(project / "tasks", "true", meta="workdir: ..")
    monkeypatch.chdir(project / "tasks")
    result = pytester.runpytest(*QUIET, "-c", str(project / "pytest.ini"), "TASK-001.md")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*({project / 'tasks'}: ini infratask_roots in {project})*"])


# -- CI checkouts ----------------------------------------------------------------------


def _detached(project: Path) -> Path:
    git(project, "switch", "-q", "--detach", "HEAD")
    return write(project / "tasks", "true")


@pytest.mark.parametrize(
    "variable",
    [
        "GITHUB_HEAD_REF",
        "CI_COMMIT_REF_NAME",
        "BUILDKITE_BRANCH",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
        "GITHUB_REF_NAME",
    ],
)
def test_a_ci_checkout_of_an_allowed_branch_runs(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    path = _detached(project)
    monkeypatch.setenv(variable, "main")
    pytester.runpytest(*QUIET, str(path)).assert_outcomes(passed=1)


def test_a_ci_checkout_of_another_branch_is_blocked_naming_it(
    pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _detached(project)
    monkeypatch.setenv("GITHUB_HEAD_REF", "feature/x")
    result = pytester.runpytest(*QUIET, str(path))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*detached HEAD of branch 'feature/x' (from GITHUB_HEAD_REF)*allowed: main, master*",
            "*add feature/x to ini infratask_branches*",
        ]
    )


def test_a_detached_head_outside_ci_names_the_allowed_branches(
    pytester: pytest.Pytester, project: Path
) -> None:
    git(project, "branch", "-q", "-m", "main", "trunk")
    (project / "pytest.ini").write_text("[pytest]\ninfratask_branches = trunk release\n")
    path = _detached(project)
    result = pytester.runpytest(*QUIET, "-c", str(project / "pytest.ini"), str(path))
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "allowed here: trunk, release" in out and f"git -C {project} switch trunk" in out
    assert "switch main" not in out and "GITHUB_HEAD_REF" in out
