"""Validate every contract an in-process pytester run produces against the shipped schema.

tests/conftest.py hands a ``ContractCheck`` to each inner run, so every end-to-end
test doubles as a schema test of the reports it makes.
"""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pytest_infratask.report.schema import contract_schema
from pytest_infratask.report.store import contracts

VALIDATOR = Draft202012Validator(contract_schema())


class ContractCheck:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.checked: list[dict[str, Any]] = []

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(session.config, "workerinput"):
            return  # the controller checks the merged contracts
        for contract in contracts(session.config).values():
            self.checked.append(contract)
            for error in VALIDATOR.iter_errors(contract):
                where = "/".join(str(p) for p in error.absolute_path) or "(top)"
                self.errors.append(f"{contract.get('task_id')}: {where}: {error.message}")

    def verify(self) -> None:
        assert not self.errors, "contracts that do not match the schema:\n" + "\n".join(self.errors)
