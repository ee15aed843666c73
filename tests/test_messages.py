"""Every hint names only what the task has: a table of task types (with and without
what their hints talk about) by outcome, through the built-in handlers and the
contract's ``next_steps``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from pytest_infratask.core.messages import MANUAL, findings_lines, summary_line
from pytest_infratask.core.outcome import Outcome, Status
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.taskrecord import Delivery, TaskRecord
from pytest_infratask.handlers import builtin_handler
from pytest_infratask.read.taskfile import parse_task
from pytest_infratask.report.contract import build_contract, status_of

# type, frontmatter lines, what its hint may name (words that must appear on success)
TYPES = {
    "build+images": (
        "build",
        "images: [api]\nversion: '1.2'\nregistry: r.example",
        "deploy api:1.2 through a deployment task",
    ),
    "build": ("build", "", None),
    "deployment+reconcile": (
        "deployment",
        "validate: [apps/api]\nreconcile: [helmrelease/prod/api]",
        "watch the release roll out (flux get helmreleases -A)",
    ),
    "deployment": ("deployment", "", None),
    "configuration+manifests": (
        "configuration",
        "validate: [apps/api]",
        "Flux applies the committed manifests (apps/api); do not kubectl apply them",
    ),
    "configuration": ("configuration", "", None),
    "verification+checks": (
        "verification",
        "checks: ['http://x.invalid/']",
        "state verified; close the task",
    ),
    "verification": ("verification", "", None),
    "custom (dns)": ("dns", "", None),
}
OUTCOMES = ("passed", "failed", "blocked", "manual remaining", "dry run")
# words a hint may use only when the task has the thing they name
NAMES = {
    "image": "images:",
    "kubectl apply": "validate:",
    "flux get": "reconcile:",
    "state verified": "checks:",
}


def settings(tmp_path: Path, dry_run: bool = False) -> Settings:
    return Settings(
        *(tmp_path, (), dry_run, True, 0, 0.0, None, 0.0, None, True, False, False, False),
        *((), {}, (tmp_path,), (), None, False, (), False, (), ()),
    )


def record(tmp_path: Path, kind: str, outcome: str) -> TaskRecord:
    task_type, meta, _ = TYPES[kind]
    text = (
        f"---\nid: TASK-9\ntitle: T\ntype: {task_type}\n{meta}\n---\n# T\n\n"
        "## Acceptance Criteria\n- [ ] Change it\n  ```bash\n  true\n  ```\n"
        "- [ ] Manual smoke test of the login flow\n\n## Progress Log\n"
    )
    task = parse_task(tmp_path / "TASK-9.md", text.encode())
    if outcome != "manual remaining":  # every other row ticks the manual one by hand
        task = replace(task, criteria=(task.criteria[0], replace(task.criteria[1], box="x")))
    first = task.criteria[0]
    outcomes = {
        "passed": Outcome(1, first.text, Status.PASSED, "passed"),
        "manual remaining": Outcome(1, first.text, Status.PASSED, "passed"),
        "failed": Outcome(
            1, first.text, Status.FAILED, "exit code 1", suggestions=("fix what made it fail",)
        ),
        "blocked": Outcome(
            1, first.text, Status.BLOCKED, "BLOCKED: x", suggestions=("install the tool",)
        ),
        "dry run": Outcome(1, first.text, Status.DRY_RUN, "would run `true`"),
    }
    dry = outcome == "dry run"
    cls = builtin_handler(task_type)
    handler = cls(task, settings(tmp_path, dry))
    facts = TaskRecord(
        *(task, task_type, handler.name, dry, MappingProxyType({1: outcomes[outcome]})),
        *(Delivery(commits={"repo": "abc"}) if outcome == "passed" else Delivery(), None),
        *((), "", (), {}, ()),
    )
    return replace(facts, next_steps=tuple(handler.next_steps(status_of(facts))))


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("kind", list(TYPES))
def test_hints_name_only_what_the_task_has(tmp_path: Path, kind: str, outcome: str) -> None:
    facts = record(tmp_path, kind, outcome)
    _, meta, own = TYPES[kind]
    hint = build_contract(facts)["next_steps"]
    for word, key in NAMES.items():
        if key not in meta:
            assert word not in hint, (kind, outcome, hint)
    if outcome == "passed":
        assert hint == (own or "task complete")
    elif outcome == "failed":
        assert hint == "fix what made it fail"
    elif outcome == "blocked":
        assert hint == "install the tool"
    elif outcome == "manual remaining":
        assert hint == f"#2 'Manual smoke test of the login flow' is manual: {MANUAL}", hint
    else:
        assert hint == "rerun without --infratask-dry-run to run 1 criterion"


def test_summary_line_counts_the_checks() -> None:
    counts = {"total": 3, "completed": 3, "failed": 0, "remaining": 0}
    checks = [("reconcile", False)]
    line = summary_line("T [deployment]", "committed", counts, checks)  # type: ignore[arg-type]
    assert line == (
        "T [deployment] committed: 3/3 criteria complete, checks 0/1 passed (reconcile failed)"
    )


def test_every_finding_is_listed_grouped_by_severity() -> None:
    def finding(rule: str, severity: str, line: int) -> dict[str, object]:
        return {
            **{"rule_id": rule, "severity": severity, "kind": "Deployment"},
            **{"namespace": "prod", "name": "api", "file": "apps/api", "message": "m"},
            **{"path": "apps/api/deploy.yaml", "line": line, "field": ""},
        }

    found = [finding("resource-limits", "medium", 9), finding("privileged", "high", 3)]
    assert findings_lines(found) == [  # type: ignore[arg-type]
        "security findings: 1 high, 1 medium",
        "  high privileged Deployment/prod/api (apps/api/deploy.yaml:3): m",
        "  medium resource-limits Deployment/prod/api (apps/api/deploy.yaml:9): m",
    ]
