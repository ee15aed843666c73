"""Every branch on the pytest (and xdist) version, and every use of their private
parts, lives here and nowhere else; tests/test_surface.py holds the rest to it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any, NoReturn

import _pytest.config
import pytest
from _pytest._code.code import ReprFileLocation
from _pytest._code.code import TerminalRepr as TerminalRepr
from _pytest._io import TerminalWriter
from _pytest.fixtures import FuncFixtureInfo as FuncFixtureInfo

WorkerData = dict[str, Any]
"""xdist's ``workerinput``/``workeroutput``: untyped dicts of values execnet carries."""
Scheduler = Any
"""An xdist scheduler (``xdist.scheduler.protocol.Scheduling``): xdist ships no types."""
NodeKey = Any
"""A node id as pytest's last-failed set keys it: a ``NodeId`` since pytest 9, a ``str``
before; named by whichever pytest is installed."""

PYTEST_VERSION = tuple(int(p) for p in pytest.__version__.split(".")[:2] if p.isdigit())


def runs_as_the_program() -> bool:
    """Whether this session is pytest run as the program (``pytest``, ``python -m
    pytest``), so the process ends with it: pytest's console entry is on the stack,
    and no ``pytest.main`` (a program running pytest in-process, pytester) is nearer.
    The console entry is ``_console_main`` since pytest 9.1, ``console_main`` before."""
    entry = getattr(_pytest.config, "_console_main", None) or pytest.console_main
    called = pytest.main.__code__
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is called:
            return False
        if frame.f_code is entry.__code__:
            return True
        frame = frame.f_back
    return False


def register_marker(config: pytest.Config, name: str, description: str) -> None:
    """Markers derived from labels are registered so ``--strict-markers`` accepts them."""
    known = {
        str(line).split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")
    }
    if name not in known:
        config.addinivalue_line("markers", f"{name}: {description}")


def fixture_info(item: pytest.Function) -> FuncFixtureInfo:
    """The fixture closure pytest computed for ``item``. Every criterion of a task
    file calls the same function with the same fixtures visible, so one closure is
    handed to all of them (as pytest does for the cases of a parametrized test)
    instead of being computed 10,000 times for 10,000 criteria."""
    return item._fixtureinfo


def skip_here(reason: str) -> NoReturn:
    """Skip pointing at the criterion's line in the task file, not at the plugin."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


@dataclass(eq=False)
class CriterionRepr(TerminalRepr):
    """A failure report whose one-line message (JUnit ``message=``, the short
    summary) is the outcome itself, e.g. ``BLOCKED: missing dependency: helm``."""

    text: str
    reprcrash: ReprFileLocation

    def toterminal(self, tw: TerminalWriter) -> None:
        for line in self.text.splitlines():
            tw.line(line)


def criterion_repr(text: str, path: str, line: int, message: str) -> CriterionRepr:
    return CriterionRepr(text, ReprFileLocation(path, line, message))


def keyword_selects(item: pytest.Item, expression: str, ignored: set[str]) -> bool | None:
    """Whether ``-k expression`` selects ``item`` when the marker names in ``ignored``
    are left out of what it matches; None when pytest's internals have moved."""
    try:
        # pytest internals: where they live depends on the version
        from _pytest.mark import KeywordMatcher
        from _pytest.mark.expression import Expression

        matcher = KeywordMatcher.from_item(item)
        names = {node.name for node in item.listchain()} | item.listextrakeywords()
        kept = {n for n in matcher._names if n not in ignored or n in names}
        return bool(Expression.compile(expression).evaluate(KeywordMatcher(kept)))
    except Exception:  # a bad expression is pytest's to report; an API change is ours to bear
        return None


def _last_failed_set(config: pytest.Config) -> dict[NodeKey, bool] | None:
    """pytest's cache plugin keeps the last-failed set on its ``lfplugin``, keyed by
    node id (a ``NodeId`` since pytest 9, a string before)."""
    plugin = config.pluginmanager.get_plugin("lfplugin")
    lastfailed = getattr(plugin, "lastfailed", None)
    return lastfailed if isinstance(lastfailed, dict) else None


def node_key(node: pytest.Item | pytest.Collector | pytest.TestReport) -> NodeKey:
    """The key of ``node`` in the last-failed set."""
    return getattr(node, "id", node.nodeid)


def count_as_last_failed(config: pytest.Config, report: pytest.TestReport) -> None:
    """Record ``report``'s item as failed in the cache's last-failed set (read by
    ``--lf``/``--ff``) without making it a failure of this run. pytest's cache plugin
    drops skipped items from that set."""
    lastfailed = _last_failed_set(config)
    if lastfailed is not None:
        lastfailed[node_key(report)] = True


def last_failed_selection(config: pytest.Config) -> dict[NodeKey, bool] | None:
    """The last-failed set while ``--lf`` selects from it; None otherwise (no ``--lf``,
    or the cache plugin disabled)."""
    if not config.getoption("lf", None):
        return None
    return _last_failed_set(config)


def terminal_writer(reporter: pytest.TerminalReporter) -> TerminalWriter:
    """The terminal reporter's writer, for flushing and measuring the current line;
    pytest keeps it private (``_tw``) in every version so far."""
    return reporter._tw


def worker_input(holder: object) -> WorkerData | None:
    """What the xdist controller hands a worker: kept on the worker's config and on the
    controller's node for it; None in a run without xdist and on the controller."""
    value = getattr(holder, "workerinput", None)
    return value if isinstance(value, dict) else None


def worker_output(holder: object) -> WorkerData | None:
    """What a worker hands back to the controller (its config, the controller's node)."""
    value = getattr(holder, "workeroutput", None)
    return value if isinstance(value, dict) else None


def distributing(config: pytest.Config) -> bool:
    """Whether xdist hands this run's tests to workers (``--dist``; absent without xdist)."""
    return bool(getattr(config.option, "dist", "no") != "no")


@contextlib.contextmanager
def files_in_collection_order(config: pytest.Config) -> Iterator[None]:
    """xdist's file scheduling reorders files by their number of tests unless its
    ``loadscopereorder`` option is off; versions without that option keep the order."""
    option = config.option
    if not hasattr(option, "loadscopereorder"):
        yield
        return
    saved = option.loadscopereorder
    option.loadscopereorder = False
    try:
        yield
    finally:
        option.loadscopereorder = saved


def registered_options(
    register: Callable[[pytest.Parser], None],
) -> tuple[list[tuple[str, str, object, str]], list[tuple[str, str, object, str]]]:
    """What ``register`` (a ``pytest_addoption``) adds to a fresh parser: options as
    (flags, metavar, default, help), ini keys as (name, type, default, help). Read
    from the parser's private state, so the configuration reference is generated
    from the registration itself and cannot drift from it."""
    parser = pytest.Parser(_ispytest=True)
    register(parser)
    options: list[tuple[str, str, object, str]] = []
    for group in parser._groups:
        for argument in group.options:
            attrs = argument.attrs()
            choices = attrs.get("choices")
            metavar = attrs.get("metavar") or ("{" + ",".join(choices) + "}" if choices else "")
            flags = ", ".join(argument.names())
            options.append((flags, str(metavar), attrs.get("default"), str(attrs.get("help", ""))))
    inis: list[tuple[str, str, object, str]] = [
        (name, str(kind or "string"), default, help_text)
        for name, (help_text, kind, default) in parser._inidict.items()
    ]
    return options, inis
