"""The run's settings as one frozen value: what every stage reads instead of the
pytest config, so a stage can be called (and tested) without a pytest session."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

DEFAULT_FILES = ("TASK-*.md", "task-*.md")
DEFAULT_BRANCHES = ("main", "master")
_NOT_PROD = r"(?<![a-z0-9])prod(uction)?\d*(?![a-z0-9])"
DEFAULT_PROTECTED = (
    # a database client and "prod" anywhere on the line: PGHOST=prod-db psql counts too
    r"(?i)^(?=[^\n]*\b(psql|mysql|mariadb|mongo|mongosh|redis-cli|pg_dump|pg_dumpall|pg_restore"
    r"|sqlcmd|cqlsh)\b)[^\n]*" + _NOT_PROD,
    r"(?i)(--context[= ]|--kube-context[= ]|context:)\S*" + _NOT_PROD,
    r"(?i)^(?=[^\n]*\b(ssh|scp|rsync)\b)[^\n]*" + _NOT_PROD,
)


@dataclass(frozen=True)
class Settings:
    rootdir: Path
    files: tuple[str, ...]
    dry_run: bool
    writeback: bool
    retries: int
    """``--infratask-retries``, else ini ``infratask_retries``."""
    retry_delay: float
    timeout: float | None
    dependency_wait: float
    report_dir: Path | None
    commit: bool
    push: bool
    skip_verification: bool
    allow_protected: bool
    task_ids: tuple[str, ...]
    repos: dict[str, Path]
    roots: tuple[Path, ...]
    branches: tuple[str, ...]
    kube_context: str | None
    require_kube_context: bool
    protected: tuple[str, ...]
    allow_dirty: bool
    task_dirs: tuple[Path, ...]
    insecure_registries: tuple[str, ...]
    lock_wait: float = 3600.0
    overlay: bool = True
    """Commands in a git repository run in an overlay of its work tree."""
    secret_vars: tuple[str, ...] = ()
    paths: tuple[Path, ...] = ()
    named: tuple[Path, ...] = ()
    strict_keys: bool = False
    known_keys: tuple[str, ...] = ()
    ini_dir: Path | None = None
    own_outputs: tuple[Path, ...] = ()
    """Where the plugin and pytest write reports: never a task's change."""
    require_sandbox: bool = False
    bwrap: str = "bwrap"
    writable: tuple[Path, ...] = ()
    """Paths every task's commands may write besides their work tree."""
    status: bool = False
    """``--infratask-status`` (or ini ``infratask_status``): keep Backlog.md's ``status``
    in step with the run."""
    workdir: Path | None = None
    """ini ``infratask_workdir``: where commands run when the frontmatter names no
    ``workdir`` or ``repo`` (None: the task file's own folder)."""
    retries_option: int | None = None
    """``--infratask-retries`` when given: it beats a task type's own default."""

    @cached_property
    def opt_in_roots(self) -> frozenset[str]:
        """``named`` and ``paths`` as strings, for a look-up per directory (not a scan)."""
        return frozenset(str(p) for p in (*self.named, *self.paths))


SETTINGS_KEY = pytest.StashKey[Settings]()
"""Where the run keeps its ``Settings`` on the pytest config."""
