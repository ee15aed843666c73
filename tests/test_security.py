"""Security rules over rendered manifests: each rule fires on a bad object and not on a good one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from pytest_infratask.clients.security import (
    BUILTIN_RULES,
    Finding,
    Rule,
    evaluate,
    failing,
    image_reference_problem,
    load_manifests,
)

HARDENED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: apps
spec:
  template:
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
        - name: api
          image: registry.local/api:1.4.2
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
          resources:
            limits: {cpu: 500m, memory: 256Mi}
"""

Obj = dict[str, Any]


def _hardened() -> Obj:
    [(obj, _)] = load_manifests(HARDENED, "deploy.yaml")
    return obj


def _container(obj: Obj) -> Obj:
    container: Obj = obj["spec"]["template"]["spec"]["containers"][0]
    return container


def _pod(obj: Obj) -> Obj:
    pod: Obj = obj["spec"]["template"]["spec"]
    return pod


def _helmrelease(version: str | None) -> Obj:
    chart: Obj = {"chart": "api", "sourceRef": {"kind": "HelmRepository", "name": "internal"}}
    if version is not None:
        chart["version"] = version
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "api", "namespace": "apps"},
        "spec": {"chart": {"spec": chart}},
    }


def _edit(change: Callable[[Obj], object]) -> Callable[[], Obj]:
    def build() -> Obj:
        obj = _hardened()
        change(obj)
        return obj

    return build


# (rule id, object that triggers it, object that passes it)
CASES: list[tuple[str, Callable[[], Obj], Callable[[], Obj]]] = [
    (
        "privileged-container",
        _edit(lambda o: _container(o)["securityContext"].update(privileged=True)),
        _edit(lambda o: _container(o)["securityContext"].update(privileged=False)),
    ),
    (
        "host-namespaces",
        _edit(lambda o: _pod(o).update(hostPID=True)),
        _edit(lambda o: _pod(o).update(hostNetwork=False)),
    ),
    (
        "host-path-volume",
        _edit(lambda o: _pod(o).update(volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
        _edit(lambda o: _pod(o).update(volumes=[{"name": "tmp", "emptyDir": {}}])),
    ),
    (
        "added-capabilities",
        _edit(lambda o: _container(o)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"])),
        _edit(
            lambda o: _container(o)["securityContext"]["capabilities"].update(
                add=["NET_BIND_SERVICE"]
            )
        ),
    ),
    (
        "privilege-escalation",
        _edit(lambda o: _container(o)["securityContext"].pop("allowPrivilegeEscalation")),
        _hardened,
    ),
    (
        "run-as-non-root",
        _edit(lambda o: _pod(o).pop("securityContext")),
        _edit(
            lambda o: (
                _pod(o).pop("securityContext"),
                _container(o)["securityContext"].update(runAsNonRoot=True),
            )
        ),
    ),
    (
        "image-tag",
        _edit(lambda o: _container(o).update(image="registry.local/api:latest")),
        _edit(lambda o: _container(o).update(image="registry.local:5000/api@sha256:" + "a" * 64)),
    ),
    (
        "resource-limits",
        _edit(lambda o: _container(o)["resources"]["limits"].pop("memory")),
        _hardened,
    ),
    (
        "helmrelease-chart-version",
        lambda: _helmrelease(">=1.0"),
        lambda: _helmrelease("1.2.3"),
    ),
]


def _ids(findings: list[Finding]) -> list[str]:
    return [finding.rule_id for finding in findings]


def test_cases_cover_every_builtin_rule() -> None:
    assert {case[0] for case in CASES} == {rule.id for rule in BUILTIN_RULES}


def test_hardened_deployment_has_no_findings() -> None:
    assert evaluate([(_hardened(), "deploy.yaml")]) == []


@pytest.mark.parametrize(("rule_id", "bad", "good"), CASES, ids=[case[0] for case in CASES])
def test_rule_triggers_on_bad_and_not_on_good(
    rule_id: str, bad: Callable[[], Obj], good: Callable[[], Obj]
) -> None:
    findings = evaluate([(bad(), "bad.yaml")])

    assert _ids(findings) == [rule_id]
    severity = {rule.id: rule.severity for rule in BUILTIN_RULES}[rule_id]
    assert findings[0].severity == severity
    assert (findings[0].namespace, findings[0].name, findings[0].file) == (
        "apps",
        "api",
        "bad.yaml",
    )
    assert rule_id not in _ids(evaluate([(good(), "good.yaml")]))


def test_finding_messages_name_the_culprit() -> None:
    obj = _hardened()
    _container(obj)["securityContext"]["capabilities"]["add"] = ["CAP_SYS_ADMIN", "NET_RAW"]
    _pod(obj)["volumes"] = [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]
    _pod(obj)["hostNetwork"] = True

    messages = {finding.rule_id: finding.message for finding in evaluate([(obj, "d.yaml")])}

    assert messages == {
        "added-capabilities": "container 'api' adds capabilities NET_RAW, SYS_ADMIN",
        "host-path-volume": "volume 'docker' mounts host path /var/run/docker.sock",
        "host-namespaces": "pod sets hostNetwork: true",
    }


def test_container_setting_overrides_pod_run_as_non_root() -> None:
    obj = _hardened()
    _container(obj)["securityContext"]["runAsNonRoot"] = False

    assert _ids(evaluate([(obj, "d.yaml")])) == ["run-as-non-root"]


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("nginx", "has no tag"),
        ("nginx:latest", "uses the latest tag"),
        ("registry.local:5000/team/app", "has no tag"),
        ("registry.local:5000/team/app:1.2", None),
        ("ghcr.io/org/app:latest@sha256:" + "b" * 64, None),
    ],
)
def test_image_reference_problem(image: str, problem: str | None) -> None:
    assert image_reference_problem(image) == problem


@pytest.mark.parametrize("version", [None, "", "*", ">=1.0", "^1", "~1", "1.x", "1.2", "1.2.*"])
def test_unpinned_helmrelease_versions(version: str | None) -> None:
    assert _ids(evaluate([(_helmrelease(version), "hr.yaml")])) == ["helmrelease-chart-version"]


@pytest.mark.parametrize("version", ["1.2.3", "v0.1.19", "=2.0.0", "1.0.0-rc.1+build.5"])
def test_pinned_helmrelease_versions(version: str) -> None:
    assert evaluate([(_helmrelease(version), "hr.yaml")]) == []


def test_helmrelease_from_other_api_group_or_chart_ref_is_not_checked() -> None:
    other = _helmrelease(None) | {"apiVersion": "example.com/v1"}
    chart_ref = _helmrelease(None)
    chart_ref["spec"] = {"chartRef": {"kind": "OCIRepository", "name": "api"}}

    assert evaluate([(other, "a.yaml"), (chart_ref, "b.yaml")]) == []


def test_cronjob_and_init_and_ephemeral_containers_are_reached() -> None:
    text = """\
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: ops}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          securityContext: {runAsNonRoot: true}
          initContainers:
            - name: prepare
              image: busybox:1.36
              securityContext: {privileged: true, allowPrivilegeEscalation: false}
              resources: {limits: {cpu: 100m, memory: 64Mi}}
          containers:
            - name: backup
              image: restic/restic:0.16.4
              securityContext: {allowPrivilegeEscalation: false}
              resources: {limits: {cpu: 100m, memory: 64Mi}}
          ephemeralContainers:
            - name: debug
              image: busybox:1.36
              securityContext: {allowPrivilegeEscalation: false, privileged: true}
"""
    findings = evaluate(load_manifests(text, "cron.yaml"))

    assert [(f.rule_id, f.kind, f.message) for f in findings] == [
        ("privileged-container", "CronJob", "initContainer 'prepare' runs privileged"),
        ("privileged-container", "CronJob", "ephemeralContainer 'debug' runs privileged"),
    ]


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", ("spec",)),
        ("StatefulSet", ("spec", "template", "spec")),
        ("DaemonSet", ("spec", "template", "spec")),
        ("ReplicaSet", ("spec", "template", "spec")),
        ("Job", ("spec", "template", "spec")),
    ],
)
def test_pod_specs_are_found_in_every_workload_kind(kind: str, path: tuple[str, ...]) -> None:
    obj: Obj = {"kind": kind, "metadata": {"name": "w"}}
    node = obj
    for key in path:
        node = node.setdefault(key, {})
    node["hostIPC"] = True

    assert _ids(evaluate([(obj, "w.yaml")], skip=["run-as-non-root"])) == ["host-namespaces"]


def test_skip_turns_rules_off_and_rejects_unknown_ids() -> None:
    obj = _hardened()
    _container(obj)["image"] = "nginx"
    del _container(obj)["resources"]

    assert _ids(evaluate([(obj, "d.yaml")])) == ["image-tag", "resource-limits"]
    assert _ids(evaluate([(obj, "d.yaml")], skip={"image-tag"})) == ["resource-limits"]
    with pytest.raises(ValueError, match=r"unknown rule id.*image-tags"):
        evaluate([(obj, "d.yaml")], skip=["image-tags"])


def test_extra_rules_run_and_can_be_skipped() -> None:
    def needs_team_label(obj: Obj) -> list[str]:
        labels = obj.get("metadata", {}).get("labels", {})
        return [] if "team" in labels else ["metadata.labels.team is missing"]

    rule = Rule("team-label", "high", "objects carry a team label", needs_team_label)
    objects = [(_hardened(), "d.yaml")]

    findings = evaluate(objects, rules=[*BUILTIN_RULES, rule])

    assert [f.to_dict() for f in findings] == [
        {
            "rule_id": "team-label",
            "severity": "high",
            "kind": "Deployment",
            "namespace": "apps",
            "name": "api",
            "file": "d.yaml",
            "message": "metadata.labels.team is missing",
        }
    ]
    assert failing(findings) == findings
    assert evaluate(objects, rules=[*BUILTIN_RULES, rule], skip=["team-label"]) == []


def test_rule_severity_is_validated() -> None:
    with pytest.raises(ValueError, match="severity"):
        Rule("x", "critical", "d", lambda obj: [])


def test_failing_keeps_only_high_findings() -> None:
    obj = _hardened()
    _container(obj)["securityContext"] = {"privileged": True}

    findings = evaluate([(obj, "d.yaml")])

    assert sorted(_ids(findings)) == ["privilege-escalation", "privileged-container"]
    assert _ids(failing(findings)) == ["privileged-container"]


def test_load_manifests_skips_empty_documents_and_expands_lists() -> None:
    text = """\
---
# only a comment
---
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}
  - apiVersion: v1
    kind: List
    items:
      - {apiVersion: v1, kind: Secret, metadata: {name: b}}
---
apiVersion: v1
kind: Service
metadata: {name: c}
...
"""
    loaded = load_manifests(text, "all.yaml")

    assert [(obj["kind"], obj["metadata"]["name"], file) for obj, file in loaded] == [
        ("ConfigMap", "a", "all.yaml"),
        ("Secret", "b", "all.yaml"),
        ("Service", "c", "all.yaml"),
    ]


def test_load_manifests_rejects_bad_yaml_and_non_mappings() -> None:
    with pytest.raises(ValueError, match=r"x.yaml: not valid YAML: .* at line 2"):
        load_manifests("a: 1\n  b: 2\n", "x.yaml")
    with pytest.raises(ValueError, match="document 1 is not a mapping"):
        load_manifests("a: 1\n---\n- 1\n", "y.yaml")
    with pytest.raises(
        ValueError, match=r"z\.yaml: not valid YAML: could not determine a constructor"
    ):
        load_manifests("a: !!python/object:os.system x\n", "z.yaml")


def test_malformed_objects_do_not_crash_rules() -> None:
    weird = copy.deepcopy(_hardened())
    weird["spec"]["template"]["spec"] = {"containers": [None, {"securityContext": "yes"}]}

    ids = _ids(evaluate([(weird, "w.yaml")]))

    assert ids == ["privilege-escalation", "run-as-non-root", "image-tag", "resource-limits"]
