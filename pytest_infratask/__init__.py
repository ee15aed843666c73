"""Run Markdown infrastructure task files with pytest.

The names below are the public API: what a team's ``conftest.py`` or plugin needs to
add task types (``Handler`` to subclass, ``TaskHandler`` the Protocol a handler hook's
result satisfies), safety checks (``SafetyContext``, ``Target``,
``CheckResult``), security rules (``Rule``), and to read results (``Outcome``,
``Status``, ``Contract``). Everything else may change between releases.

They are loaded on first use: pytest imports this package in every session of an
environment that has the plugin installed, task files or not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_infratask.clients.security import Rule
    from pytest_infratask.core.handler import Blocked, Published, Step, TaskHandler
    from pytest_infratask.core.outcome import Outcome, Status
    from pytest_infratask.core.results import CheckResult
    from pytest_infratask.core.shape import Contract, HandlerFields
    from pytest_infratask.core.task import Criterion, Task
    from pytest_infratask.guard.context import SafetyCheck, SafetyContext, Target
    from pytest_infratask.handlers.base import Handler

__version__ = "0.1.0"

_HOMES = {
    "Blocked": "pytest_infratask.core.handler",
    "CheckResult": "pytest_infratask.core.results",
    "Contract": "pytest_infratask.core.shape",
    "Criterion": "pytest_infratask.core.task",
    "Handler": "pytest_infratask.handlers.base",
    "HandlerFields": "pytest_infratask.core.shape",
    "Outcome": "pytest_infratask.core.outcome",
    "Published": "pytest_infratask.core.handler",
    "Rule": "pytest_infratask.clients.security",
    "SafetyCheck": "pytest_infratask.guard.context",
    "SafetyContext": "pytest_infratask.guard.context",
    "Status": "pytest_infratask.core.outcome",
    "Step": "pytest_infratask.core.handler",
    "Target": "pytest_infratask.guard.context",
    "Task": "pytest_infratask.core.task",
    "TaskHandler": "pytest_infratask.core.handler",
}

__all__ = [
    "Blocked",
    "CheckResult",
    "Contract",
    "Criterion",
    "Handler",
    "HandlerFields",
    "Outcome",
    "Published",
    "Rule",
    "SafetyCheck",
    "SafetyContext",
    "Status",
    "Step",
    "Target",
    "Task",
    "TaskHandler",
    "__version__",
]


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
