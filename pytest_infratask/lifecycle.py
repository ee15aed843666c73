"""What the plugin sets up for a pytest session, and takes down after it.

Like pytest's own junitxml, the report plugins are registered at configure time and
unregistered at unconfigure, so a session started in-process (``pytest.main`` twice,
``pytester.runpytest_inprocess``) never reports through the previous one's objects.
The run-level files are written where every contract is known: on the xdist
controller, or in the only process of a run without xdist.

SIGTERM and SIGHUP (how CI cancels a job, a closed terminal) end the run as Ctrl-C
does: the handlers installed here raise ``Terminated``, a ``KeyboardInterrupt``, in
the main thread, so the running command, its sandbox, the read-only proxy and the
private kubeconfigs are ended and freed on the way out; unconfigure puts the previous
handlers back.

Once task items are collected, what the session holds to its end is frozen out of the
cyclic garbage collector (``settle``), and given back at unconfigure.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import signal
import sys
import threading
from types import FrameType

import pytest

from pytest_infratask import options, reporting
from pytest_infratask.compat import distributing, runs_as_the_program
from pytest_infratask.core.ci import on_github_actions
from pytest_infratask.core.settings import SETTINGS_KEY
from pytest_infratask.report import live, outputs
from pytest_infratask.util.signals import STOPPING, Handler, deferrable
from pytest_infratask.workers import is_worker

PLUGINS = ("infratask-report", "infratask-outputs", "infratask-progress")
_Handler = Handler | int | None
"""What ``signal.signal`` returns and takes back: a function, SIG_DFL/SIG_IGN, or None."""
_PREVIOUS = pytest.StashKey[dict[int, _Handler]]()
_FROZEN = pytest.StashKey[bool]()


class Terminated(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM, SIGHUP): it ends as after Ctrl-C."""


def configure(config: pytest.Config) -> None:
    if not is_worker(config):
        options.check_outputs(config)
    settings = options.read_settings(config)
    config.stash[SETTINGS_KEY] = settings
    if settings.require_sandbox:
        from pytest_infratask.run.sandbox import unavailable  # start-up: only when asked

        reason = unavailable(settings.bwrap)
        if reason is not None:
            raise pytest.UsageError(
                f"--infratask-require-sandbox: commands cannot run in a sandbox: {reason}"
            )
    _markers(config)
    config.pluginmanager.register(reporting.ReportPlugin(config), PLUGINS[0])
    if not is_worker(config):
        config.pluginmanager.register(outputs.OutputsPlugin(config), PLUGINS[1])
    config.pluginmanager.register(live.install(config), PLUGINS[2])
    _install_handlers(config)


def _markers(config: pytest.Config) -> None:
    """The task-type markers every criterion gets, listed by ``pytest --markers``
    (a label's own marker is registered when its task file is collected)."""
    from pytest_infratask.plan.tasktype import GENERIC, LABEL_TYPES  # start-up: a table

    for words, task_type in LABEL_TYPES:
        labels = ", ".join(words)
        config.addinivalue_line(
            "markers",
            f"{task_type}: infratask {task_type} task (a label containing {labels}, "
            f"or `type: {task_type}`); every label is a marker too",
        )
    config.addinivalue_line(
        "markers", f"{GENERIC}: infratask task whose labels name no built-in type"
    )


def sessionstart(config: pytest.Config) -> None:
    """On GitHub Actions, ``::add-mask::`` every secret the environment holds before
    pytest's header, so no line of the log can show one; a task's own (its ``env``,
    credential files) follow when it starts. A worker only notes them as told."""
    if not on_github_actions():
        return
    from pytest_infratask.core import masking  # start-up: its patterns, on GitHub Actions only

    settings = config.stash[SETTINGS_KEY]
    lines = masking.github_add_mask(masking.Masker.for_run(os.environ, settings.secret_vars))
    if not is_worker(config):
        live.workflow_commands(config, lines)


def settle(session: pytest.Session) -> None:
    """Once task items are collected: each task another one follows in this process
    starts the next one's sandbox ahead (not on an xdist worker, which cannot know
    its next task); and what the session holds until its end (modules, items, the
    tasks' plans) is frozen out of the cyclic garbage collector (``gc.freeze``) until
    unconfigure: each collection while tasks run then scans what was allocated since,
    not the whole session again; a long task no longer slows down as it runs, and a
    full collection no longer costs tens of milliseconds. Not when another part of
    the process froze objects already (it owns that state). When pytest runs as the
    program the process ends with the session, and it stays frozen: the collections
    at its end (pytest's at unconfigure, the interpreter's at exit) would only scan
    what the exit frees anyway (~50 ms)."""
    config = session.config
    if config.option.collectonly:
        return
    from pytest_infratask.items import task_modules  # loaded: a task file was collected

    tasks = task_modules(session.items, ahead=not is_worker(config))
    if tasks and not gc.get_freeze_count():
        gc.freeze()
        config.stash[_FROZEN] = True


def unconfigure(config: pytest.Config) -> None:
    if config.stash.get(_FROZEN, False):
        del config.stash[_FROZEN]
        if not runs_as_the_program():
            gc.unfreeze()  # back in the oldest generation: collected as usual again
    try:
        process = sys.modules.get("pytest_infratask.run.process")  # loaded when a command ran
        if process is not None:
            process.end_services()
        sandbox = sys.modules.get("pytest_infratask.run.sandbox")
        if sandbox is not None:
            sandbox.end_spare()
        served = sys.modules.get("pytest_infratask.run.served")
        if served is not None:
            served.end_closed()  # the tasks' sandboxes told to end: nothing outlives the run
    finally:
        _restore_handlers(config)
        for name in PLUGINS:
            plugin = config.pluginmanager.get_plugin(name)
            if plugin is not None:
                config.pluginmanager.unregister(plugin)


def _terminated(signum: int, frame: FrameType | None, *, workers: bool = False) -> None:
    for stopping in STOPPING:  # a second signal must not cut the cleanup short
        signal.signal(stopping, signal.SIG_IGN)
    if workers:  # the xdist controller: its children are the workers, which run the commands
        from pytest_infratask.run.forkserver import children  # start-up: only when signalled

        for pid in children():
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
    raise Terminated(f"{signal.Signals(signum).name} received: ending the run")


def _install_handlers(config: pytest.Config) -> None:
    """Handlers that turn SIGTERM and SIGHUP into Ctrl-C; only the main thread may set
    them (an in-process run started from another thread keeps the previous ones). A
    signal the run was started ignoring (``nohup``) stays ignored. The xdist controller
    passes the signal on to its workers: xdist would otherwise let their commands run
    until it gives up waiting for them. Ctrl-C keeps its handler, made deferrable like
    the others: none of them cuts a ``signals.deferred`` stretch in two."""
    if threading.current_thread() is not threading.main_thread():
        return
    controller = not is_worker(config) and distributing(config)
    handlers: dict[int, _Handler] = dict.fromkeys(
        STOPPING, functools.partial(_terminated, workers=controller)
    )
    handlers[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    previous: dict[int, _Handler] = {}
    for signum, handler in handlers.items():
        if not callable(handler) or signal.getsignal(signum) is signal.SIG_IGN:
            continue
        with contextlib.suppress(ValueError, OSError):
            previous[signum] = signal.signal(signum, deferrable(handler))
    config.stash[_PREVIOUS] = previous


def _restore_handlers(config: pytest.Config) -> None:
    for signum, handler in config.stash.get(_PREVIOUS, {}).items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
