"""Frontmatter values that name things: one name, or a list of them."""

from __future__ import annotations


def name_list(value: object, *, commas: bool = False) -> list[str]:
    """``a`` or ``[a, b]`` as a list of names; nothing for an absent value.

    With ``commas``, one string may hold several names (``labels: a, b``), as
    Backlog.md and people write them.
    """
    if value is None:
        return []
    if isinstance(value, str):
        parts = value.split(",") if commas else [value]
    elif isinstance(value, list | tuple):
        parts = [str(v) for v in value if v is not None]
    else:
        parts = [str(value)]
    return [p.strip() for p in parts if p.strip()]
