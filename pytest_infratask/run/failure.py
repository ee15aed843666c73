"""Which command ended a block that failed: bash tells it through an ERR trap."""

from __future__ import annotations

import fcntl
import os
import tempfile
from typing import BinaryIO

REPORT_FD_MIN = 200
REPORT_TAIL = 64 * 1024


class FailureReport:
    """Where bash tells which command failed: an ERR trap writes the status, line and
    command of each failing command to a file on a descriptor of its own, so the
    report never mixes with the command's stderr.

    The trap goes on the block's first line, before the user's text, so the line
    numbers bash reports (``$LINENO``, ``bash: line 2: ...``) are the block's own.
    ``set -E`` lets functions and subshells report too.
    """

    def __init__(self) -> None:
        # In memory where the system allows: no file to create or remove per command.
        if hasattr(os, "memfd_create"):
            self.file: BinaryIO = open(os.memfd_create("infratask-err"), "w+b")  # noqa: SIM115
        else:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115  (closed by ``read``)
        # A high descriptor: scripts use the low ones (``exec 3>log``, ``flock 9``).
        self.fd = fcntl.fcntl(self.file.fileno(), fcntl.F_DUPFD_CLOEXEC, REPORT_FD_MIN)

    def script(self, script: str) -> str:
        report = f'printf "%s %s %s\\0" "$?" "$LINENO" "$BASH_COMMAND" >&{self.fd}'
        return f"trap '{report}' ERR; set -E; {script}"

    def close(self) -> None:
        """Let the report go unread."""
        os.close(self.fd)
        self.file.close()

    def read(self, exit_code: int | None) -> tuple[int | None, str]:
        """The line and command that ended the block: the last report with its exit
        status (a subshell's failure reports inside, then where the block ran it)."""
        os.close(self.fd)
        with self.file:
            size = self.file.seek(0, os.SEEK_END)
            self.file.seek(max(0, size - REPORT_TAIL))
            records = self.file.read().decode("utf-8", "replace").split("\0")[:-1]
        if size > REPORT_TAIL:
            records = records[1:]  # the first one may be cut
        for record in reversed(records):
            status, line, command = [*record.split(" ", 2), "", ""][:3]
            if status == str(exit_code) and line.isdigit():
                return int(line), command
        return None, ""
