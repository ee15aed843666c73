"""The output contract as CI reads it: per-task JSON, pytest-json-report and JUnit."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import DEFAULT_META, item, task_md, write_task

Run = Callable[..., pytest.RunResult]
ENTRY = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}: ")
STATUSES = {
    *("ready_for_verification", "not_started", "partially_complete"),
    *("blocked", "committed", "dry_run"),
}


def contract(pytester: pytest.Pytester, task_id: str = "TASK-001") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((pytester.path / "rep" / f"{task_id}.json").read_text())
    assert data["status"] in STATUSES
    return data


def make(pytester: pytest.Pytester, *criteria: str, meta: str = "", **kw: Any) -> Path:
    meta = "id: TASK-001\ntitle: Rotate the certs\nupdated: 2024-01-01\n" + meta
    return write_task(pytester.path, "TASK-001.md", task_md(*criteria, meta=meta, **kw))


def test_success_contract(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Generate", "echo generated cert"),
        item("Install", "echo one", "echo installed"),
        item("Already there", box="x"),
    )
    run("--infratask-report-dir=rep").assert_outcomes(passed=2, skipped=1)
    c = contract(pytester)
    assert c["success"] is True
    assert (c["task_id"], c["task_title"], c["task_type"]) == (
        "TASK-001",
        "Rotate the certs",
        "generic",
    )
    assert c["criteria"] == {"total": 3, "completed": 3, "failed": 0, "remaining": 0}
    assert c["completed_criteria"] == [
        {
            "criterion": "Generate",
            "number": 1,
            "command": "echo generated cert\n",
            "output": "generated cert",
            "notes": f"ran in {pytester.path}",
        },
        {
            "criterion": "Install",
            "number": 2,
            "command": "echo one\n\necho installed\n",
            "output": "installed",
            "notes": f"ran in {pytester.path}",
        },
        {
            "criterion": "Already there",
            "number": 3,
            "command": "",
            "output": "",
            "notes": "already complete before this run",
        },
    ]
    assert c["remaining_criteria"] == []
    assert c["changes"] == {
        "files_modified": [str(path)],
        "commands_executed": ["echo generated cert\n", "echo one\n", "echo installed\n"],
    }
    assert ENTRY.match(c["progress_log_entry"])
    assert c["progress_log_entry"].endswith("Completed #2: Install")
    assert c["progress_log_entry"] in path.read_text()
    assert c["status"] == "ready_for_verification"
    assert isinstance(c["next_steps"], str) and c["next_steps"]
    for key in ("error", "details", "recovery_suggestions", "completed_before_failure"):
        assert key not in c


def test_failure_contract(pytester: pytest.Pytester, run: Run) -> None:
    make(
        pytester,
        item("Generate", "echo generated"),
        item("Install", "echo partial; echo 'cert rejected' >&2; exit 4"),
        item("Restart", "echo restarted"),
        item("Check by hand"),
    )
    run("--infratask-report-dir=rep").assert_outcomes(passed=2, failed=1, skipped=1)
    c = contract(pytester)
    assert c["success"] is False
    assert c["criteria"] == {"total": 4, "completed": 2, "failed": 1, "remaining": 2}
    assert [x["criterion"] for x in c["completed_criteria"]] == ["Generate", "Restart"]
    assert c["remaining_criteria"] == [
        {
            "criterion": "Install",
            "number": 2,
            "reason": "command failed with exit code 4 after 2 attempt(s)",
        },
        {
            "criterion": "Check by hand",
            "number": 4,
            "reason": "manual criterion: no command to run; left open",
        },
    ]
    assert c["status"] == "partially_complete"
    assert c["error"] == "Criterion failed"
    assert c["message"] == "command failed with exit code 4 after 2 attempt(s)"
    assert c["details"] == {
        "criterion": "Install",
        "command": "echo partial; echo 'cert rejected' >&2; exit 4\n",
        "error_output": "cert rejected",
    }
    assert c["completed_before_failure"] == ["Generate"]
    fix = "fix what made the block exit 4 (its stderr says why) and rerun"
    assert c["recovery_suggestions"] == [fix]
    # the failure first, then the manual criterion by number and text
    assert c["next_steps"] == f"{fix}; #4 'Check by hand' is manual: tick it by hand when done"
    assert c["progress_log_entry"].endswith("Completed #3: Restart")


def test_blocked_contract(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Use tool", "no-such-tool-xyz apply"), item("After", "true"))
    run("--infratask-report-dir=rep").assert_outcomes(failed=1, skipped=1)
    c = contract(pytester)
    assert c["success"] is False and c["status"] == "blocked"
    assert c["error"] == "Criterion blocked"
    assert c["message"] == "BLOCKED: missing dependency: no-such-tool-xyz not found"
    assert c["details"]["criterion"] == "Use tool"
    assert "no-such-tool-xyz" in c["details"]["error_output"]
    assert c["completed_before_failure"] == []
    assert c["recovery_suggestions"][0].startswith("install no-such-tool-xyz")
    assert c["remaining_criteria"][1]["reason"].startswith("blocked by #1")
    assert c["next_steps"].startswith("install no-such-tool-xyz")


def test_deselected_criteria_are_remaining_not_run(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("First", "true"), item("Second", "touch second"))
    run("--infratask-report-dir=rep", "-k", "first").assert_outcomes(passed=1)
    c = contract(pytester)
    assert c["success"] is True and c["status"] == "partially_complete"
    assert c["remaining_criteria"] == [
        {
            "criterion": "Second",
            "number": 2,
            "reason": "not run in this session (deselected, or the run stopped before it)",
        },
    ]
    assert c["next_steps"] == "#2 'Second' did not run in this session: rerun to run it"


def test_dry_run_contract_reports_nothing_executed(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("First", "touch first"))
    run("--infratask-report-dir=rep", "--infratask-dry-run").assert_outcomes(skipped=1)
    c = contract(pytester)
    assert c["dry_run"] is True
    assert c["changes"] == {"files_modified": [], "commands_executed": []}
    assert c["remaining_criteria"] == [
        {"criterion": "First", "number": 1, "reason": "dry run: not executed"}
    ]
    assert c["progress_log_entry"] == ""


def test_json_report_plugin(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Generate", "echo ok"), item("Install", "exit 1"))
    run("--json-report", "--json-report-file=r.json").assert_outcomes(passed=1, failed=1)
    report = json.loads((pytester.path / "r.json").read_text())
    tasks = report["infratask"]["tasks"]
    assert [t["task_id"] for t in tasks] == ["TASK-001"]
    assert tasks[0]["criteria"]["completed"] == 1 and tasks[0]["success"] is False
    tests = {t["nodeid"]: t for t in report["tests"]}
    assert set(tests) == {"TASK-001.md::ac1-generate", "TASK-001.md::ac2-install"}
    meta = tests["TASK-001.md::ac2-install"]["metadata"]["infratask"]
    assert meta["task_id"] == "TASK-001"
    assert meta["task_type"] == "generic"
    assert (meta["criterion"], meta["number"], meta["status"]) == ("Install", 2, "failed")
    assert meta["cwd"] == str(pytester.path)
    assert tests["TASK-001.md::ac1-generate"]["metadata"]["infratask"]["status"] == "passed"


def test_junit_properties(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Generate", "true"), item("Install", "exit 1"), meta="labels: [networking]")
    run("--junitxml=junit.xml").assert_outcomes(passed=1, failed=1)
    root = ET.parse(pytester.path / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == ["ac1-generate", "ac2-install"]
    props = [
        {p.get("name"): p.get("value") for p in case.findall("properties/property")}
        for case in cases
    ]
    assert props == [
        {"task_id": "TASK-001", "criterion": "#1 Generate", "task_type": "configuration"},
        {"task_id": "TASK-001", "criterion": "#2 Install", "task_type": "configuration"},
    ]
    failure = cases[1].find("failure")
    assert failure is not None and "exit code 1" in (failure.get("message") or "")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("[builds]", "build"),
        ("[container-builds]", "build"),
        ("[registry]", "build"),
        ("[deployment]", "deployment"),
        ("[flux-apps]", "deployment"),
        ("[infrastructure]", "configuration"),
        ("[configuration]", "configuration"),
        ("[networking, dns]", "configuration"),
        ("[Security]", "configuration"),
        ("[verification]", "verification"),
        ("[health-checks]", "verification"),
        ("[docs, misc]", "generic"),
        ("[]", "generic"),
        ("[health, builds]", "build"),
        ("docs, flux", "deployment"),
    ],
)
def test_task_type_from_labels(
    pytester: pytest.Pytester, run: Run, labels: str, expected: str
) -> None:
    make(pytester, item("Say hi", "echo hi"), meta=f"labels: {labels}")
    run("--infratask-report-dir=rep", "--infratask-skip-verification").assert_outcomes(passed=1)
    assert contract(pytester)["task_type"] == expected


def test_task_type_marker_selects(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Say hi", "echo hi"), meta="labels: [container-builds]")
    result = run("-m", "build and container_builds", "--co", "-q", "--strict-markers")
    result.stdout.fnmatch_lines(["TASK-001.md::ac1-say-hi", "1 test collected*"])


def test_report_file_per_task(pytester: pytest.Pytester, run: Run) -> None:
    write_task(pytester.path, "TASK-001.md", task_md(item("a", "true"), meta="id: TASK-001"))
    write_task(pytester.path, "TASK-002.md", task_md(item("b", "exit 1"), meta="id: TASK-002"))
    run("--infratask-report-dir=rep").assert_outcomes(passed=1, failed=1)
    assert sorted(p.name for p in (pytester.path / "rep").iterdir()) == [
        "TASK-001.json",
        "TASK-002.json",
    ]
    assert contract(pytester, "TASK-001")["success"] is True
    assert contract(pytester, "TASK-002")["success"] is False
    run_ = run("-q")
    run_.stdout.fnmatch_lines(
        [
            "TASK-001 [[]generic] ready_for_verification: 1/1 criteria complete",
            "TASK-002 [[]generic] partially_complete: 0/1 criteria complete, 1 failed",
        ]
    )


def test_statuses_and_counts_say_what_happened(pytester: pytest.Pytester, run: Run) -> None:
    """Nothing done and nothing failed is ``not_started``, not partially complete; a
    failed task-level check is counted in the summary line, not hidden behind
    "3/3 complete"."""
    make(pytester, item("Check the dashboard"), item("Call the owner"))
    run("--infratask-report-dir=rep").stdout.fnmatch_lines(
        [
            "TASK-001 [[]generic] not_started: 0/2 criteria complete, 2 open",
            "    next: #1 'Check the dashboard' is manual: tick it by hand when done; "
            "#2 'Call the owner' is manual: tick it by hand when done",
        ]
    )
    assert contract(pytester)["status"] == "not_started"
    make(
        pytester,
        item("Write it", "touch it.txt"),
        after_ac="## Verification\n```bash\nexit 3\n```\n",
    )
    result = run("--infratask-report-dir=rep")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "TASK-001 [[]generic] ready_for_verification: 1/1 criteria complete, "
            "checks 0/1 passed (verification failed)",
        ]
    )
    assert contract(pytester)["success"] is False


def test_passes_section_and_markers(pytester: pytest.Pytester, run: Run) -> None:
    """``-rP`` shows where a passed criterion ran and its output's tail, masked;
    ``--markers`` lists the task-type markers with their meaning."""
    make(
        pytester,
        item("Say hello", "echo hello from $TOKEN"),
        meta="labels: [builds]\nenv:\n  TOKEN: s3cr3t-value-77\n",
    )
    result = run("--infratask-report-dir=rep", "-rP")
    result.stdout.fnmatch_lines(
        [
            "*= PASSES =*",
            "*TASK-001 #1: Say hello*",
            "*- Captured infratask call -*",
            f"directory: {pytester.path}",
            "output (tail):",
            "    hello from ***",
        ]
    )
    assert "s3cr3t-value-77" not in result.stdout.str()
    markers = run("--markers").stdout
    markers.fnmatch_lines(["@pytest.mark.build: infratask build task (a label containing builds*"])
    assert markers.str().count("@pytest.mark.build:") == 1


def test_ini_workdir_is_the_default_and_frontmatter_wins(
    pytester: pytest.Pytester, run: Run
) -> None:
    """``infratask_workdir`` (relative to the ini file) is where commands run unless
    the frontmatter names a ``workdir``."""
    pytester.makeini("[pytest]\ninfratask_workdir = work\n")
    (pytester.path / "work").mkdir()
    (pytester.path / "own").mkdir()
    tasks = pytester.path / "tasks"
    write_task(tasks, "TASK-001.md", task_md(item("Where", "pwd > where.txt"), meta=DEFAULT_META))
    meta = "id: TASK-002\ntitle: Own\nupdated: 2024-01-01\nworkdir: ../own"
    write_task(tasks, "TASK-002.md", task_md(item("Where", "pwd > where.txt"), meta=meta))
    run("tasks", "--infratask-report-dir=rep").assert_outcomes(passed=2)
    assert (pytester.path / "work" / "where.txt").read_text().strip() == str(pytester.path / "work")
    assert (pytester.path / "own" / "where.txt").exists()
    assert not (tasks / "where.txt").exists()


POST_CONDITION = """
from pytest_infratask import Handler


class Dns(Handler):
    task_type = "dns"

    def after_criterion(self, step):
        return ["record api.corp.internal does not resolve"]


def pytest_infratask_handler(task_type, task, config):
    return Dns.create(task, config) if task_type == "dns" else None
"""


def test_each_fact_once_per_channel(pytester: pytest.Pytester, run: Run) -> None:
    """The headline says what failed, the output tail is the command's own output
    (not the headline again), the progress line is the short outcome; a failed
    verification is printed once."""
    pytester.makeconftest(POST_CONDITION)
    path = make(pytester, item("Add the record", "echo added api"), meta="type: dns\n")
    result = run("--infratask-report-dir=rep")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    problem = "record api.corp.internal does not resolve"
    # the headline only; pytest's short summary repeats it in full where CI is set
    body = out.split("short test summary info")[0]
    assert body.count(problem) == 1
    assert body.count(f"post-condition failed: {problem}") == 1
    result.stdout.fnmatch_lines(["stdout (tail):", "    added api"])
    assert "stderr (tail)" not in out
    [line] = [x for x in path.read_text().splitlines() if "Failed #1" in x]
    assert line.endswith(
        "Failed #1: Add the record: post-condition failed (1 problem) (see rep/TASK-001.json)"
    )
    make(
        pytester,
        item("Write it", "touch it.txt"),
        after_ac="## Verification\n```bash\necho 'no such record' >&2; exit 3\n```\n",
    )
    verify = run("--infratask-report-dir=rep")
    verify.assert_outcomes(passed=1, failed=1)
    failures = verify.stdout.str().split("= FAILURES =")[1].split("= infratask =")[0]
    assert failures.count("no such record") == 1, failures
    # a failed check: its remedy, never the advice to commit what failed verification
    assert "commit them" not in contract(pytester)["next_steps"]
