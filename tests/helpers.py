"""Build task files and check what a run did to them.

The checker (``changes``) encodes the write-back promise: besides appended
progress lines only a box character and the ``updated`` value may change, so
every test that asserts on file bytes states the same rule the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from textwrap import dedent, indent
from typing import Any

import pytest
import yaml

from pytest_infratask.read.taskfile import BOM, CHECKBOX, split_lines
from pytest_infratask.record.writeback import STATUS, UPDATED

ENTRY = re.compile(r"^- (\d{4}-\d{2}-\d{2} \d{2}:\d{2}): (.*)$")
# A HelmRelease as the GitOps tests edit it: comments and quoting must survive.
HELMRELEASE = """\
# The public API; chart and image move together.
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: api
  namespace: prod
spec:
  interval: 5m
  chart:
    spec:
      chart: api
      version: "0.1.17"
      sourceRef:
        kind: HelmRepository
        name: charts
  values:
    image:
      tag: "0.1.17"
"""
QUIET = (
    *("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:benchmark"),
    *("-p", "no:xdist", "-p", "no:metadata", "-p", "no:json-report"),
)
"""Plugins an inner pytest run of task files does without: its own cache, xdist and the
report plugins would only slow it down or write files the test does not look at."""

DEFAULT_META = "id: TASK-001\ntitle: Demo task\nupdated: 2024-01-01"


def item(text: str, *scripts: str, box: str = " ", marker: str = "-", lang: str = "bash") -> str:
    """One criterion: a checkbox line with its command blocks nested under it."""
    pad = " " * (len(marker) + 1)
    lines = [f"{marker} [{box}] {text}"]
    for script in scripts:
        body = indent(dedent(script).strip("\n"), pad, lambda _: True)
        lines += [f"{pad}```{lang}", body, f"{pad}```"]
    return "\n".join(lines)


def task_md(
    *criteria: str,
    meta: str = DEFAULT_META,
    title: str = "Demo task",
    log: Iterable[str] | None = ("2024-01-01 09:00: Task created",),
    after_ac: str = "",
) -> str:
    """A whole task file (LF); ``log=None`` leaves the Progress Log section out."""
    parts = [f"---\n{meta.strip()}\n---\n", f"# {title}\n", "## Acceptance Criteria\n"]
    parts.append("\n".join(criteria) + "\n")
    if after_ac:
        parts.append(dedent(after_ac).strip("\n") + "\n")
    if log is not None:
        parts.append("## Progress Log\n\n" + "".join(f"- {e}\n" for e in log))
    return "\n".join(parts)


def encode(text: str, *, newline: str = "\n", bom: bool = False) -> bytes:
    data = text.replace("\r\n", "\n").replace("\n", newline).encode("utf-8")
    return BOM.encode() + data if bom else data


def write_task(
    folder: Path, name: str, text: str, *, newline: str = "\n", bom: bool = False
) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(text, newline=newline, bom=bom))
    return path


# How long a test waits for something that should happen (a process to die, a run to
# finish) before failing: generous, since CI machines are shared; raise it on slow ones.
DEADLINE = float(os.environ.get("INFRATASK_TEST_DEADLINE", "120"))


def wait_for(predicate: Callable[[], object], timeout: float = DEADLINE, what: str = "") -> None:
    """Poll instead of sleeping a guessed time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    """A zombie counts as dead: in a container nothing may reap orphans."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment or command line holds ``marker``. A command's
    own ``$$`` is no use from outside: in its sandbox it has a pid of its own."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in seen and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def none_left(marker: str, what: str = "the processes") -> list[int]:
    """Wait for every process carrying ``marker`` to end; kill and return the survivors."""
    try:
        wait_for(lambda: not processes_with(marker), what=f"{what} to end")
    except AssertionError:
        survivors = processes_with(marker)
        for pid in survivors:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return survivors
    return []


@dataclass
class Changes:
    """What a write-back did, as found by ``changes``."""

    ticked: list[str] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    updated: list[tuple[str, str]] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    status: list[tuple[str, str]] = field(default_factory=list)

    def entry_texts(self) -> list[str]:
        return [ENTRY.match(e).group(2) for e in self.entries]  # type: ignore[union-attr]


def _strip(line: str) -> str:
    """The line without its ending (``\n`` or ``\r\n``); other ``\r`` are text."""
    return line.removesuffix("\n").removesuffix("\r") if line.endswith("\n") else line


def _frontmatter_end(lines: list[str]) -> int:
    if not lines or _strip(lines[0]).lstrip(BOM).rstrip() != "---":
        return 0
    for i in range(1, len(lines)):
        if _strip(lines[i]).rstrip() in ("---", "..."):
            return i
    return 0


def _tick_of(old: str, new: str) -> bool:
    a, b = CHECKBOX.match(old), CHECKBOX.match(new)
    if not (a and b) or a["box"] != " " or b["box"] != "x":
        return False
    start = a.start("box")
    return new == old[:start] + "x" + old[start + 1 :]


def _updated_of(old: str, new: str) -> bool:
    a, b = UPDATED.match(old), UPDATED.match(new)
    if a is None or b is None:
        return False
    return all(a[k] == b[k] for k in ("key", "q")) and a["tail"].strip() == b["tail"].strip()


def _status_of(old: str, new: str) -> bool:
    a, b = STATUS.match(old), STATUS.match(new)
    return a is not None and b is not None and all(a[k] == b[k] for k in ("sep", "q", "tail"))


def changes(
    before: str, after: str, *, newline: str | None = None, status: bool = False
) -> Changes:
    """Fail unless ``after`` is ``before`` with only allowed edits; return the edits.

    Allowed: a box ``[ ]`` -> ``[x]``, the frontmatter ``updated`` value, inserted
    progress lines (plus a ``## Progress Log`` heading and a blank line when the
    section had to be created) and a line ending added to a last line lacking one;
    with ``status`` (``--infratask-status``), the ``status`` value in its quoting.
    """
    nl = newline or ("\r\n" if "\r\n" in before else "\n")
    old, new = split_lines(before), split_lines(after)
    fm_end = _frontmatter_end(old)
    found = Changes()
    i = j = 0
    while i < len(old) or j < len(new):
        a = old[i] if i < len(old) else None
        b = new[j] if j < len(new) else None
        if a is not None and b is not None:
            end_a, end_b = a[len(_strip(a)) :], b[len(_strip(b)) :]
            gained = "\r\n" if a.endswith("\r") else nl  # after a stray CR only CRLF keeps it
            ends_ok = end_a == end_b or (i == len(old) - 1 and not end_a and end_b == gained)
            if (ends_ok and _strip(a) == _strip(b)) or (i == len(old) - 1 and b == a + gained):
                i, j = i + 1, j + 1
                continue
            last_gains_ending = i == len(old) - 1 and not end_a and b.endswith(gained)
            if (ends_ok and _tick_of(_strip(a), _strip(b))) or (
                last_gains_ending and _tick_of(a, b.removesuffix(gained))
            ):
                found.ticked.append(_strip(a))
                i, j = i + 1, j + 1
                continue
            if ends_ok and 0 < i < fm_end and _updated_of(_strip(a), _strip(b)):
                found.updated.append((_strip(a), _strip(b)))
                i, j = i + 1, j + 1
                continue
            if status and ends_ok and 0 < i < fm_end and _status_of(_strip(a), _strip(b)):
                found.status.append((_strip(a), _strip(b)))
                i, j = i + 1, j + 1
                continue
        assert b is not None, f"line {i + 1} was removed: {a!r}"
        ending = b[len(_strip(b)) :]
        assert ending in (nl, "") and (ending or j == len(new) - 1), (
            f"inserted line {j + 1} has a foreign line ending: {b!r}"
        )
        text = _strip(b)
        if ENTRY.match(text):
            found.entries.append(text)
        elif text in ("", "## Progress Log"):
            found.inserted.append(text)
        else:
            raise AssertionError(
                f"unexpected change at line {j + 1}: {a!r} -> {b!r}\n--- after ---\n{after}"
            )
        j += 1
    assert len(found.updated) <= 1, found.updated
    assert len(found.status) <= 1, found.status
    assert len(found.inserted) <= 2, found.inserted
    return found


def updated_value(text: str, key: str = "updated") -> str | None:
    for line in text.splitlines():
        match = UPDATED.match(line)
        if match and match["key"] == key:
            return match["val"]
    return None


def assert_recent(value: str, fmt: str, slack: float = 180.0) -> None:
    """``value`` formatted with ``fmt`` is now in UTC (within ``slack`` seconds)."""
    when = datetime.strptime(value, fmt).replace(tzinfo=UTC)
    delta = abs((datetime.now(UTC) - when).total_seconds())
    assert delta < slack, f"{value!r} is not now in UTC (off by {delta:.0f}s)"


Blocks = str | Sequence[str] | None


def meta_task(
    path: Path,
    meta: dict[str, Any],
    criteria: Sequence[tuple[str, Blocks]],
    extra: str = "",
    *,
    box: str = " ",
    log: Sequence[str] = (),
) -> Path:
    """A task file from a frontmatter mapping and (text, command blocks) pairs; a
    criterion with ``None`` is manual, a string is one block, a list is several."""
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).rstrip(),
        "---",
        f"# {meta.get('title', 'A task')}",
        "",
        "## Acceptance Criteria",
        "",
    ]
    for text, blocks in criteria:
        lines.append(f"- [{box}] {text}")
        for block in [blocks] if isinstance(blocks, str) else blocks or []:
            lines.append("  ```bash")
            lines.extend(f"  {line}" if line else "" for line in block.splitlines())
            lines.append("  ```")
    lines += ["", extra, "", "## Progress Log", *(f"- {entry}" for entry in log), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def commit_all(root: Path, message: str = "init") -> None:
    """Make ``root`` a git repository on ``main`` with everything in it committed."""
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-q", "-m", message)


def push_to_new_origin(root: Path, origin: Path, message: str = "init") -> None:
    """Make ``root`` a git checkout of ``main`` pushed to a new bare ``origin``."""
    git(origin.parent, "init", "-q", "--bare", "-b", "main", str(origin))
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "commit.gpgsign", "false")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    git(root, "remote", "add", "origin", str(origin))
    git(root, "push", "-q", "-u", "origin", "main")


def opt_in(folder: Path, *args: str) -> tuple[str, ...]:
    """``args`` naming ``folder`` when they name no path: task files run only when
    pytest is pointed at them, as a user does (``pytest tasks/`` or ``pytest .``)."""
    takes_value = {
        "-k",
        "-m",
        "-p",
        "-n",
        "-W",
        "-c",
        "-o",
        "--rootdir",
        "--junitxml",
        "--infratask-report-dir",
        "--infratask-id",
        "--json-report-file",
        "--infratask-retries",
        "--basetemp",
        "--dist",
    }
    for before, arg in zip(("", *args), args, strict=False):
        if before in takes_value or arg.startswith("-"):
            continue
        if (folder / arg.split("::")[0]).exists():
            return args
    return (*args, str(folder))


@dataclass
class Ran:
    """A pytester run of task files and the directory its per-task reports went to."""

    result: pytest.RunResult
    reports: Path

    @property
    def out(self) -> str:
        return self.result.stdout.str()

    def contract(self, task_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.reports / f"{task_id}.json").read_text())
        return data
