"""The ``candiag`` command line: an explicit table of subcommands, one module each.

Each subcommand module exposes ``register(subparsers)`` which adds its parser and
sets ``func`` to a callable ``(args) -> int``.  Heavy imports (cantools,
pymodbus) happen inside those callables so ``candiag --help`` stays fast.
Only :class:`~candiag.errors.CandiagError` is caught here: it is printed as one
clear message with its exit code; anything else is a bug and keeps its traceback, except a
closed pipe on stdout (``candiag analyze x.log --json - | head``), which ends quietly.
``candiag`` alone prints the help.
"""

from __future__ import annotations

import argparse
import importlib
import os
import stat
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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``command`` (a subcommand's name) only that subcommand's part.

    Each subcommand's module imports what it runs on (numpy, rich, the simulator, the
    report): registering only the one asked for keeps start-up to what it needs
    (bench/bench_startup.py).  Help and unknown commands get every subcommand.
    """
    from candiag.cli.args import HelpFormatter, examples

    parser = argparse.ArgumentParser(
        prog="candiag",
        description="Diagnose the internal CAN and Modbus RS-485 links of DC fast EV chargers. "
        "candiag only listens on CAN (the simulator is the one command that sends) and only "
        "reads Modbus registers. `candiag COMMAND --help` describes each command.",
        epilog=examples(
            "candiag monitor -i pcan -c PCAN_USBBUS1 -b 250000   # live view of an adapter",
            "candiag record -i socketcan -c can0 -o can0.log.gz  # record (listen-only)",
            "candiag analyze can0.log.gz --html report.html      # findings and a report",
            "candump -L can0 | candiag monitor -                 # a pipe as a live bus",
            "candiag demo                                        # the simulated charger",
            "candiag run --config /etc/candiag/candiag.toml      # the daemon (systemd)",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"candiag {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    module = None if command is None else command.replace("-", "_")
    for name in (module,) if module in SUBCOMMANDS else SUBCOMMANDS:
        importlib.import_module(f"candiag.cli.{name}").register(subparsers)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word), or None (help, version, none)."""
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    from candiag.deferred_imports import defer_mf4

    defer_mf4()  # asammdf and pandas only when an MF4 file is read (0.7 s otherwise)
    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if args.command is None:  # `candiag` alone: what it can do, as git and pip answer
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CandiagError as err:
        print(f"candiag: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        if not _stdout_is_pipe():
            raise
        # The reader of our output went away (`| head`): stop quietly, as cat does.
        _silence_stdout()
        return 0


def _stdout_is_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
