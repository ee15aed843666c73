"""Record results in the task file by editing lines, never by re-rendering.

The allowed changes are exactly: one checkbox character, the ``updated`` value
and appended progress-log lines (and, with ``--infratask-status``, the ``status``
value). Every write re-reads the file under a lock.
While the file is exactly the version the reader saw (or this process last
wrote), the edits go to the offsets the reader recorded; otherwise its lines
are found again by content. Either way a concurrent run or a person editing
the file meanwhile never loses an edit. Edits that keep every byte in its
place (the box, an ``updated`` value of the same length, lines appended at the
end) are written in place through an intent journal (``patch``), so a tick's
cost does not grow with the file; any other edit replaces the file whole,
atomically.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path

from pytest_infratask.core.task import Criterion, Layout
from pytest_infratask.read.taskfile import (
    BOM,
    CHECKBOX,
    DEEP,
    FRONTMATTER_END,
    FRONTMATTER_FENCE,
    body_of,
    file_stamp,
    log_insertion,
    newline_of,
    split_lines,
    strip_ending,
    task_sections,
)
from pytest_infratask.record import patch
from pytest_infratask.record.buffer import HEAD, Buffer, Edit, joined
from pytest_infratask.util import files
from pytest_infratask.util.locks import Lock, LockDirError, LockTimeout, lock_for

TMP_SUFFIX = files.TMP_SUFFIX
LOCK_TIMEOUT = 120.0
UPDATED = re.compile(
    r"^(?P<key>updated(?:_date|_at)?)(?P<sep>[ \t]*:[ \t]*)(?P<q>['\"]?)"
    r"(?P<val>[^'\"#\r\n]*?)(?P=q)(?P<tail>[ \t]*(?:#.*)?)$"
)
STATUS = re.compile(
    r"^(?P<key>status)(?P<sep>[ \t]*:[ \t]*)(?P<q>['\"]?)"
    r"(?P<val>[^'\"#\r\n]*?)(?P=q)(?P<tail>[ \t]*(?:#.*)?)$"
)
"""Backlog.md's ``status:`` line, its value plain or quoted (a value holding a quote
is never rewritten)."""
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9 _./()+-]*(?<! )$")
_YAML_WORDS = frozenset(["true", "false", "yes", "no", "on", "off", "null", "y", "n"])
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_FORMATS = (
    (re.compile(r"^\d{4}-\d{2}-\d{2}$"), "%Y-%m-%d"),
    (re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"), "%Y-%m-%d %H:%M"),
    (re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"), "%Y-%m-%d %H:%M:%S"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z$"), "%Y-%m-%dT%H:%MZ"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"), "%Y-%m-%dT%H:%M:%SZ"),
    (re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$"), "%Y-%m-%dT%H:%M:%S+00:00"),
    (re.compile(r"^$"), "%Y-%m-%d"),
)


class WriteBackError(Exception):
    """The task file could not be updated; it is left exactly as it was."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def progress_entry(when: datetime, text: str) -> str:
    """``YYYY-MM-DD HH:MM: text`` on one line, as the progress log holds it."""
    flat = " ".join(text.split())
    return f"{when:%Y-%m-%d %H:%M}: {flat}"


ENTRY = re.compile(r"^(?P<when>\d{4}-\d{2}-\d{2} \d{2}:\d{2}): (?P<text>.*)$")
LOGGED = re.compile(r"^- (?P<when>\d{4}-\d{2}-\d{2} \d{2}:\d{2}): (?P<text>.*)$")
"""A progress line as the plugin writes it."""
REPEATED = re.compile(
    r"^(?P<text>.*) \((?P<count>\d+) times since (?P<since>\d{4}-\d{2}-\d{2} \d{2}:\d{2})\)$"
)
"""The count a repeated line carries: ``text (3 times since 2026-12-04 02:00)``."""


@dataclass(frozen=True)
class Change:
    """One write: optionally tick a criterion, always log entries.

    ``topic`` (``#2``, ``Verification``) makes a single entry collapsible: when the
    log's latest line mentioning the topic is a progress line saying the same thing,
    that line is rewritten with a count and the latest time instead of a new one
    appended, so a task failing the same way every night keeps one line for it.
    """

    tick: Criterion | None
    entries: Sequence[str]
    when: datetime
    topic: str | None = None
    status: str | None = None
    """The frontmatter's ``status`` value to write (``--infratask-status``); a file
    without the key is left without it."""


def apply(text: str, change: Change) -> str:
    """Return ``text`` with the change applied; pure, so it can be fuzzed."""
    return _edit(text, change, _place_of(text))[0]


Text = str | Buffer
"""A task file's text: as read, or as this process last wrote it (edited in place)."""

Stamp = tuple[int, int, int]


@dataclass
class _Place:
    """Where the next edits go in one exact version of a task file.

    Offsets the reader took (``Criterion.offset``, read-time coordinates) map onto
    this text through the two kinds of edit that move text: the ``updated`` line
    changing length (``moved``) and entries inserted at the log (``grown``, which
    shifts only what lay at or after the read-time insertion point ``base``).
    """

    stamp: Stamp | None
    log_at: int | None
    base: int
    newline: str
    moved: int = 0
    grown: int = 0
    mapped: bool = True
    shifts: tuple[tuple[int, int], ...] = ()
    """Log lines rewritten in place (a counted repeat), in read-time order: from
    offset ``t`` on, the text moved by ``d``."""

    @classmethod
    def seeded(cls, layout: Layout) -> _Place:
        base = layout.length if layout.log_at is None else layout.log_at
        return cls(layout.stamp, layout.log_at, base, layout.newline)

    def offset(self, criterion: Criterion) -> int | None:
        if not self.mapped or criterion.offset < 0:
            return None
        x = criterion.offset
        shifted = sum(d for t, d in self.shifts if x >= t)
        return x + self.moved + shifted + (self.grown if x >= self.base else 0)

    def shifted(self, end: int, delta: int) -> _Place:
        """This place once the line ending at ``end`` (in this place's text) grew by
        ``delta``. A line this process appended (past the read-time log) or a place
        that no longer maps leaves the offsets unmapped: ticks then search."""
        if delta == 0:
            return self
        total = sum(d for _, d in self.shifts)
        if not self.mapped or end > self.base + self.moved + total:
            return replace(self, mapped=False)
        at = end - self.moved
        for t, d in self.shifts:
            if at - d < t:
                break
            at -= d
        return replace(self, shifts=tuple(sorted([*self.shifts, (at, delta)])))


def _place_of(text: str) -> _Place:
    """The slow way: read the text's outline again (after someone else's edit)."""
    raw = split_lines(text)
    lines = [strip_ending(line) for line in raw]
    body = body_of(lines)
    starts = list(accumulate(map(len, raw), initial=0))
    try:
        sections = task_sections(body)
    except RecursionError:
        raise WriteBackError(f"not writing: {DEEP}") from None
    log_at = log_insertion(raw, sections.span("progress log"), starts)
    return _Place(None, log_at, len(text), newline_of(text), mapped=False)


def _edit(text: str, change: Change, place: _Place) -> tuple[str, bool, _Place]:
    """The new text; whether the change was recorded (False: another run had ticked
    the criterion already, so its progress line is that run's to write); and where
    the next edits go in the new text."""
    recorded, after, edits = _edits(text, change, place)
    return joined(text, edits), recorded, after


def _edits(text: Text, change: Change, place: _Place) -> tuple[bool, _Place, list[Edit]]:
    """``_edit``'s answers, with the edits that make the new text (in order, in the old
    text's offsets, each changing something) instead of the text."""
    edits: list[Edit] = []
    if change.tick is not None:
        box = _box_at(text, change.tick, place)
        if box is None:
            return False, place, []
        edits.append((box, box + 1, "x"))
    heading = _frontmatter_edits(text, change)
    edits += heading
    moved = sum(len(new) - (end - start) for start, end, new in heading)
    log_at, grown = place.log_at, 0
    repeat = _repeat_edit(text, change, place)
    if repeat is not None and log_at is not None:  # found in the log, before this point
        edits.append(repeat)
        delta = len(repeat[2]) - (repeat[1] - repeat[0])
        log_at += delta
        place = place.shifted(repeat[1], delta)
    elif change.entries:
        at, block, place = _log_edit(text, [f"- {e}" for e in change.entries], place)
        edits.append((at, at, block))
        log_at, grown = at + len(block), len(block)
    if log_at is not None and heading and heading[0][0] < log_at:
        log_at += moved  # the frontmatter comes before the log
    edits = sorted(e for e in edits if text[e[0] : e[1]] != e[2])
    after = replace(place, stamp=None, log_at=log_at, moved=place.moved + moved)
    after.grown += grown
    return True, after, edits


def _repeat_edit(text: Text, change: Change, place: _Place) -> Edit | None:
    """The edit that counts a repeat of the change's one entry in place (``Change``):
    the log is read backwards from its insertion point to its heading for the latest
    line mentioning the topic; None (append) unless that line says the same."""
    if change.topic is None or len(change.entries) != 1:
        return None  # the usual case (a tick), at no cost
    at, entry = place.log_at, ENTRY.match(change.entries[0])
    if entry is None or at is None or at > len(text):
        return None
    if 0 < at < len(text) and text[at - 1] != "\n":
        return None  # not a line start: the append finds the log again
    mentions = re.compile(rf"(?<!\w){re.escape(change.topic)}(?!\w)")
    end = at
    while end > 0:
        start = text.rfind("\n", 0, end - 1) + 1
        line = strip_ending(text[start:end])
        end = start
        if line.startswith("#"):
            return None  # the section's heading (or a subsection's): nothing on the topic
        if not mentions.search(line):
            continue
        found = LOGGED.match(line)
        if found is None:
            return None
        said, count, since = _count_of(found["text"], found["when"])
        if said != entry["text"]:
            return None
        counted = f"- {entry['when']}: {said} ({count + 1} times since {since})"
        return start, start + len(line), counted
    return None


def _count_of(text: str, when: str) -> tuple[str, int, str]:
    """A logged line's text without its count, the count, and the first time."""
    found = REPEATED.match(text)
    if found is None:
        return text, 1, when
    return found["text"], int(found["count"]), found["since"]


def _box_at(text: Text, criterion: Criterion, place: _Place) -> int | None:
    """Offset of the criterion's checkbox character; None when another run ticked it."""
    raw = criterion.raw_line
    pos = place.offset(criterion)
    if pos is not None and text.startswith(raw, pos) and (pos == 0 or text[pos - 1] == "\n"):
        end = pos + len(raw)
        match = CHECKBOX.match(raw)
        if match is not None and (end == len(text) or text.startswith(("\n", "\r\n"), end)):
            return pos + match.start("box")  # the usual case: no search, no split
    lines = split_lines(str(text))
    found = _tick_line(lines, criterion)
    if found is None:
        return None
    i, column = found
    return sum(map(len, lines[:i])) + column


def _tick_line(lines: list[str], criterion: Criterion) -> tuple[int, int] | None:
    """Line index and column of the box to tick; None when it is ticked already."""
    hint = criterion.line - 1
    outside = _outside_fences(lines)
    # The line it was read from first. If the file moved meanwhile (other edits, or
    # a progress log above the criteria), the first open look-alike outside code
    # fences: a fenced example is never ticked in its place. A ticked look-alike
    # means "done already" only when no open one is left, or of two identical
    # criteria the second would never be ticked once the first was.
    candidates = sorted(range(len(lines)), key=lambda i: (i != hint, not outside[i], i))
    for i in candidates:
        body = strip_ending(lines[i])
        if body == criterion.raw_line and (match := CHECKBOX.match(body)) is not None:
            return i, match.start("box")
    for i in candidates:
        body = strip_ending(lines[i])
        match = CHECKBOX.match(body)
        if (
            match is not None
            and match["box"] in "xX"
            and _with_box(body, start=match.start("box"), box=" ") == criterion.raw_line
        ):
            return None  # another run ticked it already
    raise WriteBackError(
        f"criterion #{criterion.number} ({criterion.text!r}) is no longer in the file as it was "
        f"read (line {criterion.line}): the file changed during the run, so it was not ticked"
    )


def _outside_fences(lines: list[str]) -> list[bool]:
    result, fence = [], ""
    for line in lines:
        match = FENCE.match(line) if ("`" in line or "~" in line) else None
        if fence:
            result.append(False)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = ""
        elif match:
            result.append(False)
            fence = match.group(1)
        else:
            result.append(True)
    return result


def _with_box(body: str, start: int, box: str) -> str:
    return body[:start] + box + body[start + 1 :]


_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?P<sep>[Tt ])\d{2}:\d{2}(?P<sec>:\d{2}(?P<frac>\.\d{1,9})?)?"
    r"(?P<tz>[Zz]|[+-](?P<hh>\d{2}):?(?P<mm>\d{2}))?$"
)


def format_like(previous: str, when: datetime) -> str | None:
    for pattern, fmt in _FORMATS:
        if pattern.match(previous):
            return when.strftime(fmt)
    match = _ISO.match(previous)
    if match is None:
        return None
    # any other ISO 8601 form: same separator, precision and zone notation; a time
    # with an offset is given in that offset
    tz = match["tz"] or ""
    if match["hh"] is not None:
        sign = -1 if tz.startswith("-") else 1
        offset = timedelta(hours=int(match["hh"]), minutes=int(match["mm"]))
        when = when.astimezone(timezone(sign * offset))
    text = when.strftime(f"%Y-%m-%d{match['sep']}%H:%M")
    if match["sec"]:
        text += when.strftime(":%S")
    if match["frac"]:
        digits = len(match["frac"]) - 1
        text += "." + f"{when.microsecond:06d}{'0' * 3}"[:digits]
    return text + tz


def _frontmatter_lines(text: Text) -> list[tuple[int, str]]:
    """Each frontmatter line (offset, text without its ending); none when the text has
    no closed frontmatter. Read from the text's start, the whole text only for a
    frontmatter longer than that."""
    head = text[:HEAD]
    found = _closed_frontmatter(head, complete=len(head) == len(text))
    if found is None and len(head) < len(text):
        found = _closed_frontmatter(str(text), complete=True)
    return found or []


def _closed_frontmatter(text: str, complete: bool) -> list[tuple[int, str]] | None:
    """``_frontmatter_lines`` of ``text``; None when its frontmatter is not closed in it
    (``complete``: ``text`` is the whole file, not its start)."""
    pos, lines = 0, list[tuple[int, str]]()
    while True:
        newline = text.find("\n", pos)
        if newline < 0 and not complete:
            return None  # the line may go on past the start read
        end = len(text) if newline < 0 else newline + 1
        line = strip_ending(text[pos:end])
        if pos == 0:
            if not FRONTMATTER_FENCE.match(line):
                return []
        elif FRONTMATTER_END.match(line):
            return lines
        else:
            lines.append((pos, line))
        if newline < 0:
            return None  # never closed: not frontmatter
        pos = end


def _frontmatter_edits(text: Text, change: Change) -> list[Edit]:
    """The ``updated`` and ``status`` lines' edits, in file order; only the frontmatter
    is read, and only the first line of each key counts."""
    updated: Edit | None = None
    status: Edit | None = None
    for pos, line in _frontmatter_lines(text):
        if updated is None and (match := UPDATED.match(line)) is not None:
            updated = _updated_line(match, change.when, pos, line) or (pos, pos, "")
        elif change.status is not None and status is None and (match := STATUS.match(line)):
            status = _status_line(match, change.status, pos, line) or (pos, pos, "")
    found = [e for e in (updated, status) if e is not None and e[2]]
    return sorted(found)


def _updated_line(match: re.Match[str], when: datetime, pos: int, line: str) -> Edit | None:
    """The new ``updated`` line, in the format it has; None for a format not known."""
    value = format_like(match["val"], when)
    if value is None:
        return None
    return pos, pos + len(line), _reshaped(match, f"{match['q']}{value}{match['q']}")


def _status_line(match: re.Match[str], value: str, pos: int, line: str) -> Edit | None:
    """The ``status`` line holding ``value`` in the quoting it had (a plain value YAML
    would read otherwise is single-quoted); None when it holds it already."""
    if match["val"] == value:
        return None
    q = match["q"]
    if (not q and not (_PLAIN.match(value) and value.lower() not in _YAML_WORDS)) or (
        q == '"' and ('"' in value or "\\" in value)
    ):
        q = "'"
    shown = value.replace("'", "''") if q == "'" else value
    return pos, pos + len(line), _reshaped(match, f"{q}{shown}{q}")


def _reshaped(match: re.Match[str], quoted: str) -> str:
    """A ``key: value`` line with a new (quoted) value, its spacing and comment kept."""
    sep = match["sep"] if match["val"] or match["q"] else match["sep"].rstrip() + " "
    tail = match["tail"]
    if tail.startswith("#") and not match["q"]:
        tail = " " + tail  # an empty value's comment must stay a comment
    return f"{match['key']}{sep}{quoted}{tail}"


def _log_edit(text: Text, entries: list[str], place: _Place) -> tuple[int, str, _Place]:
    """Where the entries go and the text that goes there."""
    at = place.log_at
    if at is not None and (at > len(text) or (0 < at < len(text) and text[at - 1] != "\n")):
        place = _place_of(str(text))  # should not happen: a place always fits its text
        at = place.log_at
    newline = place.newline
    # Ending the last line when it has none. After a stray CR only CRLF keeps that
    # CR part of the line, as the file was read; a bare LF would absorb it.
    close = "\r\n" if text.endswith("\r") else newline
    if at is None:  # no Progress Log section: start one at the end
        lead = close if text and not text.endswith("\n") else ""
        block = lead + newline + "## Progress Log" + newline
        return len(text), block + "".join(e + newline for e in entries), place
    if at == len(text) and text and not text.endswith("\n"):
        return at, close + newline.join(entries), place  # the file ends without a newline
    return at, "".join(e + newline for e in entries), place


def lock(path: Path) -> Lock:
    """The task file's lock, kept outside the repository so no stray files appear in
    the user's tree; reentrant, so a run already holding it (while a criterion runs)
    writes without waiting."""
    return lock_for(path, "", f"task file {path.name}")


def stale_temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))


def _writable(path: Path, info: os.stat_result) -> None:
    if not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise WriteBackError(f"{path} is read-only; make it writable (chmod u+w {path}) and rerun")


def _rewrite(path: Path, data: bytes, info: os.stat_result) -> os.stat_result:
    """The task file replaced whole and synced (util/files.py), keeping its mode and
    owner: for edits that move bytes (a repeat counted mid-log, a log that is not
    the last section, an ``updated`` value changing length)."""
    try:
        return files.atomic_write(path, data, durable=True, like=info)
    except OSError as exc:
        raise WriteBackError(f"could not write {path}: {exc.strerror or exc}") from exc


def _in_place(edits: list[Edit], version: _Version) -> list[patch.Patch] | None:
    """The edits as byte patches when every one keeps the bytes around it in place:
    same-length replacements, and insertions at the very end; else None."""
    text, bom, plain = version.text, version.bom, version.ascii
    patches = []
    for start, end, new in edits:
        old = text[start:end]
        at = bom + (start if plain else len(text[:start].encode()))
        old_b, new_b = old.encode(), new.encode()
        if start == end == len(text):
            patches.append(patch.Patch(at, b"", new_b))
        elif len(old_b) != len(new_b) or not old_b:
            return None
        else:
            patches.append(patch.Patch(at, old_b, new_b))
    return patches


@dataclass(frozen=True)
class _Version:
    """The text of one version of the file, as this process last read or wrote it:
    while the file's stamp is unchanged, it is not read again. A write edits ``text``
    in place and files it under the new stamp."""

    stamp: Stamp
    text: Buffer
    bom: int
    ascii: bool


_PLACES: dict[Path, _Place] = {}
_VERSIONS: dict[Path, _Version] = {}
_SWEPT: set[Path] = set()


def _stamp(path: Path) -> Stamp | None:
    try:
        return file_stamp(path.stat())
    except OSError:
        return None


def _journal(held: Lock) -> Path:
    """The intent journal of the file ``held`` locks: beside its lock, outside the tree."""
    return held.path.with_suffix(".intent")


def settle(path: Path) -> None:
    """Finish a tick a killed run left half written, before the file is read: a reader
    must never see a box ticked without its progress line. One small read when there
    is none."""
    try:
        held = lock(path)
    except LockDirError:
        return  # writes will say so
    journal = _journal(held)
    if not patch.pending(journal):
        return
    try:
        held.acquire(LOCK_TIMEOUT)
    except LockTimeout as exc:
        raise WriteBackError(f"not settling {path.name}: {exc}") from None
    try:
        _settle_locked(path, journal)
    finally:
        held.release()


def _settle_locked(path: Path, journal: Path) -> None:
    real = Path(os.path.realpath(path))
    try:
        patch.settle(real, journal)
    except OSError as exc:
        raise WriteBackError(
            f"could not finish the interrupted write of {path}: {exc.strerror or exc}"
        ) from exc


def flush(path: Path) -> None:
    """Sync the ticks this process wrote to ``path`` and not synced yet (the task's
    end). Each is durable in the intent journal already: a failure here leaves them
    for the next run to finish."""
    with _holding(path, "syncing") as journal:
        try:
            patch.flush(Path(os.path.realpath(path)), journal)
        except OSError as exc:
            raise WriteBackError(
                f"could not sync {path} (its ticks are kept for the next run to finish): "
                f"{exc.strerror or exc}"
            ) from exc


@contextlib.contextmanager
def _holding(path: Path, doing: str) -> Iterator[Path]:
    """The task file's lock held (``doing`` says what waits for it, when it cannot be
    had); its intent journal."""
    held = lock(path)
    try:
        held.acquire(LOCK_TIMEOUT)
    except (LockTimeout, LockDirError) as exc:
        raise WriteBackError(f"not {doing} {path.name}: {exc}") from None
    try:
        yield _journal(held)
    finally:
        held.release()


def ticked_on_disk(path: Path, criterion: Criterion, layout: Layout | None = None) -> bool:
    """Whether another run ticked ``criterion`` since the file was read.

    A file still exactly as it was read, or as this process last wrote it (same
    inode, time and size), cannot hold anyone else's tick, so it is not read again.
    """
    stamp = _stamp(path)
    known = _PLACES.get(path)
    if (known is not None and known.stamp == stamp) or (layout and layout.stamp == stamp):
        return False
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return _tick_line(split_lines(text), criterion) is None
    except WriteBackError:
        return False


def write(path: Path, change: Change, layout: Layout | None = None) -> bool:
    """Apply one change to the file on disk, under the task file's lock.

    ``layout`` is the task's, from reading the file: while the file is unchanged
    since (or since this process last wrote it), the edits go to known offsets
    and the file is not parsed again. Returns False, writing nothing, when the
    criterion to tick was ticked by another run meanwhile.
    """
    with _holding(path, "writing") as journal:
        return _write_locked(path, change, journal, layout)


def _write_locked(
    path: Path, change: Change, journal: Path, layout: Layout | None, again: bool = True
) -> bool:
    if path not in _SWEPT:  # once per file and process: a killed run's leftovers
        _SWEPT.add(path)
        for stale in stale_temp_files(path):
            with contextlib.suppress(OSError):
                stale.unlink()
    real = Path(os.path.realpath(path))
    if patch.foreign(real, journal):  # not this process's own unsynced ticks
        _settle_locked(path, journal)
    version, info = _read(real, path)
    place = _PLACES.get(path)
    if place is not None and place.stamp == version.stamp:
        pass  # as this process last wrote it
    elif layout is not None and layout.stamp == version.stamp:
        place = _Place.seeded(layout)  # as the reader saw it
    else:
        place = _place_of(str(version.text))
    recorded, after, edits = _edits(version.text, change, place)
    if not edits:
        return recorded
    _writable(real, info)
    patches = _in_place(edits, version)
    if patches is None:
        prefix = BOM.encode() if version.bom else b""
        written = _rewrite(real, prefix + joined(str(version.text), edits).encode(), info)
    else:
        try:
            written = patch.apply(real, journal, patches, version.stamp)
        except patch.Moved:
            if not again:
                raise WriteBackError(f"not writing {path.name}: it keeps changing") from None
            return _write_locked(path, change, journal, None, again=False)  # found anew
        except OSError as exc:
            raise WriteBackError(f"could not write {real}: {exc.strerror or exc}") from exc
    after.stamp = file_stamp(written)
    _PLACES[path] = after
    version.text.edit(edits)  # the file as written: no copy of the whole text
    plain = version.ascii and all(e[2].isascii() for e in edits)
    _VERSIONS[path] = _Version(after.stamp, version.text, version.bom, plain)
    return recorded


def _read(real: Path, path: Path) -> tuple[_Version, os.stat_result]:
    """The file's text: from memory while it is as this process last wrote it."""
    try:
        info = real.stat()
        known = _VERSIONS.get(path)
        if known is not None and known.stamp == file_stamp(info):
            return known, info
        with real.open("rb") as handle:
            data = handle.read()
            info = os.fstat(handle.fileno())
    except OSError as exc:
        raise WriteBackError(f"could not read {path}: {exc.strerror or exc}") from exc
    bom = len(BOM.encode()) if data.startswith(BOM.encode()) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WriteBackError(f"{path} is no longer valid UTF-8; not touching it") from exc
    return _Version(file_stamp(info), Buffer(text), bom, len(text) == len(data) - bom), info
