"""How a command block reaches bash: on its command line, or by a file descriptor when
it is too long for one.

``bash -c SCRIPT`` keeps ``$0`` as ``bash`` and bash's messages as ``bash: line 3: …``;
but one argument may hold at most ``MAX_ARG_STRLEN`` bytes (128 KiB on Linux) and a
longer block would fail to start (``Argument list too long``). Such a block is written
to an anonymous in-memory file that bash reads as ``/dev/fd/N`` (bash 5 still says
``bash: line 3: …``; ``$0`` is then ``/dev/fd/N``). stdin is never used: commands run
with it closed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

# Well under the kernel's limit for one argument, leaving room for the environment in
# the total (ARG_MAX).
ARGV_LIMIT = 64 * 1024


def _memory_file(data: bytes) -> int:
    """A descriptor of a file holding ``data``, read from its start, in memory where
    the system has such files, else an unlinked temporary file."""
    try:
        fd = os.memfd_create("infratask-block")
    except (AttributeError, OSError):
        handle = tempfile.TemporaryFile()  # noqa: SIM115 - its descriptor outlives it
        fd = os.dup(handle.fileno())
        handle.close()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def delivered(
    script: str, *options: str, as_file: bool = False
) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """The arguments after ``bash`` that run ``script`` with ``options``, and the
    descriptors the spawn must pass on (``pass_fds``); they are closed on exit, once
    the child holds its own copy. ``as_file``: by descriptor whatever its length."""
    data = script.encode("utf-8", "surrogateescape")
    if len(data) < ARGV_LIMIT and not as_file:
        yield [*options, "-c", script], ()
        return
    fd = _memory_file(data)
    try:
        yield [*options, f"/dev/fd/{fd}"], (fd,)
    finally:
        os.close(fd)
