"""Built-in task handlers, one per task type."""

from pytest_infratask.handlers.base import Blocked, Handler, Step
from pytest_infratask.handlers.build import BuildHandler
from pytest_infratask.handlers.configuration import ConfigurationHandler
from pytest_infratask.handlers.deployment import DeploymentHandler
from pytest_infratask.handlers.verification import VerificationHandler

BUILTIN_HANDLERS: dict[str, type[Handler]] = {
    "generic": Handler,
    "build": BuildHandler,
    "deployment": DeploymentHandler,
    "configuration": ConfigurationHandler,
    "verification": VerificationHandler,
}

__all__ = [
    "BUILTIN_HANDLERS",
    "Blocked",
    "BuildHandler",
    "ConfigurationHandler",
    "DeploymentHandler",
    "Handler",
    "Step",
    "VerificationHandler",
]
