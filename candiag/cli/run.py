"""``candiag run --config FILE``: the daemon (systemd service, Prometheus exporter)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the daemon: read CAN buses and Modbus meters, serve /metrics",
        description=(
            "Run the candiag daemon with a TOML configuration: one listen-only reader per "
            "CAN bus, one read-only poller per Modbus port, Prometheus metrics on "
            "[metrics] listen (default 127.0.0.1:9847). SIGTERM stops, SIGHUP reloads "
            "the configuration (a bad one is logged and the running one kept). Under "
            "systemd (Type=notify) it reports READY, STATUS and WATCHDOG."
        ),
    )
    parser.add_argument(
        "--config",
        "-c",
        required=True,
        metavar="FILE",
        help="configuration file (see config/candiag.example.toml)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override [log] level",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.daemon.logging import setup_logging
    from candiag.daemon.service import prepare_config, run_daemon

    # The config and every file it names, loaded as a reload loads them: an error, never
    # a traceback, whatever a file holds.
    prepared = prepare_config(args.config)
    setup_logging(args.log_level or prepared.config.log.level)
    return run_daemon(prepared.config, args.config, prepared=prepared)
