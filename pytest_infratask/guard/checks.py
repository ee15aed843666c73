"""Safety checks that run before any command of a criterion.

Each check looks at a ``Target`` (what is about to run, and where) and returns
a ``CheckResult``; the first failure blocks the criterion before anything ran.
Teams add their own through the ``pytest_infratask_safety_checks`` hook.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from pytest_infratask.clients import kubeconfig
from pytest_infratask.core.results import CheckResult
from pytest_infratask.core.schema import BRANCH
from pytest_infratask.guard.context import SafetyCheck, SafetyContext, Target
from pytest_infratask.guard.shell import (
    _SEPARATOR,
    DIRECT_APPLY,
    is_dry_run,
    logical_lines,
    reaches_cluster,
    shell_view,
)
from pytest_infratask.guard.syntax import check_syntax
from pytest_infratask.util.gitdir import git_head


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
    allowed = target.task.value(BRANCH) or safety.branches
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
