"""Every branch on the pytest version lives here, and nowhere else."""

from __future__ import annotations

from typing import NoReturn

import pytest

PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())


def register_marker(config: pytest.Config, name: str, description: str) -> None:
    """Markers derived from labels are registered so ``--strict-markers`` accepts them."""
    line = f"{name}: {description}"
    if line not in config.getini("markers"):
        config.addinivalue_line("markers", line)


def skip_here(reason: str) -> NoReturn:
    """Skip pointing at the criterion's line in the task file, not at the plugin."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def add_marker_only(item: pytest.Item, name: str) -> None:
    """A marker for ``-m`` that stays out of the ``-k`` keywords, so ``-k build``
    matches criterion slugs and not every criterion of a build task."""
    item.own_markers.append(getattr(pytest.mark, name).mark)
