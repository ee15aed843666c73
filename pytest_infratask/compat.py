"""Every branch on the pytest version lives here, and nowhere else."""

from __future__ import annotations

import pytest

PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())


def register_marker(config: pytest.Config, name: str, description: str) -> None:
    """Markers derived from labels are registered so ``--strict-markers`` accepts them."""
    line = f"{name}: {description}"
    if line not in config.getini("markers"):
        config.addinivalue_line("markers", line)
