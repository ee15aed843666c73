"""The output contract's shape as Python types, field for field the shipped JSON Schema
(``pytest_infratask/contract.schema.json``); a test holds the two together.

Success fields are always present; the error fields are added beside them when a
criterion failed or was blocked or a check failed. Handler fields (``HandlerFields``:
``images``, ``reconciled``, ``security_findings``, ``health_checks``) appear for their
task types.
"""

from typing import Literal, NotRequired, TypedDict

from pytest_infratask.core.verdict import VerdictStatus

ContractStatus = Literal[
    "ready_for_verification", "not_started", "partially_complete", "blocked", "committed", "dry_run"
]
CriterionStatus = Literal["passed", "failed", "blocked", "skipped", "done", "manual", "dry_run"]


class Counts(TypedDict):
    total: int
    completed: int
    failed: int
    remaining: int


class CompletedCriterion(TypedDict):
    criterion: str
    number: int
    command: str
    output: str
    notes: str


class RemainingCriterion(TypedDict):
    criterion: str
    number: int
    reason: str


class Changes(TypedDict):
    files_modified: list[str]
    commands_executed: list[str]


class RolledBack(TypedDict):
    """An attempt put back; ``attempt`` 0 is one of an earlier run that was interrupted."""

    attempt: int
    reason: str
    files: list[str]
    diff: str


class CriterionResult(TypedDict):
    number: int
    criterion: str
    status: CriterionStatus
    message: str
    cwd: str
    repo: str
    attempts: int
    files: list[str]
    commands: list[str]
    rolled_back: NotRequired[list[RolledBack]]


class Check(TypedDict):
    check: str
    ok: bool
    message: str


class Image(TypedDict):
    name: str
    tag: str
    registry: str
    digest: str | None


class Reconciled(TypedDict):
    object: str
    chart_version: NotRequired[str | None]
    """The chart version the task asks of a HelmRelease (None for other kinds)."""
    revision: NotRequired[str | None]
    """The revision Flux must apply, e.g. ``main@sha1:<sha>``; None when unchecked."""
    ok: bool
    message: str
    requested_at: NotRequired[str | None]
    applied_revision: NotRequired[str | None]
    """The revision the object reports it applied."""


Severity = Literal["high", "medium", "low"]


class SecurityFinding(TypedDict):
    rule_id: str
    severity: Severity
    kind: str
    namespace: str
    name: str
    file: str
    message: str
    path: str
    line: int
    field: str


class Pushed(TypedDict):
    remote: str
    branch: str
    commit: str
    earlier: NotRequired[bool]


class Revision(TypedDict):
    expected: str | None
    remote: str
    committed: bool
    pushed: bool
    problem: NotRequired[str]


class VerdictField(TypedDict):
    status: VerdictStatus
    message: str


class Details(TypedDict):
    criterion: str
    command: str
    error_output: str


class HandlerFields(TypedDict, total=False):
    """What a handler adds to its task's contract (``report()``), each for its type."""

    images: list[Image]
    reconciled: list[Reconciled]
    security_findings: list[SecurityFinding]
    health_checks: list[Check]


class Contract(HandlerFields):
    """One task's outcome, as the per-task JSON file, json-report and summaries carry it."""

    schemaVersion: Literal["1.0"]
    success: bool
    task_id: str
    task_title: str
    task_type: str
    task_path: str
    handler: str
    criteria: Counts
    completed_criteria: list[CompletedCriterion]
    remaining_criteria: list[RemainingCriterion]
    changes: Changes
    progress_log_entry: str
    progress_log_entries: list[str]
    status: ContractStatus
    next_steps: str
    criteria_results: list[CriterionResult]
    verification: list[Check]
    dry_run: bool
    git_warnings: NotRequired[list[str]]
    commits: NotRequired[dict[str, str]]
    pushed: NotRequired[dict[str, Pushed]]
    revision: NotRequired[Revision]
    verdict: NotRequired[VerdictField]
    error: NotRequired[str]
    message: NotRequired[str]
    details: NotRequired[Details]
    completed_before_failure: NotRequired[list[str]]
    recovery_suggestions: NotRequired[list[str]]
