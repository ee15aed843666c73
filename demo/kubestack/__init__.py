"""The local cluster stack for the ``cluster`` tests: real Kubernetes and Flux processes."""

from .stack import Stack, StackError, missing_components

__all__ = ["Stack", "StackError", "missing_components"]
