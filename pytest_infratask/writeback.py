"""Record results in the task file by editing lines, never by re-rendering.

The allowed changes are exactly: one checkbox character, the ``updated`` value
and appended progress-log lines. Every write re-reads the file under a lock and
finds its lines by content, so a concurrent run or a person editing the file
meanwhile never loses an edit; the new bytes replace the old atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path

from .model import Criterion
from .read import BOM, CHECKBOX, FRONTMATTER_END, FRONTMATTER_FENCE, split_lines, strip_ending

TMP_SUFFIX = ".infratask-tmp"
LOCK_TIMEOUT = 120.0
UPDATED = re.compile(
    r"^(?P<key>updated(?:_date|_at)?)(?P<sep>[ \t]*:[ \t]*)(?P<q>['\"]?)"
    r"(?P<val>[^'\"#\r\n]*?)(?P=q)(?P<tail>[ \t]*(?:#.*)?)$"
)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
BLOCKS = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[^\n]*\n(?:[^\n]*\n)*?[ \t]*(?P=fence)[^\n]*(?:\n|\Z)"
    r"|^[ \t]*(?:`{3,}|~{3,})[^\n]*(?:\n[^\n]*)*\Z"  # an unclosed fence runs to the end
    r"|^(?P<heading> {0,3}#{1,6}[ \t])",
    re.M,
)
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


@dataclass(frozen=True)
class Change:
    """One write: optionally tick a criterion, always log entries."""

    tick: Criterion | None
    entries: Sequence[str]
    when: datetime


def apply(text: str, change: Change) -> str:
    """Return ``text`` with the change applied; pure, so it can be fuzzed."""
    return _apply(text, change)[0]


def _apply(text: str, change: Change) -> tuple[str, bool]:
    """The new text, and False when another run had ticked the criterion already
    (its progress line is then that run's to write, not ours again)."""
    lines = split_lines(text)
    newline = "\r\n" if "\r\n" in text else ("\r" if "\r" in text and "\n" not in text else "\n")
    if change.tick is not None and not _tick(lines, change.tick):
        return text, False
    _touch_updated(lines, change.when)
    if change.entries:
        _append_log(lines, [f"- {e}" for e in change.entries], newline)
    return "".join(lines), True


_strip = strip_ending


def _ending(line: str) -> str:
    return line[len(_strip(line)) :]


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


def _tick(lines: list[str], criterion: Criterion) -> bool:
    hint = criterion.line - 1
    if 0 <= hint < len(lines) and _strip(lines[hint]) == criterion.raw_line:
        match = CHECKBOX.match(criterion.raw_line)
        if match is not None:  # the usual case: nothing moved, no scan of the file
            start, end = match.span("box")
            body = criterion.raw_line[:start] + "x" + criterion.raw_line[end:]
            lines[hint] = body + _ending(lines[hint])
            return True
    outside = _outside_fences(lines)
    # The line it was read from first. If the file moved meanwhile (other edits, or
    # a progress log above the criteria), the first open look-alike outside code
    # fences: a fenced example is never ticked in its place. A ticked look-alike
    # means "done already" only when no open one is left, or of two identical
    # criteria the second would never be ticked once the first was.
    candidates = sorted(range(len(lines)), key=lambda i: (i != hint, not outside[i], i))
    for i in candidates:
        body = _strip(lines[i])
        if body == criterion.raw_line and (match := CHECKBOX.match(body)) is not None:
            start, end = match.span("box")
            lines[i] = body[:start] + "x" + body[end:] + _ending(lines[i])
            return True
    for i in candidates:
        body = _strip(lines[i])
        match = CHECKBOX.match(body)
        if (
            match is not None
            and match["box"] in "xX"
            and _with_box(body, start=match.start("box"), box=" ") == criterion.raw_line
        ):
            return False  # another run ticked it already
    raise WriteBackError(
        f"criterion #{criterion.number} ({criterion.text!r}) is no longer in the file as it was "
        f"read (line {criterion.line}): the file changed during the run, so it was not ticked"
    )


def _with_box(body: str, start: int, box: str) -> str:
    return body[:start] + box + body[start + 1 :]


def _frontmatter_range(lines: list[str]) -> range:
    if not lines or not FRONTMATTER_FENCE.match(_strip(lines[0]).lstrip(BOM)):
        return range(0)
    for i in range(1, len(lines)):
        if FRONTMATTER_END.match(_strip(lines[i])):
            return range(1, i)
    return range(0)


def format_like(previous: str, when: datetime) -> str | None:
    for pattern, fmt in _FORMATS:
        if pattern.match(previous):
            return when.strftime(fmt)
    return None


def _touch_updated(lines: list[str], when: datetime) -> None:
    for i in _frontmatter_range(lines):
        match = UPDATED.match(_strip(lines[i]))
        if match is None:
            continue
        value = format_like(match["val"], when)
        if value is None:
            return
        sep = match["sep"] if match["val"] or match["q"] else match["sep"].rstrip() + " "
        tail = match["tail"]
        if tail.startswith("#") and not match["q"]:
            tail = " " + tail  # an empty value's comment must stay a comment
        lines[i] = f"{match['key']}{sep}{match['q']}{value}{match['q']}{tail}" + _ending(lines[i])
        return


def _headings(lines: list[str]) -> Iterator[tuple[int, re.Match[str]]]:
    """ATX headings outside code fences. One regex over the whole text steps over
    each fenced block in a single match, so a tick in a file of 10,000 criteria
    does not walk its 40,000 lines in Python."""
    starts = list(accumulate(map(len, lines), initial=0))
    for found in BLOCKS.finditer("".join(lines)):
        if found.group("heading") is None:
            continue
        i = bisect_right(starts, found.start()) - 1
        if heading := HEADING.match(_strip(lines[i])):
            yield i, heading


def _append_log(lines: list[str], entries: list[str], newline: str) -> None:
    frontmatter = _frontmatter_range(lines)
    start = frontmatter.stop + 1 if frontmatter else 0
    heading_at, level = None, 0
    for i, match in _headings(lines):
        if i < start:
            continue
        if heading_at is None and match.group(2).strip().rstrip(":").lower() == "progress log":
            heading_at, level = i, len(match.group(1))
        elif heading_at is not None and len(match.group(1)) <= level:
            end = i
            break
    else:
        end = len(lines)
    if heading_at is None:
        if lines and not _ending(lines[-1]):
            lines[-1] += newline
        block = [newline, "## Progress Log" + newline] + [e + newline for e in entries]
        lines.extend(block)
        return
    last = heading_at
    for i in range(heading_at + 1, end):
        if _strip(lines[i]).strip():
            last = i
    at_eof_without_newline = last == len(lines) - 1 and not _ending(lines[-1])
    if at_eof_without_newline:
        lines[-1] += newline
        new = [e + newline for e in entries]
        new[-1] = new[-1][: -len(newline)]
    else:
        new = [e + newline for e in entries]
    if last == heading_at and last + 1 < len(lines) and not _strip(lines[last + 1]).strip():
        last += 1  # keep the blank line that follows the heading
    lines[last + 1 : last + 1] = new


def lock_dir() -> Path:
    folder = Path(tempfile.gettempdir()) / "pytest-infratask-locks"
    folder.mkdir(exist_ok=True)
    return folder


def keyed_file(*parts: str, suffix: str) -> Path:
    """A file in the lock directory named after ``parts`` (a path, a run id...)."""
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]
    return lock_dir() / f"{key}{suffix}"


def _lock_path(path: Path) -> Path:
    return keyed_file(str(path.resolve()), suffix=".lock")


def lock(path: Path) -> contextlib.AbstractContextManager[object]:
    """Lock kept outside the repository so no stray files appear in the user's tree."""
    from filelock import FileLock

    return FileLock(str(_lock_path(path)), timeout=LOCK_TIMEOUT)


def stale_temp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"))


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, replace: old or new, never half.

    The directory is not fsynced: after a power cut the file is the old one or the
    new one, whole either way; another fsync per tick would only make the latest
    tick survive it too.
    """
    info = path.stat()
    if not info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise WriteBackError(f"{path} is read-only; make it writable (chmod u+w {path}) and rerun")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        if os.geteuid() == 0:
            with contextlib.suppress(OSError):
                os.chown(tmp, info.st_uid, info.st_gid)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise WriteBackError(f"could not write {path}: {exc.strerror or exc}") from exc
        raise


_OURS: dict[Path, tuple[int, int, int]] = {}
_SWEPT: set[Path] = set()


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def ticked_on_disk(path: Path, criterion: Criterion) -> bool:
    """Whether another run ticked ``criterion`` since the file was read.

    A file still exactly as this process last wrote it (same inode, time and size)
    cannot hold anyone else's tick, so it is not read again.
    """
    if path in _OURS and _OURS[path] == _stamp(path):
        return False
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return not _tick(split_lines(text), criterion)
    except WriteBackError:
        return False


def write(path: Path, change: Change) -> bool:
    """Apply one change to the file on disk, under the task file's lock.

    Returns False, writing nothing, when the criterion to tick was ticked by
    another run meanwhile.
    """
    with lock(path):
        if path not in _SWEPT:  # once per file and process: a killed run's leftovers
            _SWEPT.add(path)
            for stale in stale_temp_files(path):
                with contextlib.suppress(OSError):
                    stale.unlink()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise WriteBackError(f"could not read {path}: {exc.strerror or exc}") from exc
        bom = data.startswith(BOM.encode())
        try:
            text = data.decode("utf-8-sig" if bom else "utf-8")
        except UnicodeDecodeError as exc:
            raise WriteBackError(f"{path} is no longer valid UTF-8; not touching it") from exc
        new, recorded = _apply(text, change)
        if new != text:
            atomic_write(path, (BOM if bom else "").encode() + new.encode("utf-8"))
            stamp = _stamp(path)
            if stamp is not None:
                _OURS[path] = stamp
        return recorded
