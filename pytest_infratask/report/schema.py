"""The contract's JSON Schema, shipped in the package, and the version it describes.

``schemaVersion`` changes its major number when a field is removed or changes
meaning; added fields keep it, and consumers ignore fields they do not know.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from typing import Final

SCHEMA_VERSION: Final = "1.0"
SCHEMA_FILE = "contract.schema.json"


def contract_schema() -> Mapping[str, object]:
    """The JSON Schema (draft 2020-12) every contract validates against."""
    text = resources.files("pytest_infratask").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    data: Mapping[str, object] = json.loads(text)
    return data
