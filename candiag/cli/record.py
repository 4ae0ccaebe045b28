"""``candiag record``: record a live CAN bus, listen-only, to candump ``-L`` files.

The bus is opened once up front so that a missing adapter is reported at once
(exit code 3); once recording, a lost adapter is reopened with backoff and the
gap shows in the summary.  Ctrl-C, SIGTERM (or Ctrl-Break on Windows) ends the recording cleanly: the
last frames are written, the file is closed, and a summary goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from candiag.errors import InputError

BYTES_PER_MB = 1_000_000


#: Seconds without a single frame after which ``record`` says so (and what to check).
NO_FRAME_WARNING_S = 5.0


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_adapter_arguments, add_command, add_duration_argument

    parser = add_command(
        subparsers,
        "record",
        help="record a live CAN bus (listen-only) to a candump -L log",
        description=(
            "Record every frame of a live CAN bus, error frames included (class bits and "
            "payload kept), to candump -L text (.log, or .log.gz compressed). candiag only "
            "listens: it never transmits. Stop with Ctrl-C; a summary goes to stderr. Data "
            "is flushed to disk at least every second. The bus's bitrate, interface and "
            "channel go with the recording (.log.gz: in the gzip header's comment; .log: "
            "in NAME.log.meta.json), so analyze knows the bitrate without a flag. When no "
            f"frame arrives for {NO_FRAME_WARNING_S:g} s, record says so and what to check."
            "\n\n"
            "No hardware at hand? On Linux a virtual SocketCAN bus works across processes: "
            "`sudo ip link add dev vcan0 type vcan && sudo ip link set up vcan0`, then "
            "`candiag simulate -i socketcan -c vcan0` in one terminal and `candiag record -i "
            "socketcan -c vcan0 -o test.log` in another. python-can's `virtual` interface "
            "only works within one process; `candiag monitor --demo --record` records the "
            "built-in simulated charger."
        ),
        example_lines=(
            "candiag record -i pcan -c PCAN_USBBUS1 -b 250000 -o charger.log.gz",
            "candiag record -i socketcan -c can0 -o can0.log.gz --rotate-size 100",
            "candiag record -i kvaser -c 0 -b 500000 -o bench.log -d 600",
            "candiag record -i vector -c 0 --bus-kwargs app_name=CANalyzer -o v.log.gz",
        ),
    )
    add_adapter_arguments(
        parser,
        required=True,
        bitrate_help="bit/s: set on adapters that take it (PCAN, Kvaser, Vector; SocketCAN: "
        "set it with ip link) and kept in the recording's metadata",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="file ending .log or .log.gz (never overwritten)",
    )
    parser.add_argument(
        "--rotate-size",
        type=float,
        metavar="MB",
        help="start a new numbered file (NAME.0001.log, ...) past this size (MB = 10^6 bytes)",
    )
    parser.add_argument(
        "--rotate-time", type=float, metavar="S", help="start a new numbered file every S seconds"
    )
    add_duration_argument(parser, "stop after S seconds (default: until Ctrl-C)")
    parser.add_argument(
        "--no-frame-warning",
        type=float,
        default=NO_FRAME_WARNING_S,
        metavar="S",
        help="say so when no frame arrived in the first S seconds (default: %(default)g)",
    )
    parser.add_argument(
        "--filter",
        action="append",
        metavar="SPEC",
        help="candump-style filter [IFACE,]ID:MASK|ID~MASK|#ERRMASK|j[,...] (repeatable; "
        "e.g. can0,123:7FF or 18FF50E5:1FFFFFFF; syntax in docs/filters.md); "
        "only the frames it keeps are written",
    )
    parser.set_defaults(func=_run)


def no_frame_text(interface: str, channel: str, seconds: float) -> str:
    """What ``record`` says after ``seconds`` without a frame: the causes, and how to try
    recording without hardware."""
    if interface == "virtual":
        return (
            f"candiag record: no frame on python-can's virtual channel {channel} in "
            f"{seconds:g} s; still recording. The virtual bus only carries frames within one "
            "process: another process (candiag simulate) sending on it is never heard here. "
            + _TRY_WITHOUT_HARDWARE
        )
    causes = [
        "the bitrate (a wrong one receives nothing at all: try --bitrate 125000, 250000, "
        "500000 or the charger's documented rate)"
        if interface != "socketcan"
        else f"the bitrate set with `ip link set {channel} type can bitrate N`",
        "the cable and the CAN-H/CAN-L/GND pins, and that the charger's bus is powered",
        "termination (about 60 ohm between CAN-H and CAN-L with the charger off)",
    ]
    return (
        f"candiag record: no frame from {interface} {channel} in {seconds:g} s; still "
        "recording. Check " + "; ".join(causes) + ". " + _TRY_WITHOUT_HARDWARE
    )


_TRY_WITHOUT_HARDWARE = (
    "To try recording without hardware: on Linux a vcan (or vxcan) bus carries frames "
    "between processes (`sudo ip link add dev vcan0 type vcan; sudo ip link set up vcan0`, "
    "then `candiag simulate -i socketcan -c vcan0` beside `candiag record -i socketcan -c "
    "vcan0 -o test.log`); anywhere, `candiag monitor --demo --record` records the built-in "
    "simulated charger"
)


def _bitrate_note(interface: str, bitrate: int | None) -> str:
    """What the recording will say about its bitrate (kept in its metadata)."""
    if bitrate is not None:
        where = "as set in the kernel" if interface == "socketcan" else "as opened"
        return f"bitrate {bitrate} bit/s ({where}), kept in the recording's metadata"
    fix = (
        "set it with ip link"
        if interface == "socketcan"
        else "pass --bitrate to open the adapter at a known rate"
    )
    return (
        "bitrate not known to candiag, so the recording cannot state it (analyze will infer "
        f"it from the timestamps or say it assumed one); {fix}"
    )


def _positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{option} must be a positive number, got {value:g}")


def _run(args: argparse.Namespace) -> int:
    from candiag.capture import CandumpWriter
    from candiag.capture.metadata import RecordingMetadata
    from candiag.capture.recorder import live_bus_metadata, record
    from candiag.cli.args import adapter_options
    from candiag.cli.outputs import check_outputs, wrote
    from candiag.ingest.filters import parse_filters
    from candiag.ingest.live import BusReader
    from candiag.stopsignals import stop_signals

    _positive(args.rotate_size, "--rotate-size")
    _positive(args.rotate_time, "--rotate-time")
    _positive(args.duration, "--duration")
    _positive(args.no_frame_warning, "--no-frame-warning")
    frame_filter = parse_filters(args.filter or [])
    if frame_filter is not None:
        frame_filter.check_channels([args.channel], "the recorded channel")
    check_outputs([args.output], [])  # a missing folder is named as such, before the bus opens
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="candiag: %(message)s")
    rotate_bytes = int(args.rotate_size * BYTES_PER_MB) if args.rotate_size else None
    options = adapter_options(args)
    bus_metadata = live_bus_metadata(
        options.interface,
        options.channel,
        options.bitrate,
        data_bitrate=options.data_bitrate,
        fd=options.fd,
    )
    writer = CandumpWriter(
        args.output,
        rotate_bytes=rotate_bytes,
        rotate_seconds=args.rotate_time,
        metadata=RecordingMetadata((bus_metadata,)),
    )

    def open_bus() -> Any:
        return options.open_listen_only()

    try:
        first_bus = [open_bus()]  # fail fast: a missing adapter is an error, not a wait
    except BaseException:
        writer.discard()  # nothing was recorded into it
        raise

    def factory() -> Any:
        return first_bus.pop() if first_bus else open_bus()

    reader = BusReader(args.interface, args.channel, bus_factory=factory)
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in stop_signals()}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in previous:
        signal.signal(sig, on_signal)
    print(
        f"recording {args.interface} {args.channel} to {writer.current} (listen-only); "
        "Ctrl-C to stop",
        file=sys.stderr,
    )
    print(_bitrate_note(bus_metadata.interface, bus_metadata.bitrate), file=sys.stderr)
    silence = threading.Timer(
        args.no_frame_warning, _warn_if_silent, (reader, stop, args.no_frame_warning)
    )
    silence.name = "candiag-record-silence"
    silence.daemon = True
    silence.start()
    if frame_filter is not None:
        print(
            f"filter {frame_filter.text()}: only the frames it keeps are written", file=sys.stderr
        )
    try:
        summary = record(
            reader, writer, duration=args.duration, stop=stop, frame_filter=frame_filter
        )
    finally:
        silence.cancel()
        silence.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary.text(), file=sys.stderr)
    for path in writer.files:
        if path.exists():
            wrote(str(path))
    return 0


def _warn_if_silent(reader: Any, stop: threading.Event, seconds: float) -> None:
    if not stop.is_set() and reader.frames_received == 0 and reader.up:
        print(no_frame_text(reader.interface, reader.channel, seconds),
              file=sys.stderr, flush=True)  # fmt: skip
