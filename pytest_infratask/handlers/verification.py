"""Verification tasks: wait for the declared health checks; they change nothing."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_infratask.clients import cluster
from pytest_infratask.core.messages import Holdings
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.schema import CHECKS, KUBE_CONTEXT, POLL_INTERVAL, WAIT
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.shape import Check, HandlerFields
from pytest_infratask.core.task import Criterion, Task
from pytest_infratask.handlers.base import Handler, Step
from pytest_infratask.handlers.clusterapi import api_for, unreachable

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

CheckSpec = dict[str, Any]
"""A health check as the task's YAML frontmatter gives it: any shape."""


class VerificationHandler(Handler):
    task_type = "verification"
    retries = 2  # its commands look at a state that may still be settling

    def __init__(self, task: Task, settings: Settings, config: pytest.Config | None = None) -> None:
        super().__init__(task, settings, config)
        self.seen: dict[str, Check] = {}

    @property
    def checks(self) -> list[CheckSpec]:
        return [c if isinstance(c, dict) else {"http": str(c)} for c in self.task.value(CHECKS)]

    def uses_cluster(self, criterion: Criterion | None) -> bool:
        return any(k in c for c in self.checks for k in ("rollout", "flux", "pods"))

    def _probe(
        self, api: ApiClient | None, spec: CheckSpec, wait: float
    ) -> Callable[[float, float], CheckResult] | None:
        """The wait for the check ``spec`` describes, taking (deadline, poll interval),
        or None for an unknown check. One object is watched; the rest is polled."""
        if "rollout" in spec:
            assert api is not None  # uses_cluster saw this check
            ref = cluster.workload(cluster.ObjectRef.parse(str(spec["rollout"])))
            return partial(cluster.watch_check, api, ref, cluster.rollout_status)
        if "flux" in spec:
            assert api is not None
            ref = cluster.ObjectRef.parse(str(spec["flux"]))
            return partial(cluster.watch_check, api, ref, cluster.flux_status)
        check = self._poll_probe(api, spec, wait)
        return None if check is None else partial(cluster.poll, check)

    def _poll_probe(
        self, api: ApiClient | None, spec: CheckSpec, wait: float
    ) -> Callable[[], CheckResult] | None:
        if "pods" in spec:
            assert api is not None
            pods = spec["pods"] if isinstance(spec["pods"], dict) else spec
            namespace = str(pods.get("namespace") or spec.get("pods"))
            return partial(
                cluster.check_pods_ready, api, namespace, str(pods.get("selector") or "")
            )
        if "http" in spec:
            status = int(spec.get("status", 200))
            return partial(cluster.check_http, str(spec["http"]), status, min(wait, 10.0))
        return None

    def run_checks(self, env: dict[str, str], context: str | None) -> list[CheckResult]:

        timeout = self.duration(self.task.value(WAIT), 120.0)
        interval = self.duration(self.task.value(POLL_INTERVAL), 2.0)
        api = api_for(env, context) if self.uses_cluster(None) else None
        results = []
        for spec in self.checks:
            wait = self.duration(spec.get("timeout"), timeout)
            try:
                probe = self._probe(api, spec, wait)
            except ValueError as exc:
                results.append(
                    CheckResult(
                        "health",
                        False,
                        f"check {spec}: {exc}",
                        "name objects as kind/namespace/name",
                    )
                )
                continue
            if probe is None:
                results.append(
                    CheckResult(
                        "health", False, f"unknown check {spec}", "use rollout, flux, pods or http"
                    )
                )
                continue
            try:
                result = probe(wait, interval)
            except cluster.ClusterUnreachable as exc:
                raise unreachable(exc, context) from exc
            self.seen[result.name] = {
                "check": result.name,
                "ok": result.ok,
                "message": result.message,
            }
            results.append(
                CheckResult(
                    "health",
                    result.ok,
                    f"{result.name}: {result.message}",
                    "" if result.ok else "investigate the workload before closing the task",
                )
            )
        return results

    def after_criterion(self, step: Step) -> list[str]:
        if not self.checks or self.settings.skip_verification:
            return []
        results = self.run_checks(step.env, step.kube_context)
        step.notes += [r.message for r in results if r.ok]
        return [r.message for r in results if not r.ok]

    def verify(self, cwd: Path, env: dict[str, str]) -> list[CheckResult]:
        """The checks, when no criterion ran them in this run (a task finished earlier or
        ticked by hand): a complete verification task still proves the state it claims."""
        if self.seen or not self.checks:
            return []  # they ran as this run's post-conditions
        context = self.task.value(KUBE_CONTEXT) or self.settings.kube_context
        return self.run_checks(env, str(context) if context else None)

    def has_task_checks(self) -> bool:
        return bool(self.checks)

    def report(self) -> HandlerFields:
        return {"health_checks": list(self.seen.values())} if self.seen else {}

    def holdings(self) -> Holdings:
        return Holdings(checks=bool(self.checks))
