"""``candiag decode CAPTURE``: decode a capture with DBCs into JSON Lines, with a summary.

The capture is streamed chunk by chunk (memory stays bounded whatever its length), each
chunk decoded by the vectorized :class:`~candiag.decode.decoder.BatchDecoder` and written
in capture order by :class:`~candiag.decode.jsonl.JsonLinesFormatter` (line format and
number rules in :mod:`candiag.decode.jsonl`).  What could not be decoded is not lost: the
summary on stderr counts unknown identifiers and short frames per identifier (``0x123``
standard, ``0x00000285`` extended, as the frame's IDE flag says), error and remote frames
and malformed lines (with their line numbers).  A reader that goes away (``| head``) ends
the command quietly with status 0, like the usual Unix filters.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from candiag.errors import InputError

if TYPE_CHECKING:
    from candiag.health.ids import CappedIdCounter

TOP_UNKNOWN = 5  # ids (and messages) named in the summary
#: Capture lines decoded and written at a time: large enough that per-message work is
#: spread over thousands of frames (``make bench``), small enough for bounded memory.
DEFAULT_CHUNK_LINES = 65_536


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_command, add_dbc_argument, add_quiet_argument

    parser = add_command(
        subparsers,
        "decode",
        help="decode a capture file with DBCs into JSON Lines",
        description=(
            "Decode every data frame of a capture (candump -L .log/.log.gz, ASC, BLF, TRC, "
            "CSV; the format is told from the content, so standard input works too) with the "
            "given DBC files into JSON Lines, one object per decoded frame in "
            'capture order: {"timestamp", "channel", "id" ("0x123" standard, "0x00000285" '
            'extended), "extended", "arbitration_id", "message", "node" (addressed modules), '
            '"signals"}. A summary (frames, decoded, unknown ids, short, error and '
            "remote frames, malformed lines) goes to stderr."
        ),
        example_lines=(
            "candiag decode can0.log.gz > can0.jsonl",
            "candiag decode trace.asc --dbc charger.dbc --units -o trace.jsonl",
            "candump -L can0 | candiag decode - | jq .signals",
            "candiag decode can0.log | head",
        ),
    )
    parser.add_argument(
        "capture", help="the capture file, e.g. can0-2026-11-21.log.gz, or - for standard input"
    )
    add_dbc_argument(
        parser, "DBC file or folder of *.dbc (repeatable; default: the reference charger DBCs)"
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write JSON Lines here instead of stdout"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse DBCs cantools' strict mode refuses (default: load them, with warnings)",
    )
    parser.add_argument(
        "--units",
        action="store_true",
        help='add a "units" object to each line: {"signal": "unit"} for signals that have one',
    )
    parser.add_argument(
        "--choices",
        action="store_true",
        help="write value-table (VAL_) names instead of raw numbers where the DBC names them",
    )
    parser.add_argument(
        "--chunk-lines",
        type=int,
        default=DEFAULT_CHUNK_LINES,
        metavar="N",
        help="capture lines decoded at a time (bounds memory; default: %(default)s)",
    )
    add_quiet_argument(parser)
    parser.add_argument(
        "--filter",
        action="append",
        metavar="SPEC",
        help="candump-style filter [IFACE,]ID:MASK|ID~MASK|#ERRMASK|j[,...] (repeatable; "
        "e.g. can0,123:7FF or 18FF50E5:1FFFFFFF; syntax in docs/filters.md); "
        "frames it does not keep are counted, not decoded",
    )
    parser.set_defaults(func=_run)


#: An identifier with its IDE flag: (identifier, extended).


@dataclass
class DecodeTotals:
    """Counts summed over all chunks of a capture."""

    frames: int = 0
    decoded: int = 0
    error_frames: int = 0
    remote_frames: int = 0
    filtered_out: int = 0
    messages: collections.Counter[str] = field(default_factory=collections.Counter)
    # Per decoder key (bit 31: extended), capped: random ids must not grow memory for ever.
    unknown_ids: CappedIdCounter = field(default_factory=lambda: _capped())
    short_frames: CappedIdCounter = field(default_factory=lambda: _capped())


def _run(args: argparse.Namespace) -> int:
    from candiag.capture import CaptureReader
    from candiag.cli.outputs import check_outputs, wrote
    from candiag.cli.progress import capture_batches, progress
    from candiag.decode.dbc import load_dbc_paths, reference_dbc_dir, warning_lines
    from candiag.decode.decoder import BatchDecoder
    from candiag.decode.jsonl import JsonLinesFormatter, JsonLinesOptions
    from candiag.ingest.filters import parse_filters

    frame_filter = parse_filters(args.filter or [])
    check_outputs([args.output], [args.capture])
    db = load_dbc_paths(args.dbc or [reference_dbc_dir()], strict=args.strict)
    if args.chunk_lines < 1:
        raise InputError(f"--chunk-lines must be at least 1, got {args.chunk_lines}")
    reader = CaptureReader(args.capture, chunk_lines=args.chunk_lines)
    decoder = BatchDecoder(db)
    formatter = JsonLinesFormatter(db, JsonLinesOptions(units=args.units, choices=args.choices))
    totals = DecodeTotals()
    # JSON Lines scrolling on the terminal would tear a bar drawn on the same terminal.
    quiet = args.quiet or (args.output in (None, "-") and sys.stdout.isatty())
    channels_seen: set[str] = set()
    with (
        _output(args.output) as out,
        progress(f"decoding {Path(reader.where).name}", quiet=quiet) as update,
    ):
        try:
            for batch in capture_batches(reader, reader.batches(), update):
                totals.frames += len(batch)
                channels_seen.update(batch.channels)
                if frame_filter is not None:
                    kept = frame_filter.apply(batch)
                    totals.filtered_out += len(batch) - len(kept)
                    batch = kept
                result = decoder.decode(batch)
                totals.decoded += result.decoded_frames
                totals.error_frames += result.error_frames
                totals.remote_frames += result.remote_frames
                totals.messages.update({n: len(m) for n, m in result.messages.items()})
                totals.unknown_ids.update(result.unknown_ids)
                totals.short_frames.update(result.short_frames)
                out.writelines(formatter.format_pieces(batch, result))
            out.flush()
        except BrokenPipeError:
            # The reader of stdout went away (| head): stop quietly, as cat does.
            _silence_stdout()
            return 0
    print(summary(reader.stats.summary(), totals), file=sys.stderr)
    if frame_filter is not None:
        print(
            f"  filter {frame_filter.text()}: {totals.filtered_out} of {totals.frames} frames "
            "left out",
            file=sys.stderr,
        )
        unseen = sorted(frame_filter.interfaces - channels_seen)
        if unseen:
            print(
                f"  filter names {', '.join(unseen)}, a channel this capture does not have "
                f"(its channels: {', '.join(sorted(channels_seen)) or 'none'}); use one of "
                "those, 'any', or no interface",
                file=sys.stderr,
            )
    for line in warning_lines(db.warnings):
        print(line, file=sys.stderr)
    if args.output and args.output != "-":
        wrote(args.output)
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[bytes]]:
    if path is None or path == "-":
        sys.stdout.flush()
        yield sys.stdout.buffer
        return
    try:
        handle: IO[bytes] = open(path, "wb")
    except OSError as err:
        raise InputError(
            f"--output {path}: cannot write ({err.strerror}); choose a writable path"
        ) from None
    with handle:
        yield handle


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _capped() -> CappedIdCounter:
    from candiag.health.ids import CappedIdCounter  # imported when decoding, not at start

    return CappedIdCounter()


def _top(counter: CappedIdCounter, n: int) -> str:
    """The ``n`` most frequent ids; ties standard before extended, then by value."""
    from candiag.health.ids import id_key_text  # 0x123 standard, 0x00000285 extended

    ranked = sorted(
        counter.counts.items(), key=lambda item: (-item[1], item[0] >> 31, item[0] & 0x1FFFFFFF)
    )
    text = ", ".join(f"{id_key_text(key)} x{c}" for key, c in ranked[:n])
    if counter.untracked:
        text += f" (and {counter.untracked} frames of ids beyond the first {counter.cap})"
    return text


def summary(capture_summary: str, totals: DecodeTotals) -> str:
    """The stderr report: what was read, decoded, and what was not and why."""
    head, _, malformed = capture_summary.partition("\n")
    decoded = f"  decoded: {totals.decoded} frames of {len(totals.messages)} messages"
    if totals.messages:
        top = ", ".join(f"{name} x{c}" for name, c in totals.messages.most_common(TOP_UNKNOWN))
        more = len(totals.messages) - TOP_UNKNOWN
        decoded += f" ({top}{f', {more} more' if more > 0 else ''})"
    lines = [f"candiag decode: {head}", decoded]
    unknown = totals.unknown_ids.total()
    short = totals.short_frames.total()
    not_decoded = unknown + short + totals.error_frames + totals.remote_frames + totals.filtered_out
    lines.append(
        f"  not decoded: {not_decoded} of {totals.frames} frames ({unknown} with an unknown "
        f"id, {short} short, {totals.error_frames} error, {totals.remote_frames} remote"
        + (f", {totals.filtered_out} filtered out" if totals.filtered_out else "")
        + ")"
    )
    if unknown:
        lines.append(
            f"  unknown ids: {unknown} frames with {len(totals.unknown_ids)} ids; "
            f"top: {_top(totals.unknown_ids, TOP_UNKNOWN)}"
        )
    else:
        lines.append("  unknown ids: none")
    if short:
        lines.append(
            f"  short frames (payload shorter than the DBC says, not decoded): {short} with "
            f"{len(totals.short_frames)} ids; {_top(totals.short_frames, TOP_UNKNOWN)}"
        )
    else:
        lines.append("  short frames: none")
    lines.append(f"  error frames: {totals.error_frames}, remote frames: {totals.remote_frames}")
    if malformed:
        lines.append(malformed)
    return "\n".join(lines)
