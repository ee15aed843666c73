"""The rules one task runs under, and what a check looks at."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.task import Criterion, Task
from pytest_infratask.util.gitdir import git_head


@dataclass(frozen=True)
class Target:
    """What is about to run: the criterion (None for the Verification section) and where."""

    task: Task
    task_type: str
    criterion: Criterion | None
    cwd: Path
    repo: str | None
    scripts: tuple[str, ...]
    uses_cluster: bool = False
    validate_files: tuple[Path, ...] = ()
    env: Mapping[str, str] | None = None


SafetyCheck = Callable[[Target, "SafetyContext"], CheckResult]


@dataclass
class SafetyContext:
    """The rules one task runs under; the ``infratask_safety`` fixture."""

    roots: tuple[Path, ...]
    branches: tuple[str, ...]
    kube_context: str | None
    require_kube_context: bool
    protected: tuple[str, ...]
    allow_protected: bool
    allow_direct_apply: bool
    production: bool
    checks: list[SafetyCheck] = field(default_factory=list)
    roots_from: str = "ini infratask_roots"
    # Whether the task's blocks were parsed together yet (``check_syntax``).
    syntax_primed: bool = field(default=False, repr=False, compare=False)

    def run(self, target: Target) -> list[CheckResult]:
        return [check(target, self) for check in self.checks]


def default_roots(
    task_path: Path, configured: tuple[Path, ...], ini_dir: Path | None
) -> tuple[tuple[Path, ...], str]:
    """The allowed roots and where they come from: ini ``infratask_roots`` (relative to
    the ini file), else the task file's git repository, else the ini file's directory
    when the task lies below it, else the task file's directory. Never the directory
    pytest happened to be started from."""
    where = f" in {ini_dir}" if ini_dir else ""
    if configured:
        return configured, f"ini infratask_roots{where}"
    folder = task_path.parent.resolve()
    head = git_head(folder)
    if head is not None:
        return (head[0],), "the task file's git repository"
    if ini_dir is not None and (folder == ini_dir or ini_dir in folder.parents):
        return (ini_dir,), "the ini file's directory"
    return (folder,), "the task file's directory (not in a git repository)"
