"""The verdict never lies: a task whose contract says ``success: false`` makes the run red.

Each test drives pytest through ``pytester`` on real task files, in real git repositories
with a bare ``origin`` that the stand-in Flux (``kubeapi.py``) reads, and checks the three
places a verdict shows: the exit code, JUnit and the JSON contract.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import HELMRELEASE, Ran, git, opt_in, push_to_new_origin
from helpers import meta_task as write_task
from kubeapi import REQUESTED_AT, KubeAPIServer
from registry_support import RunningRegistry

pytest_plugins = ["registry_support"]

QUIET = ("-p", "no:hypothesispytest", "-p", "no:benchmark", "-p", "no:metadata")
BUMP_TAG = "infratask set apps/api/helmrelease.yaml spec.values.image.tag 0.1.18"
BUMP_CHART = "infratask set apps/api/helmrelease.yaml spec.chart.spec.version 0.1.18"


@dataclass
class Run(Ran):
    junit: Path

    def cases(self) -> dict[str, ET.Element]:
        root = ET.parse(self.junit).getroot()
        return {case.get("name", ""): case for case in root.iter("testcase")}

    def failures(self) -> int:
        suite = ET.parse(self.junit).getroot().find("testsuite")
        assert suite is not None
        return int(suite.get("failures", "0")) + int(suite.get("errors", "0"))

    def properties(self, case: str) -> dict[str, str]:
        props = self.cases()[case].find("properties")
        return {p.get("name", ""): p.get("value", "") for p in props or []}


@pytest.fixture
def run(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory) -> Any:
    def runner(*args: str, cache: bool = False) -> Run:
        out = tmp_path_factory.mktemp("reports")
        reports, junit = out / "tasks", out / "junit.xml"
        flags = () if cache else ("-p", "no:cacheprovider")
        if not any(a.startswith("--json-report") for a in args):
            flags += ("-p", "no:json-report")
        result = pytester.runpytest(
            *QUIET,
            *flags,
            "-p",
            "no:xdist",
            f"--infratask-report-dir={reports}",
            f"--junitxml={junit}",
            *opt_in(pytester.path, *args),
        )
        return Run(result, reports, junit)

    return runner


# -- a GitOps repository, its origin, and a Flux that reads the origin -------------------


@dataclass
class GitOps:
    path: Path
    origin: Path
    api: KubeAPIServer

    def origin_head(self) -> str:
        return git(self.origin, "rev-parse", "refs/heads/main").strip()

    def head(self) -> str:
        return git(self.path, "rev-parse", "HEAD").strip()

    def release(self) -> dict[str, Any]:
        return self.api.get("HelmRelease", "prod", "api")


@pytest.fixture
def gitops(
    pytester: pytest.Pytester,
    git_identity: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GitOps]:
    """A GitOps checkout pushed to a bare ``origin``; Flux's GitRepository reads the
    origin, a Kustomization applies ``apps/`` from it, and the HelmRelease is its."""
    root = pytester.path
    (root / "pytest.ini").write_text("[pytest]\ninfratask_retry_delay = 0\n")
    (root / "apps" / "api").mkdir(parents=True)
    (root / "apps" / "api" / "helmrelease.yaml").write_text(HELMRELEASE)
    (root / ".gitignore").write_text(".pytest_cache/\n")
    origin = tmp_path_factory.mktemp("remote") / "origin.git"
    push_to_new_origin(root, origin, "GitOps repository")
    start = git(root, "rev-parse", "HEAD").strip()
    with KubeAPIServer() as api:
        api.add_source("GitRepository", "flux-system", url=str(origin))
        api.add_kustomization("apps", path="./apps", revision=f"main@sha1:{start}")
        api.add_helmrelease(
            "api",
            "prod",
            chart="api",
            version="0.1.17",
            managed_by="flux-system/apps",
            values={"image": {"tag": "0.1.17"}},
        )
        config = api.write_kubeconfig(root.parent / f"{root.name}-kubeconfig", "dev")
        monkeypatch.setenv("KUBECONFIG", str(config))
        yield GitOps(root, origin, api)


def deploy_meta(**extra: Any) -> dict[str, Any]:
    return {
        "id": "TASK-002",
        "title": "Deploy api 0.1.18",
        "labels": ["deployment", "flux"],
        "kube_context": "dev",
        "reconcile": ["helmrelease/prod/api"],
        "wait": 20,
        "poll_interval": 0.05,
        **extra,
    }


def deploy_task(gitops: GitOps, *criteria: tuple[str, Any], **meta: Any) -> Path:
    path = write_task(
        gitops.path / "TASK-002.md",
        deploy_meta(**meta),
        list(criteria) or [("Image tag bumped to 0.1.18", [BUMP_TAG])],
    )
    git(gitops.path, "add", "TASK-002.md")
    git(gitops.path, "commit", "-q", "-m", "Add TASK-002")
    git(gitops.path, "push", "-q")
    return path


def test_image_tag_bump_waits_for_the_pushed_revision_not_just_ready(
    gitops: GitOps,
    run: Any,
) -> None:
    # Ready=True all along: only the applied revision tells the rollout happened.
    gitops.api.behave("Kustomization", "flux-system", "apps", delay=3)
    deploy_task(gitops)
    r = run("--infratask-commit", "--infratask-push")
    r.result.assert_outcomes(passed=2)
    assert r.result.ret == 0
    pushed = gitops.head()
    assert gitops.origin_head() == pushed
    assert git(gitops.path, "log", "-1", "--format=%s").strip() == "TASK-002: Deploy api 0.1.18"
    kustomization = gitops.api.get("Kustomization", "flux-system", "apps")
    assert kustomization["status"]["lastAppliedRevision"] == f"main@sha1:{pushed}"
    release = gitops.release()
    assert release["spec"]["values"]["image"]["tag"] == "0.1.18"
    assert release["status"]["observedGeneration"] == release["metadata"]["generation"] == 2
    contract = r.contract("TASK-002")
    assert contract["success"] is True
    [push] = contract["pushed"].values()
    assert push == {"remote": str(gitops.origin), "branch": "main", "commit": pushed}
    [reconciled] = contract["reconciled"]
    assert reconciled["ok"] is True
    assert reconciled["revision"] == f"main@sha1:{pushed}"
    assert reconciled["applied_revision"] == f"main@sha1:{pushed}"
    assert contract["revision"]["expected"] == f"main@sha1:{pushed}"
    # The source was asked to fetch before the objects that read it.
    order = [
        p.path.rsplit("/", 2)[-2]
        for p in gitops.api.patches()
        if REQUESTED_AT in json.dumps(p.body)
    ]
    assert order == ["gitrepositories", "kustomizations", "helmreleases"]
    assert r.properties("verify")["revision"] == f"main@sha1:{pushed}"


def test_commit_without_push_is_not_reported_as_reconciled(gitops: GitOps, run: Any) -> None:
    deploy_task(gitops)
    before = gitops.origin_head()
    r = run("--infratask-commit")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    assert gitops.origin_head() == before, "pushed without --infratask-push"
    assert gitops.head() != before
    wanted = f"Flux reads {gitops.origin}"
    assert "committed locally" in r.out and wanted in r.out
    assert "rerun with --infratask-push" in r.out
    assert gitops.api.patches() == [], "asked Flux about a commit it cannot see"
    assert gitops.release()["spec"]["values"]["image"]["tag"] == "0.1.17"
    contract = r.contract("TASK-002")
    assert contract["success"] is False
    assert contract["status"] == "committed"
    assert contract["error"] == "Reconcile failed"
    assert "committed locally" in contract["message"]
    assert "reconciled" not in contract
    failure = r.cases()["verify"].find("failure")
    assert failure is not None and "committed locally" in failure.get("message", "")
    assert r.failures() == 1
    # The fix is the suggestion: a rerun pushes the same commit and waits for it.
    again = run("--infratask-commit", "--infratask-push")
    again.result.assert_outcomes(passed=1, skipped=1)
    assert gitops.origin_head() == gitops.head()
    assert gitops.release()["spec"]["values"]["image"]["tag"] == "0.1.18"
    assert again.contract("TASK-002")["success"] is True


def test_push_rejected_by_the_remote_is_red_with_gits_message(
    gitops: GitOps,
    run: Any,
    tmp_path: Path,
) -> None:
    deploy_task(gitops)
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(gitops.origin), str(other))
    (other / "README").write_text("someone else's change\n")
    git(other, "add", "README")
    git(other, "commit", "-q", "-m", "Someone else")
    git(other, "push", "-q")
    theirs = gitops.origin_head()
    r = run("--infratask-push")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    assert gitops.origin_head() == theirs, "the remote was overwritten"
    assert "[rejected]" in r.out
    assert "git pull --rebase origin main" in r.out
    assert gitops.api.patches() == []
    contract = r.contract("TASK-002")
    assert contract["success"] is False
    assert contract["error"] == "Push failed"
    assert "[rejected]" in contract["message"]
    assert r.failures() == 1
    failure = r.cases()["verify"].find("failure")
    assert failure is not None and "[rejected]" in (failure.text or "")


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ({"fail": ("UpgradeFailed", "Helm upgrade failed: timed out")}, "UpgradeFailed"),
        ({"suspended": True}, "resource is suspended"),
    ],
)
def test_failed_or_suspended_release_makes_the_run_red(
    gitops: GitOps,
    run: Any,
    behaviour: dict[str, Any],
    expected: str,
) -> None:
    gitops.api.behave("HelmRelease", "prod", "api", **behaviour)
    deploy_task(gitops)
    r = run("--infratask-push")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    contract = r.contract("TASK-002")
    assert contract["success"] is False
    assert expected in contract["message"]
    assert r.failures() == 1
    failure = r.cases()["verify"].find("failure")
    assert failure is not None and expected in failure.get("message", "")
    assert r.properties("verify")["task_id"] == "TASK-002"


@pytest.mark.parametrize(
    ("kind", "namespace", "name", "resume"),
    [
        (
            "GitRepository",
            "flux-system",
            "flux-system",
            "flux resume source git flux-system -n flux-system",
        ),
        ("Kustomization", "flux-system", "apps", "flux resume kustomization apps -n flux-system"),
        ("HelmRelease", "prod", "api", "flux resume helmrelease api -n prod"),
    ],
)
def test_a_suspended_object_of_the_chain_blocks_before_anything_is_asked_of_flux(
    gitops: GitOps,
    run: Any,
    kind: str,
    namespace: str,
    name: str,
    resume: str,
) -> None:
    """The HelmRelease is reached through its Kustomization and that one's source: each
    is read first, and one suspended on purpose stops the run with no write at all."""
    gitops.api.behave(kind, namespace, name, suspended=True)
    deploy_task(gitops)
    gitops.api.clear_requests()
    r = run("--infratask-push")
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    assert {q.method for q in gitops.api.requests} == {"GET"}, "a write reached the API"
    for obj in (
        ("GitRepository", "flux-system", "flux-system"),
        ("Kustomization", "flux-system", "apps"),
        ("HelmRelease", "prod", "api"),
    ):
        assert REQUESTED_AT not in (gitops.api.get(*obj)["metadata"].get("annotations") or {})
    assert gitops.origin_head() == gitops.head(), "the push does not depend on the cluster"
    contract = r.contract("TASK-002")
    ref = f"{kind.lower()}/{namespace}/{name}"
    assert contract["success"] is False
    assert contract["status"] == "blocked"
    assert contract["error"] == "Verification blocked"
    assert contract["message"] == (
        f"BLOCKED: {ref}: resource is suspended: nothing was asked of Flux"
    )
    assert contract["recovery_suggestions"] == [
        f"resume it with `{resume}` once it should be reconciled, then rerun"
    ]
    [entry] = contract["reconciled"]
    assert entry["object"] == "helmrelease/prod/api" and entry["ok"] is False
    failure = r.cases()["verify"].find("failure")
    assert failure is not None and failure.get("message", "").startswith(f"BLOCKED: {ref}")
    assert resume in r.out


def test_declared_objects_are_checked_when_nothing_was_edited(gitops: GitOps, run: Any) -> None:
    """A task finished earlier (boxes ticked) still has its objects checked on a run."""
    gitops.api.behave("HelmRelease", "prod", "api", suspended=True)
    path = write_task(
        gitops.path / "TASK-002.md",
        deploy_meta(),
        [("Image tag bumped to 0.1.18", [BUMP_TAG])],
        box="x",
    )
    git(gitops.path, "add", "TASK-002.md")
    git(gitops.path, "commit", "-q", "-m", "finished task")
    git(gitops.path, "push", "-q")
    before = path.read_text()
    r = run()
    r.result.assert_outcomes(skipped=1, failed=1)
    assert "helmrelease/prod/api: resource is suspended" in r.out
    assert path.read_text() == before, "a rerun of a finished task wrote to its file"
    gitops.api.behave("HelmRelease", "prod", "api", suspended=False)
    gitops.api.update("HelmRelease", "prod", "api", {"spec": {"suspend": False}})
    again = run()
    again.result.assert_outcomes(skipped=1, passed=1)
    [reconciled] = again.contract("TASK-002")["reconciled"]
    assert reconciled["revision"] == f"main@sha1:{gitops.origin_head()}"
    assert path.read_text() == before
    assert git(gitops.path, "status", "--porcelain").strip() == ""


def test_flux_tracking_another_branch_never_sees_the_push(gitops: GitOps, run: Any) -> None:
    gitops.api.update(
        "GitRepository", "flux-system", "flux-system", {"spec": {"ref": {"branch": "release"}}}
    )
    git(gitops.path, "push", "-q", "origin", "main:release")
    deploy_task(gitops, wait=5)
    r = run("--infratask-push")
    r.result.assert_outcomes(passed=1, failed=1)
    message = r.contract("TASK-002")["message"]
    assert "source gitrepository/flux-system/flux-system: fetched revision release@sha1:" in message
    assert f"expected main@sha1:{gitops.head()}" in message


def test_uncommitted_change_is_not_reported_as_deployed(gitops: GitOps, run: Any) -> None:
    deploy_task(gitops)
    r = run()
    r.result.assert_outcomes(passed=1, failed=1)
    message = r.contract("TASK-002")["message"]
    assert "changes are not committed (apps/api/helmrelease.yaml)" in message
    assert "rerun with --infratask-commit --infratask-push" in r.out
    assert gitops.api.patches() == []


def test_chart_bump_is_applied_from_the_origin(gitops: GitOps, run: Any) -> None:
    deploy_task(gitops, ("Chart bumped to 0.1.18", [BUMP_CHART]))
    r = run("--infratask-push")
    r.result.assert_outcomes(passed=2)
    history = gitops.release()["status"]["history"]
    assert history[0]["chartVersion"] == "0.1.18"
    assert (
        yaml.safe_load(git(gitops.origin, "show", "main:apps/api/helmrelease.yaml"))["spec"][
            "chart"
        ]["spec"]["version"]
        == "0.1.18"
    )


# -- verification follows the file's state ---------------------------------------------


@pytest.fixture
def plain(pytester: pytest.Pytester, git_identity: None) -> Path:
    """An empty git repository (with an ini) as the pytester directory."""
    root = pytester.path
    (root / "pytest.ini").write_text("[pytest]\ninfratask_retry_delay = 0\n")
    (root / ".gitignore").write_text(".pytest_cache/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "commit.gpgsign", "false")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


VERIFY_DONE = "## Verification\n```bash\ntest -f done.txt\n```\n"


def test_hand_ticked_manual_criterion_gets_the_task_verified_and_committed(
    plain: Path,
    run: Any,
) -> None:
    path = write_task(
        plain / "TASK-005.md",
        {"id": "TASK-005", "title": "Rotate"},
        [("Rotated", "touch done.txt"), ("Smoke tested by hand", None)],
        VERIFY_DONE,
    )
    first = run("--infratask-commit", "-rs")
    first.result.assert_outcomes(passed=1, skipped=2)
    first.result.stdout.fnmatch_lines(
        ["*TASK-005.md:1: not verified: criteria remain open: #2 (manual)*"]
    )
    assert git(plain, "rev-list", "--count", "HEAD").strip() == "1"
    # A person ticks the manual box; the next run has nothing to execute but verifies.
    path.write_text(path.read_text().replace("- [ ] Smoke", "- [x] Smoke"))
    second = run("--infratask-commit")
    second.result.assert_outcomes(passed=1, skipped=2)
    assert second.result.ret == 0
    contract = second.contract("TASK-005")
    assert contract["success"] is True
    assert contract["status"] == "committed"
    assert {"check": "verification", "ok": True, "message": "Verification section passed"} in (
        contract["verification"]
    )
    committed = set(git(plain, "show", "--name-only", "--format=", "HEAD").split())
    assert committed == {"TASK-005.md", "done.txt"}
    assert "- [x] Smoke tested by hand" in git(plain, "show", "HEAD:TASK-005.md")
    assert git(plain, "status", "--porcelain").strip() == ""


def test_dry_run_passes_nothing_and_says_what_it_would_do(plain: Path, run: Any) -> None:
    write_task(
        plain / "TASK-005.md",
        {"id": "TASK-005", "title": "Rotate"},
        [("Rotated", "touch done.txt"), ("Noted", "echo noted > notes.txt")],
        VERIFY_DONE,
    )
    r = run("--infratask-dry-run", "--infratask-commit", "-rs")
    r.result.assert_outcomes(skipped=3)
    assert r.result.ret == 0
    assert "passed" not in r.out.splitlines()[-1]
    r.result.stdout.fnmatch_lines(
        [
            "TASK-005 [[]generic] dry_run: 0/2 criteria complete, 2 open",
            f"SKIPPED * dry run: would run `touch done.txt` in {plain}; checks: directory: ok*",
            "SKIPPED * dry run: once every criterion is ticked, would run the ## Verification "
            "commands `test -f done.txt`, commit the task's changes",
        ]
    )
    assert not (plain / "done.txt").exists()
    contract = r.contract("TASK-005")
    assert contract["dry_run"] is True and contract["status"] == "dry_run"
    assert {c.find("skipped") is not None for c in r.cases().values()} == {True}


# -- --lf reruns what a blocked criterion held back -----------------------------------


def test_last_failed_reruns_the_chain_a_blocked_criterion_held_back(
    plain: Path,
    run: Any,
) -> None:
    write_task(
        plain / "TASK-005.md",
        {"id": "TASK-005", "title": "Rotate"},
        [
            ("Tool ran", "bin/rotate-tool"),
            ("Second step", "echo two > two.txt"),
            ("Done", "touch done.txt"),
        ],
        VERIFY_DONE,
    )
    first = run(cache=True)
    first.result.assert_outcomes(failed=1, skipped=3)
    first.result.stdout.fnmatch_lines(["*BLOCKED: missing dependency*"])
    (plain / "bin").mkdir()
    (plain / "bin" / "rotate-tool").write_text("#!/bin/sh\necho rotated > one.txt\n")
    (plain / "bin" / "rotate-tool").chmod(0o755)
    again = run("--lf", cache=True)
    again.result.assert_outcomes(passed=4)
    assert (plain / "two.txt").exists() and (plain / "done.txt").exists()
    assert again.contract("TASK-005")["success"] is True


def test_keyword_selects_the_verify_items(plain: Path, run: Any) -> None:
    write_task(
        plain / "TASK-005.md",
        {"id": "TASK-005", "title": "Rotate"},
        [("Rotated", "touch done.txt")],
        VERIFY_DONE,
        box="x",
    )
    (plain / "done.txt").write_text("")
    r = run("-k", "verify")
    r.result.assert_outcomes(passed=1, deselected=1)
    assert r.properties("verify")["success"] == "True"
    r = run("-k", "not verify")
    r.result.assert_outcomes(skipped=1, deselected=1)


def test_json_report_carries_the_verdict_and_contract(plain: Path, run: Any) -> None:
    write_task(
        plain / "TASK-005.md",
        {"id": "TASK-005", "title": "Rotate"},
        [("Rotated", "echo rotated")],
        VERIFY_DONE,
    )
    report = plain.parent / f"{plain.name}-report.json"
    r = run("--json-report", f"--json-report-file={report}")
    r.result.assert_outcomes(passed=1, failed=1)
    tests = {t["nodeid"]: t for t in json.loads(report.read_text())["tests"]}
    verify = tests["TASK-005.md::verify"]
    assert verify["outcome"] == "failed"
    meta = verify["metadata"]["infratask"]
    assert meta["verdict"] == "failed"
    assert meta["contract"]["success"] is False
    assert "Verification command failed" in meta["message"]


# -- build tasks: the registry decides --------------------------------------------------


def test_missing_image_makes_the_run_red_with_a_failed_junit_case(
    plain: Path,
    run: Any,
    registry: RunningRegistry,
) -> None:
    """The build ran a script that does not say "push": only the task's own check can
    tell the image never reached the registry."""
    meta = {
        "id": "TASK-001",
        "title": "Build api",
        "labels": ["builds"],
        "registry": registry.hostport,
        "version": "9.9.9-missing",
        "images": ["api"],
    }
    write_task(plain / "TASK-001.md", meta, [("Images built", "echo built by ci.sh")])
    r = run()
    r.result.assert_outcomes(passed=1, failed=1)
    assert r.result.ret == 1
    wanted = f"image api:9.9.9-missing not found in registry {registry.hostport}"
    assert wanted in r.out
    contract = r.contract("TASK-001")
    assert contract["success"] is False
    assert wanted in contract["message"]
    assert r.failures() == 1
    failure = r.cases()["verify"].find("failure")
    assert failure is not None and wanted in failure.get("message", "")
    assert r.properties("verify")["task_type"] == "build"


# -- several repositories ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("git@github.com:Org/gitops.git", "https://github.com/org/gitops", True),
        ("ssh://git@github.com/org/gitops.git", "https://github.com/org/gitops/", True),
        ("ssh://git@host:2222/org/gitops", "https://host/org/gitops", True),
        ("file:///srv/origin.git", "/srv/origin.git", True),
        ("https://github.com/org/gitops", "https://github.com/org/infra", False),
        ("https://github.com/org/gitops", "https://gitlab.com/org/gitops", False),
    ],
)
def test_same_repository_compares_git_urls(a: str, b: str, same: bool) -> None:
    from pytest_infratask.handlers.deployment import same_repository

    assert same_repository(a, b) is same


def test_a_kustomization_of_another_repository_is_not_held_to_this_revision(
    gitops: GitOps,
    run: Any,
    tmp_path: Path,
) -> None:
    infra = tmp_path / "infra.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(infra))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(infra), str(seed))
    (seed / "README").write_text("infra\n")
    git(seed, "add", "README")
    git(seed, "commit", "-q", "-m", "infra")
    git(seed, "push", "-q", "origin", "main")
    gitops.api.add_source("GitRepository", "infra", url=str(infra))
    gitops.api.add_kustomization("infra", path="./", source="infra")
    deploy_task(gitops, reconcile=["kustomization/infra", "helmrelease/prod/api"])
    r = run("--infratask-push")
    r.result.assert_outcomes(passed=2)
    other, api = r.contract("TASK-002")["reconciled"]
    assert api["ok"] is True and api["applied_revision"] == f"main@sha1:{gitops.head()}"
    assert other["ok"] is True
    assert f"revision not checked: its source reads {infra}" in other["message"]
    assert "not checked" not in api["message"]


def test_a_later_push_by_someone_else_still_contains_the_task(
    gitops: GitOps,
    run: Any,
    tmp_path: Path,
) -> None:
    """Flux applies a newer commit the task's clone has never seen: it builds on the
    task's commit, so the task is deployed (git fetches to tell)."""
    deploy_task(gitops)
    run("--infratask-push").result.assert_outcomes(passed=2)
    task_commit = gitops.head()
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(gitops.origin), str(other))
    (other / "README").write_text("later\n")
    git(other, "add", "README")
    git(other, "commit", "-q", "-m", "Later")
    git(other, "push", "-q")
    later = gitops.origin_head()
    assert later != task_commit
    r = run()
    r.result.assert_outcomes(passed=1, skipped=1)
    [reconciled] = r.contract("TASK-002")["reconciled"]
    assert reconciled["revision"] == f"main@sha1:{task_commit}"
    assert reconciled["applied_revision"] == f"main@sha1:{later}"


def test_the_first_blocked_outcome_stops_the_next_criterion() -> None:
    """What stops a criterion is found among the blocked outcomes only, in the order
    the outcomes were first recorded; a local block or one turned failed stops none."""
    from dataclasses import replace

    from pytest_infratask.core.outcome import Outcome, Outcomes, Status

    outcomes = Outcomes()
    outcomes[1] = Outcome(1, "one", Status.PASSED)
    outcomes[2] = Outcome(2, "two", Status.BLOCKED, local=True)  # a `needs` block
    outcomes[3] = Outcome(3, "three", Status.BLOCKED, "no kubectl")
    assert outcomes.stopping(4) == (3, outcomes[3])
    assert outcomes.stopping(3) is None  # never itself
    outcomes[1] = Outcome(1, "one", Status.BLOCKED, "rerun, blocked now")
    assert outcomes.stopping(4) == (1, outcomes[1])  # recorded first
    for number in (1, 3):  # e.g. a write-back that failed: decided anew, recorded again
        outcomes[number] = replace(outcomes[number], status=Status.FAILED)
    assert outcomes.stopping(4) is None
    assert list(outcomes) == [1, 2, 3]


def test_an_outcome_cannot_change_once_made() -> None:
    """Outcomes are values: a later step makes a new one (``decide``), so an outcome the
    hooks or ``stopping`` saw is the one the reports read."""
    import dataclasses

    from pytest_infratask.core.outcome import Outcome, Recorded, Status, decide

    passed = Outcome(1, "one", Status.PASSED, "passed", notes=("ran",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        passed.status = Status.FAILED  # type: ignore[misc]
    unwritten = decide(passed, Recorded("- line", unwritten="read-only"))
    assert (unwritten.status, unwritten.error) == (Status.FAILED, "write-back failed: read-only")
    assert unwritten.message == "passed; task file not updated: read-only"
    unstaged = decide(passed, Recorded("- line", raced=True), ["index.lock exists"])
    assert unstaged.status is Status.FAILED
    assert unstaged.message == "passed, but staging failed: index.lock exists"
    assert unstaged.notes[-1].startswith("another run ticked it")
    kept = decide(passed, Recorded("- line"))
    assert (kept.status, kept.progress_entry) == (Status.PASSED, "- line")
    assert passed.status is Status.PASSED and passed.progress_entry == ""
    blocked = Outcome(2, "two", Status.BLOCKED, "BLOCKED: no kubectl")
    assert decide(blocked, Recorded("- b"), ["ignored: nothing passed"]).status is Status.BLOCKED
