"""The frontmatter keys, each declared once: its type, default, meaning and bounds.

Everything else is derived from ``KEYS``: the known-key set behind the unknown-key
warning (a misspelled ``lables``, ``dependancies`` or ``timout`` is reported instead
of silently ignored), the checks collection runs on values, the typed values a task
hands its readers (``task.value(TIMEOUT)``), the JSON Schema shipped as
``pytest_infratask/frontmatter.schema.json`` and the reference table of the docs.

Regenerate the shipped schema with
``python -m pytest_infratask.core.schema > pytest_infratask/frontmatter.schema.json``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import pytest

from pytest_infratask.core.credentials import RESERVED_ENV
from pytest_infratask.core.durations import MAX_SECONDS, DurationError, parse_duration

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
_GROUP_TITLES = {
    "task": "Every task",
    "backlog": "Backlog.md's own keys",
    "build": "Build tasks",
    "deployment": "Deployment tasks (`validate` also configuration tasks)",
    "configuration": "Configuration tasks",
    "verification": "Verification tasks",
}
GROUPS = tuple(_GROUP_TITLES)
"""The key groups, in the order the reference lists them."""


@dataclass(frozen=True)
class Key(Generic[T_co]):
    """One frontmatter key. ``kind`` is its type as a person reads it, ``default`` what
    applies when it is unset (as the docs say it), ``group`` the handler or type that
    reads it (``task`` for every task, ``backlog`` for Backlog.md's own keys). ``read``
    turns a raw YAML value into what the plugin uses and never fails: ``check`` (what is
    wrong with a value, or None) refused a bad one at collection. ``minimum`` and
    ``maximum`` bound numbers; ``json`` is the key's JSON Schema."""

    name: str
    kind: str
    default: str
    doc: str
    group: str
    read: Callable[[object], T_co] = field(repr=False, compare=False)
    check: Callable[[object], str | None] | None = field(default=None, repr=False, compare=False)
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    json: Mapping[str, object] = field(default_factory=dict, repr=False, compare=False)

    def value(self, meta: Mapping[str, object]) -> T_co:
        """This key's value in ``meta`` (a task's frontmatter), read."""
        return self.read(meta.get(self.name))

    def problem(self, meta: Mapping[str, object]) -> str | None:
        """What is wrong with this key's value in ``meta``; None when it is usable."""
        value = meta.get(self.name)
        return None if self.check is None or value is None else self.check(value)


def name_list(value: object, *, commas: bool = False) -> list[str]:
    """``a`` or ``[a, b]`` as a list of names; nothing for an absent value.

    With ``commas``, one string may hold several names (``labels: a, b``), as
    Backlog.md and people write them.
    """
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(",") if commas else [value]
    elif isinstance(value, list | tuple):
        parts = [str(v) for v in value if v is not None]
    else:
        parts = [str(value)]
    return [p.strip() for p in parts if p.strip()]


# -- readers: a raw YAML value to the value the plugin uses --------------------------


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _flag(value: object) -> bool:
    return bool(value)


def _names(value: object) -> tuple[str, ...]:
    return tuple(name_list(value))


def _comma_names(value: object) -> tuple[str, ...]:
    return tuple(name_list(value, commas=True))


def _mapping(value: object) -> dict[str, object]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _items(value: object) -> list[object]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _raw(value: object) -> object:
    return value


def _seconds(value: object) -> float | None:
    try:
        return parse_duration(value, "duration")
    except DurationError:
        return None  # refused at collection; a Task built by hand keeps the default


_WHOLE = re.compile(r"\s*[0-9]+\s*")


def _whole(value: object) -> int | None:
    """A whole number (``3``, ``3.0`` as JSON Schema counts it, or ``"3"``); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(value) if isinstance(value, str) and _WHOLE.fullmatch(value) else None


# -- the kinds: a human type name, a reader, a JSON Schema --------------------------

_ANY_SCALAR = {"type": ["string", "number", "boolean"]}
_DURATION_TEXT = r"^\s*(?:[0-9]+(?:\.[0-9]+)?|(?:[0-9]+(?:\.[0-9]+)?\s*[dhmsDHMS]\s*)+)?\s*$"


def _key(
    name: str,
    kind: str,
    doc: str,
    group: str,
    read: Callable[[object], T],
    *,
    default: str,
    json: Mapping[str, object],
    check: Callable[[object], str | None] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
) -> Key[T]:
    return Key(name, kind, default, doc, group, read, check, minimum, maximum, pattern, json)


def text(name: str, doc: str, group: str, default: str = "none") -> Key[str | None]:
    schema = {"type": ["string", "number"]}
    return _key(name, "str", doc, group, _text, default=default, json=schema)


def date(name: str, doc: str, group: str) -> Key[object]:
    schema = {"type": ["string", "number"]}  # YAML dates are strings in JSON
    return _key(name, "date", doc, group, _raw, default="none", json=schema)


def names(
    name: str, doc: str, group: str, default: str = "none", *, commas: bool = False
) -> Key[tuple[str, ...]]:
    kind = "list[str] or a comma-separated str" if commas else "list[str] or str"
    schema = {"anyOf": [_ANY_SCALAR, {"type": "array"}]}
    return _key(
        name, kind, doc, group, _comma_names if commas else _names, default=default, json=schema
    )


def flag(name: str, doc: str, group: str) -> Key[bool]:
    schema = {"type": ["boolean", "string"]}
    return _key(name, "bool or a reason (str)", doc, group, _flag, default="false", json=schema)


def mapping(name: str, doc: str, group: str) -> Key[dict[str, object]]:
    return _key(name, "mapping", doc, group, _mapping, default="{}", json={"type": "object"})


def items(name: str, kind: str, doc: str, group: str) -> Key[list[object]]:
    return _key(name, kind, doc, group, _items, default="[]", json={"type": "array"})


def anything(name: str, doc: str, group: str) -> Key[object]:
    return _key(name, "any", doc, group, _raw, default="none", json={})


def duration(name: str, doc: str, group: str, default: str) -> Key[float | None]:
    def check(value: object) -> str | None:
        try:
            parse_duration(value, name)
        except DurationError as exc:
            return str(exc)
        return None

    schema = {
        "anyOf": [
            {"type": "number", "minimum": 0, "maximum": MAX_SECONDS},
            {"type": "string", "pattern": _DURATION_TEXT},
        ]
    }
    return _key(
        name,
        "duration",
        doc,
        group,
        _seconds,
        check=check,
        default=default,
        minimum=0,
        maximum=MAX_SECONDS,
        json=schema,
    )


def whole(name: str, low: int, high: int, doc: str, group: str, default: str) -> Key[int | None]:
    def read(value: object) -> int | None:
        number = _whole(value)
        return number if number is not None and low <= number <= high else None

    def check(value: object) -> str | None:
        number = _whole(value)
        if number is not None and low <= number <= high:
            return None
        return f"{name}: expected a whole number from {low} to {high}"

    schema = {"type": "integer", "minimum": low, "maximum": high}
    return _key(
        name,
        f"int {low}-{high}",
        doc,
        group,
        read,
        check=check,
        default=default,
        minimum=low,
        maximum=high,
        json=schema,
    )


# -- the checks of keys whose values have rules of their own -------------------------

SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _id_problem(value: object) -> str | None:
    task_id = str(value).strip()
    if re.match(SAFE_ID, task_id):
        return None
    return (
        f"id {task_id[:60]!r} must be letters, digits, '.', '_' or '-' (at most 128, "
        "starting with a letter or digit): it names the task's report file"
    )


def _env_problem(env: object) -> str | None:
    """What makes ``env:`` unusable as a command's environment: a variable name that is
    empty or holds ``=`` or a NUL, or a value with a NUL (a YAML ``"\\0"`` escape); no
    process could be started with it; or a variable that chooses credential files."""
    if not isinstance(env, dict):
        return "env: expected a mapping of variable names to values"
    for key, value in env.items():
        name = "" if key is None else str(key)
        if not name:
            return "env: a variable name is empty"
        if "=" in name or "\0" in name:
            bad = "'='" if "=" in name else "a NUL byte"
            return f"env: variable name {name[:60]!r} contains {bad}, which no variable name can"
        if value is not None and "\0" in str(value):
            return f"env: the value of {name[:60]} contains a NUL byte, which no variable can hold"
    reserved = [k for k in RESERVED_ENV if k in map(str, env)]
    if reserved:
        return (
            f"env: {reserved[0]} cannot be set by a task: it decides which kubeconfig and "
            "registry logins commands see (the run gives commands their own)"
        )
    return None


def _read_env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


# -- the keys ------------------------------------------------------------------------

ID = _key(
    "id",
    "str",
    "The task's id; it names the task's report file.",
    "backlog",
    _text,
    default="the file name",
    check=_id_problem,
    pattern=SAFE_ID,
    json={
        "anyOf": [
            {"type": "string", "pattern": r"^\s*[A-Za-z0-9][A-Za-z0-9._-]{0,127}\s*$"},
            {"type": "integer", "minimum": 0},
        ]
    },
)
TITLE = text("title", "The task's title.", "backlog", "the first `#` heading, else the file name")
STATUS = text("status", "Backlog.md's status; written only with `--infratask-status`.", "backlog")
PRIORITY = text(
    "priority", "Orders tasks run together: critical, high, medium, low.", "backlog", "medium"
)
LABELS = names(
    "labels", "Labels; they choose the task type unless `type` does.", "backlog", commas=True
)
DEPENDENCIES = names(
    "dependencies", "Ids of tasks that must be done first.", "backlog", commas=True
)
TYPE = text("type", "The task type, overriding what the labels say.", "task", "from the labels")
WORKDIR = text(
    "workdir", "Where commands run, relative to the task file.", "task", "the task file's directory"
)
REPO = text("repo", "A repository named in ini `infratask_repos` to run commands in.", "task")
BRANCH = names(
    "branch",
    "The branch (or branches) the repository must be on.",
    "task",
    "ini `infratask_branches`",
)
ENV = _key(
    "env",
    "mapping",
    "Variables added to the commands' environment.",
    "task",
    _read_env,
    default="{}",
    check=_env_problem,
    json={"type": "object"},
)
TIMEOUT = duration(
    "timeout", "Time a criterion's commands may take.", "task", "ini `infratask_timeout` (600)"
)
RETRIES = whole(
    "retries",
    0,
    100,
    "Times a failed criterion is tried again.",
    "task",
    "`--infratask-retries`, the task type's, else ini `infratask_retries` (1)",
)
RETRY_DELAY = duration(
    "retry_delay", "Pause between tries of a criterion.", "task", "ini `infratask_retry_delay` (0)"
)
SYNTAX_CHECK = names("syntax_check", "Files that must parse before a command runs.", "task")
KUBE_CONTEXT = text(
    "kube_context",
    "The kube context cluster commands must use.",
    "task",
    "ini `infratask_kube_context`",
)
ALLOW_DIRECT_APPLY = flag(
    "allow_direct_apply", "Lets commands apply to the cluster directly; say why.", "task"
)
ENVIRONMENT = text(
    "environment", "`production` (or `prod`) makes the safety checks stricter.", "task"
)
WRITABLE = names("writable", "Paths beside the work tree the sandboxed commands may write.", "task")
SECRETS = names("secrets", "Names of variables whose values are masked in all output.", "task")
REGISTRY_AUTH_FILE = text(
    "registry_auth_file",
    "A registry login file, relative to the task file, read first.",
    "task",
    "ini `infratask_registry_auth_file`",
)
REGISTRY = text(
    "registry",
    "The registry images are pushed to.",
    "build",
    "`env.REGISTRY_URL`, else `REGISTRY_URL`",
)
VERSION = text(
    "version", "The tag of images that name none.", "build", "`env.VERSION`, else `VERSION`"
)
IMAGES = items(
    "images",
    "list[str or {name, tag}]",
    "Images that must be in the registry after a push.",
    "build",
)
VALIDATE = names(
    "validate", "Directories rendered with kustomize after every criterion.", "deployment"
)
RECONCILE = names(
    "reconcile", "Flux objects reconciled and waited for (`kind/namespace/name`).", "deployment"
)
WAIT = duration(
    "wait",
    "Time reconciliation (deployment) or checks (verification) may take.",
    "deployment",
    "5m; verification 2m",
)
POLL_INTERVAL = duration(
    "poll_interval", "Pause between polls of a check or after a watch error.", "deployment", "2s"
)
SECURITY = mapping("security", "Security rule options: `{skip: [rule-id, …]}`.", "configuration")
CHECKS = items(
    "checks",
    "list[mapping or str]",
    "Health checks: `rollout`, `flux`, `pods`, `http`.",
    "verification",
)

_BACKLOG_ONLY = (
    ("assignee", "People assigned."),
    ("reporter", "Who reported the task."),
    ("created_date", "When the task was created."),
    ("completed_date", "When the task was finished (older Backlog.md versions wrote it)."),
    ("updated_date", "When the task last changed; a run moves it."),
    ("due_date", "When the task is due."),
    ("milestone", "The milestone."),
    ("references", "Links."),
    ("documentation", "Documents."),
    ("modified_files", "Files the task changes."),
    ("parent_task_id", "The parent task."),
    ("parent", "The parent task."),
    ("subtasks", "Subtasks."),
    ("ordinal", "Order on the board."),
    ("onStatusChange", "Backlog.md's status hook."),
    ("tags", "Tags."),
)
_DATES = {"created_date", "updated_date", "due_date", "completed_date"}

KEYS: tuple[Key[object], ...] = (
    ID,
    TITLE,
    STATUS,
    PRIORITY,
    LABELS,
    DEPENDENCIES,
    *(
        date(n, d, "backlog") if n in _DATES else anything(n, d, "backlog")
        for n, d in _BACKLOG_ONLY
    ),
    date("created", "When the task was created.", "task"),
    date("updated", "When the task last changed; a run moves it.", "task"),
    date("created_at", "When the task was created.", "task"),
    date("updated_at", "When the task last changed; a run moves it.", "task"),
    text("description", "What the task is for.", "task"),
    text("owner", "Who owns the task.", "task"),
    TYPE,
    WORKDIR,
    REPO,
    BRANCH,
    ENV,
    TIMEOUT,
    RETRIES,
    RETRY_DELAY,
    SYNTAX_CHECK,
    KUBE_CONTEXT,
    ALLOW_DIRECT_APPLY,
    ENVIRONMENT,
    WRITABLE,
    SECRETS,
    REGISTRY_AUTH_FILE,
    REGISTRY,
    VERSION,
    IMAGES,
    VALIDATE,
    RECONCILE,
    WAIT,
    POLL_INTERVAL,
    SECURITY,
    CHECKS,
)
KNOWN_KEYS = frozenset(key.name for key in KEYS)


def problem(meta: Mapping[str, object]) -> tuple[str, str] | None:
    """The first key whose value cannot be used, as (key, message): checked at
    collection so nothing runs on a value that would only fail (or be ignored) later."""
    for key in KEYS:
        message = key.problem(meta)
        if message is not None:
            return key.name, message
    return None


def _nullable(spec: Mapping[str, object]) -> dict[str, object]:
    """``spec`` that also admits null: an empty key (``timeout:``) is unset."""
    if not spec:
        return {}
    alternatives = spec.get("anyOf")
    if isinstance(alternatives, list):
        return {**spec, "anyOf": [*alternatives, {"type": "null"}]}
    kinds = spec["type"]
    return {**spec, "type": [*(kinds if isinstance(kinds, list) else [kinds]), "null"]}


def json_schema() -> dict[str, object]:
    """The frontmatter's JSON Schema (draft 2020-12), for editors and linters."""
    properties: dict[str, object] = {}
    for key in KEYS:
        properties[key.name] = {"description": key.doc, **_nullable(key.json)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://pypi.org/project/pytest-infratask/frontmatter.schema.json",
        "title": "pytest-infratask task file frontmatter",
        "type": "object",
        "properties": properties,
    }


def markdown_table() -> str:
    """The keys as Markdown reference tables, one per group."""
    parts = []
    for group in GROUPS:
        rows = [key for key in KEYS if key.group == group]
        lines = [f"### {_GROUP_TITLES[group]}", "", "| key | type | default | meaning |"]
        lines.append("| --- | --- | --- | --- |")
        lines += [f"| `{k.name}` | {k.kind} | {k.default} | {k.doc} |" for k in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


class InfrataskWarning(pytest.PytestWarning):
    """Base of this plugin's warnings:
    ``-W error::pytest_infratask.core.schema.InfrataskWarning`` makes them errors."""


class UnknownKeyWarning(InfrataskWarning):
    """A frontmatter key nothing reads, probably a misspelling."""


class UnknownLabelWarning(InfrataskWarning):
    """A label that chooses no task type but is one letter or two from one that does."""


class DetachedBlockWarning(InfrataskWarning):
    """A code block right after a criterion but not indented under it: the criterion
    has no command and stays manual."""


class NearMissCheckboxWarning(InfrataskWarning):
    """A line that looks like a criterion but is not one (``- []``, ``-[ ]``, or a
    checklist under another heading)."""


class NoCriteriaWarning(InfrataskWarning):
    """A file named on the command line that gives no item, and why."""


class DependencyTextWarning(InfrataskWarning):
    """Text under ``## Dependencies`` that is not a task id, so nothing waits for it."""


@dataclass(frozen=True)
class Notice:
    """Something a reader of the file should hear about, at its line; collection
    raises it as ``category`` located at the file and line."""

    line: int
    message: str
    category: type[InfrataskWarning]


def unknown_keys(keys: Iterable[str], extra: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(key, message) per unknown key, with the nearest known key as a suggestion."""
    known = KNOWN_KEYS | frozenset(extra)
    messages = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        messages.append((key, f"unknown frontmatter key {key!r}{hint}"))
    return messages


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2))
