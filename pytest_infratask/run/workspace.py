"""Where a task's commands run and with what: directory, environment, secrets, cluster,
sandbox.

Fixed by the frontmatter, the ini file and the handler for the whole task, so every
criterion (and the Verification section) runs in the same place with the same rules.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pytest_infratask.clients.kubeconfig import PrivateKube
from pytest_infratask.core.handler import TaskHandler
from pytest_infratask.core.masking import Environment, Masker
from pytest_infratask.core.schema import REPO, SECRETS, SYNTAX_CHECK, WRITABLE
from pytest_infratask.core.settings import Settings
from pytest_infratask.core.task import CodeBlock, Criterion, Task
from pytest_infratask.guard.context import SafetyContext, Target
from pytest_infratask.guard.shell import reaches_cluster
from pytest_infratask.run.pathenv import with_scripts_dir
from pytest_infratask.run.sandbox import (
    SANDBOX_KUBECONFIG,
    CommandEnv,
    Sandbox,
    mounts,
    sandbox_for,
    unavailable,
)


@dataclass
class Location:
    cwd: Path
    repo: str | None
    problem: str = ""


class Workspace:
    """The task's directory, environment and secrets, its private kubeconfig and the
    sandbox its commands run in. ``notice`` tells the person watching (once per run)
    that commands are not sandboxed."""

    def __init__(
        self,
        task: Task,
        task_type: str,
        handler: TaskHandler,
        safety: SafetyContext,
        settings: Settings,
        notice: Callable[[str], None] | None = None,
        ahead: bool = False,
    ) -> None:
        """``ahead``: another task follows in this process (``run.sandbox.Sandbox``)."""
        self.task, self.task_type, self.handler = task, task_type, handler
        self.ahead = ahead
        self.safety, self.settings = safety, settings
        # The handler's values win: it checks what it exports (e.g. REGISTRY_URL).
        self.base_env = Environment(
            {**with_scripts_dir(os.environ), **task.env, **handler.environment()}
        )
        names = (*settings.secret_vars, *task.value(SECRETS))
        self.mask = Masker.for_run(
            self.base_env,
            names,
            auth_file=handler.auth_file,
            task_files=not settings.dry_run,
        )
        self._kube: PrivateKube | None = None
        self._sandbox: Sandbox | None = None
        self._unsandboxed = False
        self.notice = notice

    @cached_property
    def location(self) -> Location:
        """Where commands run: fixed by the frontmatter and ini for the whole task."""
        base = self.task.path.parent
        repo = self.task.value(REPO)
        if repo:
            known = self.settings.repos.get(str(repo))
            if known is None:
                return Location(
                    base,
                    str(repo),
                    f"unknown repo {repo!r}: add it to ini infratask_repos as '{repo} = <path>'",
                )
            base = known
        workdir = self.task.workdir
        default = None if repo else self.settings.workdir  # ini infratask_workdir
        cwd = (base / workdir) if workdir else (default or base)
        return Location(Path(os.path.normpath(cwd.absolute())), str(repo) if repo else None)

    @property
    def kube(self) -> PrivateKube:
        if self._kube is None:
            read_only = not self.safety.allow_direct_apply
            self._kube = PrivateKube(self.safety.kube_context, read_only, self.base_env)
        return self._kube

    def cluster_env(self) -> dict[str, str]:
        """The plugin's own environment for cluster calls: the pinned context only
        (none at all when the task pins none), never the user's kubeconfig."""
        return Environment({**self.base_env, "KUBECONFIG": self.kube.direct()})

    def command_env(self) -> CommandEnv:
        """What task commands run with, and where: their sandbox, with a kubeconfig like
        ``cluster_env``'s, through the read-only proxy unless the task sets
        ``allow_direct_apply``. Raises ``KubeconfigError``."""
        content = self.kube.for_commands()
        if self.kube.token:
            self.mask.add([self.kube.token])
        sandbox = self.sandbox(content)
        if sandbox is None:
            return CommandEnv({**self.base_env, "KUBECONFIG": self.kube.command_file()})
        env = CommandEnv({**self.base_env, "KUBECONFIG": SANDBOX_KUBECONFIG})
        env.sandbox = sandbox
        return env

    def sandbox(self, kubeconfig: bytes) -> Sandbox | None:
        """The task's sandbox; None (said once per run) where none can be made."""
        if self._sandbox is None and not self._unsandboxed:
            reason = unavailable(self.settings.bwrap)
            if reason is not None:
                self._unsandboxed = True
                if self.notice is not None:
                    self.notice(f"infratask: commands are not sandboxed: {reason}")
                return None
            own = self.handler.auth_file
            declared = self.task.value(WRITABLE)
            self._sandbox = sandbox_for(
                self.settings.bwrap,
                mounts(
                    self.location.cwd,
                    self.safety.roots,
                    [
                        *self.settings.writable,
                        *(self.task.path.parent / Path(p).expanduser() for p in declared),
                    ],
                    self.base_env,
                    [own] if own is not None else [],
                ),
                kubeconfig,
                self.ahead,
            )
        return self._sandbox

    def target(self, criterion: Criterion | None, blocks: tuple[CodeBlock, ...]) -> Target:
        where = self.location
        scripts = tuple(b.script for b in blocks if b.is_command)
        validate = tuple(Path(p) for p in self.task.value(SYNTAX_CHECK))
        return Target(
            task=self.task,
            task_type=self.task_type,
            criterion=criterion,
            cwd=where.cwd,
            repo=where.repo,
            scripts=scripts,
            uses_cluster=self.handler.uses_cluster(criterion) or reaches_cluster(scripts),
            validate_files=validate,
            env=self.base_env,
        )

    def close(self, wait: bool = True) -> None:
        """End what the task started (``wait``: and wait for its sandbox to end)."""
        if self._kube is not None:
            self._kube.close()
        if self._sandbox is not None:
            self._sandbox.close(wait)
            self._sandbox = None
