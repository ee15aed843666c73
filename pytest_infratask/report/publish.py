"""Publish a finished task's contract: masked, stored for the session's reports, written
as ``<report_dir>/<task_id>.json``, and announced to ``pytest_infratask_task_finished``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_infratask.report.contract import build_contract
from pytest_infratask.report.store import contracts
from pytest_infratask.util.files import atomic_write
from pytest_infratask.workers import mark_finished

if TYPE_CHECKING:
    from pytest_infratask.orchestrator.taskrun import TaskRun


def publish(run: TaskRun) -> None:

    # One masking path: the contract feeds the per-task file, the JSON report and
    # the terminal summary; values a handler met on the way (registry tokens) too.
    run.mask.add(run.handler.secrets)
    contract = run.mask.mask_data(build_contract(run))
    contracts(run.config)[contract["task_path"]] = contract
    if run.settings.report_dir is not None:
        write_json(report_path(run.settings.report_dir, contract["task_id"]), contract)
    run.config.hook.pytest_infratask_task_finished(
        task=run.task, contract=contract, config=run.config
    )

    mark_finished(run.config, run.task.path)


def report_path(report_dir: Path, task_id: str) -> Path:
    """``<report_dir>/<task_id>.json``; a name that could leave the directory (ids are
    checked at collection, this is the second lock) gets its unsafe characters replaced."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).lstrip(".") or "_"
    path = report_dir / f"{name}.json"
    if path.parent != report_dir:  # pragma: no cover - the substitution above rules it out
        raise ValueError(f"report name {task_id!r} leaves {report_dir}")
    return path


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
