"""Run-level files written from the merged contracts at the end of a session:
the Markdown summary and the SARIF log of security findings.

They are written where every task's contract is known: by the xdist controller,
or by the only process of a run without xdist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_infratask.core.ci import on_github_actions
from pytest_infratask.report.store import contracts
from pytest_infratask.report.summary import render
from pytest_infratask.util.files import atomic_write


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("infratask")
    group.addoption(
        "--infratask-summary",
        default=None,
        metavar="FILE",
        help="write a Markdown summary (one table row per task) to FILE; on GitHub Actions "
        "it is also appended to $GITHUB_STEP_SUMMARY",
    )
    group.addoption(
        "--infratask-sarif",
        default=None,
        metavar="FILE",
        help="write the security findings as SARIF 2.1.0 to FILE (GitHub code scanning, GitLab)",
    )


class OutputsPlugin:
    """Registered on the controller (or the only process) alone: workers have no
    merged contracts to write from."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self) -> None:
        write_outputs(self.config)


def write_outputs(config: pytest.Config) -> None:
    tasks = list(contracts(config).values())
    summary = config.getoption("infratask_summary")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    on_actions = on_github_actions() and step_summary
    if summary or (on_actions and tasks):
        text = render(tasks)
        if summary:
            _write(Path(summary), text)
        if on_actions and tasks:
            assert step_summary is not None
            with open(step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
    sarif = config.getoption("infratask_sarif")
    if sarif:
        from pytest_infratask.report.sarif import build  # start-up: its security rules, ~15 ms

        _write(Path(sarif), json.dumps(build(tasks, Path(config.rootpath)), indent=2) + "\n")


def _write(path: Path, text: str) -> None:
    """Replace ``path`` whole: a reader never sees half a summary or SARIF log."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)
