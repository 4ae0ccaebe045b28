"""The ``candiag`` command line: an explicit table of subcommands, one module each.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and
sets ``func`` to a callable ``(args) -> int``.  Heavy imports (cantools,
pymodbus) happen inside those callables so ``candiag --help`` stays fast.
Only :class:`~candiag.errors.CandiagError` is caught here: it is printed as one
clear message with its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from candiag import __version__
from candiag.errors import CandiagError

# Order is the order of `candiag --help`.
SUBCOMMANDS: tuple[str, ...] = (
    "run",
    "demo",
    "monitor",
    "check_config",
    "decode",
    "analyze",
    "record",
    "probe",
    "modbus",
    "simulate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="candiag",
        description="Diagnose the internal CAN and Modbus RS-485 links of DC fast EV chargers.",
    )
    parser.add_argument("--version", action="version", version=f"candiag {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"candiag.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CandiagError as err:
        print(f"candiag: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
