"""pytest entry point (``-p no:infratask`` disables it). Each hook delegates in one line.

Imports here stay light: the plugin loads in every pytest run of an environment
that has it installed, whether or not any task file is collected.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs, options, outputs, progress, report
from .fixtures import infratask_handler, infratask_run, infratask_safety, infratask_task

if TYPE_CHECKING:
    from .handlers.base import Handler
    from .model import Task

__all__ = ["infratask_handler", "infratask_run", "infratask_safety", "infratask_task"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.addoptions(parser)
    outputs.addoptions(parser)
    progress.addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[options.SETTINGS_KEY] = options.read_settings(config)
    config.pluginmanager.register(report.ReportPlugin(config), "infratask-report")
    config.pluginmanager.register(outputs.OutputsPlugin(config), "infratask-outputs")
    progress.install(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix.lower() != ".md":
        return None
    from .collect import collect_file

    return collect_file(file_path, parent)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if "pytest_infratask.collect" not in sys.modules:
        return  # no task file was collected: nothing to order, nothing to import
    from .order import order_items
    from .retry import no_reruns

    order_items(config, items)
    no_reruns(config, items)


@pytest.hookimpl(trylast=True)
def pytest_infratask_task_type(task: Task, config: pytest.Config) -> str:
    from .tasktype import type_from_labels

    return type_from_labels(task)


@pytest.hookimpl(trylast=True)
def pytest_infratask_handler(task_type: str, task: Task, config: pytest.Config) -> Handler:
    from .handlers import BUILTIN_HANDLERS, Handler

    return BUILTIN_HANDLERS.get(task_type, Handler).create(task, config)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from .order import xdist_scheduler

    return xdist_scheduler(config, log)
