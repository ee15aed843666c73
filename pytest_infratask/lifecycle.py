"""What the plugin sets up for a pytest session, and takes down after it.

Like pytest's own junitxml, the report plugins are registered at configure time and
unregistered at unconfigure, so a session started in-process (``pytest.main`` twice,
``pytester.runpytest_inprocess``) never reports through the previous one's objects.
The run-level files are written where every contract is known: on the xdist
controller, or in the only process of a run without xdist.
"""

from __future__ import annotations

import pytest

from pytest_infratask import options, reporting
from pytest_infratask.report import live, outputs
from pytest_infratask.workers import is_worker

PLUGINS = ("infratask-report", "infratask-outputs", "infratask-progress")


def configure(config: pytest.Config) -> None:
    config.stash[options.SETTINGS_KEY] = options.read_settings(config)
    config.pluginmanager.register(reporting.ReportPlugin(config), PLUGINS[0])
    if not is_worker(config):
        config.pluginmanager.register(outputs.OutputsPlugin(config), PLUGINS[1])
    config.pluginmanager.register(live.install(config), PLUGINS[2])


def unconfigure(config: pytest.Config) -> None:
    for name in PLUGINS:
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin)
