"""The package's layers, bottom to top: a module imports only from its own layer and
the layers below it. ``tests/test_layout.py`` holds the code to it, and the
architecture page of the docs is drawn from it, so the rule is written once."""

from __future__ import annotations

__all__ = ["LAYERS"]

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("util", "compat", "workers"),
    ("clients",),
    ("read",),
    ("plan",),
    ("guard",),
    ("run",),
    ("record",),
    ("finish",),
    ("report",),
    ("handlers",),
    ("orchestrator",),
)
"""Bottom to top. The stages (read to report) come in the order a task goes through
them; every top-level module not named here is the pytest glue, above them all."""
