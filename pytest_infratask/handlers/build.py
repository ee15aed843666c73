"""Build tasks: build images and push them to a registry."""

from __future__ import annotations

from .base import Handler


class BuildHandler(Handler):
    task_type = "build"

    def _setting(self, key: str, env_key: str) -> str | None:
        value = self.task.meta.get(key) or self.task.env.get(env_key)
        return str(value) if value else None

    @property
    def registry(self) -> str | None:
        return self._setting("registry", "REGISTRY_URL")

    @property
    def version(self) -> str | None:
        return self._setting("version", "VERSION")

    def environment(self) -> dict[str, str]:
        env = {}
        if self.registry:
            env["REGISTRY_URL"] = self.registry
        if self.version:
            env["VERSION"] = self.version
        return env

    def next_steps(self, status: str) -> list[str]:
        if status in ("ready_for_verification", "committed"):
            images = ", ".join(str(i) for i in self.task.meta.get("images") or []) or "the images"
            return [f"deploy {images} {self.version or ''}".rstrip() + " through a deployment task"]
        return super().next_steps(status)
