"""Deployment tasks: edit HelmReleases in git, validate, ask Flux to reconcile and wait."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from pytest_infratask.clients import cluster
from pytest_infratask.core.handler import Blocked, Published, Step
from pytest_infratask.core.messages import Holdings
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.schema import POLL_INTERVAL, RECONCILE, WAIT
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.shape import HandlerFields, Reconciled
from pytest_infratask.core.task import Criterion, Task
from pytest_infratask.handlers.clusterapi import api_for, unreachable
from pytest_infratask.handlers.manifests import ManifestHandler

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FLUX_KINDS = ("kind: HelmRelease", "kind: Kustomization")
GIT_SOURCES = ("gitrepository", "ocirepository")
"""Sources reconciled before the object that reads them (``--with-source``)."""


class DeploymentHandler(ManifestHandler):
    task_type = "deployment"

    def __init__(self, task: Task, settings: Settings, config: pytest.Config | None = None) -> None:
        super().__init__(task, settings, config)
        self.reconciled: list[Reconciled] = []
        self.chart_versions: dict[str, str] = {}

    @property
    def refs(self) -> list[str]:
        return list(self.task.value(RECONCILE))

    @property
    def active(self) -> bool:
        s = self.settings
        return bool(self.refs) and not s.dry_run and not s.skip_verification

    def uses_cluster(self, criterion: Criterion | None) -> bool:
        return self.active

    def _note_versions(self, files: list[Path]) -> bool:
        """Remember bumped chart versions; True when a Flux object was edited."""

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

    def has_task_checks(self) -> bool:
        return bool(self.refs) or super().has_task_checks()

    def reconcile(
        self, env: dict[str, str], context: str | None, published: Published | None = None
    ) -> list[CheckResult]:
        """Ask Flux to fetch the source, then apply; wait for the pushed revision.

        For each declared object: its source is reconciled first (as ``flux reconcile
        --with-source``); a Kustomization must report the expected commit as its
        ``lastAppliedRevision``; a HelmRelease is reached through the Kustomization that
        applies it (Flux's labels on it), then must be Ready for its current generation.
        """

        published = published or Published(why_unchecked="no git state was given")
        refs, results = [], []
        for text in self.refs:
            try:
                ref = cluster.ObjectRef.parse(text)
                if not ref.spec.flux:
                    raise ValueError(
                        f"{ref} is not a Flux object; only Flux objects take reconcile requests"
                    )
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
            refs.append(ref)
        if published.problem:
            message = f"{published.problem}: not reconciled"
            return [*results, CheckResult("reconcile", False, message, published.suggestion)]
        expect = (
            cluster.Expect(published.revision or "", published.sha, published.contains)
            if published.sha
            else None
        )
        waits = (
            self.duration(self.task.value(WAIT), 300.0),
            self.duration(self.task.value(POLL_INTERVAL), 2.0),
        )
        api = api_for(env, context)
        run = _Reconciliation(api, expect, published.remote, self, waits)
        try:
            held = run.suspended(refs)
            if held:
                return [*results, *held]
            results += [run.object(ref, published) for ref in refs]
        except cluster.ClusterUnreachable as exc:
            raise unreachable(exc, context) from exc
        return results

    def after_criterion(self, step: Step) -> list[str]:
        problems = super().after_criterion(step)
        self._note_versions(step.files)
        return problems

    def after_publish(
        self, env: dict[str, str], kube_context: str | None, published: Published
    ) -> list[CheckResult]:
        if not self.active:
            return []
        return self.reconcile(env, kube_context, published)

    def report(self) -> HandlerFields:
        return {"reconciled": self.reconciled} if self.reconciled else {}

    def holdings(self) -> Holdings:
        return replace(super().holdings(), reconcile=tuple(self.refs))


class _Reconciliation:
    """One pass of reconcile requests for a task's declared objects: each object is
    asked once, and the task's revision is expected only of sources that read the
    task's remote (another repository's revisions are its own)."""

    def __init__(
        self,
        api: ApiClient,
        expect: cluster.Expect | None,
        remote: str,
        handler: DeploymentHandler,
        waits: tuple[float, float],
    ) -> None:
        self.api, self.expect, self.remote = api, expect, remote
        self.chart_versions = handler.chart_versions
        self.reconciled = handler.reconciled  # each object's entry, for the handler's report
        self.waits = waits
        """How long to wait for each object, and how often to look."""
        self.done: dict[str, cluster.ReconcileResult] = {}
        self.requested: dict[str, str] = {}
        self.unchecked: set[str] = set()

    def _chain(self, ref: cluster.ObjectRef) -> list[tuple[cluster.ObjectRef, cluster.Obj]]:
        """The objects a reconcile of ``ref`` asks, in order, each with its state: a
        HelmRelease's Kustomization first when a revision is expected (``reconcile``)."""
        obj = cluster.get_object(self.api, ref)
        if ref.kind != "helmrelease" or self.expect is None:
            return [(ref, obj)]
        manager = cluster.manager_ref(obj)
        if manager is None:
            raise _Unreachable(
                f"{ref} carries no {cluster.MANAGED_BY} label: no Flux Kustomization "
                f"applies it, so revision {self.expect.revision} cannot reach it"
            )
        return [(manager, cluster.get_object(self.api, manager)), (ref, obj)]

    def suspended(self, refs: list[cluster.ObjectRef]) -> list[CheckResult]:
        """Nothing is asked of Flux while any object the reconciles would ask (the
        declared ones, their Kustomizations and Git sources) is suspended: its operator
        stopped it on purpose. All are read before the first request."""
        found: list[cluster.ObjectRef] = []
        unread: dict[cluster.ObjectRef, Exception] = {}
        for ref in refs:
            try:
                for target, obj in self._chain(ref):
                    asked = [(target, obj)]
                    source = cluster.source_ref(obj, target)
                    if source is not None and source.kind in GIT_SOURCES:
                        asked.insert(0, (source, cluster.get_object(self.api, source)))
                    found += [r for r, o in asked if cluster.is_suspended(o) and r not in found]
            except cluster.ClusterUnreachable:
                raise
            except (_Unreachable, cluster.ClusterError) as exc:
                unread[ref] = exc  # reported by its reconcile, or below when none runs
        if not found:
            return []
        results = []
        for ref in refs:
            entry = self._entry(ref)
            if ref in unread:
                results.append(self._failed(entry, unread[ref]))
            else:
                held = ", ".join(map(str, found))
                self.reconciled.append(_done(entry, False, f"{held} suspended"))
        return [*results, _held(found)]

    def _entry(self, ref: cluster.ObjectRef) -> Reconciled:
        """What is asked of ``ref``; ``ok`` and ``message`` follow once it is known."""
        chart = self.chart_versions.get(ref.name) if ref.kind == "helmrelease" else None
        return {
            "object": str(ref),
            "chart_version": chart,
            "revision": self.expect.revision if self.expect else None,
            "ok": False,
            "message": "",
        }

    def _failed(self, entry: Reconciled, exc: Exception) -> CheckResult:
        """A declared object whose reconcile could not start or go on."""
        self.reconciled.append(_done(entry, False, str(exc)))
        if isinstance(exc, cluster.Suspended):  # suspended after it was read
            return _held([exc.ref])
        fix = "check the object exists"
        if isinstance(exc, _Unreachable):
            fix = f"apply {entry['object']} through a Flux Kustomization of the repository"
        return CheckResult("reconcile", False, str(exc), fix)

    def object(self, ref: cluster.ObjectRef, published: Published) -> CheckResult:

        entry = self._entry(ref)
        chart = entry["chart_version"]
        unchecked_before = set(self.unchecked)
        try:
            chain = [target for target, _ in self._chain(ref)]
            result = None
            for target in chain:
                result = self._reconcile(target, chart if target == ref else None)
                if not result.ok:
                    break
            assert result is not None
        except cluster.ClusterUnreachable:
            raise
        except (_Unreachable, cluster.ClusterError) as exc:
            return self._failed(entry, exc)
        message = result.message if result.ref == ref else f"{result.ref}: {result.message}"
        if result.ok and self.expect is None and published.why_unchecked:
            message += f"; revision not checked: {published.why_unchecked}"
        elif result.ok and (elsewhere := self.unchecked - unchecked_before):
            message += (
                "; revision not checked: its source reads "
                + ", ".join(sorted(elsewhere))
                + f", not {published.remote}"
            )
        # A HelmRelease's revision is the one its Kustomization applied.
        manager = self.done.get(str(chain[0])) if len(chain) > 1 else None
        applied = manager.revision if manager is not None else None
        _done(entry, result.ok, message)
        entry["requested_at"] = self.requested.get(str(ref))
        entry["applied_revision"] = result.revision if ref.kind != "helmrelease" else applied
        self.reconciled.append(entry)
        return CheckResult(
            "reconcile",
            result.ok,
            f"{ref}: {message}",
            "" if result.ok else f"inspect {ref} (flux get {ref.kind}s -n {ref.namespace})",
        )

    def _reconcile(self, ref: cluster.ObjectRef, chart: str | None) -> cluster.ReconcileResult:
        """Reconcile ``ref``'s source, then ``ref``; each object once per task."""

        if str(ref) in self.done:
            return self.done[str(ref)]
        timeout, interval = self.waits
        obj = cluster.get_object(self.api, ref)
        source = cluster.source_ref(obj, ref)
        if ref.kind == "gitrepository":
            expect = self._for_source(obj)
        elif ref.kind == "kustomization" and source is not None and source.kind == "gitrepository":
            expect = self._for_source(cluster.get_object(self.api, source))
        else:
            expect = None
        if source is not None and source.kind in GIT_SOURCES and str(source) not in self.done:
            wanted = expect if source.kind == "gitrepository" else None
            requested = cluster.request_reconcile(self.api, source)
            self.requested[str(source)] = requested
            fetched = cluster.wait_ready(
                self.api,
                source,
                requested,
                timeout=timeout,
                interval=interval,
                expect_revision=wanted,
            )
            self.done[str(source)] = fetched
            if not fetched.ok:
                return cluster.ReconcileResult(
                    ref,
                    False,
                    f"source {source}: {fetched.message}",
                    fetched.last_condition,
                    fetched.elapsed,
                    fetched.revision,
                )
        requested = cluster.request_reconcile(self.api, ref)
        self.requested[str(ref)] = requested
        result = cluster.wait_ready(
            self.api,
            ref,
            requested,
            timeout=timeout,
            interval=interval,
            expect_chart_version=chart,
            expect_revision=expect,
        )
        self.done[str(ref)] = result
        return result

    def _for_source(self, source: cluster.Obj) -> cluster.Expect | None:
        """The revision to expect from a Git source: only one that reads the task's
        remote can have the task's commit (another repository's revisions are its own)."""
        url = str((source.get("spec") or {}).get("url") or "")
        if self.expect is None or not self.remote or same_repository(url, self.remote):
            return self.expect
        self.unchecked.add(url)
        return None


def _done(entry: Reconciled, ok: bool, message: str) -> Reconciled:
    entry["ok"], entry["message"] = ok, message
    return entry


class _Unreachable(Exception):
    """The declared object cannot receive the revision at all."""


def _held(suspended: list[cluster.ObjectRef]) -> CheckResult:
    """The task blocked on suspended objects, with the command resuming each."""
    errors = [cluster.Suspended(ref) for ref in suspended]
    return Blocked(
        "; ".join(map(str, errors)) + ": nothing was asked of Flux",
        [f"resume it with `{e.resume}` once it should be reconciled, then rerun" for e in errors],
    ).as_check("reconcile")


def same_repository(a: str, b: str) -> bool:
    """Whether two git URLs name one repository (``git@host:org/x.git`` and
    ``https://host/org/x`` do; local paths compare as paths)."""
    return _normal(a) == _normal(b)


def _normal(url: str) -> str:
    url = url.strip().rstrip("/").removesuffix(".git")
    if url.startswith("ssh://"):
        url = re.sub(r"^(ssh://[^/]*?):\d+/", r"\1/", url)  # the port names no repository
    for scheme in ("ssh://", "https://", "http://", "git://", "file://"):
        url = url.removeprefix(scheme)
    host, colon, rest = url.partition(":")
    if colon and "/" not in host and not rest.startswith("//"):
        url = f"{host}/{rest}"  # scp-like git@host:org/repo
    url = url.split("@", 1)[-1] if "@" in url.split("/", 1)[0] else url
    return url.replace("//", "/").lower()
