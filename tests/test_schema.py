"""The contract carries schemaVersion and matches the JSON Schema shipped in the package;
conftest.py checks every contract of every in-process run the same way."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

import pytest
from contract_check import VALIDATOR, ContractCheck
from helpers import item, task_md, write_task
from jsonschema import Draft202012Validator

from pytest_infratask.schema import SCHEMA_FILE, SCHEMA_VERSION, contract_schema

Run = Callable[..., pytest.RunResult]


def test_schema_is_shipped_in_the_package_and_is_a_valid_schema() -> None:
    shipped = resources.files("pytest_infratask").joinpath(SCHEMA_FILE)
    assert shipped.is_file()
    Draft202012Validator.check_schema(contract_schema())
    assert contract_schema()["properties"]["schemaVersion"] == {"const": SCHEMA_VERSION}


def test_every_shape_of_contract_validates(
    pytester: pytest.Pytester, run: Run, contract_check: ContractCheck
) -> None:
    """Success, failure (error form), blocked and manual in one run; files and JSON report."""
    ok = write_task(pytester.path, "TASK-001.md", task_md(item("Works", "echo hi")))
    bad = write_task(
        pytester.path,
        "TASK-002.md",
        task_md(
            item("Fails", "exit 3"),
            item("Tool missing <!-- independent -->", "no-such-tool-xyz"),
            item("By hand"),
            meta="id: TASK-002\ntitle: Mixed",
        ),
    )
    run(str(ok), str(bad), "--infratask-report-dir=rep", "--json-report",
        "--json-report-file=r.json").assert_outcomes(passed=1, failed=2, skipped=1)
    files = [json.loads(p.read_text()) for p in sorted((pytester.path / "rep").glob("*.json"))]
    embedded = json.loads((pytester.path / "r.json").read_text())["infratask"]["tasks"]
    assert [c["task_id"] for c in files] == ["TASK-001", "TASK-002"]
    for contract in [*files, *embedded]:
        assert contract["schemaVersion"] == SCHEMA_VERSION
        assert list(VALIDATOR.iter_errors(contract)) == []
    assert "error" in files[1] and "error" not in files[0]
    assert sorted(c["task_id"] for c in contract_check.checked) == ["TASK-001", "TASK-002"]


def test_the_suite_wide_check_catches_a_contract_that_breaks_the_schema(
    pytester: pytest.Pytester, run: Run, contract_check: ContractCheck
) -> None:
    pytester.makeconftest(
        """
        def pytest_infratask_task_finished(task, contract, config):
            del contract["schemaVersion"]
            contract["criteria"]["failed"] = -1
        """
    )
    path = write_task(pytester.path, "TASK-001.md", task_md(item("Works", "echo hi")))
    run(str(path)).assert_outcomes(passed=1)
    errors, contract_check.errors = contract_check.errors, []
    assert any("'schemaVersion' is a required property" in e for e in errors)
    assert any("criteria/failed" in e for e in errors)
