"""Built-in task handlers, one per task type."""

from .base import Blocked, Handler, Step
from .build import BuildHandler
from .configuration import ConfigurationHandler
from .deployment import DeploymentHandler
from .verification import VerificationHandler

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
