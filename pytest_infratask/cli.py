"""The ``infratask`` command line.

Each subcommand is registered by one ``_add_<name>`` function that builds its
parser and binds its handler with ``set_defaults(handler=...)``; adding a
subcommand means writing one such function and listing it in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from pytest_infratask.manifest import ManifestError, set_value

PROG = "infratask"

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand and return its exit status (argparse errors exit with 2)."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Infrastructure task tooling.")
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
    sub.add_argument("key_path", metavar="KEY.PATH", help="dotted path; list items by index")
    sub.add_argument("value", metavar="VALUE")
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
            args.file, args.key_path, args.value, document=args.document, match=args.match
        )
    except ManifestError as exc:
        print(f"{PROG} set: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: {args.key_path} {old} -> {args.value}")
    return 0


# --- registry --------------------------------------------------------------------------

_SUBCOMMANDS: Sequence[Callable[[Subparsers], None]] = (_add_set,)


if __name__ == "__main__":
    raise SystemExit(main())
