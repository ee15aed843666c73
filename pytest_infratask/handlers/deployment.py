"""Deployment tasks: edit HelmReleases in git, validate, let Flux reconcile."""

from __future__ import annotations

from .validation import ManifestHandler


class DeploymentHandler(ManifestHandler):
    task_type = "deployment"

    def next_steps(self, status: str) -> list[str]:
        if status == "ready_for_verification":
            return ["commit after verification passes; Flux reconciles what is in git"]
        if status == "committed":
            return ["watch Flux reconcile the release (flux get helmreleases -A)"]
        return super().next_steps(status)
