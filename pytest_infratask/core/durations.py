"""The one reading of a duration, for every frontmatter key and ini option that holds one.

``90`` and ``"90"`` are seconds; ``90s``, ``10m``, ``1h30m``, ``1h 30m``, ``1.5h`` and
``2d`` carry units. Anything else is an error naming the key, never a silent default:
a ``timeout`` that reads as something other than what was written is worse than none.
"""

from __future__ import annotations

import math
import re

MAX_SECONDS = 366 * 86400.0  # a year: anything longer is a typo, not a plan
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_BARE = re.compile(r"^\d+(?:\.\d+)?$")
_WITH_UNITS = re.compile(r"^(?:\d+(?:\.\d+)?\s*[dhms]\s*)+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")


class DurationError(ValueError):
    """A duration that cannot be read; the message names the key."""


def parse_duration(value: object, key: str) -> float | None:
    """Seconds, or None when the value is unset (absent, null or empty)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise DurationError(f"{key}: expected a duration such as 90s, 10m or 1h30m, got {value}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if _BARE.match(text):
            seconds = float(text)
        elif _WITH_UNITS.match(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            raise DurationError(
                f"{key}: cannot read {str(value)[:40]!r} as a duration "
                "(use seconds or units: 90, 90s, 10m, 1h30m)"
            )
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SECONDS:
        raise DurationError(
            f"{key}: {str(value)[:40]} is not a usable duration (0 to {MAX_SECONDS:.0f} seconds)"
        )
    return seconds
