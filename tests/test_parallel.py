"""Parallel runs with pytest-xdist, end to end in a subprocess: every task file stays on one
worker with its criteria in file order, a dependent on another worker waits for its
dependency, write-back and git staging stay exact, and the controller merges what the
workers report into one JSON report, one report file per task and one terminal summary."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from helpers import DEADLINE, changes, git, item, task_md, write_task

import pytest_infratask
from pytest_infratask.read.taskfile import parse_task, read_task
from pytest_infratask.workers import _marker

pytest.importorskip("xdist")

# A dependent that waits for nothing would hang for infratask_dependency_wait; the
# subprocess timeout turns such a hang into a failure long before that.
INI = "[pytest]\ninfratask_timeout = 40\ninfratask_dependency_wait = 40\n"
HANG = DEADLINE
QUIET = ("-p", "no:cacheprovider", "-p", "no:benchmark")
SUMMARY = re.compile(r"^=+ infratask =+$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _rootdir(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)


@pytest.fixture(autouse=True)
def _this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Subprocess runs load the plugin this test imported, whichever copy is installed."""
    root = str(Path(pytest_infratask.__file__).resolve().parents[1])
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    )


def log_task(
    root: Path,
    task_id: str,
    criteria: int,
    *,
    meta: str = "",
    first: str = "",
    name: str | None = None,
) -> Path:
    """A task whose criterion N appends ``TASK:N:<worker>`` to ``run.log``;
    ``first`` runs before the first criterion's line."""
    log = root / "run.log"
    steps = []
    for n in range(1, criteria + 1):
        before = first if n == 1 else ""
        steps.append(
            item(
                f"Step {n} of {task_id}",
                f'{before}echo "{task_id}:{n}:$PYTEST_XDIST_WORKER" >> {log}',
            )
        )
    meta_text = f"id: {task_id}\ntitle: Task {task_id}\nupdated: 2024-01-01\n{meta}"
    return write_task(root / "tasks", name or f"{task_id}.md", task_md(*steps, meta=meta_text))


def run_log(root: Path) -> list[tuple[str, int, str]]:
    """(task, criterion, worker) in the order the commands ran."""
    lines = (root / "run.log").read_text().split()
    return [(t, int(n), w) for t, n, w in (line.split(":") for line in lines)]


def per_task(entries: list[tuple[str, int, str]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for task, number, _ in entries:
        found.setdefault(task, []).append(number)
    return found


def workers_of(entries: list[tuple[str, int, str]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for task, _, worker in entries:
        found.setdefault(task, set()).add(worker)
    return found


def assert_written_back(before: str, after: str, criteria: int) -> None:
    """Every box ticked once, exactly one "Completed" line per criterion."""
    found = changes(before, after)
    assert len(found.ticked) == criteria, found
    texts = found.entry_texts()
    assert len(texts) == len(set(texts)) == criteria, texts
    assert all(t.startswith("Completed #") for t in texts), texts
    assert all(c.done for c in parse_task(Path("TASK.md"), after.encode()).criteria)


def test_tasks_stay_whole_and_in_order_and_the_controller_merges_reports(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path
    ids = [f"TASK-00{i}" for i in range(1, 7)]
    paths = {task_id: log_task(root, task_id, 5) for task_id in ids}
    before = {task_id: path.read_text() for task_id, path in paths.items()}
    run = str(uuid.uuid4())
    result = pytester.runpytest_subprocess(
        *QUIET,
        "-n",
        "3",
        "tasks",
        f"--testrunuid={run}",
        "--json-report",
        "--json-report-file=report.json",
        "--infratask-report-dir=reports",
        timeout=HANG,
    )
    result.assert_outcomes(passed=30)

    entries = run_log(root)
    assert per_task(entries) == {task_id: [1, 2, 3, 4, 5] for task_id in ids}
    workers = workers_of(entries)
    assert all(len(w) == 1 for w in workers.values()), workers
    assert set().union(*workers.values()) == {"gw0", "gw1", "gw2"}, "not run in parallel"

    report = json.loads((root / "report.json").read_text())
    seen: dict[str, list[int]] = {}
    for test in report["tests"]:
        meta = test["metadata"]["infratask"]
        assert test["nodeid"].startswith(f"tasks/{meta['task_id']}.md::ac{meta['number']}-")
        seen.setdefault(meta["task_id"], []).append(meta["number"])
    assert seen == {task_id: [1, 2, 3, 4, 5] for task_id in ids}
    merged = report["infratask"]["tasks"]
    assert sorted(c["task_id"] for c in merged) == ids, "each task exactly once"
    for contract in merged:
        assert contract["criteria"] == {"total": 5, "completed": 5, "failed": 0, "remaining": 0}
        assert contract["status"] == "ready_for_verification"

    files = sorted((root / "reports").iterdir())
    assert [f.name for f in files] == [f"{task_id}.json" for task_id in ids]
    for path in files:
        assert json.loads(path.read_text())["criteria"]["completed"] == 5

    out = result.stdout.str()
    assert len(SUMMARY.findall(out)) == 1, out
    summary = out[SUMMARY.search(out).end() :]  # type: ignore[union-attr]
    for task_id in ids:
        line = f"{task_id} [generic] ready_for_verification: 5/5 criteria complete"
        assert summary.count(line) == 1, summary

    for task_id, path in paths.items():
        assert_written_back(before[task_id], path.read_text(), 5)
        assert not _marker(path, run).exists(), "the run's worker markers were left behind"


CONFTEST_STARTED = """
def pytest_runtest_setup(item):
    if item.path.suffix == ".md":
        (item.config.rootpath / f"started-{item.path.stem}").touch()
"""


def test_dependent_on_another_worker_waits_for_its_dependency(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path
    pytester.makeconftest(CONFTEST_STARTED)
    # TASK-001 starts only once the dependent is under way on the other worker (polled
    # with a deadline), so the two certainly overlap; each of its steps then takes a while.
    started = root / "started-TASK-002"
    wait = (
        f"for i in $(seq 200); do [ -e {started} ] && break; sleep 0.05; done\n"
        f"[ -e {started} ] && echo overlap >> {root / 'overlap'}\n"
    )
    dep = log_task(root, "TASK-001", 3, meta="priority: low", first=wait)
    dep.write_text(dep.read_text().replace('  echo "TASK-001', '  sleep 0.3; echo "TASK-001'))
    dependent = log_task(root, "TASK-002", 2, meta="priority: critical\ndependencies: [TASK-001]")
    before = dependent.read_text()
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "tasks", timeout=HANG)
    result.assert_outcomes(passed=5)

    assert (root / "overlap").read_text() == "overlap\n", "the tasks never overlapped"
    entries = run_log(root)
    order = [task for task, _, _ in entries]
    assert order == ["TASK-001"] * 3 + ["TASK-002"] * 2, entries
    workers = workers_of(entries)
    assert workers["TASK-001"] != workers["TASK-002"], "both landed on one worker"
    assert_written_back(before, dependent.read_text(), 2)
    assert "Blocked" not in dependent.read_text()


def test_no_dependency_wait_blocks_a_dependent_whose_dependency_is_running(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path
    pytester.makeini(INI.replace("infratask_dependency_wait = 40", "infratask_dependency_wait = 0"))
    pytester.makeconftest(CONFTEST_STARTED)
    started = root / "started-TASK-002"
    wait = f"for i in $(seq 200); do [ -e {started} ] && break; sleep 0.05; done\n"
    log_task(root, "TASK-001", 2, meta="priority: low", first=wait)
    dependent = log_task(root, "TASK-002", 2, meta="dependencies: [TASK-001]")
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "tasks", timeout=HANG)
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*BLOCKED: waiting for TASK-001*"])
    assert [t for t, _, _ in run_log(root)] == ["TASK-001", "TASK-001"]
    assert not any(c.done for c in read_task(dependent).criteria)


def test_a_dependent_with_more_criteria_is_not_queued_before_its_dependency(
    pytester: pytest.Pytester,
) -> None:
    # xdist hands out bigger files first by default: TASK-003 (3) to one worker, the
    # dependent TASK-002 (2) to the other, which then also gets TASK-001 (1) queued
    # behind the dependent waiting for it. Files must go out in dependency order.
    root = pytester.path
    log_task(root, "TASK-001", 1)
    dependent = log_task(root, "TASK-002", 2, meta="dependencies: [TASK-001]")
    log_task(root, "TASK-003", 3)
    result = pytester.runpytest_subprocess(*QUIET, "-n", "2", "tasks", timeout=HANG)
    result.assert_outcomes(passed=6)
    order = [(task, n) for task, n, _ in run_log(root)]
    assert order.index(("TASK-001", 1)) < order.index(("TASK-002", 1)), order
    assert all(c.done for c in read_task(dependent).criteria)


def test_dependency_outside_the_run_blocks_at_once_instead_of_waiting(
    pytester: pytest.Pytester,
) -> None:
    root = pytester.path
    log_task(root, "TASK-001", 1)
    dependent = log_task(root, "TASK-002", 2, meta="dependencies: [TASK-001]")
    log_task(root, "TASK-003", 2)
    before = dependent.read_text()
    result = pytester.runpytest_subprocess(
        *QUIET, "-n", "2", "tasks/TASK-002.md", "tasks/TASK-003.md", timeout=HANG
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*BLOCKED: waiting for TASK-001 (1 of 1 criteria open)*"])
    assert [t for t, _, _ in run_log(root)] == ["TASK-003", "TASK-003"]
    found = changes(before, dependent.read_text())
    assert found.ticked == []
    assert [t.split(":")[0] for t in found.entry_texts()] == ["Blocked #1"]
    assert "- [ ] Step 1 of TASK-001" in (root / "tasks" / "TASK-001.md").read_text()


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four tasks in one git repository, plus the user's own unstaged and staged work."""
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{key}_NAME", "Infratask Test")
        monkeypatch.setenv(f"{key}_EMAIL", "test@infratask.invalid")
    root = pytester.path
    # pytester's subprocess runs write stdout/stderr files here while the tasks run.
    (root / ".gitignore").write_text("run.log\nreport*\n.pytest_cache/\nstdout\nstderr\n")
    (root / "notes.txt").write_text("mine\n")
    (root / "draft.txt").write_text("draft\n")
    (root / "out").mkdir()
    (root / "out" / ".keep").write_text("")
    for i in range(1, 5):
        task_id = f"TASK-00{i}"
        steps = [
            item(f"Write file {n} of {task_id}", f"sleep 0.1; echo {n} > out/t{i}-{n}.txt")
            for n in (1, 2)
        ]
        write_task(
            root / "tasks",
            f"{task_id}.md",
            task_md(
                *steps,
                meta=f"id: {task_id}\ntitle: Task {i}\nworkdir: ..\nupdated: 2024-01-01",
            ),
        )
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    (root / "notes.txt").write_text("mine, edited\n")  # unstaged: must stay unstaged
    (root / "draft.txt").write_text("draft, staged\n")
    git(root, "add", "draft.txt")  # staged by the user: stays staged, never committed
    return root


def own_files(i: int) -> set[str]:
    return {f"out/t{i}-1.txt", f"out/t{i}-2.txt", f"tasks/TASK-00{i}.md"}


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        *QUIET, "-n", "2", "tasks", "--infratask-report-dir=reports", *args, timeout=HANG
    )


def test_shared_repository_staging(pytester: pytest.Pytester, repo: Path) -> None:
    before = {i: (repo / "tasks" / f"TASK-00{i}.md").read_text() for i in range(1, 5)}
    _run(pytester).assert_outcomes(passed=8)
    staged = set(git(repo, "diff", "--cached", "--name-only").split())
    assert staged == set().union(*(own_files(i) for i in range(1, 5))) | {"draft.txt"}
    assert git(repo, "status", "--porcelain", "--", "notes.txt") == " M notes.txt\n"
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "1", "nothing is committed"
    for i in range(1, 5):
        contract = json.loads((repo / "reports" / f"TASK-00{i}.json").read_text())
        assert set(contract["changes"]["files_modified"]) == own_files(i), contract["changes"]
        assert_written_back(before[i], (repo / "tasks" / f"TASK-00{i}.md").read_text(), 2)


def test_shared_repository_commits(pytester: pytest.Pytester, repo: Path) -> None:
    result = _run(pytester, "--infratask-commit")
    result.assert_outcomes(passed=12)
    commits = git(repo, "rev-list", "HEAD").split()[:-1]  # newest first, without init
    assert len(commits) == 4, result.stdout.str()
    committed = {}
    for sha in commits:
        subject = git(repo, "log", "-1", "--format=%s", sha)
        task_id = subject.split(":")[0]
        files = set(git(repo, "show", "--name-only", "--format=", sha).split())
        committed[task_id] = files
        assert files == own_files(int(task_id[-1])), (subject, files)
    assert sorted(committed) == [f"TASK-00{i}" for i in range(1, 5)]
    tree = set(git(repo, "ls-tree", "-r", "--name-only", "HEAD").split())
    assert set().union(*(own_files(i) for i in range(1, 5))) <= tree, "a commit undid another"
    assert git(repo, "diff", "--cached", "--name-only").split() == ["draft.txt"]
    assert git(repo, "show", "HEAD:draft.txt") == "draft\n"
    assert git(repo, "status", "--porcelain", "--", "notes.txt") == " M notes.txt\n"
    for i in range(1, 5):
        contract = json.loads((repo / "reports" / f"TASK-00{i}.json").read_text())
        assert contract["status"] == "committed", contract
