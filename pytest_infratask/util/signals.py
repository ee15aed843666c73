"""Stretches of code that Ctrl-C, SIGTERM or SIGHUP must not cut in two.

The run turns these signals into ``KeyboardInterrupt`` in the main thread, which
Python raises between any two bytecodes. Taking a lock and noting that it is held is
two steps: cut between them, the lock is held by nobody the run knows of, and the
run's own cleanup waits for it forever. Such steps run ``deferred``: the run's
handlers are ``deferrable``, so one whose signal comes meanwhile runs as the stretch
ends, when the state is whole. (A signal mask would not do: any thread of the
process may take a process's signal, and Python runs the handler in the main thread
all the same.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["STOPPING", "Handler", "defer_current", "deferrable", "deferred"]

STOPPING = (signal.SIGTERM, signal.SIGHUP)
"""How CI cancels a job and a closed terminal ends one: the run stops as on Ctrl-C."""

Handler = Callable[[int, FrameType | None], object]

_DEPTH = [0]  # deferred stretches the main thread is in
_DUE: list[tuple[Handler, int]] = []  # handlers whose signal came meanwhile


def deferrable(handler: Handler) -> Handler:
    """``handler``, held back while the main thread is in a ``deferred`` stretch."""

    def run(signum: int, frame: FrameType | None) -> object:
        __tracebackhide__ = True  # pytest shows where the signal came, not this
        if _DEPTH[0]:
            _DUE.append((handler, signum))
            return None
        _run_due()  # any left by a signal that came as a stretch ended
        return handler(signum, frame)

    run.__wrapped__ = handler  # type: ignore[attr-defined]
    run.infratask_deferrable = True  # type: ignore[attr-defined]
    return run


def defer_current(signum: int) -> None:
    """Make the handler ``signum`` has now deferrable, unless it is already (or is no
    function): for handlers set by others, such as pytest-timeout's SIGALRM."""
    if threading.current_thread() is not threading.main_thread():
        return
    handler = signal.getsignal(signum)
    if callable(handler) and not getattr(handler, "infratask_deferrable", False):
        signal.signal(signum, deferrable(handler))


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the body whole; leaving runs the handlers held back meanwhile, in order
    (the first that raises ends it). Signal handlers run only in the main thread:
    elsewhere this is nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _DEPTH[0] += 1
    try:
        yield
    finally:
        _DEPTH[0] -= 1
        if not _DEPTH[0]:
            _run_due()


def _run_due() -> None:
    """Run the held-back handlers in order; once one raises, the rest were the same
    request to stop and are dropped."""
    __tracebackhide__ = True
    try:
        while _DUE:
            handler, signum = _DUE.pop(0)
            handler(signum, None)
    finally:
        _DUE.clear()
