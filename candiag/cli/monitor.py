"""``candiag monitor``: the technician's live terminal view of a charger's CAN and Modbus links.

Sources (exactly one): ``--interface/--channel`` for an adapter on the charger's
port (listen-only: candiag never transmits), ``--config FILE`` for the buses and
meters of a candiag config, or ``--demo`` for the built-in simulated charger (the
simulator is the only thing that sends, on an in-process ``virtual`` channel).
On a terminal it draws a live view with keys; otherwise it prints plain lines.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candiag.errors import InputError

if TYPE_CHECKING:
    from candiag.config.model import BusConfig, Config
    from candiag.live.readers import FrameSource
    from candiag.tui.session import MonitorSession


def register(subparsers: Any) -> None:
    from candiag.cli.args import (
        add_adapter_arguments,
        add_command,
        add_config_argument,
        add_dbc_argument,
        add_duration_argument,
    )

    parser = add_command(
        subparsers,
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
            "\n\n"
            "Sources (exactly one): an adapter (-i/-c), a candiag config (--config), the "
            "simulated charger (--demo), or candump -L lines on standard input (-)."
        ),
        example_lines=(
            "candiag monitor -i pcan -c PCAN_USBBUS1 -b 250000",
            "candiag monitor -i socketcan -c can0",
            "candump -L can0 | candiag monitor -",
            "candiag monitor --config /etc/candiag/candiag.toml",
            "candiag monitor --demo --scenario module_offline",
        ),
    )
    parser.add_argument(
        "stream",
        nargs="?",
        metavar="-",
        help="read candump -L lines from standard input (e.g. candump -L can0 | candiag "
        "monitor -); -c names the channel to watch (default: the first line's)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "-i",
        "--interface",
        metavar="NAME",
        help="python-can interface of a live adapter: pcan, socketcan, kvaser, vector, ...",
    )
    add_config_argument(source, "buses and meters of a candiag config")
    source.add_argument(
        "--demo", action="store_true", help="the built-in simulated charger and meters"
    )
    add_adapter_arguments(parser, interface_flag=False)
    add_dbc_argument(
        parser,
        "DBC file or folder for --interface or - (repeatable; default: the reference DBCs)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse DBCs cantools' strict mode refuses (default: load them, with warnings; "
        "with --config: as its dbc_strict)",
    )
    parser.add_argument(
        "--scenario",
        metavar="NAME",
        help="--demo fault scenario (default: healthy): " + scenario_help_list(),
    )
    parser.add_argument(
        "--list-scenarios",
        action="store_true",
        help="list the --demo scenarios (charger and meters) and exit",
    )
    add_duration_argument(parser, "stop after S seconds (default: until q or Ctrl-C)")
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
        help="seconds between plain summary lines when not on a terminal (default: 5)",
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


def scenario_help_list() -> str:
    """The demo's scenario names (charger, then meters), read from the data files."""
    from candiag.sim.scenarios import all_scenario_names

    return ", ".join(all_scenario_names())


def _check_args(args: argparse.Namespace) -> None:
    if args.stream is not None and args.stream != "-":
        raise InputError(
            f"{args.stream}: monitor watches a live source; for a capture file use "
            f"`candiag analyze {args.stream}`, for a live stream pipe it in: "
            "candump -L can0 | candiag monitor -"
        )
    sources = [
        name
        for name, given in (
            ("-", args.stream),
            ("--interface", args.interface),
            ("--config", args.config),
            ("--demo", args.demo),
        )
        if given
    ]
    if len(sources) != 1:
        raise InputError(
            "monitor needs exactly one source: -i/--interface with -c/--channel (an adapter), "
            "--config FILE, --demo, or - (candump -L lines on standard input)"
            + (f"; got {' and '.join(sources)}" if sources else "")
        )
    if args.interface and not args.channel:
        raise InputError("--interface needs --channel (e.g. -i pcan -c PCAN_USBBUS1)")
    if not args.interface:
        allowed_on_stdin = {"--channel", "--bitrate", "--dbc", "--data-bitrate"}
        for option, value in (
            ("--channel", args.channel),
            ("--bitrate", args.bitrate),
            ("--dbc", args.dbc),
            ("--data-bitrate", args.data_bitrate),
            ("--bus-kwargs", args.bus_kwargs),
            ("--timing", args.timing),
        ):
            if value and not (args.stream and option in allowed_on_stdin):
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
    from candiag.cli.args import adapter_options
    from candiag.config.model import BusConfig, Config
    from candiag.health.bitrate import DEFAULT_BITRATE

    options = adapter_options(args)
    bus = BusConfig(
        name=options.channel,
        interface=options.interface,
        channel=options.channel,
        bitrate=options.bitrate or DEFAULT_BITRATE,
        data_bitrate=options.data_bitrate,
        fd=options.fd,
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
    from candiag.cli.args import adapter_options
    from candiag.live.readers import open_reader

    options = adapter_options(args)

    def open_bus() -> Any:
        return options.open_listen_only()

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

    if args.list_scenarios:
        return _list_scenarios()
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
    elif args.stream:
        config, reader_factory = stream_source(args)
        title = f"{config.buses[0].channel} from standard input (candump -L)"
    else:
        config = adapter_config(args)
        title = f"{args.interface} {args.channel} (listen-only)"
        reader_factory, unused = adapter_reader_factory(args)
        # Opened with --bitrate, or at the driver's default, which a recording must not
        # claim to know (the load basis still defaults to DEFAULT_BITRATE).
        adapter_bitrates[args.channel] = (
            config.buses[0].bitrate if args.bitrate or args.timing else None
        )
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

    keys = _key_input(args)
    interactive = keys is not None and sys.stdout.isatty() and not args.plain
    app = MonitorApp(
        session,
        record_dir=args.record_dir or Path.cwd(),
        summary_interval=args.interval,
        duration=args.duration,
        frame_filter=parse_filters(args.filter or []),
    )
    if args.record:
        app.start_recording()
    if interactive and keys is not None:
        from rich.console import Console

        return app.run_live(Console(), keys)
    print(f"candiag monitor: {title}; Ctrl-C stops", flush=True)
    if app.message:
        print(f"candiag monitor: {app.message}", flush=True)
        app.message = ""
    return app.run_plain(sys.stdout)


def _key_input(args: argparse.Namespace) -> int | None:
    """The file descriptor keys are read from: the terminal, even when stdin is the pipe."""
    if not args.stream:
        return sys.stdin.fileno() if sys.stdin.isatty() else None
    try:  # as less does: the data on stdin, the keys from the controlling terminal
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:
        return None
    atexit.register(os.close, fd)
    return fd


def stream_source(
    args: argparse.Namespace,
) -> tuple[Config, Callable[[BusConfig], FrameSource]]:
    """``-``: one bus of candump -L lines from standard input, named by its channel."""
    from candiag.capture.stream import StreamReader
    from candiag.config.model import BusConfig, Config
    from candiag.health.bitrate import DEFAULT_BITRATE

    reader = StreamReader(sys.stdin.buffer, args.channel)
    print("candiag monitor: waiting for the first line on standard input", file=sys.stderr)
    channel = reader.first_line()
    bus = BusConfig(
        name=channel,
        interface="stdin",
        channel=channel,
        bitrate=args.bitrate or DEFAULT_BITRATE,
        data_bitrate=args.data_bitrate,
        dbc=tuple(Path(p) for p in args.dbc or ()),
    )

    def factory(_config: BusConfig) -> FrameSource:
        return reader

    return Config(source="standard input", buses=(bus,)), factory


def _list_scenarios() -> int:
    from candiag.cli.scenarios import print_scenarios

    print_scenarios(demo=True)
    return 0
