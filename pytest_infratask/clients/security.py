"""Security checks on rendered Kubernetes manifests.

Configuration tasks render their kustomizations and run these rules before Flux
applies anything, so a privileged pod or an unpinned chart is stopped in review
rather than discovered in the cluster. Only high-severity findings fail a task;
the rest are reported. Broader policy belongs to kube-linter, kube-score or
checkov (see docs/security.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

SEVERITIES = ("high", "medium", "low")
ALLOWED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})

_TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}
)
Yaml = Any
"""A value of parsed YAML: any shape a manifest has."""
Manifest = dict[str, Yaml]
"""A kubernetes object as its manifest's YAML gives it."""
_PINNED_VERSION = re.compile(r"^[=v]?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Finding:
    """One rule violated by one object."""

    rule_id: str
    severity: str
    kind: str
    namespace: str
    name: str
    file: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    """A check over one manifest object; each returned message becomes a finding."""

    id: str
    severity: str
    description: str
    check: Callable[[Manifest], list[str]]

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.id}: severity must be one of {', '.join(SEVERITIES)}")


def evaluate(
    objects: Iterable[tuple[Manifest, str]],
    *,
    skip: Collection[str] = (),
    rules: Sequence[Rule] | None = None,
) -> list[Finding]:
    """Run every rule of ``rules`` (the built-in ones when None) not in ``skip`` over
    (object, file) pairs."""
    rules = BUILTIN_RULES if rules is None else rules
    unknown = set(skip) - {rule.id for rule in rules}
    if unknown:
        # A misspelt skip would silently keep a rule on; say so instead.
        raise ValueError(f"unknown rule id(s) to skip: {', '.join(sorted(unknown))}")
    active = [rule for rule in rules if rule.id not in skip]
    findings: list[Finding] = []
    for obj, file in objects:
        metadata = _map(obj.get("metadata"))
        for rule in active:
            for message in rule.check(obj):
                findings.append(
                    Finding(
                        rule_id=rule.id,
                        severity=rule.severity,
                        kind=str(obj.get("kind", "")),
                        namespace=str(metadata.get("namespace") or ""),
                        name=str(metadata.get("name") or ""),
                        file=file,
                        message=message,
                    )
                )
    return findings


def failing(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that must stop a task."""
    return [finding for finding in findings if finding.severity == "high"]


def load_manifests(text: str, file: str) -> list[tuple[Manifest, str]]:
    """Parse multi-document YAML into objects, expanding ``kind: List``."""
    try:
        documents = list(YAML(typ="safe", pure=True).load_all(text))
    except MarkedYAMLError as exc:
        where = f" at line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ValueError(f"{file}: not valid YAML: {exc.problem}{where}") from None
    except YAMLError as exc:
        raise ValueError(f"{file}: not valid YAML: {type(exc).__name__}") from None
    objects: list[tuple[Manifest, str]] = []
    for number, document in enumerate(documents):
        if document is None:
            continue
        if not isinstance(document, dict):
            raise ValueError(f"{file}: document {number} is not a mapping")
        objects.extend((obj, file) for obj in _expand(document))
    return objects


def _expand(obj: Manifest) -> Iterator[Manifest]:
    if obj.get("kind") == "List" or (
        str(obj.get("kind", "")).endswith("List") and isinstance(obj.get("items"), list)
    ):
        for item in obj.get("items") or []:
            if isinstance(item, dict):
                yield from _expand(item)
        return
    yield obj


# --- object navigation -----------------------------------------------------------------


def _map(value: object) -> Manifest:
    return value if isinstance(value, dict) else {}


def _seq(value: object) -> list[Yaml]:
    return value if isinstance(value, list) else []


def pod_spec(obj: Manifest) -> Manifest | None:
    """The pod spec a workload object runs, wherever its kind keeps it."""
    kind = obj.get("kind")
    spec = _map(obj.get("spec"))
    if kind == "Pod":
        return spec
    if kind in _TEMPLATE_KINDS:
        return _map(_map(spec.get("template")).get("spec"))
    if kind == "CronJob":
        job = _map(_map(spec.get("jobTemplate")).get("spec"))
        return _map(_map(job.get("template")).get("spec"))
    return None


def containers(spec: Manifest, *, ephemeral: bool = True) -> Iterator[tuple[str, Manifest]]:
    """(label, container) for every container, init container and ephemeral container."""
    fields = ["initContainers", "containers"] + (["ephemeralContainers"] if ephemeral else [])
    for field in fields:
        for container in _seq(spec.get(field)):
            if isinstance(container, dict):
                singular = field[:-1]
                yield f"{singular} {container.get('name', '?')!r}", container


def _each_container(
    obj: Manifest,
    problem: Callable[[Manifest, Manifest], str | None],
    *,
    ephemeral: bool = True,
) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    messages = []
    for label, container in containers(spec, ephemeral=ephemeral):
        text = problem(spec, container)
        if text:
            messages.append(f"{label} {text}")
    return messages


def _context(container: Manifest) -> Manifest:
    return _map(container.get("securityContext"))


# --- rules -----------------------------------------------------------------------------


def _privileged(obj: Manifest) -> list[str]:
    return _each_container(
        obj,
        lambda _spec, c: "runs privileged" if _context(c).get("privileged") is True else None,
    )


def _host_namespaces(obj: Manifest) -> list[str]:
    spec = pod_spec(obj) or {}
    fields = ("hostNetwork", "hostPID", "hostIPC")
    return [f"pod sets {field}: true" for field in fields if spec.get(field) is True]


def _host_path(obj: Manifest) -> list[str]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [
        f"volume {volume.get('name', '?')!r} mounts host path "
        f"{_map(volume.get('hostPath')).get('path', '?')}"
        for volume in _seq(spec.get("volumes"))
        if isinstance(volume, dict) and "hostPath" in volume
    ]


def _capability_name(value: object) -> str:
    name = str(value).upper()
    return name[4:] if name.startswith("CAP_") else name


def _added_capabilities(obj: Manifest) -> list[str]:
    def problem(_spec: Manifest, container: Manifest) -> str | None:
        added = _seq(_map(_context(container).get("capabilities")).get("add"))
        extra = sorted({_capability_name(cap) for cap in added} - ALLOWED_CAPABILITIES)
        return f"adds capabilities {', '.join(extra)}" if extra else None

    return _each_container(obj, problem)


def _privilege_escalation(obj: Manifest) -> list[str]:
    return _each_container(
        obj,
        lambda _spec, c: (
            None
            if _context(c).get("allowPrivilegeEscalation") is False
            else "does not set allowPrivilegeEscalation: false"
        ),
    )


def _run_as_non_root(obj: Manifest) -> list[str]:
    def problem(spec: Manifest, container: Manifest) -> str | None:
        own = _context(container).get("runAsNonRoot")
        effective = (
            own if own is not None else _map(spec.get("securityContext")).get("runAsNonRoot")
        )
        return None if effective is True else "may run as root (runAsNonRoot is not true)"

    return _each_container(obj, problem)


def image_reference_problem(image: str) -> str | None:
    """Why an image reference is not reproducible, or None when it is."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag"
    if last.rsplit(":", 1)[1] == "latest":
        return "uses the latest tag"
    return None


def _image_tag(obj: Manifest) -> list[str]:
    def problem(_spec: Manifest, container: Manifest) -> str | None:
        image = str(container.get("image") or "")
        if not image:
            return "has no image"
        reason = image_reference_problem(image)
        return f"image {image} {reason}; pin a version tag or digest" if reason else None

    return _each_container(obj, problem)


def _resource_limits(obj: Manifest) -> list[str]:
    def problem(_spec: Manifest, container: Manifest) -> str | None:
        limits = _map(_map(container.get("resources")).get("limits"))
        missing = [resource for resource in ("cpu", "memory") if not limits.get(resource)]
        return f"has no {' or '.join(missing)} limit" if missing else None

    # Ephemeral containers may not declare resources at all.
    return _each_container(obj, problem, ephemeral=False)


def _helmrelease_version(obj: Manifest) -> list[str]:
    api_version = str(obj.get("apiVersion", ""))
    if obj.get("kind") != "HelmRelease" or not api_version.startswith("helm.toolkit.fluxcd.io/"):
        return []
    spec = _map(obj.get("spec"))
    if "chartRef" in spec:
        return []  # the referenced OCIRepository or HelmChart carries the version
    version = _map(_map(spec.get("chart")).get("spec")).get("version")
    if version is None or str(version).strip() == "":
        return ["chart version is not set, so Flux installs whatever is newest"]
    if not _PINNED_VERSION.match(str(version).strip()):
        return [f"chart version {version!r} is a range; pin an exact version such as 1.2.3"]
    return []


BUILTIN_RULES: tuple[Rule, ...] = (
    Rule("privileged-container", "high", "container runs with privileged: true", _privileged),
    Rule(
        "host-namespaces",
        "high",
        "pod sets hostNetwork, hostPID or hostIPC",
        _host_namespaces,
    ),
    Rule("host-path-volume", "high", "pod mounts a hostPath volume", _host_path),
    Rule(
        "added-capabilities",
        "high",
        "container adds Linux capabilities other than NET_BIND_SERVICE",
        _added_capabilities,
    ),
    Rule(
        "privilege-escalation",
        "medium",
        "container does not set allowPrivilegeEscalation: false",
        _privilege_escalation,
    ),
    Rule(
        "run-as-non-root",
        "medium",
        "neither container nor pod sets runAsNonRoot: true",
        _run_as_non_root,
    ),
    Rule("image-tag", "medium", "image uses :latest or has neither tag nor digest", _image_tag),
    Rule("resource-limits", "low", "container lacks a cpu or memory limit", _resource_limits),
    Rule(
        "helmrelease-chart-version",
        "medium",
        "Flux HelmRelease chart version is missing, * or a range",
        _helmrelease_version,
    ),
)
