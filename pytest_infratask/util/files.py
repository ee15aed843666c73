"""Replace a file whole: every file the plugin writes goes through ``atomic_write``.

A temp file in the same directory is written, synced when asked, and renamed over
the target: a reader (or a run killed half way) sees the old file or the new one,
never a part. The temp file's name ends in ``TMP_SUFFIX``, so one left by a
killed process is recognised (and never committed); it is removed on any error.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path

TMP_SUFFIX = ".infratask-tmp"


def atomic_write(
    path: Path,
    data: bytes | str,
    *,
    durable: bool = False,
    like: os.stat_result | None = None,
) -> os.stat_result:
    """Write ``data`` (text as UTF-8) to ``path`` whole, in an existing directory;
    returns the new file's stat.

    ``durable`` syncs the data before the rename (the task file: a tick must survive
    a crash); ``like`` gives the new file the old one's mode, and its owner when
    running as root. The directory is not synced: after a power cut the file is the
    old one or the new one, whole either way.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if like is not None:
                _same_owner_and_mode(fd, like)
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(fd)
            written = os.fstat(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return written


def _same_owner_and_mode(fd: int, like: os.stat_result) -> None:
    os.fchmod(fd, stat.S_IMODE(like.st_mode))
    if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()) and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.fchown(fd, like.st_uid, like.st_gid)


def report_path(report_dir: Path, task_id: str) -> Path:
    """``<report_dir>/<task_id>.json``; a name that could leave the directory (ids are
    checked at collection, this is the second lock) gets its unsafe characters replaced."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).lstrip(".") or "_"
    path = report_dir / f"{name}.json"
    if path.parent != report_dir:  # pragma: no cover - the substitution above rules it out
        raise ValueError(f"report name {task_id!r} leaves {report_dir}")
    return path


def output_problem(path: Path, *, directory: bool) -> str | None:
    """Why ``path`` cannot receive an output (``directory``: a directory of files), or
    None. Missing directories on the way are fine (they are created); the nearest one
    that exists must take a new file, which is tried, since permission bits do not
    tell (root, read-only mounts, ``/proc``)."""
    if path.is_dir() and not directory:
        return "an existing directory, not a file"
    if os.path.lexists(path) and not path.is_dir() and directory:
        return "an existing file, not a directory"
    existing = path if directory else path.parent
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    try:
        fd, probe = tempfile.mkstemp(prefix=".infratask-probe-", dir=existing)
    except OSError as exc:
        return f"cannot create a file in {existing}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None
