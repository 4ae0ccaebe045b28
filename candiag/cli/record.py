"""``candiag record``: record a live CAN bus, listen-only, to candump ``-L`` files.

The bus is opened once up front so that a missing adapter is reported at once
(exit code 3); once recording, a lost adapter is reopened with backoff and the
gap shows in the summary.  Ctrl-C or SIGTERM ends the recording cleanly: the
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


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "record",
        help="record a live CAN bus (listen-only) to a candump -L log",
        description=(
            "Record every frame of a live CAN bus, error frames included (class bits and "
            "payload kept), to candump -L text (.log, or .log.gz compressed). candiag only "
            "listens: it never transmits. Stop with Ctrl-C; a summary goes to stderr. Data "
            "is flushed to disk at least every second. The bus's bitrate, interface and "
            "channel go with the recording (.log.gz: in the gzip header's comment; .log: "
            "in NAME.log.meta.json), so analyze knows the bitrate without a flag."
        ),
    )
    parser.add_argument(
        "-i", "--interface", required=True, help="python-can interface: socketcan, pcan, ..."
    )
    parser.add_argument("-c", "--channel", required=True, help="e.g. can0 or PCAN_USBBUS1")
    parser.add_argument(
        "-b", "--bitrate", type=int, help="bit/s (adapters like PCAN; SocketCAN sets it with ip)"
    )
    parser.add_argument("--fd", action="store_true", help="open the bus in CAN FD mode")
    parser.add_argument("--data-bitrate", type=int, help="CAN FD data-phase bit/s")
    parser.add_argument(
        "-o", "--output", required=True, help="file ending .log or .log.gz (never overwritten)"
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
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "--filter",
        action="append",
        metavar="SPEC",
        help="candump-style filter [IFACE,]ID:MASK|ID~MASK|#ERRMASK|j[,...] (repeatable; "
        "e.g. can0,123:7FF or 18FF50E5:1FFFFFFF; syntax in docs/filters.md); "
        "only the frames it keeps are written",
    )
    parser.set_defaults(func=_run)


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
    from candiag.cli.outputs import check_outputs
    from candiag.ingest.filters import parse_filters
    from candiag.ingest.live import BusReader, open_listen_only_bus

    _positive(args.rotate_size, "--rotate-size")
    _positive(args.rotate_time, "--rotate-time")
    _positive(args.duration, "--duration")
    frame_filter = parse_filters(args.filter or [])
    if frame_filter is not None:
        frame_filter.check_channels([args.channel], "the recorded channel")
    check_outputs([args.output], [])  # a missing folder is named as such, before the bus opens
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="candiag: %(message)s")
    rotate_bytes = int(args.rotate_size * BYTES_PER_MB) if args.rotate_size else None
    bus_metadata = live_bus_metadata(
        args.interface, args.channel, args.bitrate, data_bitrate=args.data_bitrate, fd=args.fd
    )
    writer = CandumpWriter(
        args.output,
        rotate_bytes=rotate_bytes,
        rotate_seconds=args.rotate_time,
        metadata=RecordingMetadata((bus_metadata,)),
    )

    def open_bus() -> Any:
        return open_listen_only_bus(
            args.interface, args.channel, args.bitrate, args.data_bitrate, args.fd
        )

    try:
        first_bus = [open_bus()]  # fail fast: a missing adapter is an error, not a wait
    except BaseException:
        writer.discard()  # nothing was recorded into it
        raise

    def factory() -> Any:
        return first_bus.pop() if first_bus else open_bus()

    reader = BusReader(args.interface, args.channel, bus_factory=factory)
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

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
    if frame_filter is not None:
        print(
            f"filter {frame_filter.text()}: only the frames it keeps are written", file=sys.stderr
        )
    try:
        summary = record(
            reader, writer, duration=args.duration, stop=stop, frame_filter=frame_filter
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(summary.text(), file=sys.stderr)
    return 0
