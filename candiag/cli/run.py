"""``candiag run --config FILE``: the daemon (systemd service, Prometheus exporter)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_command, add_config_argument

    parser = add_command(
        subparsers,
        "run",
        help="run the daemon: read CAN buses and Modbus meters, serve /metrics",
        description=(
            "Run the candiag daemon with a TOML configuration: one listen-only reader per "
            "CAN bus, one read-only poller per Modbus port, Prometheus metrics on "
            "[metrics] listen (default 127.0.0.1:9847). SIGTERM stops, SIGHUP reloads "
            "the configuration (a bad one is logged and the running one kept). Under "
            "systemd (Type=notify) it reports READY, STATUS and WATCHDOG."
        ),
        example_lines=(
            "candiag run --config /etc/candiag/candiag.toml",
            "candiag check-config /etc/candiag/candiag.toml   # the same checks, then exit",
            "systemctl start candiag   # systemd/candiag.service runs the first line",
        ),
    )
    add_config_argument(parser, "configuration file, required (see config/candiag.example.toml)")
    # `-c` is a channel in every other command; a unit file written for an older candiag
    # (`run -c FILE`) gets a message naming the fix instead of "unrecognized arguments".
    parser.add_argument("-c", dest="old_config", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override [log] level",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.errors import InputError

    if args.old_config is not None:
        raise InputError(
            f"run -c {args.old_config}: -c means --channel in every candiag command; the "
            f"daemon takes --config: candiag run --config {args.old_config} (update the "
            "unit file's ExecStart, see systemd/candiag.service)"
        )
    if args.config is None:
        raise InputError("run needs --config FILE (see config/candiag.example.toml)")
    from candiag.daemon.logging import setup_logging
    from candiag.daemon.service import prepare_config, run_daemon

    # The config and every file it names, loaded as a reload loads them: an error, never
    # a traceback, whatever a file holds.
    prepared = prepare_config(args.config)
    setup_logging(args.log_level or prepared.config.log.level)
    return run_daemon(prepared.config, args.config, prepared=prepared)
