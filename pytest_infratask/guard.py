"""Safety checks that run before any command of a criterion.

Each check looks at a ``Target`` (what is about to run, and where) and returns
a ``CheckResult``; the first failure blocks the criterion before anything ran.
Teams add their own through the ``pytest_infratask_safety_checks`` hook.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .model import Criterion, Task


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    message: str = ""
    remediation: str = ""

    def describe(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'BLOCKED'}" + (
            f" ({self.message})" if self.message else ""
        )


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

    def run(self, target: Target) -> list[CheckResult]:
        return [check(target, self) for check in self.checks]


def git_head(path: Path) -> tuple[Path, str | None] | None:
    """Repository root and branch (None when detached), read without spawning git."""
    for folder in [path, *path.parents]:
        dot_git = folder / ".git"
        if dot_git.is_dir():
            git_dir = dot_git
        elif dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                continue
            git_dir = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        try:
            head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError:
            return folder, None
        return folder, head.removeprefix("ref: refs/heads/") if head.startswith("ref:") else None
    return None


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


def check_directory(target: Target, safety: SafetyContext) -> CheckResult:
    name = "directory"
    if not target.cwd.is_dir():
        return CheckResult(
            name,
            False,
            f"working directory {target.cwd} does not exist",
            "create it, or fix `workdir`/`repo` in the task's frontmatter",
        )
    resolved = target.cwd.resolve()
    if not any(resolved == root or root in resolved.parents for root in safety.roots):
        roots = ", ".join(str(r) for r in safety.roots)
        return CheckResult(
            name,
            False,
            f"working directory {resolved} is outside the allowed roots ({roots}: "
            f"{safety.roots_from})",
            "point `workdir` inside that root, or list the directory in ini infratask_roots "
            "(paths relative to the ini file)",
        )
    return CheckResult(name, True, str(resolved))


def check_branch(target: Target, safety: SafetyContext) -> CheckResult:
    name = "git branch"
    if not target.cwd.is_dir():
        return CheckResult(name, True, "no directory")
    head = git_head(target.cwd.resolve())
    if head is None:
        return CheckResult(name, True, "not in a git repository")
    root, branch = head
    wanted = target.task.meta.get("branch")
    if isinstance(wanted, list | tuple):
        allowed = tuple(str(w) for w in wanted if w) or safety.branches
    else:
        allowed = (str(wanted),) if wanted else safety.branches
    if not allowed:
        return CheckResult(name, True, f"{branch or 'detached HEAD'} (no branch restriction)")
    if branch is None:
        return CheckResult(
            name,
            False,
            f"{root} is on a detached HEAD; expected branch {' or '.join(allowed)}",
            f"git -C {root} switch {allowed[0]}",
        )
    if branch not in allowed:
        return CheckResult(
            name,
            False,
            f"{root} is on branch {branch!r}; expected {' or '.join(allowed)}",
            f"git -C {root} switch {allowed[0]}, or set `branch: {branch}` in the task",
        )
    return CheckResult(name, True, branch)


_PARSED: dict[str, str | None] = {}


def _bash_n(script: str) -> str | None:
    proc = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "bash -n failed"


def _prime(scripts: Sequence[str]) -> None:
    """Parse every block of a task in one ``bash -n``, each as a function body (parsed,
    never run), so a task costs one process instead of one per criterion. Only when
    that fails are blocks parsed one by one to find the culprit."""
    todo = [s for s in dict.fromkeys(scripts) if s not in _PARSED]
    if len(todo) < 2:
        return
    bodies = "".join(f"__infratask_{i}() {{\n{s}\n}}\n" for i, s in enumerate(todo))
    if _bash_n(bodies) is None:
        _PARSED.update(dict.fromkeys(todo))


def syntax_error(script: str) -> str | None:
    if script not in _PARSED:
        _PARSED[script] = _bash_n(script)
    return _PARSED[script]


def check_syntax(target: Target, safety: SafetyContext) -> CheckResult:
    name = "script syntax"
    _prime(
        [b.script for c in target.task.criteria for b in c.commands if c.open]
        + [b.script for b in target.task.verification if b.is_command]
    )
    for number, script in enumerate(target.scripts, start=1):
        detail = syntax_error(script)
        if detail is not None:
            return CheckResult(
                name,
                False,
                f"command block {number} does not parse: {detail}",
                "fix the shell syntax in the task file; nothing was run",
            )
    for path in target.validate_files:
        problem = data_file_problem(target.cwd / path)
        if problem:
            return CheckResult(name, False, problem, f"fix {path} so it parses")
    return CheckResult(name, True, f"{len(target.scripts)} block(s)")


def data_file_problem(path: Path) -> str | None:
    """Parse a YAML or JSON file a criterion names for validation."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".json":
        import json

        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return f"{path.name}:{exc.lineno}: invalid JSON: {exc.msg}"
        return None
    import yaml

    try:
        list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        return f"{path.name}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"
    return None


# A tool name as a command word: bare, or behind a path (``/usr/local/bin/kubectl``,
# ``./kubectl``, ``$HOME/bin/helm``), but not part of a file name (``kubectl.md``).
_PATH = r"(?<![\w./~$-])(?:[\w.~${}-]*/)*"
_END = r"(?![\w.])"
CLUSTER_COMMAND = re.compile(
    _PATH + r"(?:kubectl(?!\s+(?:kustomize|version\s+--client|completion|config\s+view))"
    r"|helm(?!\s+(?:template|lint|package|dependency|dep|repo|show|pull|create|version|plugin"
    r"|completion|env))"
    r"|flux(?!\s+(?:version\s+--client|build|diff\s+kustomization\s+--dry-run|completion|envsubst"
    r")))" + _END
)
DIRECT_APPLY = re.compile(
    _PATH + r"(?:kubectl" + _END + r"[^\n|;&]*?\s(?P<k>apply|create|replace|patch|delete|edit|set"
    r"|scale|annotate|label|rollout\s+restart)\b"
    r"|helm" + _END + r"[^\n|;&]*?\s(?P<h>install|upgrade|uninstall|rollback)\b)"
)
# Only a dry run that really is one: ``--dry-run=none`` (or ``=false``) applies.
DRY_RUN = re.compile(r"\s--dry-run(?:=(?:client|server|true)|\s|$)")
_SEPARATOR = re.compile(r"[|;&]")


def logical_lines(script: str) -> list[str]:
    """Lines as the shell sees them: backslash-newline continuations joined."""
    return re.sub(r"\\\r?\n", " ", script).splitlines()


def reaches_cluster(scripts: Sequence[str]) -> bool:
    return any(CLUSTER_COMMAND.search(line) for s in scripts for line in logical_lines(s))


def check_kube_context(target: Target, safety: SafetyContext) -> CheckResult:
    name = "kube context"
    if not (target.uses_cluster or reaches_cluster(target.scripts)):
        return CheckResult(name, True, "no cluster access")
    from . import kubeconfig

    pinned = safety.kube_context
    if not pinned:
        if safety.require_kube_context:
            return CheckResult(
                name,
                False,
                "the task reaches a cluster but pins no kube context",
                "add `kube_context: <context>` to the frontmatter (or ini infratask_kube_context)",
            )
        return CheckResult(name, True, "no context pinned (infratask_require_kube_context=false)")
    try:
        active = kubeconfig.active_context(target.env)
    except kubeconfig.KubeconfigError as exc:
        return CheckResult(name, False, str(exc), "fix or replace the kubeconfig file")
    if active != pinned:
        return CheckResult(
            name,
            False,
            f"active kube context is {active!r} but the task pins {pinned!r}",
            f"kubectl config use-context {pinned}  (after checking that is the cluster you want)",
        )
    return CheckResult(name, True, pinned)


def check_no_direct_apply(target: Target, safety: SafetyContext) -> CheckResult:
    name = "no direct apply"
    if target.task_type != "configuration" or safety.allow_direct_apply:
        return CheckResult(
            name,
            True,
            "not a configuration task"
            if not safety.allow_direct_apply
            else "allowed by allow_direct_apply",
        )
    for script in target.scripts:
        for line in logical_lines(script):
            for match in DIRECT_APPLY.finditer(line):
                end = _SEPARATOR.search(line, match.end())
                command = line[match.start() : end.start() if end else len(line)]
                if DRY_RUN.search(command):
                    continue
                return CheckResult(
                    name,
                    False,
                    f"refused `{command.strip()}`: Flux applies what is committed",
                    "change the manifests in git and let Flux reconcile; if the task really must "
                    "apply directly, set `allow_direct_apply: <reason>` in its frontmatter",
                )
    return CheckResult(name, True, "no direct apply")


def check_protected(target: Target, safety: SafetyContext) -> CheckResult:
    name = "protected targets"
    if safety.allow_protected:
        return CheckResult(name, True, "allowed by --infratask-allow-protected")
    if safety.production:
        return CheckResult(
            name,
            False,
            "the task declares environment: production",
            "rerun with --infratask-allow-protected once the change is approved",
        )
    subjects = list(target.scripts)
    if safety.kube_context and (target.uses_cluster or reaches_cluster(target.scripts)):
        subjects.append(f"context:{safety.kube_context}")
    for pattern in safety.protected:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            return CheckResult(
                name,
                False,
                f"protected pattern {pattern!r} is not a valid regex: {exc}",
                "fix the pattern in ini infratask_protected",
            )
        for subject in subjects:
            for line in logical_lines(subject):
                if regex.search(line):
                    return CheckResult(
                        name,
                        False,
                        f"`{line.strip()}` matches protected pattern {pattern!r}",
                        "rerun with --infratask-allow-protected if this is intended",
                    )
    return CheckResult(name, True, "none touched")


BUILTIN_CHECKS: tuple[SafetyCheck, ...] = (
    check_directory,
    check_branch,
    check_syntax,
    check_no_direct_apply,
    check_protected,
    check_kube_context,
)
