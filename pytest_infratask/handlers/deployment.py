"""Deployment tasks: edit HelmReleases in git, validate, ask Flux to reconcile and wait."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..guard import CheckResult
from ..model import Criterion
from .base import Step
from .flux import api_for, unreachable
from .validation import ManifestHandler

FLUX_KINDS = ("kind: HelmRelease", "kind: Kustomization")


class DeploymentHandler(ManifestHandler):
    task_type = "deployment"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reconciled: list[dict[str, Any]] = []
        self.chart_versions: dict[str, str] = {}

    @property
    def refs(self) -> list[str]:
        value = self.task.meta.get("reconcile") or []
        return [value] if isinstance(value, str) else [str(v) for v in value]

    @property
    def active(self) -> bool:
        s = self.settings
        return bool(self.refs) and not s.dry_run and not s.skip_verification

    def uses_cluster(self, criterion: Criterion | None) -> bool:
        return self.active

    def _note_versions(self, files: list[Path]) -> bool:
        """Remember bumped chart versions; True when a Flux object was edited."""
        import yaml

        edited = False
        for path in files:
            try:
                text = path.read_text(encoding="utf-8")
            except OSError:
                continue
            if not any(k in text for k in FLUX_KINDS):
                continue
            edited = True
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.YAMLError:
                continue
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == "HelmRelease":
                    version = ((doc.get("spec") or {}).get("chart") or {}).get("spec", {})
                    name = (doc.get("metadata") or {}).get("name")
                    if isinstance(version, dict) and version.get("version") and name:
                        self.chart_versions[str(name)] = str(version["version"])
        return edited

    def reconcile(self, env: dict[str, str], context: str | None) -> list[CheckResult]:
        from .. import cluster

        api = api_for(env, context)
        timeout = self.duration(self.task.meta.get("wait"), 300.0)
        interval = self.duration(self.task.meta.get("poll_interval"), 2.0)
        results = []
        try:
            for text in self.refs:
                try:
                    ref = cluster.ObjectRef.parse(text)
                    requested = cluster.request_reconcile(api, ref)
                except ValueError as exc:
                    results.append(
                        CheckResult(
                            "reconcile",
                            False,
                            f"reconcile entry {text!r}: {exc}",
                            "list Flux objects as kind/namespace/name, e.g. helmrelease/prod/api",
                        )
                    )
                    continue
                expect = self.chart_versions.get(ref.name) if ref.kind == "helmrelease" else None
                outcome = cluster.wait_ready(
                    api,
                    ref,
                    requested,
                    timeout=timeout,
                    interval=interval,
                    expect_chart_version=expect,
                )
                self.reconciled.append(
                    {
                        "object": str(ref),
                        "requested_at": requested,
                        "ok": outcome.ok,
                        "message": outcome.message,
                        "chart_version": expect,
                    }
                )
                results.append(
                    CheckResult(
                        "reconcile",
                        outcome.ok,
                        f"{ref}: {outcome.message}",
                        ""
                        if outcome.ok
                        else f"inspect {ref} (flux get {ref.kind}s -n {ref.namespace})",
                    )
                )
        except cluster.ClusterUnreachable as exc:
            raise unreachable(exc, context) from exc
        except cluster.ClusterError as exc:
            results.append(CheckResult("reconcile", False, str(exc), "check the object exists"))
        return results

    def after_criterion(self, step: Step) -> list[str]:
        problems = super().after_criterion(step)
        edited = self._note_versions(step.files) or any(
            "infratask set" in r.script or "helmrelease" in r.script.lower() for r in step.results
        )
        if problems or not edited or not self.active or self.settings.commit:
            return problems
        if step.files:
            # The edit is in git but not committed: Flux reconciles what is committed,
            # so asking now would only time out on the old version.
            step.notes.append("reconcile deferred: Flux applies the change once it is committed")
            return problems
        results = self.reconcile(step.env, step.kube_context)
        step.notes += [r.message for r in results if r.ok]
        return [r.message for r in results if not r.ok]

    def after_commit(self, env: dict[str, str], kube_context: str | None) -> list[CheckResult]:
        if not self.active:
            return []
        return self.reconcile(env, kube_context)

    def report(self) -> dict[str, Any]:
        return {"reconciled": self.reconciled} if self.reconciled else {}

    def next_steps(self, status: str) -> list[str]:
        if status == "ready_for_verification":
            return ["commit after verification passes; Flux reconciles what is in git"]
        if status == "committed":
            return ["watch the release roll out (flux get helmreleases -A)"]
        return super().next_steps(status)
