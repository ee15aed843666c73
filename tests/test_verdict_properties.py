"""A property over generated runs: pytest's verdict agrees with the tasks' contracts.

Each example is a whole run in a fresh git repository with a bare ``origin`` and a
stand-in Flux reading it: one to three task files whose criteria pass, fail, are blocked
or are manual (open or ticked), with or without a ``## Verification`` that passes or
fails, some declaring a HelmRelease that rolls out or fails; the run commits or not,
pushes or not (to a remote that may be ahead), through a commit hook that may refuse,
as a dry run or not, with xdist or without. Whatever the mix: the exit code is 0 exactly
when every contract says ``success: true``, JUnit counts a failure exactly when some
contract failed, and a dry run passes nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from helpers import HELMRELEASE, git, push_to_new_origin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubeapi import KubeAPIServer

EXAMPLES = int(os.environ.get("INFRATASK_VERDICT_EXAMPLES", "10"))
COMMANDS = {
    "pass": "echo ok >> out-{task}-{n}.txt",
    "fail": "echo broken >&2; exit 3",
    "blocked": "no-such-tool-{task}",
}


@dataclass(frozen=True)
class TaskPlan:
    criteria: tuple[str, ...]
    verification: str | None
    deploys: bool


@dataclass(frozen=True)
class Scenario:
    tasks: tuple[TaskPlan, ...]
    commit: bool
    push: bool
    hook_refuses: bool
    remote_ahead: bool
    rollout_fails: bool
    dry_run: bool
    xdist: bool


tasks = st.builds(
    TaskPlan,
    st.lists(
        st.sampled_from(["pass", "pass", "fail", "blocked", "manual", "ticked"]),
        min_size=1,
        max_size=3,
    ).map(tuple),
    st.sampled_from([None, "true", "false"]),
    st.booleans(),
)
scenarios = st.builds(
    Scenario,
    st.lists(tasks, min_size=1, max_size=3).map(tuple),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


@dataclass
class World:
    base: Path
    ids: Iterator[int]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("verdicts"), count())


def _task_file(root: Path, number: int, plan: TaskPlan) -> None:
    task_id = f"TASK-{number:03d}"
    meta = [f"id: {task_id}", f"title: Task {number}", "updated: 2024-01-01", "retries: 0"]
    if plan.deploys:
        meta += [
            "labels: [deployment]",
            "kube_context: dev",
            "wait: 20",
            "poll_interval: 0.02",
            "reconcile: [helmrelease/prod/api]",
        ]
    lines = ["---", *meta, "---", f"# Task {number}", "", "## Acceptance Criteria"]
    for n, kind in enumerate(plan.criteria, 1):
        box = "x" if kind == "ticked" else " "
        lines.append(f"- [{box}] Step {n}")
        if kind in COMMANDS:
            lines += ["  ```bash", "  " + COMMANDS[kind].format(task=number, n=n), "  ```"]
    if plan.verification:
        lines += ["", "## Verification", "```bash", plan.verification, "```"]
    lines += ["", "## Progress Log", ""]
    (root / f"{task_id}.md").write_text("\n".join(lines))


def _setup(world: World, scenario: Scenario) -> Path:
    case = world.base / f"case{next(world.ids)}"
    root, origin = case / "repo", case / "origin.git"
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\ninfratask_retry_delay = 0\n")
    (root / ".gitignore").write_text(".pytest_cache/\n")
    (root / "apps" / "api").mkdir(parents=True)
    (root / "apps" / "api" / "helmrelease.yaml").write_text(HELMRELEASE)
    for number, plan in enumerate(scenario.tasks, 1):
        _task_file(root, number, plan)
    push_to_new_origin(root, origin)
    if scenario.remote_ahead:
        other = case / "other"
        git(case, "clone", "-q", str(origin), str(other))
        (other / "README").write_text("theirs\n")
        git(other, "add", "README")
        git(other, "commit", "-q", "-m", "theirs")
        git(other, "push", "-q")
    if scenario.hook_refuses:
        hook = root / ".git" / "hooks" / "pre-commit"
        hook.write_text("#!/bin/sh\necho 'refused by policy' >&2\nexit 1\n")
        hook.chmod(0o755)
    return root


def _flux(api: KubeAPIServer, root: Path, scenario: Scenario) -> Path:
    """Flux reading the example's origin; returns a kubeconfig for it."""
    api.add_source("GitRepository", "flux-system", url=str(root.parent / "origin.git"))
    api.add_kustomization("apps", path="./apps")
    behaviour: dict[str, Any] = (
        {"fail": ("UpgradeFailed", "upgrade failed")} if scenario.rollout_fails else {}
    )
    api.add_helmrelease(
        "api", "prod", chart="api", version="0.1.17", managed_by="flux-system/apps", **behaviour
    )
    return api.write_kubeconfig(root.parent / "kubeconfig", "dev")


def _run(kubeconfig: Path, root: Path, scenario: Scenario) -> tuple[int, Path]:
    reports = root.parent / "reports"
    junit = root.parent / "junit.xml"
    args = [
        sys.executable,
        "-m",
        "pytest",
        ".",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        "-p",
        "no:benchmark",
        "-p",
        "no:json-report",
        f"--infratask-report-dir={reports}",
        f"--junitxml={junit}",
        "-q",
    ]
    args += ["-n", "2"] if scenario.xdist else ["-p", "no:xdist"]
    args += ["--infratask-commit"] if scenario.commit else []
    args += ["--infratask-push"] if scenario.push else []
    args += ["--infratask-dry-run"] if scenario.dry_run else []
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t.invalid",
    }
    done = subprocess.run(
        args, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    return done.returncode, reports


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios)
def test_exit_code_and_junit_agree_with_every_contract(world: World, scenario: Scenario) -> None:
    root = _setup(world, scenario)
    with KubeAPIServer() as api:
        code, reports = _run(_flux(api, root, scenario), root, scenario)
    contracts = [json.loads(p.read_text()) for p in sorted(reports.glob("*.json"))]
    assert len(contracts) == len(scenario.tasks), (code, contracts)
    suite = ET.parse(root.parent / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    failures = int(suite.get("failures", "0")) + int(suite.get("errors", "0"))
    all_good = all(c["success"] for c in contracts)
    story = textwrap.indent(
        json.dumps(
            [{k: c.get(k) for k in ("task_id", "success", "status", "message")} for c in contracts],
            indent=1,
        ),
        "  ",
    )
    assert (code == 0) == all_good, f"exit code {code} but contracts:\n{story}"
    assert code in (0, 1), f"exit code {code}"
    assert (failures > 0) == (not all_good), f"{failures} JUnit failures but:\n{story}"
    if scenario.dry_run:
        passed = [
            c
            for c in suite.iter("testcase")
            if c.find("failure") is None and c.find("skipped") is None and c.find("error") is None
        ]
        assert passed == [], "a dry run reported a pass"
        assert all(c["dry_run"] for c in contracts)
