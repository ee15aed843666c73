"""Finish: a task's own checks once its criteria are done; commit, push, reconcile."""
