"""The contracts of the tasks that finished in this session, kept on the config.

On its own, without imports, because the plugin's report hooks read it in every
pytest run, task files or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_infratask.core.shape import Contract

CONTRACTS_KEY = pytest.StashKey["dict[str, Contract]"]()


def contracts(config: pytest.Config) -> dict[str, Contract]:
    """Task path to contract, for every task that finished in this session."""
    return config.stash.setdefault(CONTRACTS_KEY, {})
