"""Command-line options and ini settings, read once into a frozen ``Settings``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_infratask.core.durations import DurationError, parse_duration
from pytest_infratask.core.settings import (
    DEFAULT_BRANCHES,
    DEFAULT_FILES,
    DEFAULT_PROTECTED,
    Settings,
)
from pytest_infratask.util.files import output_problem

OUTPUTS = {"infratask_report_dir": True, "infratask_summary": False, "infratask_sarif": False}
"""The options naming where the plugin writes, by dest: True for a directory."""


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("infratask", "infrastructure task files")
    group.addoption(
        "--infratask-dry-run",
        action="store_true",
        help="run no command and change no file; show what would run, where, "
        "and the result of every safety check",
    )
    group.addoption(
        "--infratask-no-writeback",
        action="store_true",
        help="run the commands but leave the task files alone",
    )
    group.addoption(
        "--infratask-retries",
        type=int,
        default=None,
        metavar="N",
        help="retries for a failing command (default: ini infratask_retries, 1)",
    )
    group.addoption(
        "--infratask-report-dir",
        default=None,
        metavar="DIR",
        help="write the output contract of each task to DIR/<task_id>.json",
    )
    group.addoption(
        "--infratask-commit",
        action="store_true",
        help="commit each task's changes once its verification passes",
    )
    group.addoption(
        "--infratask-push",
        action="store_true",
        default=None,
        help="push each task's commit to the current branch's upstream (never forced); "
        "implies --infratask-commit",
    )
    group.addoption(
        "--infratask-status",
        action="store_true",
        default=None,
        help="write Backlog.md's status: its in-progress status while a task runs, "
        "its done status once verified (statuses from backlog/config.yml)",
    )
    group.addoption(
        "--infratask-skip-verification",
        action="store_true",
        help="report without running verification; never commit",
    )
    group.addoption(
        "--infratask-allow-protected",
        action="store_true",
        help="allow commands and contexts matching infratask_protected",
    )
    group.addoption(
        "--infratask-require-sandbox",
        action="store_true",
        default=None,
        help="refuse to run when commands cannot run in a sandbox (bubblewrap), "
        "instead of running them unsandboxed with a warning",
    )
    group.addoption(
        "--infratask-id",
        action="append",
        default=[],
        metavar="TASK_ID",
        help="run only the task(s) with this id (repeatable)",
    )

    parser.addini(
        "infratask_paths",
        "directories whose task files a plain `pytest` runs (relative to this ini file)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "infratask_strict_keys",
        "make an unknown frontmatter key a collection error instead of a warning",
        type="bool",
        default=False,
    )
    parser.addini(
        "infratask_known_keys",
        "extra frontmatter keys to accept without a warning",
        type="args",
        default=[],
    )
    parser.addini(
        "infratask_files",
        "glob patterns of task files collected from opted-in directories",
        type="args",
        default=list(DEFAULT_FILES),
    )
    parser.addini(
        "infratask_push",
        "push each task's commit to the branch's upstream (as --infratask-push)",
        type="bool",
        default=False,
    )
    parser.addini(
        "infratask_status",
        "write Backlog.md's status as the run goes (as --infratask-status)",
        type="bool",
        default=False,
    )
    parser.addini("infratask_retries", "retries for a failing command", default="1")
    parser.addini("infratask_retry_delay", "seconds between attempts", default="0")
    parser.addini("infratask_timeout", "seconds per criterion (0: none)", default="600")
    parser.addini(
        "infratask_dependency_wait",
        "seconds a task waits for a dependency running on another xdist worker (0: none)",
        default="3600",
    )
    parser.addini(
        "infratask_repos",
        "named repositories, lines 'name = path' (relative to this ini file)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "infratask_workdir",
        "where commands run when a task's frontmatter sets no `workdir` (nor `repo`), "
        "relative to this ini file (default: the task file's folder)",
        default="",
    )
    parser.addini(
        "infratask_roots",
        "directories commands may run in, relative to this ini file "
        "(default: the task file's git repository)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "infratask_branches",
        "git branches commands may run on",
        type="args",
        default=list(DEFAULT_BRANCHES),
    )
    parser.addini("infratask_kube_context", "kube context cluster commands must use", default="")
    parser.addini(
        "infratask_require_kube_context",
        "block cluster commands of tasks that pin no kube context",
        type="bool",
        default=True,
    )
    parser.addini(
        "infratask_protected",
        "regexes of protected targets (commands, contexts)",
        type="linelist",
        default=list(DEFAULT_PROTECTED),
    )
    parser.addini(
        "infratask_overlay",
        "run commands in git repositories in an overlay of the work tree (tasks sharing "
        "a repository run at once); false: they take turns",
        type="bool",
        default=True,
    )
    parser.addini(
        "infratask_allow_dirty",
        "allow tasks whose files are already dirty",
        type="bool",
        default=False,
    )
    parser.addini(
        "infratask_lock_wait",
        "seconds a criterion waits for a repository or task file another run holds; "
        "past it the criterion is blocked before its command runs",
        default="3600",
    )
    parser.addini(
        "infratask_secret_vars",
        "more variable names whose values are masked in every output",
        type="args",
        default=[],
    )
    parser.addini(
        "infratask_task_dirs",
        "extra directories where dependencies are looked up",
        type="linelist",
        default=[],
    )
    parser.addini(
        "infratask_insecure_registries",
        "registries reachable over plain HTTP",
        type="args",
        default=[],
    )
    parser.addini(
        "infratask_require_sandbox",
        "refuse to run when commands cannot be sandboxed (as --infratask-require-sandbox)",
        type="bool",
        default=False,
    )
    parser.addini("infratask_bwrap", "the bubblewrap program commands run in", default="bwrap")
    parser.addini(
        "infratask_writable",
        "paths every task's commands may write besides their work tree (relative to this ini file)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "infratask_registry_auth_file",
        "auth.json/config.json consulted first for registry logins (relative to the rootdir)",
        default="",
    )


def named_paths(config: pytest.Config) -> tuple[Path, ...]:
    """The files and directories named on the command line (not pytest's default
    of the current directory or ``testpaths``): the only ones a run opts into."""
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return ()
    here = Path(config.invocation_params.dir)
    return tuple(Path(os.path.abspath(here / arg.split("::")[0])) for arg in config.args)


def check_outputs(config: pytest.Config) -> None:
    """Refuse, before any task runs, an output path the run could not write at its end."""
    here = Path(config.invocation_params.dir)
    for dest, directory in OUTPUTS.items():
        value = config.getoption(dest)
        if value:
            problem = output_problem(here / os.path.expanduser(value), directory=directory)
            if problem is not None:
                flag = "--" + dest.replace("_", "-")
                raise pytest.UsageError(f"{flag}={value}: {problem}")


def _repos(config: pytest.Config, rel: Callable[[str], Path]) -> dict[str, Path]:
    repos: dict[str, Path] = {}
    for line in config.getini("infratask_repos"):
        name, sep, path = line.partition("=")
        if not sep:
            raise pytest.UsageError(f"infratask_repos: expected 'name = path', got {line!r}")
        repos[name.strip()] = rel(path)
    return repos


def _retries(config: pytest.Config) -> int:
    retries = config.getoption("infratask_retries")
    try:
        return int(retries if retries is not None else config.getini("infratask_retries"))
    except ValueError:
        raise pytest.UsageError("ini infratask_retries: expected a whole number") from None


def _switch(config: pytest.Config, name: str) -> bool:
    """An on/off setting given as an option (``--infratask-x``) or in the ini (``infratask_x``)."""
    return bool(config.getoption(name) or config.getini(name))


def read_settings(config: pytest.Config) -> Settings:
    root = Path(config.rootpath)
    base = Path(config.inipath).parent if config.inipath else root  # where ini paths start

    def rel(value: str) -> Path:
        return (base / value.strip()).resolve()

    def seconds(key: str, default: float) -> float:
        try:
            value = parse_duration(config.getini(key), key)
        except DurationError as exc:
            raise pytest.UsageError(f"ini {exc}") from None
        return default if value is None else value

    option = config.getoption("infratask_retries")
    timeout = seconds("infratask_timeout", 600.0)
    report_dir = config.getoption("infratask_report_dir")
    push = _switch(config, "infratask_push")
    return Settings(
        rootdir=root,
        files=tuple(config.getini("infratask_files")),
        dry_run=bool(config.getoption("infratask_dry_run")),
        writeback=not config.getoption("infratask_no_writeback")
        and not config.getoption("infratask_dry_run"),
        retries=max(0, _retries(config)),
        retry_delay=seconds("infratask_retry_delay", 0.0),
        timeout=timeout if timeout > 0 else None,
        dependency_wait=seconds("infratask_dependency_wait", 3600.0),
        report_dir=Path(report_dir).resolve() if report_dir else None,
        commit=bool(config.getoption("infratask_commit")) or push,
        push=push,
        skip_verification=bool(config.getoption("infratask_skip_verification")),
        allow_protected=bool(config.getoption("infratask_allow_protected")),
        task_ids=tuple(config.getoption("infratask_id")),
        repos=_repos(config, rel),
        roots=tuple(rel(r) for r in config.getini("infratask_roots")),
        branches=tuple(config.getini("infratask_branches")),
        kube_context=config.getini("infratask_kube_context") or None,
        require_kube_context=bool(config.getini("infratask_require_kube_context")),
        protected=tuple(p for p in config.getini("infratask_protected") if p.strip()),
        allow_dirty=bool(config.getini("infratask_allow_dirty")),
        overlay=bool(config.getini("infratask_overlay")),
        task_dirs=tuple(rel(d) for d in config.getini("infratask_task_dirs")),
        insecure_registries=tuple(config.getini("infratask_insecure_registries")),
        lock_wait=seconds("infratask_lock_wait", 3600.0),
        secret_vars=tuple(config.getini("infratask_secret_vars")),
        paths=tuple(Path(os.path.normpath(base / p)) for p in config.getini("infratask_paths")),
        named=named_paths(config),
        strict_keys=bool(config.getini("infratask_strict_keys")),
        known_keys=tuple(config.getini("infratask_known_keys")),
        ini_dir=Path(config.inipath).parent if config.inipath else None,
        own_outputs=own_outputs(config, Path(report_dir).resolve() if report_dir else None),
        require_sandbox=_switch(config, "infratask_require_sandbox"),
        bwrap=str(config.getini("infratask_bwrap") or "bwrap").strip(),
        writable=tuple(rel(os.path.expanduser(p)) for p in config.getini("infratask_writable")),
        retries_option=None if option is None else max(0, int(option)),
        status=_switch(config, "infratask_status"),
        workdir=_workdir(config, rel),
    )


def _workdir(config: pytest.Config, rel: Callable[[str], Path]) -> Path | None:
    """ini ``infratask_workdir``, relative to the ini file; None when unset."""
    value = str(config.getini("infratask_workdir") or "").strip()
    return rel(value) if value else None


def own_outputs(config: pytest.Config, report_dir: Path | None) -> tuple[Path, ...]:
    """Files and directories the plugin and pytest write reports to: never a task's."""
    base = Path(config.invocation_params.dir)
    found = [report_dir]
    for name in ("xmlpath", "json_report_file"):
        value = getattr(config.option, name, None)
        if value:
            found.append(base / os.path.expanduser(str(value)))
    return tuple(Path(os.path.abspath(p)) for p in found if p is not None)
