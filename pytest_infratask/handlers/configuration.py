"""Configuration tasks: edit manifests, render and inspect them, never apply directly."""

from __future__ import annotations

from pytest_infratask.handlers.manifests import ManifestHandler


class ConfigurationHandler(ManifestHandler):
    task_type = "configuration"
    security = True
