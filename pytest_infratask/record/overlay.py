"""What an attempt run in an overlay (``run.overlay``) wrote, brought to the real work
tree, and who else is editing the same paths.

An upper directory is exactly what the attempt's commands wrote: a file or link is
new or changed content, a ``0/0`` character device a deletion, a directory marked
opaque one whose earlier content is gone. It is applied file by file, each put in
place by a rename (atomic), under the repository's lock and an attempt journal
(``record.undo``), so a run killed half way is rolled back by the next.

``claims.json`` in the repository's git directory says, under the index lock, which
task applied which paths (an ever-growing sequence number orders the applies) and
which paths each live task applied and has not committed yet.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from pytest_infratask.record.attempt import DIFF_LIMIT, unified
from pytest_infratask.record.recovery import alive, own_stamp
from pytest_infratask.run.overlay import XATTR
from pytest_infratask.util.files import atomic_write
from pytest_infratask.util.locks import Lock

KEPT_APPLIES = 500
"""Applies remembered in ``claims.json``: an attempt older than the oldest of them
cannot tell what happened since it began, and is run again."""


def _whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, XATTR + "opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _same(upper: Path, real: Path, info: os.stat_result) -> bool:
    """Whether the real path already is what the upper one holds (a copy-up that
    changed nothing, ``sed -i`` writing the same bytes)."""
    try:
        mine = os.lstat(real)
    except OSError:
        return False
    if stat.S_ISLNK(info.st_mode):
        return stat.S_ISLNK(mine.st_mode) and os.readlink(upper) == os.readlink(real)
    if not (stat.S_ISREG(mine.st_mode) and stat.S_ISREG(info.st_mode)):
        return False
    if mine.st_size != info.st_size or stat.S_IMODE(mine.st_mode) != stat.S_IMODE(info.st_mode):
        return False
    with open(upper, "rb") as a, open(real, "rb") as b:
        while True:
            left, right = a.read(1 << 16), b.read(1 << 16)
            if left != right:
                return False
            if not left:
                return True


def changes(root: Path, upper: Path) -> list[str]:
    """The paths applying ``upper`` would change in the work tree at ``root``."""
    return sorted(_changes(root, upper, ""))


def _changes(root: Path, upper: Path, rel: str) -> Iterator[str]:
    folder = upper / rel
    if rel and _opaque(folder) and (root / rel).is_dir():
        hidden = set(os.listdir(root / rel)) - set(os.listdir(folder))
        yield from (f"{rel}/{name}" for name in hidden)
    for name in os.listdir(folder):
        path = f"{rel}/{name}" if rel else name
        info = os.lstat(upper / path)
        if _whiteout(info):
            if os.path.lexists(root / path):
                yield path
        elif stat.S_ISDIR(info.st_mode):
            real = root / path
            if (real.is_symlink() or not real.is_dir()) and os.path.lexists(real):
                yield path
            yield from _changes(root, upper, path)
        elif not _same(upper / path, root / path, info):
            yield path


def _content(path: Path) -> bytes:
    try:
        return path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    except OSError:
        return b""


def diff(root: Path, upper: Path, paths: Iterable[str]) -> str:
    """What dropping ``upper`` takes away: a unified diff from each path's version in
    the work tree to the attempt's."""
    parts = []
    for path in paths:
        new = b"" if _whiteout_at(upper / path) else _content(upper / path)
        parts.append(f"diff {path}\n" + unified(path, _content(root / path), new))
        if sum(map(len, parts)) > DIFF_LIMIT:
            break
    return "".join(parts)


def _whiteout_at(path: Path) -> bool:
    try:
        return _whiteout(os.lstat(path))
    except OSError:
        return True


def since(saved: Path, upper: Path) -> set[str]:
    """The paths whose entry differs between two upper directories (a checkpoint of
    one and the same one later)."""
    found: set[str] = set()
    for base, other in ((upper, saved), (saved, upper)):
        for parent, dirs, files in os.walk(base):
            for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(parent, d)))]:
                path = Path(parent, name)
                rel = str(path.relative_to(base))
                info = os.lstat(path)
                twin = other / rel
                if _whiteout(info):
                    if not _whiteout_at(twin) or not os.path.lexists(twin):
                        found.add(rel)
                elif not _same(path, twin, info):
                    found.add(rel)
    return found


def apply(root: Path, upper: Path) -> None:
    """Make the work tree at ``root`` what the overlay showed; ``upper`` is used up."""
    _apply(root, upper, "")


def _apply(root: Path, upper: Path, rel: str) -> None:
    folder = upper / rel
    names = os.listdir(folder)
    if rel and _opaque(folder) and (root / rel).is_dir():
        for name in set(os.listdir(root / rel)) - set(names):
            _remove(root / rel / name)
    for name in sorted(names):
        path = f"{rel}/{name}" if rel else name
        source, target = upper / path, root / path
        info = os.lstat(source)
        if _whiteout(info):
            _remove(target)
        elif stat.S_ISDIR(info.st_mode):
            if target.is_symlink() or (os.path.lexists(target) and not target.is_dir()):
                _remove(target)
            if not target.is_dir():
                target.mkdir(mode=stat.S_IMODE(info.st_mode))
            _apply(root, upper, path)
        elif not _same(source, target, info):
            if target.is_dir() and not target.is_symlink():
                _remove(target)
            _own_attributes_removed(source)
            os.replace(source, target)


def _own_attributes_removed(path: Path) -> None:
    with contextlib.suppress(OSError):
        for name in os.listxattr(path, follow_symlinks=False):
            if name.startswith(XATTR):
                os.removexattr(path, name, follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def overlapping(ours: Iterable[str], theirs: Iterable[str]) -> str | None:
    """One of ``ours`` that is, holds or lies in one of ``theirs``."""
    others = set(theirs)
    for path in ours:
        parts = path.split("/")
        prefixes = {"/".join(parts[: i + 1]) for i in range(len(parts))}
        if prefixes & others or any(o.startswith(path + "/") for o in others):
            return path
    return None


class _Claim(TypedDict):
    pid: int
    stamp: str | None
    paths: list[str]


class _State(TypedDict):
    seq: int
    applied: list[tuple[int, str, list[str]]]
    claims: dict[str, _Claim]


@dataclass(frozen=True)
class Clash:
    """Another task edited a path this attempt wrote."""

    task: str
    path: str


@dataclass
class Claims:
    """A repository's ``claims.json`` (see the module's docstring)."""

    path: Path
    lock: Lock

    def _load(self) -> _State:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            return {"seq": 0, "applied": [], "claims": {}}
        return {
            "seq": int(data.get("seq", 0)),
            "applied": [tuple(e) for e in data.get("applied", [])],
            "claims": data.get("claims", {}),
        }

    def _save(self, state: _State) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(state, indent=1))

    def seq(self) -> int:
        return self._load()["seq"]

    def clash(self, task: str, since: int, paths: list[str], claimed: bool) -> Clash | None:
        """A path of ``paths`` another task applied after ``since``, or (``claimed``:
        the run commits) one a live task applied and has not committed yet."""
        state = self._load()
        if state["applied"] and state["applied"][0][0] > since + 1:
            return Clash("", paths[0]) if paths else None  # too old to tell: run again
        for seq, other, theirs in state["applied"]:
            hit = overlapping(paths, theirs) if seq > since and other != task else None
            if hit is not None:
                return Clash(other, hit)
        if claimed:
            for other, claim in state["claims"].items():
                if other != task and alive(claim["pid"], claim["stamp"]):
                    hit = overlapping(paths, claim["paths"])
                    if hit is not None:
                        return Clash(other, hit)
        return None

    def applied(self, task: str, paths: list[str]) -> None:
        with self.lock:
            state = self._load()
            state["seq"] += 1
            state["applied"] = [*state["applied"], (state["seq"], task, paths)][-KEPT_APPLIES:]
            claim = state["claims"].get(task)
            known = claim["paths"] if claim else []
            state["claims"][task] = {
                "pid": os.getpid(),
                "stamp": own_stamp(),
                "paths": sorted({*known, *paths}),
            }
            self._save(state)

    def holds(self, task: str) -> bool:
        """Whether ``task`` (of a live run) has applied paths it has not committed."""
        claim = self._load()["claims"].get(task)
        return claim is not None and alive(claim["pid"], claim["stamp"])

    def release(self, task: str) -> None:
        if not self.path.exists():
            return
        with self.lock:
            state = self._load()
            if state["claims"].pop(task, None) is not None:
                self._save(state)
