"""Safety checks, end to end: a blocked criterion ran nothing and is a failure with a remedy.

Each case runs a real pytest session on a task file (``pytester``, in process)
and checks three things: the command did not run (the marker it would create is
absent), the item failed rather than skipped, and the reason and remediation are
in the terminal output and in the ``--infratask-report-dir`` JSON contract.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import QUIET, git, opt_in
from helpers import meta_task as write_task

pytest_plugins = ["pytester"]


# -- helpers -------------------------------------------------------------------


def ini(pytester: pytest.Pytester, *settings: str, where: Path | None = None) -> None:
    folder = where or pytester.path
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pytest.ini").write_text("[pytest]\n" + "\n".join(settings) + "\n")


class Run:
    def __init__(self, result: pytest.RunResult, report_dir: Path) -> None:
        self.result = result
        self.report_dir = report_dir
        self.out = result.stdout.str()

    def contract(self, task_id: str = "TASK-001") -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.report_dir / f"{task_id}.json").read_text())
        return data


# Plugins the inner sessions do not need; they only cost time.


def run(pytester: pytest.Pytester, *args: str) -> Run:
    report_dir = pytester.path / "reports"
    result = pytester.runpytest(
        *QUIET, "--infratask-report-dir", str(report_dir), *opt_in(pytester.path, *args)
    )
    return Run(result, report_dir)


def assert_blocked(
    r: Run, marker: Path, reason: list[str], remedy: str, task_id: str = "TASK-001"
) -> None:
    """Nothing ran; a failure (not a skip) whose reason and remedy reach every output."""
    assert not marker.exists(), f"{marker} exists: the blocked command ran"
    r.result.assert_outcomes(failed=1)
    for part in [*reason, remedy]:
        assert part in r.out, f"{part!r} missing from the terminal output:\n{r.out}"
    contract = r.contract(task_id)
    assert contract["status"] == "blocked"
    assert contract["success"] is False
    assert contract["error"] == "Criterion blocked"
    assert contract["details"]["criterion"]
    for part in reason:
        assert part in contract["message"]
    assert any(remedy in s for s in contract["recovery_suggestions"]), contract
    assert remedy in contract["next_steps"]
    [result] = [c for c in contract["criteria_results"] if c["status"] == "blocked"]
    assert result["commands"] == []


def fake_tool(folder: Path, name: str, log: Path) -> Path:
    """A stand-in for kubectl/helm/psql: it records its arguments and the kube context
    its KUBECONFIG names, and never reaches anything real."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(
        "#!/bin/sh\n"
        f'echo "{name} $*" >> "{log}"\n'
        'if [ -n "$KUBECONFIG" ] && [ -f "$KUBECONFIG" ]; then\n'
        f'  echo "kubeconfig $KUBECONFIG" >> "{log}"\n'
        f'  grep "^current-context" "$KUBECONFIG" >> "{log}"\n'
        "fi\n"
        "exit 0\n"
    )
    tool.chmod(0o755)
    return tool


@pytest.fixture
def tools(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake kubectl, helm, flux and psql first on PATH; returns the log they append to."""
    log = pytester.path / "tools.log"
    folder = pytester.path / "fakebin"
    for name in ("kubectl", "helm", "flux", "psql"):
        fake_tool(folder, name, log)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [
        {"name": "dev", "cluster": {"server": "https://dev.invalid:6443"}},
        {"name": "prod", "cluster": {"server": "https://prod.invalid:6443"}},
    ],
    "users": [{"name": "me", "user": {"token": "not-a-real-token"}}],
    "contexts": [
        {"name": "dev", "context": {"cluster": "dev", "user": "me"}},
        {"name": "prod", "context": {"cluster": "prod", "user": "me"}},
    ],
    "current-context": "dev",
}


@pytest.fixture
def kubeconfig(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = pytester.path / "home-kube" / "config"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(KUBECONFIG))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture(autouse=True)
def _rootdir(pytester: pytest.Pytester) -> None:
    ini(pytester)


# -- 1. directory -----------------------------------------------------------------


def test_missing_workdir_blocks(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md", {"workdir": "not-there"}, [("Touch it", [f"touch {marker}"])]
    )
    r = run(pytester)
    assert_blocked(
        r, marker, ["directory", "not-there", "does not exist"], "create it, or fix `workdir`"
    )


def test_workdir_escaping_the_rootdir_blocks(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md", {"workdir": "../../.."}, [("Touch it", [f"touch {marker}"])]
    )
    r = run(pytester)
    assert_blocked(r, marker, ["outside the allowed roots", str(pytester.path)], "infratask_roots")


def test_symlink_out_of_the_rootdir_blocks(pytester: pytest.Pytester, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (pytester.path / "link").symlink_to(outside)
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md", {"workdir": "link"}, [("Touch it", [f"touch {marker}"])]
    )
    r = run(pytester)
    assert_blocked(r, marker, ["outside the allowed roots", str(outside)], "infratask_roots")


def test_ini_roots_widen_the_allowed_directories(pytester: pytest.Pytester) -> None:
    checkout = pytester.path / "checkout"
    shared = pytester.path / "shared"
    shared.mkdir()
    marker = pytester.path / "marker"
    task = {"workdir": "../shared"}
    write_task(checkout / "TASK-001.md", task, [("Touch it", [f"pwd > {marker}"])])

    ini(pytester, where=checkout)
    r = run(pytester, "checkout/TASK-001.md")
    assert_blocked(r, marker, ["outside the allowed roots"], "infratask_roots")

    write_task(checkout / "TASK-001.md", task, [("Touch it", [f"pwd > {marker}"])])
    ini(pytester, "infratask_roots =", "    .", "    ../shared", where=checkout)
    r = run(pytester, "checkout/TASK-001.md")
    r.result.assert_outcomes(passed=1)
    assert Path(marker.read_text().strip()).resolve() == shared.resolve()


# -- 2. git branch ----------------------------------------------------------------


@pytest.fixture
def repo(pytester: pytest.Pytester, git_identity: None) -> Path:
    path = pytester.path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    git(path, "commit", "-q", "-m", "initial")
    return path


def branch_task(pytester: pytest.Pytester, marker: Path, **meta: Any) -> None:
    write_task(
        pytester.path / "TASK-001.md",
        {"workdir": "repo", **meta},
        [("Touch it", [f"touch {marker}"])],
    )


def test_branch_main_runs(pytester: pytest.Pytester, repo: Path) -> None:
    marker = pytester.path / "marker"
    branch_task(pytester, marker)
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.exists()


def test_other_branch_blocks_naming_both(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "feature")
    marker = pytester.path / "marker"
    branch_task(pytester, marker)
    r = run(pytester)
    assert_blocked(
        r,
        marker,
        ["git branch", "'feature'", "expected main or master"],
        f"git -C {repo} switch main",
    )


def test_detached_head_blocks(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "switch", "-q", "--detach", "HEAD")
    marker = pytester.path / "marker"
    branch_task(pytester, marker)
    r = run(pytester)
    assert_blocked(r, marker, ["detached HEAD", "main"], "switch main")


def test_frontmatter_branch_allows_it_and_blocks_main(
    pytester: pytest.Pytester, repo: Path
) -> None:
    marker = pytester.path / "marker"
    branch_task(pytester, marker, branch="feature")
    r = run(pytester)
    # no `git switch feature` for a branch the repository does not have
    assert_blocked(r, marker, ["'main'", "expected feature"], "set `branch: main` in the task")

    git(repo, "switch", "-q", "-c", "feature")
    branch_task(pytester, marker, branch="feature")
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.exists()


def test_ini_branches(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "release")
    marker = pytester.path / "marker"
    branch_task(pytester, marker)
    ini(pytester, "infratask_branches = release hotfix")
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.exists()


def test_frontmatter_branch_list(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "switch", "-q", "-c", "hotfix")
    marker = pytester.path / "marker"
    branch_task(pytester, marker, branch=["release", "hotfix"])
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.exists()


def test_empty_ini_branches_lift_the_restriction(pytester: pytest.Pytester, repo: Path) -> None:
    git(repo, "switch", "-q", "--detach", "HEAD")
    marker = pytester.path / "marker"
    branch_task(pytester, marker)
    ini(pytester, "infratask_branches =")
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.exists()


# -- 3. script syntax -------------------------------------------------------------


@pytest.mark.parametrize("broken", ["if then fi", 'echo "unclosed'])
def test_syntax_error_in_a_later_block_runs_no_block(
    pytester: pytest.Pytester, broken: str
) -> None:
    first = pytester.path / "first"
    write_task(
        pytester.path / "TASK-001.md",
        {},
        [("Two blocks", [f"touch {first}", f"touch {first}-second\n{broken}"])],
    )
    r = run(pytester)
    assert_blocked(
        r, first, ["script syntax", "command block 2 does not parse"], "fix the shell syntax"
    )
    assert not (pytester.path / "first-second").exists()


def test_syntax_check_file_with_invalid_yaml_blocks(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    (pytester.path / "bad.yaml").write_text("a: [1, 2\nb: c\n")
    write_task(
        pytester.path / "TASK-001.md",
        {"syntax_check": ["bad.yaml"]},
        [("Touch it", [f"touch {marker}"])],
    )
    r = run(pytester)
    assert_blocked(r, marker, ["bad.yaml", "invalid YAML"], "fix bad.yaml so it parses")

    (pytester.path / "bad.yaml").write_text("a: [1, 2]\nb: c\n")
    write_task(
        pytester.path / "TASK-001.md",
        {"syntax_check": ["bad.yaml"]},
        [("Touch it", [f"touch {marker}"])],
    )
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.exists()


# -- 4. kube context --------------------------------------------------------------


def test_pinned_context_runs_with_a_private_kubeconfig(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    # The user's kubeconfig switches to prod as the criterion starts (as another
    # terminal could; the commands cannot even read it): both blocks still talk to dev.
    pytester.makeconftest(f"""
        from pathlib import Path

        def pytest_runtest_call(item):
            path = Path({str(kubeconfig)!r})
            text = path.read_text()
            path.write_text(text.replace("current-context: dev", "current-context: prod"))
    """)
    write_task(
        pytester.path / "TASK-001.md",
        {"kube_context": "dev"},
        [("Pods", ["kubectl get pods", "cat home-kube/config; kubectl get pods"])],
    )
    run(pytester).result.assert_outcomes(passed=1)
    assert "current-context: prod" in kubeconfig.read_text()
    log = tools.read_text().splitlines()
    assert log[0] == "kubectl get pods"
    private = Path(log[1].removeprefix("kubeconfig "))
    assert private != kubeconfig
    assert log[2] == "current-context: dev"
    assert log[3:] == log[:3], "the second block saw another kubeconfig"


def test_pinned_context_missing_from_the_kubeconfig_blocks(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    write_task(
        pytester.path / "TASK-001.md", {"kube_context": "staging"}, [("Pods", ["kubectl get pods"])]
    )
    r = run(pytester)
    assert_blocked(
        r, tools, ["kube context", "'dev'", "'staging'"], "add context 'staging' to your kubeconfig"
    )


def test_cluster_access_without_a_pinned_context_blocks(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    write_task(pytester.path / "TASK-001.md", {}, [("Pods", ["kubectl get pods"])])
    r = run(pytester)
    assert_blocked(r, tools, ["pins no kube context"], "add `kube_context: <context>`")


def test_require_kube_context_false_relaxes(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    ini(pytester, "infratask_require_kube_context = false")
    write_task(pytester.path / "TASK-001.md", {}, [("Pods", ["kubectl get pods"])])
    run(pytester).result.assert_outcomes(passed=1)
    assert tools.read_text().startswith("kubectl get pods\n")


@pytest.mark.parametrize("script", ["kubectl kustomize overlays/dev", "helm template api ./chart"])
def test_rendering_is_not_cluster_access(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path, script: str
) -> None:
    write_task(pytester.path / "TASK-001.md", {}, [("Render", [script])])
    run(pytester).result.assert_outcomes(passed=1)
    assert tools.read_text().splitlines()[0] == script


def test_path_prefixed_kubectl_is_cluster_access(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    kubectl = pytester.path / "fakebin" / "kubectl"
    write_task(pytester.path / "TASK-001.md", {}, [("Pods", [f"{kubectl} get pods"])])
    r = run(pytester)
    assert_blocked(r, tools, ["pins no kube context"], "add `kube_context: <context>`")


def test_only_keeps_the_pinned_context_whatever_is_current(
    tmp_path: Path, kubeconfig: Path
) -> None:
    from pytest_infratask.clients import kubeconfig as kc

    extra = tmp_path / "extra"
    extra.write_text(
        yaml.safe_dump({"current-context": "ignored", "contexts": [{"name": "ci", "context": {}}]})
    )
    env = {"KUBECONFIG": f"{kubeconfig}{os.pathsep}{extra}"}
    assert kc.active_context(env) == "dev"
    assert kc.contexts(env) == ["dev", "prod", "ci"]
    data = kc.only("prod", env)
    assert data["current-context"] == "prod"
    assert [c["name"] for c in data["contexts"]] == ["prod"]  # only the pinned one
    assert [c["name"] for c in data["clusters"]] == ["prod"]
    assert yaml.safe_load(kubeconfig.read_text())["current-context"] == "dev"


# -- 5. no direct apply -----------------------------------------------------------


def apply_task(pytester: pytest.Pytester, script: str, **meta: Any) -> None:
    ini(pytester, "infratask_require_kube_context = false")
    write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["infrastructure"], **meta},
        [("Change it", [script])],
    )


@pytest.mark.parametrize(
    "script",
    [
        "kubectl apply -f x.yaml",
        "helm upgrade --install api ./chart -n apps",
        "kubectl --context=dev -n apps delete deploy api",
        "kubectl apply --dry-run=none -f x.yaml",
        "kubectl \\\n  apply -f x.yaml",
        "kubectl diff -f x.yaml || true; helm upgrade api ./chart; helm lint --dry-run",
        "{fakebin}/kubectl apply -f x.yaml",
    ],
)
def test_configuration_task_refuses_direct_apply(
    pytester: pytest.Pytester, tools: Path, script: str
) -> None:
    apply_task(pytester, script.format(fakebin=pytester.path / "fakebin"))
    r = run(pytester)
    assert_blocked(
        r,
        tools,
        ["no direct apply", "refused", "Flux applies what is committed"],
        "allow_direct_apply: <reason>",
    )
    assert r.contract()["task_type"] == "configuration"


@pytest.mark.parametrize(
    "script",
    [
        "kubectl apply --dry-run=client -f x.yaml",
        "kubectl apply --dry-run=server -f x.yaml -o yaml",
        "helm upgrade --install api ./chart --dry-run",
    ],
)
def test_dry_run_apply_is_allowed(pytester: pytest.Pytester, tools: Path, script: str) -> None:
    apply_task(pytester, script)
    run(pytester).result.assert_outcomes(passed=1)
    assert tools.read_text().splitlines()[0] == script


def test_allow_direct_apply_escape_hatch(pytester: pytest.Pytester, tools: Path) -> None:
    apply_task(pytester, "kubectl apply -f x.yaml", allow_direct_apply="emergency fix INC-1")
    run(pytester).result.assert_outcomes(passed=1)
    assert tools.read_text().splitlines()[0] == "kubectl apply -f x.yaml"


def test_generic_task_is_not_refused_by_the_apply_check(
    pytester: pytest.Pytester, tools: Path
) -> None:
    ini(pytester, "infratask_require_kube_context = false")
    write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["misc"]},
        [("Change it", ["kubectl apply -f x.yaml"])],
    )
    r = run(pytester)
    r.result.assert_outcomes(passed=1)
    assert r.contract()["task_type"] == "generic"
    assert tools.read_text().splitlines()[0] == "kubectl apply -f x.yaml"


# -- 6. protected targets -----------------------------------------------------------


def test_database_on_a_prod_host_is_protected(pytester: pytest.Pytester, tools: Path) -> None:
    write_task(
        pytester.path / "TASK-001.md", {}, [("Query", ["psql -h prod-db.internal -c 'select 1'"])]
    )
    r = run(pytester)
    assert_blocked(
        r, tools, ["protected targets", "psql -h prod-db.internal"], "--infratask-allow-protected"
    )


def test_database_command_continued_on_the_next_line_is_protected(
    pytester: pytest.Pytester, tools: Path
) -> None:
    write_task(
        pytester.path / "TASK-001.md",
        {},
        [("Query", ["psql \\\n  -h prod-db.internal -c 'select 1'"])],
    )
    r = run(pytester)
    assert_blocked(r, tools, ["protected targets"], "--infratask-allow-protected")


def test_production_context_flag_is_protected(pytester: pytest.Pytester, tools: Path) -> None:
    ini(pytester, "infratask_require_kube_context = false")
    write_task(
        pytester.path / "TASK-001.md", {}, [("Pods", ["kubectl --context production get pods"])]
    )
    r = run(pytester)
    assert_blocked(
        r, tools, ["protected targets", "--context production"], "--infratask-allow-protected"
    )


def test_pinned_prod_context_is_protected(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    kubeconfig.write_text(yaml.safe_dump({**KUBECONFIG, "current-context": "prod"}))
    write_task(
        pytester.path / "TASK-001.md", {"kube_context": "prod"}, [("Pods", ["kubectl get pods"])]
    )
    r = run(pytester)
    assert_blocked(r, tools, ["protected targets", "context:prod"], "--infratask-allow-protected")


def test_allow_protected_flag_allows(pytester: pytest.Pytester, tools: Path) -> None:
    write_task(
        pytester.path / "TASK-001.md", {}, [("Query", ["psql -h prod-db.internal -c 'select 1'"])]
    )
    run(pytester, "--infratask-allow-protected").result.assert_outcomes(passed=1)
    assert tools.read_text().startswith("psql -h prod-db.internal")


def test_production_environment_requires_the_flag(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md",
        {"environment": "production"},
        [("Touch it", [f"touch {marker}"])],
    )
    r = run(pytester)
    assert_blocked(r, marker, ["environment: production"], "--infratask-allow-protected")

    write_task(
        pytester.path / "TASK-001.md",
        {"environment": "production"},
        [("Touch it", [f"touch {marker}"])],
    )
    run(pytester, "--infratask-allow-protected").result.assert_outcomes(passed=1)
    assert marker.exists()


def test_ini_protected_custom_pattern(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    ini(pytester, "infratask_protected =", r"    \bbilling-db\b")
    write_task(pytester.path / "TASK-001.md", {}, [("Touch it", [f"touch {marker} billing-db"])])
    r = run(pytester)
    assert_blocked(r, marker, ["billing-db"], "--infratask-allow-protected")


def test_invalid_protected_pattern_blocks_instead_of_crashing(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    ini(pytester, "infratask_protected =", "    prod(")
    write_task(pytester.path / "TASK-001.md", {}, [("Touch it", [f"touch {marker}"])])
    r = run(pytester)
    assert_blocked(r, marker, ["not a valid regex"], "infratask_protected")


def test_words_that_merely_contain_prod_are_not_protected(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md",
        {},
        [("Echo", [f"echo product > {marker}", "ssh-keygen --help >/dev/null || true"])],
    )
    run(pytester).result.assert_outcomes(passed=1)
    assert marker.read_text() == "product\n"


# -- 10. dry run --------------------------------------------------------------------


def tree(root: Path) -> dict[Path, bytes]:
    """Every file under root and its bytes, but the report directory."""
    return {
        p: p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "reports" not in p.relative_to(root).parts
    }


def test_dry_run_shows_everything_and_runs_nothing(
    pytester: pytest.Pytester, tools: Path, kubeconfig: Path
) -> None:
    marker = pytester.path / "marker"
    (pytester.path / "deploy").mkdir()
    task = write_task(
        pytester.path / "TASK-001.md",
        {"labels": ["builds"], "registry": "registry.local:5000", "workdir": "deploy"},
        [("Build", [f"touch {marker}"]), ("Pods", [f"kubectl get pods > {marker}-2"])],
    )
    before = tree(pytester.path)
    r = run(pytester, "--infratask-dry-run")
    assert tree(pytester.path) == before, "the dry run changed files"
    assert task.read_bytes() == before[task]
    assert not marker.exists() and not tools.exists()
    out = r.out
    assert "TASK-001 [build]" in out
    assert "BuildHandler" in out
    assert f"touch {marker}" in out
    assert str(pytester.path / "deploy") in out
    for check in (
        "directory: ok",
        "git branch: ok",
        "script syntax: ok",
        "kube context: ok",
        "no direct apply: ok",
        "protected targets: ok",
    ):
        assert check in out
    # the second criterion reaches a cluster without a pinned context: blocked, a failure
    assert "kube context: BLOCKED" in out
    r.result.assert_outcomes(skipped=1, failed=1)
    contract = r.contract()
    assert contract["dry_run"] is True
    statuses = {c["number"]: c["status"] for c in contract["criteria_results"]}
    assert statuses == {1: "dry_run", 2: "blocked"}
    assert contract["status"] == "blocked"
    assert "add `kube_context: <context>`" in contract["next_steps"]


# -- JUnit ----------------------------------------------------------------------------


def test_blocked_criterion_is_a_junit_failure(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md", {"workdir": "../../.."}, [("Touch it", [f"touch {marker}"])]
    )
    xml = pytester.path / "junit.xml"
    run(pytester, f"--junitxml={xml}")
    assert not marker.exists()
    [case] = ET.parse(xml).getroot().iter("testcase")
    assert case.find("skipped") is None
    failure = case.find("failure")
    assert failure is not None
    assert "outside the allowed roots" in (failure.get("message", "") + (failure.text or ""))


def test_blocked_contract_details_carry_the_reason(pytester: pytest.Pytester) -> None:
    marker = pytester.path / "marker"
    write_task(
        pytester.path / "TASK-001.md", {"workdir": "../../.."}, [("Touch it", [f"touch {marker}"])]
    )
    details = run(pytester).contract()["details"]
    assert "outside the allowed roots" in json.dumps(details)
    assert f"touch {marker}" in json.dumps(details)


def test_dry_run_contract_lists_no_executed_commands(
    pytester: pytest.Pytester, tools: Path
) -> None:
    write_task(pytester.path / "TASK-001.md", {}, [("Pods", ["kubectl get pods"])])
    contract = run(pytester, "--infratask-dry-run").contract()
    assert not tools.exists()
    assert contract["changes"]["commands_executed"] == []


def test_git_head_sees_what_commands_change(tmp_path: Path, git_identity: None) -> None:
    """Where a folder's repository is, is remembered until a command runs; a branch
    switch, a repository made in a folder on the way up, or one removed is seen."""
    from pytest_infratask.run.process import run_script
    from pytest_infratask.util.gitdir import git_head

    def command(script: str) -> None:
        assert run_script(script, tmp_path, dict(os.environ)).ok

    outer = tmp_path.resolve() / "outer"
    inner = outer / "tasks" / "deep"
    inner.mkdir(parents=True)
    around = git_head(tmp_path.resolve())  # None, unless the temp dir is in a repository
    assert git_head(inner) == around
    command(f"git -C {outer} init -q -b main")
    assert git_head(inner) == (outer, "main")
    assert git_head(inner) == (outer, "main")  # remembered
    git(outer, "switch", "-q", "-c", "feature")  # HEAD is read each time
    assert git_head(inner) == (outer, "feature")
    command(f"git -C {outer / 'tasks'} init -q -b nested")  # a repository on the way up
    assert git_head(inner) == (outer / "tasks", "nested")
    command(f"rm -rf {outer / 'tasks' / '.git'}")
    assert git_head(inner) == (outer, "feature")
    command(f"rm -rf {outer / '.git'}")
    assert git_head(inner) == around
