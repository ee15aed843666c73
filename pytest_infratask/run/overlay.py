"""A command's view of a git work tree as an overlay: it reads the work tree and
writes to an upper directory of its own, so tasks sharing a repository run their
commands at the same time and what each wrote is exactly its upper directory.

The overlay is mounted over the work tree's own path in a mount namespace made for
the command just before it starts its sandbox (``preexec_fn``): run as root a mount
namespace of its own (the user namespace, and so the uid mapping buildah and podman
see, is the system's), else a user namespace mapping the user's own ids and the
``userxattr`` overlay. The repository's ``.git`` directory is bound back on top:
git's state is shared, never overlaid.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PROBE_TIMEOUT = 30.0
ROOT = os.geteuid() == 0
XATTR = "trusted.overlay." if ROOT else "user.overlay."
"""The namespace of the overlay's own attributes in an upper directory (opaque dirs)."""


@dataclass(frozen=True)
class Layer:
    """One work tree as a command sees it: writes go to ``upper``; ``work`` is the
    overlay's scratch directory (both on the work tree's filesystem)."""

    root: Path
    upper: Path
    work: Path

    def options(self) -> str:
        lower = _escaped(self.root)
        extra = "redirect_dir=off,index=off,metacopy=off" if ROOT else "userxattr"
        upper, work = _escaped(self.upper), _escaped(self.work)
        return f"lowerdir={lower},upperdir={upper},workdir={work},{extra}"


def _escaped(path: Path) -> str:
    text = str(path)
    for char in ("\\", ",", ":"):
        text = text.replace(char, "\\" + char)
    return text


_LIBC: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mounter(layers: Sequence[Layer]) -> Callable[[], None]:
    """What the command's process runs before its program: a mount namespace of its
    own with ``layers`` mounted. Everything it needs is made here, in the parent."""
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    plan = [
        (
            str(layer.root).encode(),
            layer.options().encode(),
            str(layer.root / ".git").encode() if (layer.root / ".git").is_dir() else None,
        )
        for layer in sorted(layers, key=lambda item: len(item.root.parts))
    ]

    def mount() -> None:
        flags = CLONE_NEWNS if ROOT else CLONE_NEWNS | CLONE_NEWUSER
        _check(libc.unshare(flags), "unshare")
        if not ROOT:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        _check(
            libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /"
        )
        for root, options, git in plan:
            fd = os.open(git, os.O_PATH | os.O_DIRECTORY) if git is not None else -1
            try:
                _check(libc.mount(b"overlay", root, b"overlay", 0, options), "mount overlay")
                if git is not None:
                    source = f"/proc/self/fd/{fd}".encode()
                    _check(libc.mount(source, git, None, MS_BIND | MS_REC, None), "bind .git")
            finally:
                if fd >= 0:
                    os.close(fd)

    return mount


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


_PROBED: dict[int, str | None] = {}


def unavailable(layer: Layer) -> str | None:
    """Why an overlay cannot be mounted over ``layer.root`` (None: it can); tried once
    per filesystem, with the layer's own directories."""
    device = os.stat(layer.root).st_dev
    if device not in _PROBED:
        _PROBED[device] = _probe(layer)
    return _PROBED[device]


def _probe(layer: Layer) -> str | None:
    for folder in (layer.upper, layer.work):
        folder.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["test", "-d", str(layer.root / ".git")],
            preexec_fn=mounter([layer]),
            capture_output=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot mount an overlay over {layer.root}: {exc}"
    finally:
        drop(layer.upper.parent)
    if done.returncode != 0:
        return f"the overlay over {layer.root} hides its .git directory"
    return None


def drop(folder: Path) -> None:
    """Remove an attempt's directories; the overlay leaves an inaccessible ``work``
    directory in its work dir, opened up first."""

    for parent, dirs, _ in os.walk(folder):
        for name in dirs:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                os.chmod(path, 0o700)
    shutil.rmtree(folder, ignore_errors=True)
