"""Mask secret values before any text leaves the process (reports, logs, the task file)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL", re.I)
MASK = "***"
MIN_LENGTH = 4


class Masker:
    """Replace every secret-looking environment value with ``***``.

    Values shorter than four characters are left alone: masking ``1`` or
    ``true`` everywhere would wreck the output without protecting anything.
    """

    def __init__(self, *envs: Mapping[str, str], extra: Iterable[str] = ()) -> None:
        values = {
            value
            for env in envs
            for name, value in env.items()
            if SECRET_NAME.search(name) and len(value) >= MIN_LENGTH
        }
        values.update(v for v in extra if len(v) >= MIN_LENGTH)
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)
