"""Render the task's kustomizations and inspect them; nothing is ever applied."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest

from pytest_infratask.clients import kustomize, security
from pytest_infratask.clients.locate import locate
from pytest_infratask.clients.security import Rule
from pytest_infratask.core.messages import Holdings
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.schema import SECURITY, VALIDATE, name_list
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.shape import HandlerFields, SecurityFinding, Severity
from pytest_infratask.core.task import Task
from pytest_infratask.handlers.base import Handler, Step


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)
    findings: list[SecurityFinding] = field(default_factory=list)


class ManifestHandler(Handler):
    """Shared by deployment and configuration tasks: ``validate:`` dirs are
    rendered with kustomize after every criterion; configuration tasks also run
    the security rules on what was rendered."""

    security = False

    def __init__(self, task: Task, settings: Settings, config: pytest.Config | None = None) -> None:
        super().__init__(task, settings, config)
        self.findings: dict[tuple[str, ...], SecurityFinding] = {}

    @property
    def validate_dirs(self) -> list[str]:
        return list(self.task.value(VALIDATE))

    def _skip(self) -> list[str]:
        return name_list(self.task.value(SECURITY).get("skip"))

    def _rules(self) -> list[Rule] | None:
        """The built-in rules and every plugin's, as the hook gives them; None (the
        built-in ones) for a handler made without a pytest session."""
        if self.config is None:
            return None
        lists = self.config.hook.pytest_infratask_security_rules(task=self.task, config=self.config)
        return [rule for rules in lists for rule in rules]

    def validate(self, cwd: Path) -> Validation:

        result = Validation()
        self.findings = {}  # what the latest render shows; fixed findings drop out
        for name in self.validate_dirs:
            rendered = kustomize.render(cwd / name)
            if not rendered.ok:
                result.problems.append(f"kustomize build {name} failed: {rendered.error}")
                continue
            if not self.security:
                continue
            try:
                objects = security.load_manifests(rendered.manifests, name)
                findings = security.evaluate(objects, skip=self._skip(), rules=self._rules())
            except ValueError as exc:
                result.problems.append(f"security validation of {name}: {exc}")
                continue

            for finding in findings:
                where = locate(finding.to_dict(), cwd / name, self.settings.rootdir)
                item = SecurityFinding(
                    rule_id=finding.rule_id,
                    severity=cast(Severity, finding.severity),  # Rule checks it
                    kind=finding.kind,
                    namespace=finding.namespace,
                    name=finding.name,
                    file=finding.file,
                    message=finding.message,
                    path=str(where["path"]),
                    line=int(where["line"]),
                    field=str(where["field"]),
                )
                result.findings.append(item)
                key = (item["rule_id"], item["kind"], item["namespace"], item["name"], item["file"])
                self.findings[key] = item
            result.problems += [
                f"security rule {f.rule_id} ({f.severity}) on {f.kind}/"
                f"{f.namespace + '/' if f.namespace else ''}{f.name} in {f.file}"
                f"{_at(self.findings, f)}: {f.message}"
                for f in security.failing(findings)
            ]
        return result

    def after_criterion(self, step: Step) -> list[str]:
        if not self.validate_dirs:
            return []
        result = self.validate(step.cwd)
        others = [f for f in result.findings if f["severity"] != "high"]
        if others:
            step.notes.append(f"{len(others)} security finding(s) below high severity reported")
        if not result.problems:
            step.notes.append("rendered " + ", ".join(self.validate_dirs) + " with kustomize")
        return result.problems

    def verify(self, cwd: Path, env: dict[str, str]) -> list[CheckResult]:
        if not self.validate_dirs:
            return []
        result = self.validate(cwd)
        if result.problems:
            return [
                CheckResult("manifests", False, p, "fix the manifests and rerun")
                for p in result.problems
            ]
        what = "kustomize build" + (" and security validation" if self.security else "")
        message = f"{what} passed for {', '.join(self.validate_dirs)}"
        if result.findings:  # passed, but not clean: the findings are said, not hidden
            count = len(result.findings)
            message += f" with {count} finding{'s' if count != 1 else ''} below high severity"
        return [CheckResult("manifests", True, message)]

    def has_task_checks(self) -> bool:
        return bool(self.validate_dirs)

    def holdings(self) -> Holdings:
        return Holdings(manifests=tuple(self.validate_dirs))

    def report(self) -> HandlerFields:
        return {"security_findings": list(self.findings.values())} if self.security else {}


def _at(located: dict[tuple[str, ...], SecurityFinding], finding: security.Finding) -> str:
    """`` (path:line)`` of a finding, as ``locate`` placed it."""
    key = (finding.rule_id, finding.kind, finding.namespace, finding.name, finding.file)
    item = located.get(key)
    return f" ({item['path']}:{item['line']})" if item else ""
