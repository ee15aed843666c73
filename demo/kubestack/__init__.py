"""Real Kubernetes and Flux processes on 127.0.0.1: the ``cluster`` tests, ``make demo-cluster``."""

from .stack import Stack, StackError, missing_components

__all__ = ["Stack", "StackError", "missing_components"]
