"""``candiag monitor``: the technician's live terminal view of a charger's CAN and Modbus links.

Sources (exactly one): ``--interface/--channel`` for an adapter on the charger's
port (listen-only: candiag never transmits), ``--config FILE`` for the buses and
meters of a candiag config, or ``--demo`` for the built-in simulated charger (the
simulator is the only thing that sends, on an in-process ``virtual`` channel).
On a terminal it draws a live view with keys; otherwise it prints plain lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candiag.errors import InputError

if TYPE_CHECKING:
    from candiag.config.model import BusConfig, Config
    from candiag.daemon.service import FrameSource
    from candiag.tui.session import MonitorSession


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "monitor",
        help="live terminal view: bus state, errors, nodes, meters and findings with fixes",
        description=(
            "Watch a charger's internal links live: per CAN bus its state, load, error "
            "frames per class, TEC/REC and dropped frames; every node (online, offline, "
            "intermittent, duplicate) with firmware and key signals; Modbus meters; and "
            "the diagnosis findings with their fixes, most severe first. candiag only "
            "listens on CAN and only reads Modbus registers. Keys: p pause, r reset "
            "counters, w start/stop recording (candump log), q quit. Without a terminal "
            "it prints one summary line per bus and meter every --interval seconds and "
            "each finding as it is raised or cleared."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-i", "--interface", help="python-can interface of a live adapter: pcan, socketcan, ..."
    )
    source.add_argument("--config", metavar="FILE", help="buses and meters of a candiag config")
    source.add_argument(
        "--demo", action="store_true", help="the built-in simulated charger and meters"
    )
    parser.add_argument("-c", "--channel", help="adapter channel, e.g. can0 or PCAN_USBBUS1")
    parser.add_argument(
        "-b",
        "--bitrate",
        type=int,
        help="bit/s: set on adapters like PCAN (SocketCAN: set with ip); also the basis "
        "of the bus load (default 125000)",
    )
    parser.add_argument("--fd", action="store_true", help="open the adapter in CAN FD mode")
    parser.add_argument("--data-bitrate", type=int, help="CAN FD data-phase bit/s")
    parser.add_argument(
        "--dbc",
        action="append",
        metavar="PATH",
        help="DBC file or folder for --interface (repeatable; default: the reference DBCs)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse DBCs cantools' strict mode refuses (default: load them, with warnings; "
        "with --config: as its dbc_strict)",
    )
    parser.add_argument(
        "--scenario", metavar="NAME", help="--demo fault scenario (default: healthy)"
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: until q)"
    )
    parser.add_argument(
        "--record-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where w writes candiag-YYYYmmdd-HHMMSS.log.gz (default: the current folder)",
    )
    parser.add_argument(
        "--record", action="store_true", help="start recording at once (as if w was pressed)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between plain summary lines when not on a terminal (default 5)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain lines even on a terminal (no live view)"
    )
    parser.add_argument(
        "--filter",
        action="append",
        metavar="SPEC",
        help="candump-style filter [IFACE,]ID:MASK|ID~MASK|#ERRMASK|j[,...] (repeatable; "
        "e.g. can0,123:7FF or 18FF50E5:1FFFFFFF; syntax in docs/filters.md); "
        "filters the raw view (v) only: health, findings and recording see every frame",
    )
    parser.set_defaults(func=_run)


def _check_args(args: argparse.Namespace) -> None:
    if args.interface and not args.channel:
        raise InputError("--interface needs --channel (e.g. -i pcan -c PCAN_USBBUS1)")
    if not args.interface:
        for option, value in (
            ("--channel", args.channel),
            ("--bitrate", args.bitrate),
            ("--dbc", args.dbc),
            ("--data-bitrate", args.data_bitrate),
        ):
            if value:
                raise InputError(f"{option} only applies to --interface (a live adapter)")
    if args.scenario and not args.demo:
        raise InputError("--scenario only applies to --demo")
    for option, value in (("--duration", args.duration), ("--interval", args.interval)):
        if value is not None and value <= 0:
            raise InputError(f"{option} must be a positive number of seconds, got {value:g}")
    if args.bitrate is not None and args.bitrate <= 0:
        raise InputError(f"--bitrate must be positive, got {args.bitrate}")
    if args.record_dir is not None and not args.record_dir.is_dir():
        raise InputError(f"--record-dir {args.record_dir}: no such folder; create it first")


def adapter_config(args: argparse.Namespace) -> Config:
    from candiag.config.model import BusConfig, Config
    from candiag.health.bitrate import DEFAULT_BITRATE

    bus = BusConfig(
        name=args.channel,
        interface=args.interface,
        channel=args.channel,
        bitrate=args.bitrate or DEFAULT_BITRATE,
        data_bitrate=args.data_bitrate,
        fd=bool(args.fd),
        dbc=tuple(Path(p) for p in args.dbc or ()),
    )
    return Config(source="--interface", buses=(bus,))


def demo_config(scenario: str | None) -> Config:
    from candiag.config.demo import demo_config as load_demo_config

    return load_demo_config(scenario=scenario)


def adapter_reader_factory(
    args: argparse.Namespace,
) -> tuple[Callable[[BusConfig], FrameSource], list[Any]]:
    """Open the adapter now (a missing one is an error at once), then hand it to the reader.

    Later reopenings (after the adapter was lost) go through the reader's backoff.
    Returns the reader factory and the list still holding the opened bus until the
    reader takes it (the caller shuts down whatever is left there after stopping).
    """
    from candiag.daemon.readers import open_reader
    from candiag.ingest.live import open_listen_only_bus

    def open_bus() -> Any:
        return open_listen_only_bus(
            args.interface, args.channel, args.bitrate, args.data_bitrate, bool(args.fd)
        )

    first = [open_bus()]

    def bus_factory() -> Any:
        return first.pop() if first else open_bus()

    def factory(config: BusConfig) -> FrameSource:
        return open_reader(config, bus_factory=bus_factory)

    return factory, first


def _run(args: argparse.Namespace) -> int:
    from candiag.config.load import load_config
    from candiag.ingest.filters import parse_filters
    from candiag.tui.session import MonitorSession, default_reader

    _check_args(args)
    frame_filter = parse_filters(args.filter or [])  # a bad one fails before anything opens
    reader_factory: Callable[[BusConfig], FrameSource] = default_reader
    unused: list[Any] = []
    adapter_bitrates: dict[str, int | None] = {}
    if args.demo:
        config = demo_config(args.scenario)
        scenario = config.simulator.scenario if config.simulator else "healthy"
        title = f"demo: simulated charger, scenario {scenario}"
    elif args.config:
        config = load_config(args.config)
        title = f"config {args.config}"
    else:
        config = adapter_config(args)
        title = f"{args.interface} {args.channel} (listen-only)"
        reader_factory, unused = adapter_reader_factory(args)
        # Opened with --bitrate, or at the driver's default, which a recording must not
        # claim to know (the load basis still defaults to DEFAULT_BITRATE).
        adapter_bitrates[args.channel] = args.bitrate
    if frame_filter is not None:
        frame_filter.check_channels([b.channel for b in config.buses], "the monitored channel")
    if args.strict:
        config = dataclasses.replace(
            config, buses=tuple(dataclasses.replace(b, dbc_strict=True) for b in config.buses)
        )
    session = MonitorSession(
        config, title=title, reader_factory=reader_factory, adapter_bitrates=adapter_bitrates
    )
    try:
        session.start()
        return _show(args, session, title)
    finally:
        session.close()
        for bus in unused:  # opened up front, never taken by a reader (readers are stopped)
            bus.shutdown()


def _show(args: argparse.Namespace, session: MonitorSession, title: str) -> int:
    from candiag.ingest.filters import parse_filters
    from candiag.tui.app import MonitorApp

    interactive = sys.stdout.isatty() and sys.stdin.isatty() and not args.plain
    app = MonitorApp(
        session,
        record_dir=args.record_dir or Path.cwd(),
        summary_interval=args.interval,
        duration=args.duration,
        frame_filter=parse_filters(args.filter or []),
    )
    if args.record:
        app.start_recording()
    if interactive:
        from rich.console import Console

        return app.run_live(Console(), sys.stdin.fileno())
    print(f"candiag monitor: {title}; Ctrl-C stops", flush=True)
    if app.message:
        print(f"candiag monitor: {app.message}", flush=True)
        app.message = ""
    return app.run_plain(sys.stdout)
