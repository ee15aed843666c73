"""The task file model: what a task file says, as plain frozen data.

Everything here is picklable plain data so it can cross xdist workers and be
rebuilt from the file at any time; nothing here touches the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pytest_infratask.core.schema import ENV, RETRIES, RETRY_DELAY, TIMEOUT, WORKDIR, Key, Notice

T = TypeVar("T")

OPEN = " "
DONE = frozenset({"x", "X"})
COMMAND_LANGUAGES = frozenset({"", "bash", "sh", "shell"})

_SLUG_DROP = re.compile(r"<!--.*?-->|`")
_SLUG_SEP = re.compile(r"[^0-9a-z]+")


def slugify(text: str, limit: int = 60) -> str:
    """Word slug usable as a ``-k`` term: ``-k`` cannot match across spaces."""
    slug = _SLUG_SEP.sub("-", _SLUG_DROP.sub("", text).lower()).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0] or slug[:limit]
    return slug or "criterion"


@dataclass(frozen=True)
class CodeBlock:
    """A fenced block; shell-ish blocks are commands, the rest are content."""

    language: str
    script: str
    line: int

    @property
    def is_command(self) -> bool:
        return self.language.lower() in COMMAND_LANGUAGES


@dataclass(frozen=True)
class Criterion:
    """One checkbox item of the Acceptance Criteria section.

    ``offset`` is where its line starts in the text as read (-1 when unknown), so
    a tick goes straight to it instead of searching the file.
    """

    number: int
    line: int
    raw_line: str
    box: str
    text: str
    blocks: tuple[CodeBlock, ...] = ()
    independent: bool = False
    needs: tuple[int, ...] | None = None
    offset: int = -1
    service: bool = False
    retries: int | None = None
    """Its own retry count (``<!-- retries: N -->``); None: the task's."""

    @property
    def done(self) -> bool:
        return self.box in DONE

    @property
    def open(self) -> bool:
        return self.box == OPEN

    @property
    def commands(self) -> tuple[CodeBlock, ...]:
        return tuple(b for b in self.blocks if b.is_command)

    @property
    def manual(self) -> bool:
        return not self.commands

    @property
    def name(self) -> str:
        return f"ac{self.number}-{slugify(self.text)}"


@dataclass(frozen=True)
class Layout:
    """Where write-back's edits go in the file exactly as it was read.

    ``stamp`` (inode, mtime in ns, size) identifies that file: while it is
    unchanged, a write uses these offsets instead of parsing the file again.
    ``log_at`` is where new progress entries go (None: there is no Progress Log
    section yet) and ``length`` the text's length, both in characters;
    ``newline`` is the ending new lines get.
    """

    stamp: tuple[int, int, int]
    log_at: int | None
    length: int
    newline: str = "\n"


@dataclass(frozen=True)
class Task:
    """A parsed task file.

    ``meta`` keeps the whole frontmatter so handlers and hooks can read keys
    the core does not know about.
    """

    path: Path
    id: str
    title: str
    priority: str
    labels: tuple[str, ...]
    status: str
    dependencies: tuple[str, ...]
    criteria: tuple[Criterion, ...]
    meta: dict[str, object] = field(default_factory=dict)
    verification: tuple[CodeBlock, ...] = ()
    progress_log: tuple[str, ...] = ()
    newline: str = "\n"
    layout: Layout | None = field(default=None, compare=False)
    key_lines: dict[str, int] = field(default_factory=dict, compare=False)
    """The line of each top-level frontmatter key, for messages about it."""
    notices: tuple[Notice, ...] = field(default=(), compare=False)
    """What reading the file found worth a warning (collection raises them)."""

    @property
    def open_criteria(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if c.open)

    def value(self, key: Key[T]) -> T:
        """The frontmatter's value for ``key``, read as its declaration says."""
        return key.value(self.meta)

    @property
    def workdir(self) -> str | None:
        return self.value(WORKDIR)

    @property
    def env(self) -> dict[str, str]:
        return self.value(ENV)

    @property
    def retries(self) -> int | None:
        """``retries:``; None when unset."""
        return self.value(RETRIES)

    @property
    def retry_delay(self) -> float | None:
        return self.value(RETRY_DELAY)

    @property
    def timeout(self) -> float | None:
        """``timeout:``; None when unset or 0 (no timeout of the task's own)."""
        return self.value(TIMEOUT) or None

    def criterion(self, number: int) -> Criterion | None:
        return next((c for c in self.criteria if c.number == number), None)
