"""A command's view of a git work tree as an overlay: it reads the work tree and
writes to an upper directory of its own, so tasks sharing a repository run their
commands at the same time and what each wrote is exactly its upper directory.

The overlay is mounted over the work tree's own path in a mount namespace made for
the command, by the task's fork server in its sandbox (``run.forkserver``), or just
before the command starts a sandbox of its own (``preexec_fn``): run as root a mount
namespace of its own (the user namespace, and so the uid mapping buildah and podman
see, is the system's), else a user namespace mapping the user's own ids and the
``userxattr`` overlay. The repository's ``.git`` directory is bound back on top:
git's state is shared, never overlaid.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_infratask.run.forkserver import Plan, encoded, libc, mount_layers

PROBE_TIMEOUT = 30.0
ROOT = os.geteuid() == 0
XATTR = "trusted.overlay." if ROOT else "user.overlay."
"""The namespace of the overlay's own attributes in an upper directory (opaque dirs)."""
VOLATILE = tuple(int(n) for n in re.findall(r"\d+", os.uname().release)[:2]) >= (5, 10)
"""Whether the kernel mounts an overlay that never syncs its upper directory (Linux
5.10): an attempt's writes are applied to the work tree, with the run's own
durability, or dropped, so the overlay's sync on every unmount (a whole-filesystem
flush, per block) buys nothing."""


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
        if ROOT and VOLATILE:
            extra += ",volatile"
        upper, work = _escaped(self.upper), _escaped(self.work)
        return f"lowerdir={lower},upperdir={upper},workdir={work},{extra}"


def _escaped(path: Path) -> str:
    text = str(path)
    for char in ("\\", ",", ":"):
        text = text.replace(char, "\\" + char)
    return text


def plan(layers: Sequence[Layer]) -> Plan:
    """What mounting ``layers`` takes (``forkserver.mount_layers``), outer roots first:
    each work tree, its overlay options, and its ``.git`` directory to bind back."""
    return [
        (
            str(layer.root),
            layer.options(),
            str(layer.root / ".git") if (layer.root / ".git").is_dir() else None,
            str(layer.work),
        )
        for layer in sorted(layers, key=lambda item: len(item.root.parts))
    ]


def mounter(layers: Sequence[Layer]) -> Callable[[], None]:
    """What the command's process runs before its program: a mount namespace of its
    own with ``layers`` mounted. Everything it needs is made here, in the parent."""
    ready = encoded(plan(layers))
    libc()

    def mount() -> None:
        mount_layers(ready, ROOT)

    return mount


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
