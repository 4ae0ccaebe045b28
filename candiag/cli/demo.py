"""``candiag demo``: the daemon against the built-in simulated charger and meters.

One command, one process: the simulated charger transmits on an in-process python-can
``virtual`` bus, simulated meters answer on a pseudo-terminal, the daemon reads both and
serves ``/metrics``.  On a terminal the full ``monitor`` view (buses, findings with their
fixes, nodes, meters; :mod:`candiag.tui.view`) refreshes in place; otherwise (CI, pipes)
one summary line is printed every few seconds.
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
DEMO_KEYS = "↑↓ PgUp PgDn scroll  c compact  q quit"


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
    scenario = config.simulator.scenario if config.simulator else "healthy"
    title = f"simulated charger, scenario {scenario}"
    view = _LiveView(title) if sys.stdout.isatty() else _Summaries()
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
    """The full ``monitor`` view (buses, findings with fixes, nodes, meters), refreshed in
    place on the alternate screen, fitted to the terminal; arrows/PgUp/PgDn scroll, ``c``
    toggles the compact layout, ``q`` stops (as Ctrl-C)."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        from candiag.tui.view import ScrollState

        self.title = title
        self._live = Live(console=Console(), screen=True, auto_refresh=False, transient=True)
        self._last = 0.0
        self._scroll = ScrollState()
        self._compact: bool | None = None
        self._keys: Any = None

    def start(self) -> None:
        if sys.stdin.isatty():
            from candiag.tui.terminal import KeyReader

            self._keys = KeyReader(sys.stdin.fileno())
            self._keys.enter()
        self._live.start()

    def update(self, daemon: Daemon) -> None:
        if self._keys is not None:
            self._handle_keys(self._keys.read(0.0), daemon)
        if time.monotonic() - self._last < 0.25:
            return
        self._last = time.monotonic()
        from candiag.tui.view import render_screen

        self._live.update(
            render_screen(_screen(daemon, self.title, self._scroll, self._compact)), refresh=True
        )

    def _handle_keys(self, keys: str, daemon: Daemon) -> None:
        from candiag.tui.app import ESCAPE_KEYS

        page = self._scroll.page
        moves = {"up": -1, "down": 1, "pgup": -page, "pgdn": page}
        for sequence, action in ESCAPE_KEYS.items():
            while sequence in keys:
                keys = keys.replace(sequence, "", 1)
                if action == "home":
                    self._scroll.offset = 0
                elif action == "end":
                    self._scroll.offset = self._scroll.max_offset
                else:
                    self._scroll.move(moves[action])
        for key in keys:
            if key in "jk":
                self._scroll.move(1 if key == "j" else -1)
            elif key in " b":
                self._scroll.move(page if key == " " else -page)
            elif key in "gG":
                self._scroll.offset = 0 if key == "g" else self._scroll.max_offset
            elif key == "c":
                self._compact = not self._scroll.compact_shown
            elif key.lower() == "q":
                daemon.request_stop()
        self._last = 0.0 if keys else self._last

    def stop(self) -> None:
        try:
            self._live.stop()
        finally:
            if self._keys is not None:
                self._keys.restore()


def _screen(daemon: Daemon, title: str, scroll: Any, compact: bool | None) -> Any:
    """The monitor's screen state from the running daemon (read on its loop thread)."""
    from candiag.tui.session import engine_bus_views
    from candiag.tui.view import ScreenState

    now = daemon.clock.now()
    engine = daemon.engine
    return ScreenState(
        now=now,
        title=title,
        buses=engine_bus_views(engine, now) if engine is not None else [],
        meters=engine.meters() if engine is not None else [],
        findings=engine.active_findings() if engine is not None else [],
        diagnosing=engine.diagnosed if engine is not None else False,
        message=f"metrics at {daemon.metrics_url}/metrics" if daemon.metrics_url else "",
        compact=compact,
        scroll=scroll,
        program="candiag demo",
        keys=DEMO_KEYS,
    )
