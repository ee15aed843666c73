"""pytest entry point (``-p no:infratask`` disables it). Each hook delegates in one line.

Imports here stay light: the plugin loads in every pytest run of an environment
that has it installed, whether or not any task file is collected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_infratask import builtin, hookspecs, lifecycle, optin, options
from pytest_infratask.fixtures import (
    infratask_handler,
    infratask_run,
    infratask_safety,
    infratask_task,
)
from pytest_infratask.report import live as progress
from pytest_infratask.report import outputs

if TYPE_CHECKING:
    from pytest_infratask.compat import Scheduler

__all__ = ["infratask_handler", "infratask_run", "infratask_safety", "infratask_task"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)
    pluginmanager.register(builtin, builtin.NAME)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoptions(parser)
    outputs.addoptions(parser)
    progress.addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    lifecycle.configure(config)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    lifecycle.sessionstart(session.config)


def pytest_unconfigure(config: pytest.Config) -> None:
    lifecycle.unconfigure(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    name = file_path.name  # called for every file of every collected directory: no .suffix
    if len(name) < 4 or name[-3:].lower() != ".md":
        return None
    return optin.collect_file(file_path, parent)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if "pytest_infratask.items" not in sys.modules:
        return  # no task file was collected: nothing to order, nothing to import
    from pytest_infratask.schedule import order_items  # loads items

    order_items(config, items)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    if "pytest_infratask.items" in sys.modules:  # a task file was collected
        lifecycle.settle(session)


def pytest_deselected(items: list[pytest.Item]) -> None:
    if items and "pytest_infratask.items" in sys.modules:
        from pytest_infratask.items import forget_requeued  # loaded: a task file was

        forget_requeued(items[0].config, items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> Scheduler | None:
    from pytest_infratask.schedule import xdist_scheduler  # start-up: xdist runs only

    return xdist_scheduler(config, log)
