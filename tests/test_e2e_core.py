"""The executor end to end: real pytest runs on real task files, then the file's bytes.

Each test states what ran (outcomes, marker files) and what the task file became
(``helpers.changes`` allows only ticks, the ``updated`` value and log lines).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    DEADLINE,
    assert_recent,
    changes,
    item,
    none_left,
    task_md,
    updated_value,
    wait_for,
    write_task,
)

from pytest_infratask.read.taskfile import parse_task
from pytest_infratask.record.writeback import TMP_SUFFIX
from pytest_infratask.run.process import OUTPUT_LIMIT

Run = Callable[..., pytest.RunResult]


def make(
    pytester: pytest.Pytester, *criteria: str, name: str = "TASK-001.md", **kw: object
) -> Path:
    opts = {k: kw.pop(k) for k in ("newline", "bom") if k in kw}
    return write_task(pytester.path, name, task_md(*criteria, **kw), **opts)  # type: ignore[arg-type]


def text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")


# -- file formats --------------------------------------------------------------

BACKLOG = """\
---
id: task-12
title: Build the images
status: In Progress
assignee: []
created_date: '2024-01-10 09:00'
updated_date: '2024-01-15 14:30'
labels: []
dependencies: []
---

## Description

<!-- SECTION:DESCRIPTION:BEGIN -->
Build and tag the images.
<!-- SECTION:DESCRIPTION:END -->

## Acceptance Criteria
<!-- AC:BEGIN -->
- [ ] #1 Build the image
  ```bash
  echo built > built.txt
  ```
- [x] #2 Decide the tag
- [ ] #3 Tag the image
  ```bash
  test -f built.txt && echo tagged
  ```
<!-- AC:END -->
"""


def test_backlog_file(pytester: pytest.Pytester, run: Run) -> None:
    path = write_task(pytester.path, "task-12 - Build-the-images.md", BACKLOG)
    result = run(str(path), "-v")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*::ac1-build-the-image PASSED*", "*::ac3-tag-the-image PASSED*"])
    result.stdout.fnmatch_lines(
        ["task-12 [[]generic] ready_for_verification: 3/3 criteria complete"]
    )
    after = text_of(path)
    found = changes(BACKLOG, after)
    assert found.ticked == ["- [ ] #1 Build the image", "- [ ] #3 Tag the image"]
    assert found.entry_texts() == ["Completed #1: Build the image", "Completed #3: Tag the image"]
    (old, new) = found.updated[0]
    assert old == "updated_date: '2024-01-15 14:30'"
    assert re.fullmatch(r"updated_date: '\d{4}-\d\d-\d\d \d\d:\d\d'", new)
    assert_recent(updated_value(after, "updated_date"), "%Y-%m-%d %H:%M")  # type: ignore[arg-type]
    assert "created_date: '2024-01-10 09:00'" in after
    assert "<!-- AC:END -->\n" in after
    assert parse_task(path, path.read_bytes()).id == "task-12"


def test_crlf_bom_and_unicode_bytes_exact(pytester: pytest.Pytester, run: Run) -> None:
    criteria = (
        item("Créer le réseau ✓ 日本", "echo 'ünïcødé ✓'"),
        item("Zweiter Schritt — äöü", "true"),
    )
    meta = "id: TASK-001\ntitle: Ünïcode\nupdated: 2024-01-01"
    text = task_md(*criteria, meta=meta)
    path = make(pytester, *criteria, meta=meta, newline="\r\n", bom=True)
    original = path.read_bytes()
    assert original == b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()
    run().assert_outcomes(passed=2)
    data = path.read_bytes()
    found = changes(original[3:].decode(), data[3:].decode())
    expected = original.replace("- [ ] Créer".encode(), "- [x] Créer".encode()).replace(
        b"- [ ] Zweiter", b"- [x] Zweiter"
    ).replace(b"updated: 2024-01-01", found.updated[0][1].encode()) + b"".join(
        e.encode() + b"\r\n" for e in found.entries
    )
    assert data == expected
    assert found.entry_texts() == [
        "Completed #1: Créer le réseau ✓ 日本",
        "Completed #2: Zweiter Schritt — äöü",
    ]


def test_only_section_items_are_criteria(pytester: pytest.Pytester, run: Run) -> None:
    text = task_md(
        item("Real criterion", "echo real"),
        "```markdown\n- [ ] fenced example in the section\n```",
        after_ac="""
        ## Notes

        - [ ] a note with a box
        """,
    ).replace("# Demo task\n", "# Demo task\n\n- [ ] a box above the section\n")
    path = write_task(pytester.path, "TASK-001.md", text)
    result = run("--co", "-q")
    result.stdout.fnmatch_lines(["TASK-001.md::ac1-real-criterion", "1 test collected*"])
    run().assert_outcomes(passed=1)
    assert changes(text, path.read_text()).ticked == ["- [ ] Real criterion"]


@pytest.mark.parametrize(("first", "second"), [("1.", "2."), ("*", "*"), ("+", "+")])
def test_list_markers(pytester: pytest.Pytester, run: Run, first: str, second: str) -> None:
    path = make(
        pytester,
        item("alpha", "echo a", marker=first),
        item("beta", "echo b", marker=second),
    )
    before = path.read_text()
    run().assert_outcomes(passed=2)
    assert changes(before, path.read_text()).ticked == [f"{first} [ ] alpha", f"{second} [ ] beta"]


def test_unusual_box_is_skipped_never_ticked_and_keeps_numbering(
    pytester: pytest.Pytester, run: Run
) -> None:
    path = make(
        pytester,
        item("first", "true"),
        item("deferred", "touch deferred-ran", box="~"),
        item("third", "true"),
    )
    before = path.read_text()
    result = run("-v", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(
        ["*::ac2-deferred SKIPPED*", "*::ac3-third PASSED*", "SKIPPED*box [[]~] is neither*"]
    )
    assert not (pytester.path / "deferred-ran").exists()
    found = changes(before, path.read_text())
    assert found.ticked == ["- [ ] first", "- [ ] third"]
    assert "- [~] deferred" in path.read_text()


def test_nested_sub_items_run_as_part_of_parent(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        "- [ ] Parent step\n"
        "  ```bash\n  echo parent >> order.txt\n  ```\n"
        "  - [ ] child step\n"
        "    ```bash\n    echo child >> order.txt\n    ```\n"
        "- [ ] Next step\n"
        "  ```bash\n  echo next >> order.txt\n  ```",
    )
    before = path.read_text()
    result = run("--co", "-q")
    result.stdout.fnmatch_lines(["*::ac1-parent-step", "*::ac2-next-step", "2 tests collected*"])
    run().assert_outcomes(passed=2)
    assert (pytester.path / "order.txt").read_text() == "parent\nchild\nnext\n"
    found = changes(before, path.read_text())
    assert found.ticked == ["- [ ] Parent step", "- [ ] Next step"]
    assert "  - [ ] child step\n" in path.read_text()


def test_yaml_and_json_blocks_are_not_commands(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Config and command", "touch yaml-ran", lang="yaml")
        + "\n"
        + item("x", "echo ok > cmd-ran").split("\n", 1)[1],
        item("Only json", '{"touch": "json-ran"}', lang="json"),
    )
    before = path.read_text()
    result = run("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    assert (pytester.path / "cmd-ran").exists()
    assert not (pytester.path / "yaml-ran").exists()
    assert changes(before, path.read_text()).ticked == ["- [ ] Config and command"]


def test_manual_criterion_is_skipped_with_reason_and_left_open(
    pytester: pytest.Pytester, run: Run
) -> None:
    path = make(pytester, item("Review the dashboard by hand"))
    before = path.read_text()
    result = run("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*manual criterion: no command to run; left open*"])
    assert path.read_text() == before


# -- failures, retries, blocking -------------------------------------------------


def test_retry_then_pass(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Flaky", "echo x >> tries; test $(wc -l < tries) -ge 2"),
    )
    before = path.read_text()
    run("--infratask-report-dir=rep").assert_outcomes(passed=1)
    assert (pytester.path / "tries").read_text() == "x\nx\n"
    assert changes(before, path.read_text()).ticked == ["- [ ] Flaky"]
    report = json.loads((pytester.path / "rep/TASK-001.json").read_text())
    assert report["criteria_results"][0]["attempts"] == 2


def test_fail_twice_then_continue(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("Always fails", "echo x >> tries; echo 'no such image' >&2; exit 2"),
        item("Still runs", "touch second-ran"),
    )
    before = path.read_text()
    result = run()
    result.assert_outcomes(failed=1, passed=1)
    assert (pytester.path / "tries").read_text() == "x\nx\n"
    assert (pytester.path / "second-ran").exists()
    result.stdout.fnmatch_lines(
        [
            "command failed with exit code 2 after 2 attempt(s)",
            "criterion: #1 Always fails",
            "*no such image*",
        ]
    )
    found = changes(before, path.read_text())
    assert found.ticked == ["- [ ] Still runs"]
    assert found.entry_texts() == [
        "Failed #1: Always fails: command failed with exit code 2 after 2 attempt(s) "
        "(see the run's output)",
        "Completed #2: Still runs",
    ]


def test_retries_option_zero(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Once", "echo x >> tries; exit 1"))
    run("--infratask-retries=0").assert_outcomes(failed=1)
    assert (pytester.path / "tries").read_text() == "x\n"


def test_blocked_skips_later_criteria_but_not_independent_ones(
    pytester: pytest.Pytester, run: Run
) -> None:
    path = make(
        pytester,
        item("Prepare", "touch m1"),
        item("Use missing tool", "no-such-tool-xyz --version; touch m2"),
        item("Depends on tool", "touch m3"),
        item("Unrelated <!-- independent -->", "touch m4"),
        item("Needs prepare <!-- needs: #1 -->", "touch m5"),
    )
    before = path.read_text()
    result = run("-v", "-rs")
    result.assert_outcomes(passed=3, failed=1, skipped=1)
    assert not (pytester.path / "m2").exists(), "BLOCKED: nothing of the block ran"
    assert [(pytester.path / f"m{i}").exists() for i in (1, 3, 4, 5)] == [True, False, True, True]
    result.stdout.fnmatch_lines(
        [
            "*BLOCKED: missing dependency: no-such-tool-xyz not found*",
            "*install no-such-tool-xyz and make sure it is on PATH*",
        ]
    )
    result.stdout.fnmatch_lines(["SKIPPED*blocked by #2: BLOCKED: missing dependency*"])
    assert (pytester.path / "tries").exists() is False
    found = changes(before, path.read_text())
    assert found.ticked == [
        "- [ ] Prepare",
        "- [ ] Unrelated <!-- independent -->",
        "- [ ] Needs prepare <!-- needs: #1 -->",
    ]
    assert (
        "Blocked #2: Use missing tool: missing dependency: no-such-tool-xyz not found"
        in found.entry_texts()
    )


def test_missing_tool_is_not_retried(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Missing", "echo x >> tries; no-such-tool-xyz"))
    run().assert_outcomes(failed=1)
    assert (pytester.path / "tries").read_text() == "x\n"


def test_needs_an_unfinished_criterion_blocks(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("First fails", "exit 1"),
        item("After first <!-- needs: #1 -->", "touch needs-ran"),
        item("Done before", box="x"),
        item("Needs done one <!-- needs: #3 -->", "touch needs-done-ran"),
    )
    result = run("-rs")
    result.assert_outcomes(failed=2, skipped=1, passed=1)
    assert not (pytester.path / "needs-ran").exists()
    assert (pytester.path / "needs-done-ran").exists()
    result.stdout.fnmatch_lines(["*BLOCKED: needs #1 (First fails), which is failed*"])
    assert "- [x] Needs done one" in path.read_text()
    assert "- [ ] After first" in path.read_text()


def test_permission_denied_blocks_with_path(pytester: pytest.Pytester, run: Run) -> None:
    script = pytester.path / "deploy.sh"
    script.write_text("#!/bin/sh\necho deployed\n")
    script.chmod(0o644)
    path = make(pytester, item("Run the script", "./deploy.sh"), item("Later", "touch later"))
    result = run("-rs")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "BLOCKED: permission denied: ./deploy.sh",
            "criterion: #1 Run the script",
            "*check permissions on ./deploy.sh (ls -l ./deploy.sh)*",
        ]
    )
    assert not (pytester.path / "later").exists()
    assert "- [ ] Run the script" in path.read_text()


def test_missing_workdir_blocks_everything(pytester: pytest.Pytester, run: Run) -> None:
    path = make(
        pytester,
        item("One", "touch ran"),
        item("Two", "touch ran"),
        meta="id: TASK-001\nworkdir: does/not/exist\nupdated: 2024-01-01",
    )
    before = path.read_text()
    result = run("-rs")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*working directory */does/not/exist does not exist*"])
    assert not list(pytester.path.rglob("ran"))
    found = changes(before, path.read_text())
    assert found.ticked == []
    assert len(found.entries) == 1 and found.entry_texts()[0].startswith("Blocked #1: One:")


# -- processes: time, input, output --------------------------------------------


def test_timeout_kills_command_and_its_background_child(
    pytester: pytest.Pytester, run: Run
) -> None:
    marker = f"infratask-test-{uuid.uuid4().hex}"  # $! inside a sandbox is not the host's pid
    path = make(
        pytester,
        item("Hangs", f"BACKGROUND={marker} sleep 300 & sleep 300"),
        item("Runs after", "touch after-ran"),
        meta="id: TASK-001\ntimeout: 1\nupdated: 2024-01-01",
    )
    started = time.monotonic()
    result = run()
    assert time.monotonic() - started < DEADLINE  # far less than the command's 300 s
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        ["timed out after 1s; the process group was killed", "criterion: #1 Hangs"]
    )
    assert none_left(marker, "the background sleep") == []
    assert (pytester.path / "after-ran").exists()
    assert "Failed #1: Hangs: timed out after 1s" in path.read_text()


def test_timeout_ini_setting(pytester: pytest.Pytester, run: Run) -> None:
    pytester.makeini("[pytest]\ninfratask_timeout = 1\n")
    make(pytester, item("Hangs", "sleep 300"))
    started = time.monotonic()
    run().stdout.fnmatch_lines(["*timed out after 1s*"])
    assert time.monotonic() - started < DEADLINE


def test_stdin_is_closed(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, item("Asks", "read answer"), meta="id: TASK-001\ntimeout: 600")
    result = run("--infratask-retries=0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*command failed with exit code 1*"])  # not a timeout


def test_big_output_completes(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, item("Chatty", "head -c 5000000 /dev/zero | tr '\\0' a; echo; echo END"))
    run("--infratask-report-dir=rep").assert_outcomes(passed=1)
    assert "- [x] Chatty" in path.read_text()
    report = json.loads((pytester.path / "rep/TASK-001.json").read_text())
    assert report["completed_criteria"][0]["output"].endswith("END")
    assert len(report["completed_criteria"][0]["output"]) <= OUTPUT_LIMIT
    assert report["completed_criteria"][0]["notes"] == (
        f"block 1 printed more than {OUTPUT_LIMIT // 1024} KiB: only the end of its output was kept"
    )


# -- selection and modes ------------------------------------------------------------

SELECTABLE = (
    item("Build containers", "touch built"),
    item("Push containers", "touch pushed"),
    item("Build docs", "touch docs"),
)


def test_k_selects_by_slug(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, *SELECTABLE)
    before = path.read_text()
    run("-k", "containers", "--co", "-q").stdout.fnmatch_lines(
        ["*::ac1-build-containers", "*::ac2-push-containers", "2/3 tests collected*"]
    )
    run("-k", "build and not push").assert_outcomes(passed=2)
    made = sorted(p.name for p in pytester.path.iterdir() if p.is_file() and p.suffix == "")
    assert made == ["built", "docs"]
    ticked = changes(before, path.read_text()).ticked
    assert ticked == ["- [ ] Build containers", "- [ ] Build docs"]


def test_k_with_and_not(pytester: pytest.Pytester, run: Run) -> None:
    make(pytester, *SELECTABLE)
    result = run("-k", "containers and not push", "--co", "-q")
    result.stdout.fnmatch_lines(["TASK-001.md::ac1-build-containers", "1/3 tests collected*"])


def test_names_are_numbered_and_stable(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, *SELECTABLE, item("Review `it` <!-- independent -->"))
    expected = [
        "TASK-001.md::ac1-build-containers",
        "TASK-001.md::ac2-push-containers",
        "TASK-001.md::ac3-build-docs",
        "TASK-001.md::ac4-review-it",
    ]
    first = run("--co", "-q")
    first.stdout.fnmatch_lines([*expected, "4 tests collected*"])
    run("-k", "ac2")
    assert "- [x] Push containers" in path.read_text()
    run("--co", "-q").stdout.fnmatch_lines([*expected, "4 tests collected*"])


def test_rerun_of_finished_task_changes_nothing(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, item("One", "echo x >> ran"), item("Two", "echo x >> ran"))
    run().assert_outcomes(passed=2)
    finished = path.read_bytes()
    result = run("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*already complete*"])
    assert path.read_bytes() == finished
    assert (pytester.path / "ran").read_text() == "x\nx\n"


def test_dry_run_runs_nothing_and_changes_nothing(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, item("Would run", "touch marker"))
    before = path.read_bytes()
    result = run("--infratask-dry-run")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        [
            "TASK-001 [[]generic] dry_run: 0/1 criteria complete, 1 open",
            f"*#1 Would run*dry run: would run `touch marker` in {pytester.path}; "
            f"checks: directory: ok ({pytester.path})*",
        ]
    )
    assert not (pytester.path / "marker").exists()
    assert path.read_bytes() == before


def test_no_writeback_runs_but_leaves_the_file(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, item("Runs", "touch marker"), item("Fails", "exit 1"))
    before = path.read_bytes()
    run("--infratask-no-writeback").assert_outcomes(passed=1, failed=1)
    assert (pytester.path / "marker").exists()
    assert path.read_bytes() == before


def test_plugin_can_be_disabled(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, item("Runs", "touch marker"))
    before = path.read_bytes()
    result = run("-p", "no:infratask", str(pytester.path))
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert not (pytester.path / "marker").exists()
    assert path.read_bytes() == before


# -- collection ---------------------------------------------------------------------


def _collect_tree(pytester: pytest.Pytester) -> None:
    for name in ("TASK-001.md", "sub/task-002.md", "README.md", "notes.md", "sub/x.task.md"):
        tid = Path(name).stem.split(".")[0]
        write_task(pytester.path, name, task_md(item("Step", "true"), meta=f"id: {tid}"))


def test_directory_collection_picks_task_files_only(pytester: pytest.Pytester, run: Run) -> None:
    _collect_tree(pytester)
    result = run("--co", "-q")
    result.stdout.fnmatch_lines(["TASK-001.md::ac1-step", "sub/task-002.md::ac1-step"])
    assert "README" not in result.stdout.str() and "notes" not in result.stdout.str()
    assert "2 tests collected" in result.stdout.str()


def test_ini_infratask_files_changes_the_patterns(pytester: pytest.Pytester, run: Run) -> None:
    _collect_tree(pytester)
    pytester.makeini("[pytest]\ninfratask_files = *.task.md notes.md\n")
    result = run("--co", "-q")
    result.stdout.fnmatch_lines(["notes.md::ac1-step", "sub/x.task.md::ac1-step"])
    assert "TASK-001" not in result.stdout.str()


def test_explicit_path_collects_any_name(pytester: pytest.Pytester, run: Run) -> None:
    _collect_tree(pytester)
    result = run("--co", "-q", "README.md")
    result.stdout.fnmatch_lines(["README.md::ac1-step", "1 test collected*"])


def test_bad_yaml_is_a_collection_error_and_nothing_runs(
    pytester: pytest.Pytester, run: Run
) -> None:
    make(pytester, item("Good task", "touch good-ran"), name="TASK-002.md")
    bad = write_task(
        pytester.path,
        "TASK-001.md",
        "---\nid: TASK-001\ntitle: x\nlabels: [a\n  b: c\n---\n## Acceptance Criteria\n\n"
        + item("Should not run", "touch bad-ran")
        + "\n",
    )
    before = bad.read_bytes()
    result = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*ERROR collecting TASK-001.md*", f"*{bad}:5: invalid YAML frontmatter*"]
    )
    assert not (pytester.path / "bad-ran").exists()
    assert not (pytester.path / "good-ran").exists()
    assert bad.read_bytes() == before


def test_invalid_utf8_is_a_collection_error_with_line(pytester: pytest.Pytester, run: Run) -> None:
    path = make(pytester, item("Caf\u00e9", "touch ran"))
    path.write_bytes(path.read_bytes().replace("é".encode(), b"\xe9"))
    line = path.read_bytes().split(b"\n").index(b"- [ ] Caf\xe9") + 1
    result = run()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*{path}:{line}: not valid UTF-8*"])
    assert not (pytester.path / "ran").exists()


# -- secrets ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["frontmatter", "environment"])
def test_secret_is_masked_everywhere(
    pytester: pytest.Pytester, run: Run, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    secret = "s3cr3t-Value-9f8e7d"
    meta = "id: TASK-001\nupdated: 2024-01-01"
    if source == "frontmatter":
        meta += f"\nenv:\n  API_TOKEN: {secret}"
    else:
        monkeypatch.setenv("API_TOKEN", secret)
    path = make(
        pytester,
        item("Log in", 'echo "logged in with $API_TOKEN"'),
        item("Call the API", 'echo "calling $API_TOKEN"; echo "rejected $API_TOKEN" >&2; exit 1'),
        meta=meta,
    )
    result = run(
        "-v",
        "--infratask-report-dir=rep",
        "--junitxml=junit.xml",
        "--json-report",
        "--json-report-file=r.json",
    )
    result.assert_outcomes(passed=1, failed=1)
    terminal = result.stdout.str() + result.stderr.str()
    task_text = path.read_text()
    if source == "frontmatter":
        task_text = task_text.replace(f"API_TOKEN: {secret}", "")
    outputs = {
        "terminal": terminal,
        "task file": task_text,
        "contract": (pytester.path / "rep/TASK-001.json").read_text(),
        "junit": (pytester.path / "junit.xml").read_text(),
        "json-report": (pytester.path / "r.json").read_text(),
    }
    for name, text in outputs.items():
        assert secret not in text, f"secret leaked into the {name}"
        # the task file holds no output at all, so nothing in it needs masking
        assert "***" in text or name == "task file", f"nothing masked in the {name}"
    assert "rejected" not in task_text.split("## Progress Log")[1]
    assert "rejected ***" in terminal
    assert (  # what happened and where to read the output, never the output
        "Failed #2: Call the API: command failed with exit code 1 after 2 attempt(s) "
        "(see rep/TASK-001.json)" in task_text
    )
    contract = json.loads(outputs["contract"])
    assert contract["completed_criteria"][0]["output"] == "logged in with ***"
    assert contract["details"]["error_output"] == "rejected ***"


# -- several processes on one file ----------------------------------------------------


def _pytest(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args, "."],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_two_processes_on_one_file_lose_no_tick(pytester: pytest.Pytester) -> None:
    words = {0: "even", 1: "odd"}
    criteria = [item(f"Step {i} {words[i % 2]}", f"echo {i}") for i in range(1, 41)]
    path = make(pytester, *criteria)
    before = path.read_text()
    procs = [_pytest(pytester.path, "-k", "odd"), _pytest(pytester.path, "-k", "even")]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    after = path.read_text()
    found = changes(before, after)
    assert sorted(found.ticked) == sorted(c.split("\n")[0] for c in criteria)
    texts = found.entry_texts()
    assert sorted(texts) == sorted(f"Completed #{i}: Step {i} {words[i % 2]}" for i in range(1, 41))
    assert all(c.done for c in parse_task(path, path.read_bytes()).criteria)


def test_killed_run_leaves_a_valid_file_and_a_rerun_finishes(pytester: pytest.Pytester) -> None:
    path = make(
        pytester,
        item("Quick", "echo x >> quick-runs"),
        item(
            "Slow",
            """
            if [ ! -e first.pid ]; then
              echo $$ > first.tmp && mv first.tmp first.pid
              SLOW=@MARKER@ sleep 60
            fi
            echo x >> slow-runs
            """,
        ),
        item("Last", "echo x >> last-runs"),
    )
    marker = f"infratask-test-{uuid.uuid4().hex}"
    path.write_text(path.read_text().replace("@MARKER@", marker))
    before = path.read_text()
    proc = _pytest(pytester.path, str(path))
    pid_file = pytester.path / "first.pid"
    try:
        wait_for(pid_file.exists, 60, "the slow criterion to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    # The command dies with the run (its sandbox's death signal); outside a sandbox it is
    # left to its own end, so it is ended here.
    none_left(marker, "the killed run's command")
    mid = path.read_text()
    assert changes(before, mid).ticked == ["- [ ] Quick"]
    assert [c.done for c in parse_task(path, path.read_bytes()).criteria] == [True, False, False]
    # a crash inside a write leaves a temp file behind: the next write removes it
    (pytester.path / f".{path.name}.k1ll3d{TMP_SUFFIX}").write_text("half")

    rerun = _pytest(pytester.path, str(path), "-rs")
    out = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, out
    assert "2 passed, 1 skipped" in out
    final = path.read_text()
    assert changes(before, final).ticked == ["- [ ] Quick", "- [ ] Slow", "- [ ] Last"]
    assert (pytester.path / "quick-runs").read_text() == "x\n"
    assert not list(pytester.path.glob(f"*{TMP_SUFFIX}"))
    assert not list(pytester.path.glob(f".*{TMP_SUFFIX}"))
