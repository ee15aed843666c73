"""Configuration tasks: edit manifests, render and inspect them, never apply directly."""

from __future__ import annotations

from .base import Handler


class ConfigurationHandler(Handler):
    task_type = "configuration"

    def next_steps(self, status: str) -> list[str]:
        if status in ("ready_for_verification", "committed"):
            return ["Flux applies the committed manifests; do not kubectl apply them"]
        return super().next_steps(status)
