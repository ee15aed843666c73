"""Built-in task handlers, one per task type."""

from .base import Handler, Step
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
    "BuildHandler",
    "ConfigurationHandler",
    "DeploymentHandler",
    "Handler",
    "Step",
    "VerificationHandler",
]
