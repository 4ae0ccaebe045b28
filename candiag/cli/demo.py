"""``candiag demo``: the daemon against the built-in simulated charger and meters.

One command, one process: the simulated charger transmits on an in-process python-can
``virtual`` bus, simulated meters answer on a pseudo-terminal, the daemon reads both and
serves ``/metrics``.  On a terminal a small live view refreshes in place; otherwise
(CI, pipes) one summary line is printed every few seconds.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from candiag.config.model import Config
    from candiag.daemon.service import Daemon

SUMMARY_INTERVAL_S = 5.0


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_command, add_config_argument, add_duration_argument
    from candiag.sim.scenarios import all_scenario_names

    parser = add_command(
        subparsers,
        "demo",
        help="run the daemon against the built-in simulated charger and meters",
        description=(
            "Start the simulated charger (python-can virtual bus, in-process only) and "
            "simulated Modbus meters (pseudo-terminal), run the daemon on them and serve "
            "/metrics. Ctrl-C stops."
        ),
        example_lines=(
            "candiag demo",
            "candiag demo --scenario bus_off --listen 127.0.0.1:0",
            "candiag demo --scenario meter_crc_noise -d 60",
            "candiag demo --list-scenarios",
        ),
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="metrics address (default from config/demo.toml, 127.0.0.1:9847; port 0 picks a free one)",
    )
    add_duration_argument(parser, "stop after S seconds (default: until Ctrl-C)")
    parser.add_argument(
        "--scenario",
        metavar="NAME",
        help="fault scenario of the simulated charger or meters (default: healthy): "
        + ", ".join(all_scenario_names()),
    )
    parser.add_argument(
        "--list-scenarios",
        action="store_true",
        help="list the scenarios (charger and meters) with what each does, and exit",
    )
    add_config_argument(parser, "demo configuration (default: config/demo.toml)")
    parser.set_defaults(func=_run)


def demo_config(args: argparse.Namespace) -> Config:
    from candiag.config.demo import demo_config as load_demo_config
    from candiag.errors import InputError

    if args.duration is not None and args.duration <= 0:
        raise InputError("--duration must be positive (seconds)")
    return load_demo_config(args.config, scenario=args.scenario, listen=args.listen)


def _run(args: argparse.Namespace) -> int:
    if args.list_scenarios:
        from candiag.cli.scenarios import print_scenarios

        print_scenarios(demo=True)
        return 0
    from candiag.daemon.logging import setup_logging
    from candiag.daemon.service import Daemon, signal_handlers

    config = demo_config(args)
    setup_logging("warning" if sys.stdout.isatty() else config.log.level)
    view = _LiveView() if sys.stdout.isatty() else _Summaries()
    daemon = Daemon(config, config_path=args.config, on_step=view.update)
    timer: threading.Timer | None = None
    with signal_handlers(daemon):
        try:
            daemon.start()
            scenario = config.simulator.scenario if config.simulator else "healthy"
            print(
                f"candiag demo: scenario {scenario}; metrics at {daemon.metrics_url}/metrics",
                flush=True,
            )
            if args.duration is not None:
                timer = threading.Timer(args.duration, daemon.request_stop)
                timer.name = "candiag-demo-timer"
                timer.start()
            view.start()
            daemon.run()
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
            view.stop()
            daemon.stop()
    return 0


class _Summaries:
    """One line every few seconds (stdout is not a terminal)."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def start(self) -> None:
        self._last = time.monotonic()

    def update(self, daemon: Daemon) -> None:
        if time.monotonic() - self._last >= SUMMARY_INTERVAL_S:
            self._last = time.monotonic()
            print(f"candiag demo: {daemon.status_line()}", flush=True)

    def stop(self) -> None:
        pass


class _LiveView:
    """A small rich table refreshed in place (the full ``monitor`` view lives elsewhere)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self._live = Live(console=Console(), refresh_per_second=4, transient=False)
        self._last = 0.0

    def start(self) -> None:
        self._live.start()

    def update(self, daemon: Daemon) -> None:
        if time.monotonic() - self._last < 0.5:
            return
        self._last = time.monotonic()
        self._live.update(_table(daemon))

    def stop(self) -> None:
        self._live.stop()


def _table(daemon: Daemon) -> Any:
    """The demo's table; node families, devices and subjects are text, never markup."""
    from rich.table import Table
    from rich.text import Text

    snap = daemon.snapshot()
    table = Table(title=Text(f"candiag demo  {daemon.status_line()}"), expand=False)
    for col in ("link", "state", "figures"):
        table.add_column(col)
    for bus in snap.buses:
        down = [f"{n.family}/{n.node}" for n in bus.nodes if not n.up]
        errors = sum(bus.error_window.get("60s", {}).values())
        table.add_row(
            Text(bus.name),
            Text(bus.state),
            Text(
                f"{bus.frames_per_second:.0f} fps, load {100 * bus.load_ratio.get('10s', 0):.0f}%, "
                f"{errors} err/60s, nodes down: {', '.join(down) or 'none'}"
            ),
        )
    for dev in snap.modbus:
        fails = sum(dev.failures.values())
        table.add_row(
            Text(f"{dev.port}/{dev.device}"),
            Text("up" if dev.up else "down"),
            Text(f"{dev.requests} requests, {fails} failed"),
        )
    for f in snap.findings:
        table.add_row(Text(f.code), Text(f.severity), Text(f.subject))
    return table
