"""Configuration tasks: edit manifests, render and inspect them, never apply directly."""

from __future__ import annotations

from pytest_infratask.handlers.manifests import ManifestHandler


class ConfigurationHandler(ManifestHandler):
    task_type = "configuration"
    security = True

    def next_steps(self, status: str) -> list[str]:
        if status in ("ready_for_verification", "committed"):
            return ["Flux applies the committed manifests; do not kubectl apply them"]
        return super().next_steps(status)
