"""Edit a task file in place, through an intent journal, so a tick costs the same in
a file of ten criteria and of ten thousand.

A tick changes a few bytes: the checkbox, the ``updated`` value (same length) and
lines appended at the end. Rewriting the whole file for that would cost its size
on every tick. Instead, under the task file's lock, the intended edit (offsets, old
and new bytes, the file's identity) is written to a small journal beside the lock
and synced; then the bytes are written in place and the file synced; then the
journal is emptied. A run killed at any moment leaves either a journal that was
never complete (nothing was edited yet: it is dropped) or one whose edit is
finished by the next writer, or the next reader (``settle``), before anything
else: idempotently, since each byte range is either still old (written) or
already new (left). A file that no longer holds either (someone else's edit
since) makes the journal stale: it is dropped and the file left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"infratask-intent-1\n"
_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload


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


def apply(
    path: Path, journal: Path, patches: Sequence[Patch], stamp: tuple[int, int, int]
) -> os.stat_result:
    """Make the edit durable and whole (see the module); returns the file's new stat.

    ``path`` is the real file (no symlink); the caller holds its lock and made the
    edit for the version ``stamp`` (inode, mtime, size) names: any other raises
    ``Moved``. On an error the file is put back and the journal emptied, then the
    OSError is raised.
    """
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if (info.st_ino, info.st_mtime_ns, info.st_size) != stamp:
            raise Moved(path)
        jfd = _open_journal(journal)
        try:
            _journaled(fd, jfd, info, patches)
            _clear(jfd)  # done: a replay would find every range new anyway
            return os.fstat(fd)
        finally:
            os.close(jfd)
    finally:
        os.close(fd)


def _journaled(fd: int, jfd: int, info: os.stat_result, patches: Sequence[Patch]) -> None:
    """Intent synced, then the edit synced. An OSError (a full disk) puts the file back
    and empties the journal; when even that fails, or on anything else (an interrupt),
    the journal stays for the next writer or reader to finish the edit."""
    record = _record(info, patches)
    touched = False
    try:
        os.pwrite(jfd, record, 0)  # its length is in it: an older record's tail is ignored
        os.fdatasync(jfd)
        touched = True
        _write(fd, patches)
        os.fsync(fd)
    except OSError as exc:
        if touched:
            try:
                _undo(fd, patches, info.st_size)
            except OSError:
                raise exc from None  # the journal stays: the next run finishes the edit
        with contextlib.suppress(OSError):
            _clear(jfd)
        raise


def settle(path: Path, journal: Path) -> bool:
    """Finish the edit a killed run left in ``journal``, under the file's lock.
    Returns whether the file was changed."""
    try:
        with journal.open("rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return False
    if not data:
        return False
    intent = _parse(data)
    changed = False
    if intent is not None:
        with contextlib.suppress(FileNotFoundError):
            changed = _finish(path, *intent)
    with contextlib.suppress(FileNotFoundError):
        os.truncate(journal, 0)
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


def _clear(jfd: int) -> None:
    """Mark the journal empty by overwriting its ``MAGIC``. Never truncated: on ext4 a
    truncate frees the block the next record must allocate again, and the record's
    sync then commits that allocation too (0.15 ms on every tick)."""
    os.pwrite(jfd, bytes(len(MAGIC)), 0)


def _record(info: os.stat_result, patches: Sequence[Patch]) -> bytes:
    payload = json.dumps(
        {
            "file": [info.st_dev, info.st_ino, info.st_size],
            "patches": [[p.at, p.old.hex(), p.new.hex()] for p in patches],
        },
        separators=(",", ":"),
    ).encode()
    return MAGIC + _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _parse(data: bytes) -> tuple[tuple[int, int, int], list[Patch]] | None:
    """The journal's intent; None when it was never completely written (the run was
    killed while writing it, before it touched the file)."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _HEADER.size:
        return None
    length, crc = _HEADER.unpack_from(data, len(MAGIC))
    payload = data[len(MAGIC) + _HEADER.size :][:length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        found = json.loads(payload)
        dev, ino, size = (int(x) for x in found["file"])
        patches = [
            Patch(int(a), bytes.fromhex(o), bytes.fromhex(n)) for a, o, n in found["patches"]
        ]
    except (ValueError, KeyError, TypeError):
        return None
    return (dev, ino, size), patches


def _finish(path: Path, identity: tuple[int, int, int], patches: list[Patch]) -> bool:
    dev, ino, size = identity
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (dev, ino):
            return False  # replaced since (by a whole-file write or an editor): not ours
        todo = _left_to_do(fd, info.st_size, size, patches)
        if not todo:
            return False
        _write(fd, todo)
        os.fsync(fd)
        return True
    finally:
        os.close(fd)


def _left_to_do(fd: int, now: int, size: int, patches: list[Patch]) -> list[Patch]:
    """The patches still to write; none when any range holds neither its old nor its
    new bytes, or the file is neither as long as before nor as after the edit."""
    appended = sum(len(p.new) for p in patches if not p.old)
    if now not in (size, size + appended):
        return []
    todo = []
    for p in patches:
        if not p.old:  # an append: done when the file has grown
            if now == size:
                todo.append(p)
            elif os.pread(fd, len(p.new), p.at) != p.new:
                return []
            continue
        held = os.pread(fd, len(p.new), p.at)
        if held == p.old:
            todo.append(p)
        elif held != p.new:
            return []
    return todo


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


_SYNCED: set[Path] = set()


def _open_journal(journal: Path) -> int:
    """The journal, created once and kept; its directory synced once per process so
    the journal itself survives a power cut."""
    fd = os.open(journal, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if journal.parent not in _SYNCED:
        try:
            dirfd = os.open(journal.parent, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError:
            os.close(fd)
            raise
        _SYNCED.add(journal.parent)
    return fd
