"""The ``infratask`` command line.

Each subcommand is registered by one ``_add_<name>`` function that builds its
parser and binds its handler with ``set_defaults(handler=...)``; adding a
subcommand means writing one such function and listing it in ``_SUBCOMMANDS``.

Output cut short by its reader (``infratask scan --json | head -1``) ends the command
quietly with status 141, what the shell reports for a Unix tool SIGPIPE ended (``git
log | head -1`` on a long history).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TypeAlias

from pytest_infratask import __version__
from pytest_infratask.clients.manifest import ManifestError, set_value
from pytest_infratask.plan.dependencies import DependencyCycle
from pytest_infratask.plan.pending import as_rows, pending_tasks, table

PROG = "infratask"
DISTRIBUTION = "pytest-infratask"
BROKEN_PIPE = 128 + signal.SIGPIPE
"""The status of a command whose reader went away: what the shell reports for a
process SIGPIPE ended."""

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status (argparse errors exit with 2)."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        status = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # the interpreter flushes stdout again on exit: point it at nothing first
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE
    return status


def version() -> str:
    """The installed distribution's version (its metadata, the one place it is set)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH, never installed
        return __version__


def say(text: str) -> None:
    """Print ``text`` and its newline in one write: a reader that stops after the first
    line (``| head -1``) then never races the command for the rest of a short output."""
    sys.stdout.write(text + "\n")


def missing(paths: Sequence[Path]) -> Path | None:
    """The first of ``paths`` that does not exist."""
    return next((p for p in paths if not os.path.lexists(p)), None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Infrastructure task tooling.")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(subparsers)
    return parser


# --- set -------------------------------------------------------------------------------


def _add_set(subparsers: Subparsers) -> None:
    sub = subparsers.add_parser(
        "set",
        help="change one scalar in a YAML manifest, keeping everything else byte-identical",
        description="Change one scalar in a YAML manifest, keeping everything else as it was.",
    )
    sub.add_argument("file", type=Path, metavar="FILE")
    sub.add_argument(
        "key_path",
        metavar="KEY.PATH",
        help="dotted or yq-style path: spec.containers.0.image, .spec.containers[0].image, "
        '.spec.containers[name=api].image, .metadata.annotations["a.b/c"]',
    )
    sub.add_argument("value", metavar="VALUE")
    sub.add_argument(
        "--create",
        action="store_true",
        help="in a task file (.md), add KEY to the frontmatter when it is missing "
        "(at its end; the rest kept byte-identical)",
    )
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--document", type=int, metavar="N", help="0-based document index")
    which.add_argument(
        "--match",
        type=_match_pairs,
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="pick the document by field values, e.g. kind=HelmRelease,name=api",
    )
    sub.set_defaults(handler=_run_set)


def _match_pairs(text: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value.strip()
    return pairs


def _run_set(args: argparse.Namespace) -> int:
    try:
        old = set_value(
            args.file,
            args.key_path,
            args.value,
            document=args.document,
            match=args.match,
            create=args.create,
        )
    except ManifestError as exc:
        print(f"{PROG} set: error: {exc}", file=sys.stderr)
        return 1
    was = "(added)" if old is None else old
    say(f"{args.file}: {args.key_path} {was} -> {args.value}")
    return 0


# --- scan ------------------------------------------------------------------------------


def _add_scan(subparsers: Subparsers) -> None:
    sub = subparsers.add_parser(
        "scan",
        help="list pending tasks in execution order, ready or waiting",
        description="List pending tasks in execution order (dependencies, then priority).",
    )
    sub.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.set_defaults(handler=_run_scan)


def _run_scan(args: argparse.Namespace) -> int:
    absent = missing(args.paths)
    if absent is not None:
        print(f"{PROG} scan: error: {absent}: no such file or directory", file=sys.stderr)
        return 1
    try:
        tasks, errors = pending_tasks(args.paths)
    except DependencyCycle as exc:
        print(f"{PROG} scan: error: {exc}", file=sys.stderr)
        return 1
    for error in errors:
        print(f"{PROG} scan: {error}", file=sys.stderr)
    if args.json:
        say(json.dumps(as_rows(tasks), indent=2, ensure_ascii=False))
    elif tasks:
        say(table(tasks))
    else:
        say("no pending tasks")
    return 1 if errors else 0


# --- registry --------------------------------------------------------------------------

_SUBCOMMANDS: Sequence[Callable[[Subparsers], None]] = (_add_set, _add_scan)


if __name__ == "__main__":
    raise SystemExit(main())
