"""Every branch on the pytest version lives here, and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import pytest
from _pytest._code.code import ReprFileLocation, TerminalRepr

PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())


def register_marker(config: pytest.Config, name: str, description: str) -> None:
    """Markers derived from labels are registered so ``--strict-markers`` accepts them."""
    line = f"{name}: {description}"
    if line not in config.getini("markers"):
        config.addinivalue_line("markers", line)


def skip_here(reason: str) -> NoReturn:
    """Skip pointing at the criterion's line in the task file, not at the plugin."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


@dataclass(eq=False)
class CriterionRepr(TerminalRepr):
    """A failure report whose one-line message (JUnit ``message=``, the short
    summary) is the outcome itself, e.g. ``BLOCKED: missing dependency: helm``."""

    text: str
    reprcrash: ReprFileLocation

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)


def criterion_repr(text: str, path: str, line: int, message: str) -> CriterionRepr:
    return CriterionRepr(text, ReprFileLocation(path, line, message))
