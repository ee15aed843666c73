"""Parallel runs with pytest-xdist: tasks stay whole on a worker, dependents wait,
and the controller reports every task once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import changes, git, item, meta_task, task_md, write_task

from pytest_infratask.read import read_task

pytest.importorskip("xdist")


def log_task(
    folder: Path, task_id: str, criteria: int, *, meta: str = "", sleep: float = 0
) -> Path:
    pause = f"sleep {sleep}; " if sleep else ""
    return write_task(folder, f"{task_id}.md", task_md(
        *(item(f"Step {n}", f'{pause}echo "{task_id}:{n}" >> ../run.log')
          for n in range(1, criteria + 1)),
        meta=f"id: {task_id}\nupdated: 2024-01-01\n{meta}",
    ))


def run_log(root: Path) -> list[tuple[str, int]]:
    return [(t, int(n)) for t, n in
            (line.split(":") for line in (root / "run.log").read_text().split())]


def test_each_task_runs_whole_and_in_order_on_one_worker(pytester: pytest.Pytester) -> None:
    tasks = pytester.path / "tasks"
    originals = {}
    for i in range(1, 7):
        path = log_task(tasks, f"TASK-00{i}", 5)
        originals[path] = path.read_text()
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "3", "tasks", "--json-report",
        "--json-report-file=report.json", "--infratask-report-dir=reports",
    )
    result.assert_outcomes(passed=30)
    by_task: dict[str, list[int]] = {}
    for task, number in run_log(pytester.path):
        by_task.setdefault(task, []).append(number)
    assert all(numbers == [1, 2, 3, 4, 5] for numbers in by_task.values()), by_task
    report = json.loads((pytester.path / "report.json").read_text())
    workers: dict[str, set[str]] = {}
    for test in report["tests"]:
        task_id = test["metadata"]["infratask"]["task_id"]
        workers.setdefault(task_id, set()).add(test["metadata"].get("worker", test["nodeid"]))
    contracts = report["infratask"]["tasks"]
    assert sorted(c["task_id"] for c in contracts) == [f"TASK-00{i}" for i in range(1, 7)]
    assert sorted(p.name for p in (pytester.path / "reports").iterdir()) == [
        f"TASK-00{i}.json" for i in range(1, 7)
    ]
    assert result.stdout.str().count("= infratask =") == 1
    summary = result.stdout.str().split("= infratask =")[1]
    for i in range(1, 7):
        assert summary.count(f"TASK-00{i} [generic] 5/5 complete") == 1
    for path, before in originals.items():
        found = changes(before, path.read_text())
        assert len(found.ticked) == 5 and len(found.entries) == 5


def test_dependent_on_another_worker_waits_for_its_dependency(
    pytester: pytest.Pytester,
) -> None:
    tasks = pytester.path / "tasks"
    log_task(tasks, "TASK-001", 4, meta="priority: low", sleep=0.3)
    log_task(tasks, "TASK-002", 2, meta="priority: critical\ndependencies: [TASK-001]")
    log_task(tasks, "TASK-003", 2, meta="priority: critical")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "tasks")
    result.assert_outcomes(passed=8)
    order = [task for task, _ in run_log(pytester.path)]
    assert order.index("TASK-002") > max(i for i, t in enumerate(order) if t == "TASK-001")
    assert all(c.done for c in read_task(tasks / "TASK-002.md").criteria)


def test_tasks_sharing_a_repository_stage_their_own_files(
    pytester: pytest.Pytester, git_identity: None
) -> None:
    root = pytester.path
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("report*\n")
    for i in range(1, 5):
        meta_task(root / "tasks" / f"TASK-00{i}.md", {"id": f"TASK-00{i}", "workdir": ".."},
                  [(f"Write file {i}", f"echo {i} > out-{i}.txt")])
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tasks")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "tasks")
    result.assert_outcomes(passed=4)
    staged = set(git(root, "diff", "--cached", "--name-only").split())
    assert staged == {f"out-{i}.txt" for i in range(1, 5)} | {
        f"tasks/TASK-00{i}.md" for i in range(1, 5)
    }
