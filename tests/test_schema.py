"""The contract carries schemaVersion and matches the JSON Schema shipped in the package;
conftest.py checks every contract of every in-process run the same way."""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from importlib import resources

import pytest
from contract_check import VALIDATOR, ContractCheck
from helpers import item, task_md, write_task
from jsonschema import Draft202012Validator

from pytest_infratask.report.schema import SCHEMA_FILE, SCHEMA_VERSION, contract_schema

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
    run(
        str(ok),
        str(bad),
        "--infratask-report-dir=rep",
        "--json-report",
        "--json-report-file=r.json",
    ).assert_outcomes(passed=1, failed=2, skipped=1)
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


def _typed_fields(kind: object) -> tuple[set[str], set[str]]:
    required: frozenset[str] = getattr(kind, "__required_keys__")  # noqa: B009
    optional: frozenset[str] = getattr(kind, "__optional_keys__")  # noqa: B009
    return set(required), set(optional)


def _object_types(hint: object) -> list[object]:
    """The TypedDicts a field's type holds (``list[X]``, ``dict[str, X]``, ``X | None``)."""
    if typing.is_typeddict(hint):
        return [hint]
    return [t for arg in typing.get_args(hint) for t in _object_types(arg)]


def _schema_object(node: dict[str, object], root: dict[str, object]) -> dict[str, object] | None:
    """The object schema a property holds, through ``$ref``, ``items`` and maps."""
    ref = node.get("$ref")
    if isinstance(ref, str):
        node = root["$defs"][ref.rsplit("/", 1)[1]]  # type: ignore[index]
    for inner in ("items", "additionalProperties"):
        if isinstance(node.get(inner), dict):
            return _schema_object(node[inner], root)  # type: ignore[arg-type]
    return node if node.get("type") == "object" and "properties" in node else None


def _compare(
    kind: object, node: dict[str, object], root: dict[str, object], where: str
) -> list[str]:
    required, optional = _typed_fields(kind)
    properties = set(node["properties"])  # type: ignore[arg-type]
    wanted = set(node.get("required", []))  # type: ignore[call-overload]
    problems = []
    if required | optional != properties:
        typed = sorted(required | optional)
        problems.append(f"{where}: types {typed} != schema {sorted(properties)}")
    if required != wanted:
        problems.append(f"{where}: required {sorted(required)} != schema {sorted(wanted)}")
    hints = typing.get_type_hints(kind)
    for name in sorted(properties & set(hints)):
        inner = _schema_object(node["properties"][name], root)  # type: ignore[index]
        kinds = _object_types(hints[name])
        if inner is not None and kinds:
            problems += _compare(kinds[0], inner, root, f"{where}.{name}")
        elif inner is not None or kinds:
            problems.append(f"{where}.{name}: an object on one side only")
    return problems


def test_the_contract_types_match_the_shipped_schema() -> None:
    """``pytest_infratask.Contract`` is the schema as Python types: same fields, same
    required ones, at every level."""
    from pytest_infratask import Contract

    schema = contract_schema()
    assert _compare(Contract, schema, schema, "contract") == []


def test_the_comparison_sees_a_missing_field() -> None:
    class Narrow(typing.TypedDict):
        check: str
        ok: bool

    schema = contract_schema()
    check = schema["$defs"]["check"]
    assert _compare(Narrow, check, schema, "check") == [
        "check: types ['check', 'ok'] != schema ['check', 'message', 'ok']",
        "check: required ['check', 'ok'] != schema ['check', 'message', 'ok']",
    ]


def test_statuses_are_the_schemas() -> None:
    from pytest_infratask import Status
    from pytest_infratask.core.shape import ContractStatus, CriterionStatus

    schema = contract_schema()["properties"]
    item = schema["criteria_results"]["items"]["properties"]["status"]["enum"]
    typed = sorted(typing.get_args(CriterionStatus))
    assert sorted(item) == sorted(s.value for s in Status) == typed
    assert sorted(schema["status"]["enum"]) == sorted(typing.get_args(ContractStatus))
