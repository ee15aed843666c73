"""Shared fixtures. Task-file builders live in helpers.py, imported explicitly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import frontmatter  # noqa: F401
import hypothesis  # noqa: F401
import mistletoe  # noqa: F401
import pytest
import yaml  # noqa: F401
from contract_check import ContractCheck

import pytest_infratask.core.schema  # noqa: F401  (one warning class across in-process runs)

# In-process pytester runs drop every module first imported during the inner run;
# PyYAML imported again beside its surviving C extension then fails to construct
# anything. The plugin imports these lazily, so import them here, once, up front
# (hypothesis too: its terminal summary would re-import it, slowly, on every run).


@pytest.fixture
def run(pytester: pytest.Pytester) -> Callable[..., pytest.RunResult]:
    """pytest in-process in the pytester directory, with no cache left behind."""

    def runner(*args: str) -> pytest.RunResult:
        from helpers import opt_in

        return pytester.runpytest("-p", "no:cacheprovider", *opt_in(pytester.path, *args))

    return runner


@pytest.fixture
def git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI machines may have no git identity; commits made by tests need one."""
    for key in ("GIT_AUTHOR", "GIT_COMMITTER"):
        monkeypatch.setenv(f"{key}_NAME", "Infratask Test")
        monkeypatch.setenv(f"{key}_EMAIL", "test@infratask.invalid")


@pytest.fixture
def contract_check() -> ContractCheck:
    return ContractCheck()


@pytest.fixture
def pytester(
    pytester: pytest.Pytester, contract_check: ContractCheck, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.Pytester]:
    """pytester whose in-process runs check every contract against the shipped schema."""
    # Inner runs must not append their summaries to the outer job's step summary.
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    inline_run = pytester.inline_run

    def checked(*args: Any, plugins: Any = (), **kwargs: Any) -> Any:
        return inline_run(*args, plugins=[*plugins, contract_check], **kwargs)

    monkeypatch.setattr(pytester, "inline_run", checked)
    yield pytester
    contract_check.verify()


# Task files the tests copy into temporary directories; never run them in place.
collect_ignore = ["backlog_corpus"]
