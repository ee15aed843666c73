"""Safety checks that run before any command of a criterion.

Each check looks at a ``Target`` (what is about to run, and where) and returns
a ``CheckResult``; the first failure blocks the criterion before anything ran.
Teams add their own through the ``pytest_infratask_safety_checks`` hook.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .model import Criterion, Task
from .run import started


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
    # Whether the task's blocks were parsed together yet (``check_syntax``).
    syntax_primed: bool = field(default=False, repr=False, compare=False)

    def run(self, target: Target) -> list[CheckResult]:
        return [check(target, self) for check in self.checks]


# Per folder: the commands started when it was looked up, its repository root (None:
# in none) and git directory.
_FOUND: dict[Path, tuple[int, Path | None, Path]] = {}


def git_head(path: Path) -> tuple[Path, str | None] | None:
    """Repository root and branch (None when detached), read without spawning git.

    Where a folder's repository is (or that it is in none) is remembered until the
    next command starts (``run.started``), so a criterion's checks and tracking walk
    up to / once, not three times; a ``.git`` made or removed by something else in
    the moments between them is seen from the next criterion on. HEAD is read on
    every call, so a branch switch is seen at once.
    """
    found = _FOUND.get(path)
    if found is not None and found[0] == started():
        _, root, git_dir = found
        if root is None:
            return None
        with contextlib.suppress(OSError):  # gone: look again
            return root, _read_head(git_dir)
    commands = started()
    for folder in [path, *path.parents]:
        dot_git = folder / ".git"
        try:
            mode = os.stat(dot_git).st_mode
        except OSError:
            continue
        if stat.S_ISDIR(mode):
            git_dir = dot_git
        elif stat.S_ISREG(mode):
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if not text.startswith("gitdir:"):
                continue
            git_dir = (folder / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        try:
            head = _read_head(git_dir)
        except OSError:
            return folder, None
        if path.is_absolute():
            _FOUND[path] = (commands, folder, git_dir)
        return folder, head
    if path.is_absolute():
        _FOUND[path] = (commands, None, path)
    return None


def _read_head(git_dir: Path) -> str | None:
    """The branch HEAD names, None when detached; OSError when it cannot be read."""
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    return head.removeprefix("ref: refs/heads/") if head.startswith("ref:") else None


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


# Where CI systems name the branch of a detached checkout, most specific first.
CI_BRANCH_VARIABLES = (
    "GITHUB_HEAD_REF",  # GitHub pull_request: the source branch
    "GITHUB_REF_NAME",
    "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",  # GitLab merge request pipelines
    "CI_COMMIT_BRANCH",
    "CI_COMMIT_REF_NAME",
    "BUILDKITE_BRANCH",
    "CIRCLE_BRANCH",
    "BITBUCKET_BRANCH",
    "DRONE_SOURCE_BRANCH",
    "TRAVIS_PULL_REQUEST_BRANCH",
    "TRAVIS_BRANCH",
    "BRANCH_NAME",  # Jenkins multibranch
    "BUILD_SOURCEBRANCHNAME",  # Azure Pipelines
)


def ci_branch(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, branch) from the first CI variable that names a branch."""
    for name in CI_BRANCH_VARIABLES:
        value = (env.get(name) or "").strip().removeprefix("refs/heads/")
        if value:
            return name, value
    return None


def _existing_branch(root: Path, allowed: Sequence[str]) -> str | None:
    """The first allowed branch this repository has, to suggest switching to."""
    for branch in allowed:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            capture_output=True,
            check=False,
        )
        if proc.returncode == 0:
            return branch
    return None


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
        named = ci_branch(target.env if target.env is not None else os.environ)
        if named is not None and named[1] in allowed:
            return CheckResult(name, True, f"{named[1]} (detached HEAD; {named[0]} names it)")
        here = ", ".join(allowed)
        if named is not None:
            return CheckResult(
                name,
                False,
                f"{root} is on a detached HEAD of branch {named[1]!r} (from {named[0]}), "
                f"which is not allowed here (allowed: {here})",
                f"add {named[1]} to ini infratask_branches, or set `branch: {named[1]}` in the "
                "task, if tasks may run from it",
            )
        switch = _existing_branch(root, allowed)
        return CheckResult(
            name,
            False,
            f"{root} is on a detached HEAD and no CI variable names its branch "
            f"(allowed here: {here})",
            (f"git -C {root} switch {switch}; or " if switch else "")
            + "for a CI checkout, let the CI set the branch variable ("
            + ", ".join(CI_BRANCH_VARIABLES[:5])
            + ", ...) and allow that branch in ini infratask_branches",
        )
    if branch not in allowed:
        switch = _existing_branch(root, allowed)
        return CheckResult(
            name,
            False,
            f"{root} is on branch {branch!r}; expected {' or '.join(allowed)}",
            (f"git -C {root} switch {switch}, or " if switch else "")
            + f"set `branch: {branch}` in the task (or list it in ini infratask_branches)",
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
    if not safety.syntax_primed:
        # Once per task: gathering every block for each criterion would make a task's
        # checks quadratic in its criteria.
        safety.syntax_primed = True
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
# kubectl honours the last --dry-run; only client, server (or a bare flag) are dry runs.
DRY_RUN_FLAG = re.compile(r"\s--dry-run(?:=(\S*))?(?=\s|$)")
_SEPARATOR = re.compile(r"[|;&]")
_ASSIGNMENT = re.compile(
    r"(?:^|[;&|\s])(?:export\s+|local\s+|readonly\s+|declare\s+)?([A-Za-z_]\w*)="
    r"('[^']*'|\"[^\"]*\"|[^\s;&|]*)"
)
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_]\w*)\}|([A-Za-z_]\w*))")


def is_dry_run(command: str) -> bool:
    flags = DRY_RUN_FLAG.findall(command)
    return bool(flags) and flags[-1].lower() in ("", "client", "server", "true")


def logical_lines(script: str) -> list[str]:
    """Lines as the shell sees them: backslash-newline continuations joined."""
    return re.sub(r"\\\r?\n", " ", script).splitlines()


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment (a ``#`` starting a word, unquoted)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return line[:i]
    return line


def shell_view(script: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Logical lines as a careful reader takes them, for the text checks: comments
    dropped, variables the task or the script sets expanded (``k=kubectl; $k``),
    quotes removed (``kube""ctl``, ``'apply'``). A lint, not a shell: the checks that
    hold whatever the spelling are the private kubeconfig and the read-only proxy."""
    values = dict(env or {})
    lines = []
    for raw in logical_lines(script):
        line = strip_comment(raw)
        for match in _ASSIGNMENT.finditer(line):
            values[match[1]] = match[2].strip("'\"")
        line = _VARIABLE.sub(lambda m: values.get(m[1] or m[2], m[0]), line)
        lines.append(line.replace('"', "").replace("'", ""))
    return lines


def reaches_cluster(scripts: Sequence[str]) -> bool:
    return any(CLUSTER_COMMAND.search(line) for s in scripts for line in shell_view(s))


_OWN_KUBECONFIG = re.compile(
    r"(?:^|[\s;&|(])(?:export\s+)?KUBECONFIG=(?!\$\{?KUBECONFIG\b)\S|--kubeconfig(?:=|\s+)(?!\$\{?KUBECONFIG\b)\S"
)


def check_kube_context(target: Target, safety: SafetyContext) -> CheckResult:
    name = "kube context"
    for script in target.scripts:
        for line in shell_view(script):
            if _OWN_KUBECONFIG.search(line):
                return CheckResult(
                    name,
                    False,
                    f"`{line.strip()[:200]}` chooses its own kubeconfig; commands get a private "
                    "one holding only the pinned context",
                    "drop KUBECONFIG=/--kubeconfig from the command and pin the context with "
                    "`kube_context:` in the frontmatter",
                )
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
        known = kubeconfig.contexts(target.env)
    except kubeconfig.KubeconfigError as exc:
        return CheckResult(name, False, str(exc), "fix or replace the kubeconfig file")
    if pinned not in known:
        return CheckResult(
            name,
            False,
            f"the task pins kube context {pinned!r}, which the kubeconfig does not have "
            f"(it has {', '.join(map(repr, known)) or 'none'})",
            f"add context {pinned!r} to your kubeconfig, or fix `kube_context` in the task",
        )
    # Commands get a private kubeconfig holding only this context, whatever is active.
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
        for line in shell_view(script, target.task.env):
            for match in DIRECT_APPLY.finditer(line):
                end = _SEPARATOR.search(line, match.end())
                command = line[match.start() : end.start() if end else len(line)]
                if is_dry_run(command):
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
    # what the task sets counts too: ``PGHOST=prod-db psql``, ``env: {DB_HOST: ...}``
    settings = " ".join(f"{k}={v}" for k, v in target.task.env.items())
    subjects = [
        f"{settings} {line}".strip()
        for script in target.scripts
        for line in shell_view(script, target.task.env)
    ]
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
                        f"`{line.strip()[:200]}` matches protected pattern {pattern!r}",
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
