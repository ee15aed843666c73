"""A task file's text as this process last wrote it, edited in place.

A tick changes a few characters and appends a line at the end. Building the next
version of the text as a new ``str`` would copy the whole file on every tick (a
megabyte at 10,000 criteria, most of a tick's cost there). ``Buffer`` keeps a large
text in a mutable buffer instead: the reads a tick's edits make (the frontmatter,
the criterion's line, the end) and the edits themselves touch only their own
characters. Anything else reads the whole text once (``str``). A small text stays a
``str``: copying it costs less than reading a buffer.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

__all__ = ["HEAD", "Buffer", "Edit", "joined"]

Edit = tuple[int, int, str]
"""``text[start:end]`` replaced by the string, in the offsets of the text before."""

_CHUNK = 65536
_SMALL = 65536
"""Characters up to which an edited text is copied rather than buffered."""
HEAD = 4096
"""Characters kept as a ``str`` from the start, where the frontmatter is read."""


class Buffer:
    """The few ``str`` reads a tick's edits make, at the cost of what they read.

    The text is ``_text``, or ``_io`` where that is ``None`` (edited in place since);
    ``_head`` is its start either way.
    """

    def __init__(self, text: str) -> None:
        self._become(text)

    def _become(self, text: str) -> None:
        self._text: str | None = text
        self._io: io.StringIO | None = None
        self._len = len(text)
        self._head = text[:HEAD]

    def __len__(self) -> int:
        return self._len

    def __str__(self) -> str:
        if self._text is None:
            assert self._io is not None
            self._text = self._io.getvalue()
        return self._text

    def _read(self, start: int, stop: int) -> str:
        start, stop = max(start, 0), min(stop, self._len)
        if stop <= start:
            return ""
        if self._text is not None:
            return self._text[start:stop]
        if stop <= len(self._head):
            return self._head[start:stop]
        assert self._io is not None
        self._io.seek(start)
        return self._io.read(stop - start)

    def __getitem__(self, key: int | slice) -> str:
        if isinstance(key, slice):
            start, stop, step = key.indices(self._len)
            if step != 1:
                return str(self)[key]
            return self._read(start, stop)
        index = key + self._len if key < 0 else key
        if not 0 <= index < self._len:
            raise IndexError("Buffer index out of range")
        return self._read(index, index + 1)

    def _index(self, at: int) -> int:
        """``at`` as str's searches read a bound: from the end when negative, clamped."""
        return min(max(at + self._len if at < 0 else at, 0), self._len)

    def startswith(self, prefix: str | tuple[str, ...], start: int = 0) -> bool:
        if start > self._len:
            return False
        start = self._index(start)
        options = (prefix,) if isinstance(prefix, str) else prefix
        return any(self._read(start, start + len(p)) == p for p in options)

    def endswith(self, suffix: str) -> bool:
        return len(suffix) <= self._len and self._read(self._len - len(suffix), self._len) == suffix

    def rfind(self, sub: str, start: int, end: int) -> int:
        """``str.rfind`` within ``[start, end)``, reading a chunk at a time backwards."""
        start, end = self._index(start), self._index(end)
        high = end
        while high > start:
            low = max(start, high - _CHUNK)
            found = self._read(low, min(end, high + len(sub) - 1)).rfind(sub)
            if found >= 0:
                return low + found
            if low == start:
                break
            high = low
        return -1

    def edit(self, edits: Iterable[Edit]) -> None:
        """Apply ``edits`` (sorted, not overlapping). A large text takes same-length
        replacements and an insertion at its end in place; any other edit, or a small
        text, makes a new ``str``."""
        edits = list(edits)
        if not edits:
            return
        *replaced, last = edits
        in_place = all(end - start == len(new) for start, end, new in replaced) and (
            last[1] - last[0] == len(last[2]) or last[0] == last[1] == self._len
        )
        if not in_place or self._len + len(last[2]) <= _SMALL:
            self._become(joined(str(self), edits))
            return
        if self._io is None:
            self._io = io.StringIO(str(self), newline="")
        for start, _, new in edits:
            self._io.seek(start)
            self._io.write(new)
            self._len = max(self._len, start + len(new))
        self._text = None
        if edits[0][0] < HEAD or len(self._head) < HEAD:
            self._io.seek(0)
            self._head = self._io.read(HEAD)


def joined(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with ``edits`` (sorted, not overlapping) applied: a new string."""
    parts, last = [], 0
    for start, end, new in edits:
        parts += [text[last:start], new]
        last = end
    parts.append(text[last:])
    return "".join(parts)
