"""Publish a finished task's contract: masked, stored for the session's reports, written
as ``<report_dir>/<task_id>.json``, and announced to ``pytest_infratask_task_finished``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_infratask.core.masking import Masker, github_add_mask
from pytest_infratask.core.taskrecord import TaskRecord
from pytest_infratask.report.contract import build_contract
from pytest_infratask.report.live import workflow_commands
from pytest_infratask.report.store import contracts
from pytest_infratask.report.workflow import criterion_annotations
from pytest_infratask.util.files import atomic_write, report_path
from pytest_infratask.workers import mark_finished


def publish(
    config: pytest.Config, record: TaskRecord, mask: Masker, report_dir: Path | None
) -> None:
    """One masking path: the contract feeds the per-task file, the JSON report and the
    terminal summary, so it is masked once, here."""
    contract = mask.mask_data(build_contract(record))
    contracts(config)[contract["task_path"]] = contract
    if report_dir is not None:
        write_json(report_path(report_dir, contract["task_id"]), contract)
    # values met on the way (a registry token) are masked in the log before anything
    workflow_commands(config, github_add_mask(mask) + criterion_annotations(record, mask))
    config.hook.pytest_infratask_task_finished(task=record.task, contract=contract, config=config)
    mark_finished(config, record.task.path)


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
