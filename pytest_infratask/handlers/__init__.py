"""Built-in task handlers, one per task type.

A handler's module (its clients: registries, manifests, the cluster) is imported when
a task of its type is run, not when the plugin starts: a run of generic tasks never
loads them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pytest_infratask.handlers.base import Blocked, Handler, Step

if TYPE_CHECKING:
    from pytest_infratask.handlers.build import BuildHandler
    from pytest_infratask.handlers.configuration import ConfigurationHandler
    from pytest_infratask.handlers.deployment import DeploymentHandler
    from pytest_infratask.handlers.verification import VerificationHandler

_CLASSES = {
    "BuildHandler": "build",
    "ConfigurationHandler": "configuration",
    "DeploymentHandler": "deployment",
    "VerificationHandler": "verification",
}
_BY_TYPE = {module: name for name, module in _CLASSES.items()}


def builtin_handler(task_type: str) -> type[Handler]:
    """The built-in handler of ``task_type``; the generic one for any other type."""
    name = _BY_TYPE.get(task_type)
    return Handler if name is None else __getattr__(name)


def __getattr__(name: str) -> type[Handler]:
    module = _CLASSES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    found: type[Handler] = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    return found


__all__ = [
    "Blocked",
    "BuildHandler",
    "ConfigurationHandler",
    "DeploymentHandler",
    "Handler",
    "Step",
    "VerificationHandler",
    "builtin_handler",
]
