"""Build tasks: build images, push them, and prove they are in the registry."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pytest_infratask.clients.registry import RegistryClient, RegistryError
from pytest_infratask.core.messages import Holdings
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.schema import IMAGES, REGISTRY, REGISTRY_AUTH_FILE, VERSION, Key
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.shape import HandlerFields, Image
from pytest_infratask.core.task import Criterion, Task
from pytest_infratask.handlers.base import Handler, Step

PUSHES = re.compile(r"\bpush\b|--push\b")


class BuildHandler(Handler):
    task_type = "build"

    def __init__(self, task: Task, settings: Settings, config: pytest.Config | None = None) -> None:
        super().__init__(task, settings, config)
        self.images: dict[str, Image] = {}

    def _setting(self, key: Key[str | None], env_key: str) -> str | None:
        """Frontmatter first, then the task's ``env``, then the run's environment."""
        return self.task.value(key) or self.task.env.get(env_key) or os.environ.get(env_key) or None

    @property
    def registry(self) -> str | None:
        return self._setting(REGISTRY, "REGISTRY_URL")

    @property
    def auth_file(self) -> Path | None:
        """The task's ``registry_auth_file`` (beside the task file), else the ini's."""
        own = self.task.value(REGISTRY_AUTH_FILE)
        if own:
            return (self.task.path.parent / own).expanduser()
        ini = str(self.config.getini("infratask_registry_auth_file") or "") if self.config else ""
        return (self.settings.rootdir / ini.strip()).expanduser() if ini.strip() else None

    @property
    def version(self) -> str | None:
        return self._setting(VERSION, "VERSION")

    def wanted(self) -> list[tuple[str, str]]:
        """``images:`` entries as (repository, tag); a tag of its own overrides ``version``."""
        result = []
        for entry in self.task.value(IMAGES):
            if isinstance(entry, dict):
                name, tag = str(entry.get("name", "")), entry.get("tag")
            else:
                name, _, tag = str(entry).partition(":")
            tag = str(tag) if tag else self.version
            if name and tag:
                result.append((name, tag))
        return result

    def environment(self) -> dict[str, str]:
        env = {}
        if self.registry:
            env["REGISTRY_URL"] = self.registry
        if self.version:
            env["VERSION"] = self.version
        return env

    def _unresolved(self) -> list[str]:
        """``images:`` entries that cannot be checked, said instead of passing unchecked."""
        declared = self.task.value(IMAGES)
        if declared and not self.registry:
            return [
                "images are declared but no registry is set: add `registry:` to the "
                "frontmatter or set REGISTRY_URL"
            ]
        named = {name for name, _ in self.wanted()}
        missing = [str(e) for e in declared if _name(e) not in named]
        return [f"image {m} has no tag and the task sets no `version:`" for m in missing]

    def _check(self, env: dict[str, str]) -> list[str]:

        unresolved = self._unresolved()
        if unresolved or not self.registry or not self.wanted():
            return unresolved
        try:
            client = RegistryClient(
                self.registry,
                insecure=self.settings.insecure_registries,
                env=env,
                auth_file=self.auth_file,
            )
        except RegistryError as exc:
            return [str(exc)]
        problems = []
        for name, tag in self.wanted():
            check = client.verify_image(name, tag)
            self.secrets.update(client.secret_values())  # for the run's masking
            if check.exists:
                self.images[f"{name}:{tag}"] = {
                    "name": name,
                    "tag": tag,
                    "registry": client.registry,
                    "digest": check.digest,
                }
            else:
                problems.append(check.error or f"image {name}:{tag} not found in {client.registry}")
        return problems

    def after_criterion(self, step: Step) -> list[str]:
        if not any(PUSHES.search(r.script) for r in step.results):
            return []
        problems = self._check(step.env)
        if not problems:
            step.notes.append(
                "verified in registry: "
                + ", ".join(f"{k}@{v['digest']}" for k, v in self.images.items())
            )
        return problems

    def verify(self, cwd: Path, env: dict[str, str]) -> list[CheckResult]:
        if not self.task.value(IMAGES):
            return []
        problems = self._check(env)
        if problems:
            return [
                CheckResult("registry", False, p, "push the image, then rerun") for p in problems
            ]
        return [CheckResult("registry", True, f"{len(self.images)} image(s) in {self.registry}")]

    def uses_cluster(self, criterion: Criterion | None) -> bool:
        return False

    def has_task_checks(self) -> bool:
        return bool(self.task.value(IMAGES))

    def report(self) -> HandlerFields:
        return {"images": list(self.images.values())} if self.images else {}

    def holdings(self) -> Holdings:
        return Holdings(images=tuple(f"{n}:{t}" for n, t in self.wanted()))


def _name(entry: object) -> str:
    if isinstance(entry, dict):
        return str(entry.get("name", ""))
    return str(entry).partition(":")[0]
