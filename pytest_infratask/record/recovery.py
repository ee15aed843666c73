"""What a run that died half way leaves in a repository, and how the next run finds it.

Two files in the repository's git directory, under ``infratask/``:

- ``attempts/<task>.json``, an attempt's journal: written before the criterion's first
  command with the state to roll back to (``record.attempt.Start``), the run's PID,
  and a token the attempt's commands carry in their environment (``ATTEMPT_VAR``);
  removed when the attempt is settled (passed and recorded, or rolled back). One
  found while the plugin holds the repository belongs to a run that died: the next
  run ends every process still carrying its token (commands have a session of their
  own, so they outlive a killed run) and rolls the attempt back, or, when the
  criterion had passed and been ticked before the run died, stages what it changed.
- ``writing.json``, which names the run writing the index or committing. A
  ``.git/index.lock`` (or a branch's ref lock) left behind is removed only when the
  run named there has died, the lock was made while it was writing, and no live
  process has the lock file open: never a lock of a live process or of your own git.

A process is named by its PID and its start time, so a PID used again by another
process is not taken for the run's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack, cast

from pytest_infratask.read.taskfile import TaskFileError, read_task
from pytest_infratask.record.attempt import Start, StartJson

ATTEMPT_VAR = "INFRATASK_ATTEMPT"
"""Set in the environment of an attempt's commands: the attempt's token."""
_ACTIVE: set[Path] = set()
"""Journals of attempts under way in this process."""
_WRITING: dict[Path, int] = {}
_OWN: list[str | None] = []


class JournalData(TypedDict, total=False):
    """A journal's lines merged: the first has every key, later ones a few."""

    task: str
    task_file: str
    criterion: int
    line: str
    pid: int
    stamp: str | None
    time: float
    token: str
    phase: str
    files: list[str]
    start: StartJson


def own_stamp() -> str | None:
    """This process's ``process_stamp``, read once (again in a forked child)."""
    if not _OWN or _OWN[0] != str(os.getpid()):
        _OWN[:] = [str(os.getpid()), process_stamp(os.getpid())]
    return _OWN[1]


def process_stamp(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot); None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _exists(pid)
    fields = text.rsplit(")", 1)[-1].split()
    # state is fields[0]; a zombie has finished
    return None if fields[0] in ("Z", "X") else fields[19]


def _exists(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def alive(pid: int, stamp: str | None) -> bool:
    now = process_stamp(pid)
    return now is not None and (stamp in (None, "?") or now in ("?", stamp))


@dataclass
class AttemptJournal:
    """One attempt's journal file (see the module's docstring): JSON lines, the first
    written before the command runs, later ones appended. Neither is renamed into
    place: a first line cut short by a kill is unreadable, and then no command had
    run; a later line cut short is left out, and the attempt is rolled back."""

    path: Path
    data: JournalData = field(default_factory=JournalData)

    @classmethod
    def begin(
        cls,
        folder: Path,
        task_id: str,
        task_file: Path,
        criterion: tuple[int, str],
        start: Start,
        token: str,
    ) -> AttemptJournal:
        journal = cls(
            folder / f"{task_id}.json",
            {
                "task": task_id,
                "task_file": str(task_file),
                "criterion": criterion[0],
                "line": criterion[1],
                "pid": os.getpid(),
                "stamp": own_stamp(),
                "time": time.time(),
                "token": token,
                "phase": "running",
                "files": [],
                "start": start.as_json(),
            },
        )
        _ACTIVE.add(journal.path)
        try:
            journal._write("w", journal.data)
        except FileNotFoundError:  # the first attempt in this repository
            journal.path.parent.mkdir(parents=True, exist_ok=True)
            journal._write("w", journal.data)
        return journal

    @classmethod
    def load(cls, path: Path) -> AttemptJournal | None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        data: JournalData = {}
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                break
            if isinstance(record, dict):
                data.update(cast(JournalData, record))  # lines this module wrote
        return cls(path, data) if "start" in data else None

    def _write(self, mode: str, record: JournalData) -> None:
        with open(self.path, mode, encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def update(self, **values: Unpack[JournalData]) -> None:
        self.data.update(values)
        self._write("a", values)

    @property
    def token(self) -> str:
        return str(self.data.get("token") or "")

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        _ACTIVE.discard(self.path)

    def release(self) -> None:
        """Leave the journal for the next run: this process gives the attempt up."""
        _ACTIVE.discard(self.path)

    @property
    def start(self) -> Start:
        return Start.from_json(self.data["start"])

    @property
    def owner(self) -> str:
        data = self.data
        return f"{data.get('task')} #{data.get('criterion')} (run PID {data.get('pid')})"

    def stale(self) -> bool:
        """Whether the run that wrote it is gone (or is this process, done with it)."""
        pid = int(self.data.get("pid") or 0)
        if pid == os.getpid():
            return self.path not in _ACTIVE
        return not alive(pid, self.data.get("stamp"))

    def end_command(self) -> None:
        """End what the attempt's commands left running."""
        end_processes(self.token)

    def ticked(self) -> bool:
        """Whether the criterion is ticked in its task file: it passed before the run
        died, so what it changed is kept."""
        try:
            task = read_task(Path(self.data["task_file"]))
        except (OSError, TaskFileError):
            return False
        criterion = task.criterion(int(self.data.get("criterion") or 0))
        return criterion is not None and criterion.done


def end_processes(token: str) -> None:
    """Kill every process whose environment carries an attempt's ``token``: its
    commands and what they started, in their process group or not."""
    deadline = time.monotonic() + 2.0
    while token and time.monotonic() < deadline:
        left = carrying(f"{ATTEMPT_VAR}={token}")
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def carrying(variable: str) -> list[int]:
    """The live processes whose environment holds ``variable`` (``NAME=value``)."""
    wanted = variable.encode()
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0") and process_stamp(pid) is not None:
            found.append(pid)
    return found


def stale_journals(folder: Path) -> list[AttemptJournal]:
    try:
        names = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except OSError:
        return []
    found = (AttemptJournal.load(p) for p in names)
    return [j for j in found if j is not None and j.stale()]


# -- the index lock -----------------------------------------------------------------
def _marker(git_dir: Path) -> Path:
    return git_dir / "infratask" / "writing.json"


@contextlib.contextmanager
def writing(git_dir: Path) -> Iterator[None]:
    """Name this run as the one writing the index or committing (see the docstring).

    An attempt's journal names the run while it is under way, so no marker is
    written then. A plain write: a marker cut short by a kill is unreadable, and then
    no git command of this run had started, so it left no lock."""
    depth = _WRITING.get(git_dir, 0)
    if not depth and not any(git_dir in path.parents for path in _ACTIVE):
        record = {"pid": os.getpid(), "stamp": own_stamp(), "time": time.time()}
        marker = _marker(git_dir)
        try:
            marker.write_text(json.dumps(record), encoding="utf-8")
        except FileNotFoundError:
            marker.parent.mkdir(exist_ok=True)
            marker.write_text(json.dumps(record), encoding="utf-8")
    _WRITING[git_dir] = depth + 1
    interrupted = False
    try:
        yield
    except BaseException as exc:
        # Ctrl-C or SIGTERM: a git process of ours may still be ending, its lock in
        # place; the marker stays for the next run to clear what it leaves.
        interrupted = not isinstance(exc, Exception)
        raise
    finally:
        _WRITING[git_dir] -= 1
        if not _WRITING[git_dir] and not interrupted:
            with contextlib.suppress(FileNotFoundError):
                _marker(git_dir).unlink()


def marked(git_dir: Path) -> bool:
    """Whether a run says it is writing (or was, when it died)."""
    return _marker(git_dir).exists()


def clear_stale_locks(git_dir: Path, since: list[float]) -> list[str]:
    """Remove the git locks a run that died while writing left behind; their names.

    ``since``: when the attempts of runs that died began (their journals name them
    as writers); the marker names a run that died while committing or staging."""
    marker = _marker(git_dir)
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
        pid, stamp = int(record["pid"]), record.get("stamp")
        if not (
            (pid == os.getpid() and _WRITING.get(git_dir))
            or (pid != os.getpid() and alive(pid, stamp))
        ):
            since = [*since, float(record["time"])]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if not since:
        return []
    removed = []
    for lock in [
        git_dir / "index.lock",
        git_dir / "HEAD.lock",
        *(git_dir / "refs" / "heads").rglob("*.lock"),
    ]:
        try:
            made = lock.stat().st_mtime
        except OSError:
            continue
        if made >= min(since) - 2.0 and not held_open(lock):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            removed.append(lock.name)
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    return removed


def held_open(path: Path) -> bool:
    """Whether a live process has ``path`` open (git holds its lock file open while it
    writes). Without /proc, every lock counts as held."""
    target = str(path)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"{folder}/{fd}") == target:
                    return True
    return False
