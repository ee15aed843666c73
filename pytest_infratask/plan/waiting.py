"""Which tasks a task still waits for; under xdist, first wait for those running elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from pytest_infratask.core.outcome import Status
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.shape import Contract
from pytest_infratask.core.task import Task
from pytest_infratask.plan.dependencies import DependencyState, dependency_states
from pytest_infratask.workers import wait_for


class Dependencies:
    """A task's dependencies, checked once per task (the first criterion that runs)."""

    def __init__(
        self,
        task: Task,
        settings: Settings,
        config: pytest.Config,
        finished: Callable[[], Mapping[str, Contract]],
    ) -> None:
        self.task, self.settings, self.config = task, settings, config
        self._finished = finished
        self._unsatisfied: list[DependencyState] | None = None

    def unsatisfied(self) -> list[DependencyState]:
        if self._unsatisfied is None:
            running = [s.path for s in self._check() if s.path is not None and s.found]
            self._unsatisfied = wait_for(
                self.config,
                running,
                self._check,
                lambda pending: not pending,
                timeout=self.settings.dependency_wait,
            )
        return self._unsatisfied

    def _check(self) -> list[DependencyState]:
        states = dependency_states(self.task, self.settings.task_dirs)
        return [s for s in states if not s.satisfied and not self._done_here(s.path)]

    def _done_here(self, path: Path | None) -> bool:
        """A dependency that finished in this session without writing back (dry run,
        --infratask-no-writeback) counts as done when nothing of it failed."""
        if path is None or self.settings.writeback:
            return False
        contract = self._finished().get(str(path))
        if contract is None:
            return False
        counts = contract["criteria"]
        if counts["failed"]:
            return False
        ran = {r["number"] for r in contract["criteria_results"] if Status(r["status"]).satisfies}
        return bool(counts["remaining"] == 0 or len(ran) == counts["total"])
