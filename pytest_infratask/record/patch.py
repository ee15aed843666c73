"""Edit a task file in place, through an intent journal, so a tick costs the same in
a file of ten criteria and of ten thousand, and syncs one small record.

A tick changes a few bytes: the checkbox, the ``updated`` value (same length) and
lines appended at the end. Rewriting the whole file for that would cost its size
on every tick. Instead, under the task file's lock, the intended edit (offsets, old
and new bytes, the file's identity) is written to a journal beside the lock and
synced; then the bytes are written in place.

The ticks since the file was last synced form a batch: each appends its record to
the journal after the one before (``_Batch``), so a tick syncs its record alone,
and the file is synced once for a second of ticks (``FLUSH_AFTER``), at the task's
end (``flush``), or by whoever settles the journal; only then is the journal
emptied. Every tick is as durable once ``apply`` returns as with a sync of the file
per tick: a power cut leaves the file some mix of its synced and unsynced bytes, and
the journal's records finish it.

A run killed (or a machine stopped) at any moment leaves a journal whose records,
up to the first incompletely written one (a tick that never touched the file, and
was never reported), are finished by the next writer or reader (``settle``) before
anything else: idempotently, since each byte range is still old, already new, or
(appended, on a file system that extended the file before writing its data) zeros.
A file that holds none of those (someone else's edit since) makes the journal
stale: it is dropped and the file left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import struct
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_infratask.read.taskfile import file_stamp

MAGIC = b"infratask-intent-1\n"
_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
JOURNAL_SIZE = 32768
"""The journal's size, written once: records overwrite allocated bytes, so a tick's
sync writes its block and no file-system metadata. A batch ends when it is full."""
FLUSH_AFTER = 1.0
"""Seconds of ticks a file may hold unsynced (each durable in the journal): what a
reader other than the plugin may miss after a power cut, until the next run."""

Identity = tuple[int, int, int]
"""A file's device, inode and size: what an intent was made for."""


@dataclass(frozen=True)
class Patch:
    """``new`` at byte offset ``at``: replacing ``old`` (same length), or, with ``old``
    empty, appended at the end of the file (``at`` is its size then)."""

    at: int
    old: bytes
    new: bytes


class Moved(Exception):
    """The file is no longer the version the edit was made for (someone edited or
    replaced it a moment ago); nothing was written."""


@dataclass
class _Batch:
    """This process's ticks of one file since the file was last synced (``identity``):
    their edit composed, and where the journal holds their records."""

    identity: Identity
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    """In every record of the batch: a record left by an older batch ends it."""
    patches: list[Patch] = field(default_factory=list)
    first: bytes = b""
    last: tuple[int, bytes] = (0, b"")
    """The latest record and its offset: the next goes after it."""
    stamp: tuple[int, int, int] = (0, 0, 0)
    """The file's inode, mtime and size after this process's last write."""
    started: float = field(default_factory=time.monotonic)

    @property
    def end(self) -> int:
        return self.last[0] + len(self.last[1])


_BATCHES: dict[Path, _Batch] = {}
"""Per journal: the ticks its file holds unsynced, this process's."""


def apply(
    path: Path, journal: Path, patches: Sequence[Patch], stamp: tuple[int, int, int]
) -> os.stat_result:
    """Make the edit durable and whole (see the module); returns the file's new stat.

    ``path`` is the real file (no symlink); the caller holds its lock and made the
    edit for the version ``stamp`` (inode, mtime, size) names: any other raises
    ``Moved``. On an error the file is put back and the journal ends before this
    edit, then the OSError is raised.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if file_stamp(info) != stamp:
            raise Moved(path)
        jfd = _open_journal(journal)
        try:
            batch, composed, at, record = _joined(journal, jfd, fd, info, patches)
            _journaled(fd, jfd, info, patches, at, record)
            written = os.fstat(fd)
            batch.patches, batch.last, batch.stamp = composed, (at, record), file_stamp(written)
            batch.first = batch.first or record
            _BATCHES[journal] = batch
            if time.monotonic() - batch.started >= FLUSH_AFTER or not _lasting(jfd):
                _flush(fd, jfd, journal)
            return written
        finally:
            os.close(jfd)
    finally:
        os.close(fd)


def _joined(
    journal: Path, jfd: int, fd: int, info: os.stat_result, patches: Sequence[Patch]
) -> tuple[_Batch, list[Patch], int, bytes]:
    """The batch the edit joins, the batch's edit with it, and its record and offset.
    A batch starts anew when the file was synced since (by anyone), the journal
    holds another's record, or the edit does not compose or fit (the file is synced
    first)."""
    batch = _BATCHES.get(journal)
    if batch is not None and _live(batch, jfd, info):
        composed = compose(batch.patches, batch.identity[2], patches)
        record = _record(batch.identity, batch.token, patches)
        if composed is not None and batch.end + len(record) <= JOURNAL_SIZE:
            return batch, composed, batch.end, record
        _flush(fd, jfd, journal)
    _BATCHES.pop(journal, None)
    batch = _Batch((info.st_dev, info.st_ino, info.st_size))
    return batch, list(patches), 0, _record(batch.identity, batch.token, patches)


def _live(batch: _Batch, jfd: int, info: os.stat_result) -> bool:
    """Whether the file is as this process last wrote it and the journal still holds
    the batch's records (nobody settled it since)."""
    at, last = batch.last
    return (
        batch.identity[:2] == (info.st_dev, info.st_ino)
        and batch.stamp == file_stamp(info)
        and os.pread(jfd, len(batch.first), 0) == batch.first
        and os.pread(jfd, len(last), at) == last
    )


def compose(earlier: Sequence[Patch], size: int, later: Sequence[Patch]) -> list[Patch] | None:
    """``earlier`` (an edit of a file of ``size`` bytes) followed by ``later`` (an edit of
    the result) as one edit of that file; None when a range of ``later`` touches one
    of ``earlier`` or what it appended, or spans the end the file had. A range edited
    twice would have a value between its old and new ones, which a replay could not
    tell from someone else's edit: the batch ends first (the ``updated`` value once a
    minute, a repeat's count)."""
    inplace = {p.at: p for p in earlier if p.old}
    tail = b"".join(p.new for p in earlier if not p.old)
    for p in later:
        end = p.at + len(p.old)
        if not p.old:
            if p.at != size + len(tail):
                return None
            tail += p.new
        elif end > size or any(q.at < end and p.at < q.at + len(q.old) for q in inplace.values()):
            return None
        else:
            inplace[p.at] = p
    composed = sorted(inplace.values(), key=lambda p: p.at)
    return [*composed, Patch(size, b"", tail)] if tail else composed


def _journaled(
    fd: int, jfd: int, info: os.stat_result, patches: Sequence[Patch], at: int, record: bytes
) -> None:
    """Intent synced, then the edit written. An OSError (a full disk) puts the file back
    and ends the journal before the record; when even that fails, or on anything
    else (an interrupt), the journal stays for the next writer or reader to finish
    the edit."""
    touched = False
    try:
        os.pwrite(jfd, record, at)  # its length is in it: what follows is not read
        os.fdatasync(jfd)
        touched = True
        _write(fd, patches)
    except OSError as exc:
        if touched:
            try:
                _undo(fd, patches, info.st_size)
            except OSError:
                raise exc from None  # the journal stays: the next run finishes the edit
        with contextlib.suppress(OSError):
            os.pwrite(jfd, bytes(len(MAGIC)), at)
            os.fdatasync(jfd)
        raise


def flush(path: Path, journal: Path) -> None:
    """Sync the ticks this process left unsynced in ``path`` and empty its journal
    (the task's end; under the file's lock). An OSError leaves the journal, so the
    next run finishes the file."""
    batch = _BATCHES.pop(journal, None)
    if batch is None:
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        jfd = _open_journal(journal)
        try:
            if _live(batch, jfd, os.fstat(fd)):  # else settled (synced) or replaced since
                _flush(fd, jfd, journal)
        finally:
            os.close(jfd)
    finally:
        os.close(fd)


def _flush(fd: int, jfd: int, journal: Path) -> None:
    os.fsync(fd)
    _clear(jfd)  # done: a replay would find every range new anyway
    _BATCHES.pop(journal, None)


def settle(path: Path, journal: Path) -> bool:
    """Finish the edit a killed run (or one not synced yet) left in ``journal``, sync the
    file and empty the journal, under the file's lock. Returns whether the file was
    changed."""
    _BATCHES.pop(journal, None)
    try:
        with journal.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return False
    if not data.startswith(MAGIC):
        return False
    intent = _parse(data)
    changed = False
    if intent is not None:
        with contextlib.suppress(FileNotFoundError):
            changed = _finish(path, *intent)
    with contextlib.suppress(FileNotFoundError):
        fd = os.open(journal, os.O_WRONLY | os.O_CLOEXEC)
        try:
            _clear(fd)
        finally:
            os.close(fd)
    return changed


def pending(journal: Path) -> bool:
    """Whether a journal holds an edit: it starts with ``MAGIC`` (one small read, cheap
    enough for every read of the task file)."""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.pread(fd, len(MAGIC), 0) == MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


def foreign(path: Path, journal: Path) -> bool:
    """Whether ``journal`` holds an edit to settle before writing ``path``: any but the
    ticks this process is batching, as it left them (one open of the journal per tick)."""
    batch = _BATCHES.get(journal)
    if batch is None:
        return pending(journal)
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # no journal: nothing to settle
    try:
        if _live(batch, fd, os.stat(path)):
            return False
        return os.pread(fd, len(MAGIC), 0) == MAGIC
    except OSError:
        return True  # settling says what is wrong
    finally:
        os.close(fd)


def _clear(jfd: int) -> None:
    """Mark the journal empty by overwriting its first ``MAGIC``. Never truncated: on
    ext4 a truncate frees the blocks the next records must allocate again, and their
    syncs then commit that allocation too (0.15 ms on every tick)."""
    os.pwrite(jfd, bytes(len(MAGIC)), 0)


def _record(identity: Identity, token: str, patches: Sequence[Patch]) -> bytes:
    payload = json.dumps(
        {
            "file": list(identity),
            "batch": token,
            "patches": [[p.at, p.old.hex(), p.new.hex()] for p in patches],
        },
        separators=(",", ":"),
    ).encode()
    return MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _parse(data: bytes) -> tuple[Identity, list[Patch]] | None:
    """The journal's intent: its records' edits composed, up to the first incompletely
    written record (the run was killed while writing it, before it touched the file)
    or one of another batch. None when there is none."""
    found: tuple[Identity, list[Patch]] | None = None
    token, at = None, 0
    while (read := _read_record(data, at)) is not None:
        identity, batch, patches, at = read
        if found is None:
            found, token = (identity, patches), batch
            continue
        composed = compose(found[1], identity[2], patches)
        if batch != token or identity != found[0] or composed is None:
            break
        found = (identity, composed)
    return found


def _read_record(data: bytes, at: int) -> tuple[Identity, str | None, list[Patch], int] | None:
    """The record at offset ``at``: its file, batch and edit, and where it ends."""
    start = at + len(MAGIC) + _HEADER.size
    if data[at : at + len(MAGIC)] != MAGIC or len(data) < start:
        return None
    length, crc = _HEADER.unpack_from(data, at + len(MAGIC))
    payload = data[start : start + length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        found = json.loads(payload)
        dev, ino, size = (int(x) for x in found["file"])
        patches = [
            Patch(int(a), bytes.fromhex(o), bytes.fromhex(n)) for a, o, n in found["patches"]
        ]
        batch = found.get("batch")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (dev, ino, size), batch, patches, start + length


def _finish(path: Path, identity: Identity, patches: list[Patch]) -> bool:
    """Write every range of the intent again (an unsynced write that never reached the
    disk is not trusted from the page cache), then sync the file."""
    dev, ino, size = identity
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (dev, ino):
            return False  # replaced since (by a whole-file write or an editor): not ours
        lacking = _left_to_do(fd, info.st_size, size, patches)
        if lacking is None:
            return False
        _write(fd, patches)
        os.fsync(fd)
        return lacking
    finally:
        os.close(fd)


def _left_to_do(fd: int, now: int, size: int, patches: list[Patch]) -> bool | None:
    """Whether the file still lacks part of the edit; None (stale) when a range holds
    neither its old nor its new bytes, or the file is shorter than it was or longer
    than the edit makes it. An appended range may hold its new bytes in part, then
    zeros or nothing."""
    appended = b"".join(p.new for p in patches if not p.old)
    if not size <= now <= size + len(appended):
        return None
    held = os.pread(fd, now - size, size)
    if any(h not in (n, 0) for h, n in zip(held, appended, strict=False)):
        return None
    lacking = held != appended
    for p in patches:
        if p.old:
            held = os.pread(fd, len(p.new), p.at)
            if held == p.old:
                lacking = True
            elif held != p.new:
                return None
    return lacking


def _write(fd: int, patches: Sequence[Patch]) -> None:
    for p in patches:
        view = memoryview(p.new)
        at = p.at
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n


def _undo(fd: int, patches: Sequence[Patch], size: int) -> None:
    _write(fd, [Patch(p.at, p.new, p.old) for p in patches if p.old])
    os.ftruncate(fd, size)
    os.fsync(fd)


MEMORY = frozenset({"tmpfs", "ramfs"})
_LASTING: dict[int, bool] = {}


def _lasting(jfd: int) -> bool:
    """Whether the journal survives a power cut: not on a file system kept in memory
    (a tmpfs ``/tmp``), where each tick syncs the file itself instead."""
    device = os.fstat(jfd).st_dev
    if device not in _LASTING:
        _LASTING[device] = _file_system(device) not in MEMORY
    return _LASTING[device]


def _file_system(device: int) -> str:
    """The type of the file system on ``device``, from ``/proc/self/mountinfo`` ("" when
    it cannot be told)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            if len(fields) > 2 and fields[2] == wanted and " - " in line:
                return line.split(" - ", 1)[1].split()[0]
    return ""


_SYNCED: set[Path] = set()


def _open_journal(journal: Path) -> int:
    """The journal, created once (``JOURNAL_SIZE`` bytes, synced) and kept; its
    directory synced once per process so the journal itself survives a power cut."""
    fd = os.open(journal, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size < JOURNAL_SIZE:
            os.pwrite(fd, bytes(JOURNAL_SIZE - size), size)
            os.fdatasync(fd)
        if journal.parent not in _SYNCED:
            dirfd = os.open(journal.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
            _SYNCED.add(journal.parent)
    except OSError:
        os.close(fd)
        raise
    return fd
