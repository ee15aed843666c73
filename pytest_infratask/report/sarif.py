"""Security findings as SARIF 2.1.0, which GitHub code scanning and GitLab read.

One result per finding, located at the file and line of the offending field
(see locate.py), with the rule's severity mapped to SARIF levels and to
GitHub's ``security-severity``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pytest_infratask import __version__
from pytest_infratask.clients.security import BUILTIN_RULES
from pytest_infratask.core.shape import Contract, SecurityFinding

Json = dict[str, object]
"""A SARIF object, as built here and handed to ``json.dumps``."""

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {"high": "error", "medium": "warning", "low": "note"}
_SECURITY_SEVERITY = {"high": "8.0", "medium": "5.0", "low": "2.0"}


def _descriptions() -> dict[str, str]:

    return {rule.id: rule.description for rule in BUILTIN_RULES}


def build(contracts: Iterable[Contract], root: Path) -> Json:
    """A SARIF log with one run; paths are relative to ``root`` (``%SRCROOT%``)."""
    descriptions = _descriptions()
    rules: dict[str, Json] = {}
    results: list[Json] = []
    for contract in contracts:
        for finding in contract.get("security_findings") or []:
            rule_id = str(finding["rule_id"])
            severity = str(finding["severity"])
            if rule_id not in rules:
                rules[rule_id] = _rule(rule_id, severity, descriptions.get(rule_id, rule_id))
            results.append(_result(finding, contract["task_id"], list(rules).index(rule_id)))
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pytest-infratask",
                        "version": __version__,
                        "rules": list(rules.values()),
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": root.absolute().as_uri() + "/"}},
                "results": results,
            }
        ],
    }


def _rule(rule_id: str, severity: str, description: str) -> Json:
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": description},
        "defaultConfiguration": {"level": _LEVELS.get(severity, "warning")},
        "properties": {
            "tags": ["security", "kubernetes"],
            "security-severity": _SECURITY_SEVERITY.get(severity, "5.0"),
        },
    }


def _result(finding: SecurityFinding, task_id: str, rule_index: int) -> Json:
    """One finding, at its file and line and at the object it names."""
    names = (finding["kind"], finding["namespace"], finding["name"])
    obj = "/".join(part for part in names if part)
    path = str(finding.get("path") or finding["file"])
    artifact: Json = (
        {"uri": Path(path).as_uri()}
        if Path(path).is_absolute()
        else {"uri": path, "uriBaseId": "%SRCROOT%"}
    )
    location: Json = {
        "physicalLocation": {
            "artifactLocation": artifact,
            "region": {"startLine": int(finding.get("line") or 1)},
        },
        "logicalLocations": [{"fullyQualifiedName": obj, "kind": "resource"}],
    }
    return {
        "ruleId": str(finding["rule_id"]),
        "ruleIndex": rule_index,
        "level": _LEVELS.get(str(finding["severity"]), "warning"),
        "message": {"text": f"{obj}: {finding['message']} (task {task_id})"},
        "locations": [location],
        "properties": {"task_id": task_id, "field": finding.get("field", "")},
    }
