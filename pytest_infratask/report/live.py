"""Live progress while a criterion's commands run.

Four forms, chosen from the terminal and options (``--infratask-output``):

- ``compact`` (a terminal): the last line of output and the elapsed time, drawn
  after pytest's own text on the current status line and erased when the
  criterion ends, so pytest's line reads as it always does;
- ``full`` (``-s``): every line of output, prefixed ``[TASK-001 #2]``;
- ``lines`` (``CI=true`` or no terminal): a plain line every
  ``infratask_progress_interval`` seconds for a criterion still running, with
  the elapsed time and its last line of output; nothing is ever redrawn;
- ``quiet`` (``-q``): nothing.

Every line passes through the task's masker before it is shown. Under xdist a
worker has no terminal: it appends its progress to a file in a directory the
controller made and handed over in ``workerinput``; a thread on the controller
reads those files and shows which criterion each worker runs, for how long, and
its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO, TypedDict, Unpack

import pytest

from pytest_infratask import compat
from pytest_infratask.compat import terminal_writer
from pytest_infratask.core.durations import DurationError, parse_duration
from pytest_infratask.workers import worker_input

if TYPE_CHECKING:
    from pytest_infratask.core.masking import LineMasker, Masker

PROGRESS_KEY = pytest.StashKey["Progress"]()
WORKER_INPUT = "infratask_progress"
REDRAW = 0.2
OUTPUT_POLL = 0.25  # seconds between looks at what the workers' commands printed
PARTIAL_LIMIT = 64 * 1024
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_SAVE, _RESTORE, _ERASE = "\x1b7", "\x1b8", "\x1b[K"


class Mode(StrEnum):
    COMPACT = "compact"
    FULL = "full"
    LINES = "lines"
    QUIET = "quiet"


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("infratask")
    group.addoption(
        "--infratask-output",
        choices=("auto", *(m.value for m in Mode)),
        default="auto",
        help="live output of running commands: compact (last line and elapsed time on the "
        "status line), full (every line; the default with -s), lines (a progress line every "
        "infratask_progress_interval seconds; the default with CI=true or no terminal), "
        "quiet (the default with -q)",
    )
    parser.addini(
        "infratask_progress_interval",
        "seconds between progress lines in line-oriented output (CI, no terminal)",
        default="30",
    )


def mode_for(config: pytest.Config) -> Mode:
    chosen = str(config.getoption("infratask_output", "auto") or "auto")
    if chosen != "auto":
        return Mode(chosen)
    if config.get_verbosity() < 0:
        return Mode.QUIET
    if config.getoption("capture") == "no":
        return Mode.FULL
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    if ci or not sys.stdout.isatty():
        return Mode.LINES
    return Mode.COMPACT


def _interval(config: pytest.Config) -> float:

    try:
        value = parse_duration(config.getini("infratask_progress_interval"), "")
    except DurationError:
        value = None
    return 30.0 if value is None else max(0.0, value)


def elapsed(seconds: float) -> str:
    whole = int(seconds)
    return (
        f"{seconds:.1f}s"
        if seconds < 10
        else (f"{whole}s" if whole < 60 else f"{whole // 60}m{whole % 60:02d}s")
    )


# --- one criterion ----------------------------------------------------------------------


class Live:
    """Fed the raw output of a running block (``b""`` while it is quiet): splits it into
    lines, masks them and hands them to the display.

    A line longer than ``PARTIAL_LIMIT`` is shown in pieces, cut where the masker says
    no secret is split: what could still begin one waits for the next piece."""

    def __init__(self, display: Display, label: str, mask: Masker) -> None:
        self.display = display
        self.label = label
        self.mask = mask
        self.started = time.monotonic()
        self.last = ""
        self._partial: dict[int, bytes] = {}
        self._streams: dict[int, LineMasker] = {}
        display.begin(self)

    def __call__(self, chunk: bytes, stream: int = 1) -> None:
        if chunk:
            pieces = _LINE_BREAK.split(self._partial.get(stream, b"") + chunk)
            rest = pieces.pop()
            if len(rest) > PARTIAL_LIMIT:
                text = rest.decode("utf-8", "surrogateescape")
                head = text[: self.mask.cut(text)].encode("utf-8", "surrogateescape")
                pieces.append(head)
                rest = rest[len(head) :]
            self._partial[stream] = rest
            for raw in pieces:
                self._line(raw, stream)
        self.display.tick(self)

    def _line(self, raw: bytes, stream: int) -> None:
        lines = self._streams.get(stream) or self._streams.setdefault(stream, self.mask.lines())
        text = lines(raw.decode("utf-8", "replace")).rstrip()
        if text.strip():
            self.last = text
            self.display.line(self, text)

    def close(self) -> None:
        for stream, rest in sorted(self._partial.items()):
            if rest:
                self._line(rest, stream)
        self._partial.clear()
        self.display.end(self)


class Display:
    """Where a process shows progress: its terminal, or (an xdist worker) a file."""

    def begin(self, live: Live) -> None: ...

    def line(self, live: Live, text: str) -> None: ...

    def tick(self, live: Live) -> None: ...

    def end(self, live: Live) -> None: ...


class Terminal(Display):
    """Progress on this process's terminal, with pytest's capture held off meanwhile."""

    def __init__(self, config: pytest.Config, mode: Mode, interval: float) -> None:
        self.config = config
        self.mode = mode
        self.interval = interval
        self.lock = threading.RLock()
        self.status = False
        self._drawn = 0.0
        self._printed = 0.0
        self._fresh = False

    @contextlib.contextmanager
    def _out(self) -> Iterator[pytest.TerminalReporter | None]:
        capman = self.config.pluginmanager.getplugin("capturemanager")
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        held = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        with self.lock, held:
            yield reporter

    def write_line(self, text: str) -> None:
        with self._out() as reporter:
            self._erase()
            if reporter is None:
                return
            reporter.ensure_newline()
            reporter.write_line(text)
            # a CI log is a pipe: block buffering would hold the line back
            terminal_writer(reporter).flush()

    def draw(self, text: str) -> None:
        """Text after pytest's own on the current line, erased before anything else."""
        with self._out() as reporter:
            if reporter is None:
                return
            writer = terminal_writer(reporter)
            room = writer.fullwidth - writer.width_of_current_line - 2
            if room < 12:
                return
            shown = text if len(text) <= room else text[: room - 1] + "…"
            stream: TextIO = sys.stdout
            stream.write((_RESTORE + _ERASE if self.status else _SAVE) + " " + shown)
            stream.flush()
            self.status = True

    def _erase(self) -> None:
        if self.status:
            sys.stdout.write(_RESTORE + _ERASE)
            sys.stdout.flush()
            self.status = False

    def erase(self) -> None:
        if self.status:
            with self._out():
                self._erase()

    # -- one criterion in this process ----------------------------------------------------
    def begin(self, live: Live) -> None:
        self._drawn = 0.0
        self._printed = live.started
        self._fresh = False

    def line(self, live: Live, text: str) -> None:
        if self.mode is Mode.FULL:
            self.write_line(f"[{live.label}] {text}")
        self._fresh = True

    def tick(self, live: Live) -> None:
        now = time.monotonic()
        spent = now - live.started
        if self.mode is Mode.COMPACT and now - self._drawn >= REDRAW:
            self._drawn = now
            self.draw(f"[{live.label} {elapsed(spent)}] {live.last}".rstrip())
        elif (
            self.mode is Mode.LINES
            and now - self._printed >= self.interval
            and (self._fresh or (self.interval > 0 and spent >= self.interval))
        ):
            self._printed = now
            self._fresh = False
            self.write_line(f"[{live.label}] running {elapsed(spent)}: {live.last}")

    def end(self, live: Live) -> None:
        if self.mode is Mode.COMPACT:
            self.erase()


class Event(TypedDict, total=False):
    """One line a worker's file carries to the controller."""

    event: Literal["start", "line", "last", "end"]
    label: str
    at: float
    text: str


class WorkerFile(Display):
    """On an xdist worker: progress records appended to a file the controller reads."""

    def __init__(self, path: Path, mode: Mode) -> None:
        self.path = path
        self.mode = mode
        self._sent = 0.0
        self._pending = ""

    def _send(self, **record: Unpack[Event]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def begin(self, live: Live) -> None:
        self._send(event="start", label=live.label, at=time.time())

    def line(self, live: Live, text: str) -> None:
        if self.mode is Mode.FULL:
            self._send(event="line", text=text)
        else:
            self._pending = text  # only the last line is shown: send it at most every REDRAW

    def tick(self, live: Live) -> None:
        now = time.monotonic()
        if self._pending and now - self._sent >= REDRAW:
            self._sent = now
            self._send(event="last", text=self._pending)
            self._pending = ""

    def end(self, live: Live) -> None:
        self._send(event="end")


# --- the controller of an xdist run -----------------------------------------------------


@dataclass
class _Worker:
    offset: int = 0
    label: str = ""
    started: float = 0.0
    last: str = ""
    printed: float = 0.0
    fresh: bool = False
    carry: str = field(default="", repr=False)


class Watcher:
    """On the xdist controller: reads the workers' progress files and shows them."""

    def __init__(self, terminal: Terminal, folder: Path) -> None:
        self.terminal = terminal
        self.folder = folder
        self.workers: dict[str, _Worker] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="infratask-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.poll()  # whatever arrived since the last look
        self.terminal.erase()

    def _loop(self) -> None:
        while not self._stop.wait(OUTPUT_POLL):
            with contextlib.suppress(OSError, ValueError):
                self.poll()

    def poll(self) -> None:
        for path in sorted(self.folder.glob("*.jsonl")):
            name = path.stem
            state = self.workers.setdefault(name, _Worker())
            with path.open(encoding="utf-8") as handle:
                handle.seek(state.offset)
                chunk = handle.read()
            state.offset += len(chunk.encode("utf-8"))
            text = state.carry + chunk
            *records, state.carry = text.split("\n")
            for record in records:
                if record.strip():
                    self._apply(name, state, json.loads(record))
        self._show()

    def _apply(self, name: str, state: _Worker, record: Event) -> None:
        event = record.get("event")
        if event == "start":
            state.label, state.started, state.last = str(record["label"]), float(record["at"]), ""
            state.printed, state.fresh = time.time(), False
        elif event in ("line", "last"):
            state.last, state.fresh = str(record["text"]), True
            if event == "line" and self.terminal.mode is Mode.FULL:
                self.terminal.write_line(f"[{name}] [{state.label}] {state.last}")
        elif event == "end":
            state.label = ""

    def _show(self) -> None:
        mode = self.terminal.mode
        now = time.time()
        running = [(n, s) for n, s in sorted(self.workers.items()) if s.label]
        if mode is Mode.COMPACT:
            if running:
                self.terminal.draw(
                    " | ".join(
                        f"{n} {s.label} {elapsed(now - s.started)}: {s.last}".rstrip(": ")
                        for n, s in running
                    )
                )
            else:
                self.terminal.erase()
        elif mode is Mode.LINES:
            interval = self.terminal.interval
            for name, state in running:
                spent = now - state.started
                due = now - state.printed >= interval
                if due and (state.fresh or (interval > 0 and spent >= interval)):
                    state.printed, state.fresh = now, False
                    self.terminal.write_line(
                        f"[{name}] {state.label} running {elapsed(spent)}: {state.last}"
                    )


# --- the plugin -------------------------------------------------------------------------


class Progress:
    """One per process; ``criterion`` gives the callback a running block feeds."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.mode = mode_for(config)
        self.interval = _interval(config)
        self.terminal = Terminal(config, self.mode, self.interval)
        self.display: Display = self.terminal
        workerinput = worker_input(config)
        if workerinput is not None:
            folder = workerinput.get(WORKER_INPUT)
            self.display = (
                WorkerFile(Path(folder) / f"{workerinput.get('workerid', 'gw')}.jsonl", self.mode)
                if folder and self.mode is not Mode.QUIET
                else Display()
            )
        self.folder: Path | None = None
        self.watcher: Watcher | None = None

    def criterion(self, label: str, mask: Masker) -> Live | None:
        if self.mode is Mode.QUIET:
            return None
        return Live(self.display, label, mask)

    # -- controller side: hand workers a folder, watch it ---------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: object) -> None:
        if self.mode is Mode.QUIET:
            return
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="infratask-progress-"))
            self.watcher = Watcher(self.terminal, self.folder)
            self.watcher.start()
        given = compat.worker_input(node)  # the controller's node for a worker: always set
        if given is not None:
            given[WORKER_INPUT] = str(self.folder)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logreport(self) -> Iterator[None]:
        # pytest writes the result on the status line: take the status text off first.
        with self.terminal.lock:
            self.terminal.erase()
            yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_logstart(self) -> Iterator[None]:
        with self.terminal.lock:
            self.terminal.erase()
            yield

    def pytest_sessionfinish(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def for_config(config: pytest.Config) -> Progress | None:
    return config.stash.get(PROGRESS_KEY, None)


def install(config: pytest.Config) -> Progress:
    """The session's live display, kept on the config for the commands to feed."""
    progress = Progress(config)
    config.stash[PROGRESS_KEY] = progress
    return progress


def workflow_commands(config: pytest.Config, lines: list[str]) -> None:
    """GitHub Actions workflow commands (``::add-mask::``, ``::error``): a line is one
    only from its first column. On this process's terminal pytest's half-written
    progress line is ended first; an xdist worker, which cannot know the controller's
    column, starts them with a newline of its own."""
    if not lines:
        return
    progress = for_config(config)
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if progress is None or reporter is None or worker_input(config) is not None:
        announce(config, ["", *lines])
        return
    with progress.terminal._out():
        progress.terminal._erase()
        current = reporter.currentfspath
        reporter.ensure_newline()
        writer = terminal_writer(reporter)
        if writer.width_of_current_line:
            writer.line()
        for line in lines:
            writer.line(line)
        if isinstance(current, Path):  # the file's next results go on a line of their own
            writer.write(os.path.relpath(current, reporter.startpath) + " ")
            reporter.currentfspath = current
        writer.flush()


def announce(config: pytest.Config, lines: list[str]) -> None:
    """Lines for the person or CI log watching the run, past pytest's capture
    (an xdist worker's stderr is the controller's)."""
    if not lines:
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        sys.stderr.write("".join(line + "\n" for line in lines))
        sys.stderr.flush()
