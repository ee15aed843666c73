"""Collect a task file as a module and each criterion as a test item.

The task file is a ``pytest.Module`` so module-scoped fixtures give a natural
per-task scope; each criterion is a ``pytest.Function`` so fixtures,
``--setup-show``, ``-k``, ``--lf`` and reruns work exactly as for Python tests.
"""

from __future__ import annotations

import re
import signal
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy
import pytest

from pytest_infratask.compat import (
    FuncFixtureInfo,
    NodeKey,
    TerminalRepr,
    criterion_repr,
    fixture_info,
    last_failed_selection,
    node_key,
    register_marker,
    skip_here,
)
from pytest_infratask.core.handler import TaskHandler
from pytest_infratask.core.outcome import CriterionFailed, Outcome, Status
from pytest_infratask.core.schema import (
    InfrataskWarning,
    NoCriteriaWarning,
    UnknownKeyWarning,
    UnknownLabelWarning,
    unknown_keys,
)
from pytest_infratask.core.settings import SETTINGS_KEY
from pytest_infratask.core.task import Criterion, Task, slugify
from pytest_infratask.core.verdict import HELD_BACK, Verdict, VerdictFailed
from pytest_infratask.orchestrator.criterion import execute
from pytest_infratask.orchestrator.taskrun import TaskRun, verify
from pytest_infratask.plan.tasktype import label_hints
from pytest_infratask.read.statuses import keeps_status
from pytest_infratask.read.taskfile import TaskFileError, no_criteria_reason, read_task
from pytest_infratask.record import writeback
from pytest_infratask.util.signals import defer_current

TASK_TYPE_KEY = pytest.StashKey[str]()
HANDLER_KEY = pytest.StashKey[TaskHandler]()
"""The task's one handler in this process, built at collection; the fixture hands it on."""
TASK_IDS_KEY = pytest.StashKey[dict[str, tuple[str, Path]]]()
RUN_KEY = pytest.StashKey[TaskRun]()
"""The task's run on its module node, for reports of its ``::verify`` item."""
AHEAD_KEY = pytest.StashKey[bool]()
"""On a task's module: another task's items follow in this process, so its sandbox
starts the next one's ahead (``run.sandbox.Sandbox``)."""
REQUEUED_KEY = pytest.StashKey[set[NodeKey]]()
"""``::verify`` items added to pytest's last-failed set so ``--lf`` keeps them."""


def run_criterion(request: pytest.FixtureRequest, infratask_run: TaskRun) -> None:
    """Execute one acceptance criterion of a task file."""
    item = request.node
    assert isinstance(item, CriterionItem)
    outcome = execute(infratask_run, item.criterion)
    item.outcome = outcome
    if outcome.status is Status.PASSED:
        # what -rP shows of a passed criterion: where it ran and its (masked) output
        item.add_report_section("call", "infratask", passed_text(outcome))
        return
    if outcome.status.failed:
        raise CriterionFailed(outcome)
    if outcome.held_back:
        item.user_properties.append((HELD_BACK, outcome.message))
    skip_here(outcome.message)


def run_verify(request: pytest.FixtureRequest, infratask_run: TaskRun) -> None:
    """Everything a task does after its criteria: checks, commit, push, reconcile."""
    item = request.node
    assert isinstance(item, VerifyItem)
    verdict = verify(infratask_run)
    item.verdict = verdict
    item.user_properties.extend(verdict.properties)
    if verdict.held_back:
        item.user_properties.append((HELD_BACK, verdict.message))
    if verdict.failed:
        raise VerdictFailed(verdict)
    if verdict.skipped:
        skip_here(verdict.message)


class TaskModule(pytest.Module):
    """A Markdown task file."""

    task: Task

    def _getobj(self) -> types.ModuleType:
        return types.ModuleType(f"infratask:{self.path.name}")

    def _parse(self) -> Task:

        try:
            if self.config.stash[SETTINGS_KEY].writeback:
                writeback.settle(self.path)  # a killed run's tick, finished before reading
            return read_task(self.path)
        except writeback.WriteBackError as exc:
            raise self.CollectError(f"{self.path}: {exc}") from None
        except TaskFileError as exc:
            raise self.CollectError(f"{exc.path}:{exc.line}: {exc.message}") from None
        except OSError as exc:
            raise self.CollectError(f"{self.path}: cannot read: {exc.strerror}") from None

    def collect(self) -> list[pytest.Item | pytest.Collector]:
        self.task = self._parse()
        config = self.config
        self._check_keys()
        self._check_unique()
        for notice in self.task.notices:
            self.warn_at(notice.line, notice.category(notice.message))
        task_type = config.hook.pytest_infratask_task_type(task=self.task, config=config)
        self.stash[TASK_TYPE_KEY] = task_type
        for hint in label_hints(self.task, task_type):
            self.warn_at(self.task.key_lines.get("labels", 1), UnknownLabelWarning(hint))
        if HANDLER_KEY not in self.stash:  # a directory collected again keeps its node
            self.stash[HANDLER_KEY] = self._make_handler(task_type)
        markers = [task_type, *(marker_name(label) for label in self.task.labels)]
        for name in dict.fromkeys(markers):
            if name:
                register_marker(config, name, "infratask task type or label")
                self.add_marker(name)  # items inherit it, for -m and for reports
        self._no_reruns()
        items: list[pytest.Item | pytest.Collector] = []
        shared: FuncFixtureInfo | None = None
        for criterion in self.task.criteria:
            item = CriterionItem.from_parent(
                self,
                name=criterion.name,
                callobj=run_criterion,
                criterion=criterion,
                fixtureinfo=shared,
            )
            shared = shared or fixture_info(item)
            item.user_properties.extend(
                [
                    ("task_id", self.task.id),
                    ("criterion", f"#{criterion.number} {criterion.text}"),
                    ("task_type", task_type),
                ]
            )
            items.append(item)
        if self._has_task_work(task_type):
            verify = VerifyItem.from_parent(
                self, name=VERIFY_NAME, callobj=run_verify, fixtureinfo=shared
            )
            verify.user_properties.extend([("task_id", self.task.id), ("task_type", task_type)])
            items.append(verify)
            requeue_verify(config, items[:-1], verify)
        if not items and self.session.isinitpath(self.path):
            line, why = no_criteria_reason(self.path)
            self.warn_at(line, NoCriteriaWarning(why))
        return items

    def _no_reruns(self) -> None:
        """Keep pytest-rerunfailures off this file's items (they inherit the mark):
        infratask retries criteria itself, knowing which failures are deterministic,
        and a rerun on top would multiply the attempts; a rerun ``::verify`` would
        verify, commit and push again, and its second pass would hide the first
        one's failure."""
        if self.config.pluginmanager.hasplugin("rerunfailures"):
            self.add_marker(pytest.mark.flaky(reruns=0))

    def warn_at(self, line: int, warning: InfrataskWarning) -> None:
        """A warning located at a line of this file (``-W error::<class>`` makes it
        a collection error)."""
        warnings.warn_explicit(warning, None, str(self.path), line)

    def _has_task_work(self, task_type: str) -> bool:
        """Whether the task does anything after its criteria, which ``::verify`` reports."""
        settings = self.config.stash[SETTINGS_KEY]
        if settings.commit or settings.push or keeps_status(self.task, settings):
            return True  # a commit, a push, the done status: the task's end writes them
        if any(block.is_command for block in self.task.verification):
            return True
        return self.handler.has_task_checks()

    def _make_handler(self, task_type: str) -> TaskHandler:
        hook = self.config.hook.pytest_infratask_handler
        kwargs: dict[str, object] = {
            "task_type": task_type,
            "task": self.task,
            "config": self.config,
        }
        handler = hook(**kwargs)
        if not isinstance(handler, TaskHandler):
            raise self.CollectError(f"{self.path}: {not_a_handler(hook, kwargs, handler)}")
        return handler

    @property
    def task_type(self) -> str:
        return self.stash[TASK_TYPE_KEY]

    @property
    def handler(self) -> TaskHandler:
        return self.stash[HANDLER_KEY]

    def _check_keys(self) -> None:

        settings = self.config.stash[SETTINGS_KEY]
        # the built-in keys and ini infratask_known_keys come from the built-in plugin
        known = [
            k
            for keys in self.config.hook.pytest_infratask_frontmatter_keys(config=self.config)
            for k in keys
        ]
        for key, message in unknown_keys(self.task.meta, known):
            line = self.task.key_lines.get(key, 1)
            if settings.strict_keys:
                raise self.CollectError(
                    f"{self.path}:{line}: {message} (infratask_strict_keys is on; list keys "
                    "of your own in ini infratask_known_keys)"
                )
            self.warn_at(line, UnknownKeyWarning(message))

    def _check_unique(self) -> None:
        """Two task files with one id (or ids differing only in case, which name one
        report file on a case-insensitive disk) would blur ordering and reports."""
        seen = self.config.stash.setdefault(TASK_IDS_KEY, {})
        key = self.task.id.casefold()
        first = seen.setdefault(key, (self.task.id, self.path))
        if first[1] != self.path:
            raise self.CollectError(
                f"{self.path}: task id {self.task.id!r} is already used by {first[1]}"
                + (
                    f" (as {first[0]!r}; ids differing only in case clash)"
                    if first[0] != self.task.id
                    else ""
                )
                + "; give one of them another id, or move the old copy to Backlog.md's "
                "archive/ (not collected from a directory)"
            )


def not_a_handler(hook: pluggy.HookCaller, kwargs: dict[str, object], result: object) -> str:
    """Why a ``pytest_infratask_handler`` result is refused, naming the implementation
    that returned it (asked again, in pluggy's call order, on this error path only)."""
    members = [name for name in vars(TaskHandler) if not name.startswith("_")]
    missing = [name for name in members if not hasattr(result, name)]
    where: object = "a pytest_infratask_handler implementation"
    for impl in reversed(hook.get_hookimpls()):
        if impl.function(**{a: kwargs[a] for a in impl.argnames}) is not None:
            plugin = impl.plugin
            where = plugin.__file__ if isinstance(plugin, types.ModuleType) else impl.plugin_name
            break
    return (
        f"pytest_infratask_handler in {where} returned {type(result).__name__} for task type "
        f"{kwargs['task_type']!r}, which is not a handler "
        f"(missing: {', '.join(missing) or 'none'}); "
        "return an instance of a pytest_infratask.Handler subclass, e.g. "
        "MyHandler.create(task, config), or None to leave the type to the next implementation"
    )


def requeue_verify(
    config: pytest.Config, criteria: Sequence[pytest.Item | pytest.Collector], verify: pytest.Item
) -> None:
    """``--lf`` reruns a task's ``::verify`` whenever it reruns one of the task's
    criteria: the task's checks, commit and push belong to that rerun. A verify item
    that passed last time, or was not collected then (no ``--infratask-push`` in the
    failed run), is not in pytest's last-failed set, and pytest would drop it from
    the task file at collection and again among the items. So it joins that set
    here, while the file is collected; deselected later (``-k``), it leaves again
    (``forget_requeued``)."""
    lastfailed = last_failed_selection(config)
    key = node_key(verify)
    if lastfailed is None or key in lastfailed:
        return
    if any(node_key(c) in lastfailed for c in criteria):
        lastfailed[key] = True
        config.stash.setdefault(REQUEUED_KEY, set()).add(key)


def forget_requeued(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A requeued ``::verify`` that is deselected after all leaves the last-failed set
    as it was: it did not fail, and this run did not run it."""
    added = config.stash.get(REQUEUED_KEY, None)
    lastfailed = last_failed_selection(config)
    if not added or lastfailed is None:
        return
    for item in items:
        key = node_key(item)
        if key in added:
            added.discard(key)
            lastfailed.pop(key, None)


def task_modules(items: list[pytest.Item], ahead: bool) -> list[TaskModule]:
    """The task modules ``items`` run, in order; with ``ahead``, each but the last is
    marked as having another task after it (``AHEAD_KEY``)."""
    modules = list(dict.fromkeys(item.task_module for item in items if isinstance(item, _TaskItem)))
    for module in modules[:-1] if ahead else ():
        module.stash[AHEAD_KEY] = True
    return modules


def marker_name(label: str) -> str:
    """The pytest marker a label becomes (``-m``): one spelling, for items and ordering."""
    return re.sub(r"\W", "_", slugify(label)).strip("_")


class _TaskItem(pytest.Function):
    """An item of a task file, which its module holds."""

    def setup(self) -> None:
        # pytest-timeout's expiry, raised in the item's setup, call or teardown, must
        # not cut a lock's taking in two either; its timer is set before setup.
        defer_current(signal.SIGALRM)
        super().setup()

    @property
    def task_module(self) -> TaskModule:
        assert isinstance(self.parent, TaskModule)
        return self.parent


class CriterionItem(_TaskItem):
    """One acceptance criterion."""

    def __init__(self, *, criterion: Criterion, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.criterion = criterion
        self.outcome: Outcome | None = None
        self.extra_keyword_matches.update(criterion_words(criterion.text))

    def reportinfo(self) -> tuple[Path, int, str]:
        task = self.task_module.task
        return (
            self.path,
            self.criterion.line - 1,
            f"{task.id} #{self.criterion.number}: {self.criterion.text}",
        )

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CriterionFailed):
            outcome = excinfo.value.outcome
            return criterion_repr(
                failure_text(outcome), str(self.path), self.criterion.line, outcome.message
            )
        return super().repr_failure(excinfo)


def criterion_words(text: str) -> set[str]:
    """Every word of a criterion's text, for ``-k``: pytest matches a ``-k`` word
    against the item's names and keywords, and names are short ASCII slugs."""
    words = re.findall(r"\w+", text)
    return {form for word in words for form in (word.lower(), word.casefold())}


VERIFY_NAME = "verify"


class VerifyItem(_TaskItem):
    """The task's own outcome: collected after its criteria, it fails whenever the
    task's contract says ``success: false`` because of what happens after them."""

    verdict: Verdict | None = None

    def reportinfo(self) -> tuple[Path, int, str]:
        task = self.task_module.task
        return (self.path, 0, f"{task.id} verify: {task.title}")

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, VerdictFailed):
            verdict = excinfo.value.verdict
            return criterion_repr(verdict.text, str(self.path), 1, verdict.message)
        return super().repr_failure(excinfo)


def passed_text(outcome: Outcome) -> str:
    lines = [f"directory: {outcome.cwd}" + (f" (repo {outcome.repo})" if outcome.repo else "")]
    if outcome.output.strip():
        lines.append("output (tail):")
        lines.extend("    " + line for line in outcome.output.splitlines())
    lines.extend(f"note: {note}" for note in outcome.notes)
    return "\n".join(lines)


def failure_text(outcome: Outcome) -> str:
    lines = [outcome.message, f"criterion: #{outcome.number} {outcome.text}"]
    if outcome.cwd:
        lines.append(
            f"directory: {outcome.cwd}" + (f" (repo {outcome.repo})" if outcome.repo else "")
        )
    if outcome.command:
        lines.append("command:")
        lines.extend("    " + line for line in outcome.command.rstrip().splitlines())
    if outcome.exit_code is not None:
        lines.append(f"exit code: {outcome.exit_code} (attempts: {outcome.attempts})")
    if outcome.output.strip():
        lines.append("stdout (tail):")
        lines.extend("    " + line for line in outcome.output.splitlines())
    if outcome.error_output.strip() and outcome.error_output.strip() not in outcome.message:
        lines.append("stderr (tail):")
        lines.extend("    " + line for line in outcome.error_output.splitlines())
    if outcome.notes:
        lines.append("notes:")
        lines.extend(f"  - {note}" for note in outcome.notes)
    if outcome.suggestions:
        lines.append("suggestions:")
        lines.extend(f"  - {s}" for s in outcome.suggestions)
    return "\n".join(lines)
