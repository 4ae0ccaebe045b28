"""``candiag decode CAPTURE``: decode a capture with DBCs into JSON Lines, with a summary.

The capture is streamed chunk by chunk (memory stays bounded whatever its length), each
chunk decoded by the vectorized :class:`~candiag.decode.decoder.BatchDecoder` and written
in capture order.  What could not be decoded is not lost: the summary on stderr counts
unknown identifiers, short frames, error and remote frames and malformed lines (with
their line numbers).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from candiag.errors import InputError

TOP_UNKNOWN = 5


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "decode",
        help="decode a capture file with DBCs into JSON Lines",
        description=(
            "Decode every data frame of a capture (candump -L .log/.log.gz, ASC, BLF, TRC, "
            "CSV) with the given DBC files into JSON Lines, one object per decoded frame in "
            "capture order. A summary (frames, decoded, unknown ids, short, error and "
            "remote frames, malformed lines) goes to stderr."
        ),
    )
    parser.add_argument(
        "capture", help="the capture file, e.g. can0-2026-11-21.log.gz, or - for standard input"
    )
    parser.add_argument(
        "--dbc",
        action="append",
        metavar="PATH",
        help="DBC file or folder of *.dbc (repeatable; default: the reference charger DBCs)",
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
        "--chunk-lines",
        type=int,
        default=16_384,
        metavar="N",
        help="capture lines decoded at a time (bounds memory; default %(default)s)",
    )
    parser.set_defaults(func=_run)


@dataclass
class DecodeTotals:
    """Counts summed over all chunks of a capture."""

    frames: int = 0
    decoded: int = 0
    error_frames: int = 0
    remote_frames: int = 0
    messages: set[str] = field(default_factory=set)
    unknown_ids: collections.Counter[int] = field(default_factory=collections.Counter)
    short_frames: collections.Counter[int] = field(default_factory=collections.Counter)


def _run(args: argparse.Namespace) -> int:
    from candiag.cli.outputs import check_outputs
    from candiag.decode.dbc import load_dbc_paths, reference_dbc_dir, warning_lines
    from candiag.decode.decoder import BatchDecoder
    from candiag.decode.jsonl import format_jsonl
    from candiag.ingest.capture import CaptureReader

    check_outputs([args.output], [args.capture])
    db = load_dbc_paths(args.dbc or [reference_dbc_dir()], strict=args.strict)
    if args.chunk_lines < 1:
        raise InputError(f"--chunk-lines must be at least 1, got {args.chunk_lines}")
    reader = CaptureReader(args.capture, chunk_lines=args.chunk_lines)
    decoder = BatchDecoder(db)
    totals = DecodeTotals()
    with _output(args.output) as out:
        try:
            for batch in reader.batches():
                result = decoder.decode(batch)
                totals.frames += len(batch)
                totals.decoded += result.decoded_frames
                totals.error_frames += result.error_frames
                totals.remote_frames += result.remote_frames
                totals.messages.update(result.messages)
                totals.unknown_ids.update(result.unknown_ids)
                totals.short_frames.update(result.short_frames)
                out.write(format_jsonl(batch, result))
            out.flush()
        except BrokenPipeError:
            # The reader of stdout went away (| head): stop quietly, as cat does.
            _silence_stdout()
            return 0
    print(summary(reader.stats.summary(), totals), file=sys.stderr)
    for line in warning_lines(db.warnings):
        print(line, file=sys.stderr)
    return 0


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        handle: IO[str] = open(path, "w", encoding="utf-8", newline="\n")
    except OSError as err:
        raise InputError(
            f"--output {path}: cannot write ({err.strerror}); choose a writable path"
        ) from None
    with handle:
        yield handle


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def format_id(key: int) -> str:
    """An identifier as the decoder counts it (bit 31 set: extended), as CAN users write it."""
    from candiag.ingest.frames import format_can_id

    return format_can_id(key & 0x1FFFFFFF, bool(key & 0x80000000))


def _top(counter: collections.Counter[int], n: int) -> str:
    return ", ".join(f"{format_id(i)} x{c}" for i, c in counter.most_common(n))


def summary(capture_summary: str, totals: DecodeTotals) -> str:
    """The stderr report: what was read, decoded, and what was not and why."""
    head, _, malformed = capture_summary.partition("\n")
    lines = [
        f"candiag decode: {head}",
        f"  decoded: {totals.decoded} frames of {len(totals.messages)} messages",
    ]
    unknown = sum(totals.unknown_ids.values())
    if unknown:
        lines.append(
            f"  unknown ids: {unknown} frames with {len(totals.unknown_ids)} ids; "
            f"top: {_top(totals.unknown_ids, TOP_UNKNOWN)}"
        )
    else:
        lines.append("  unknown ids: none")
    short = sum(totals.short_frames.values())
    if short:
        lines.append(
            f"  short frames (payload shorter than the DBC says, not decoded): {short}; "
            f"{_top(totals.short_frames, TOP_UNKNOWN)}"
        )
    else:
        lines.append("  short frames: none")
    lines.append(f"  error frames: {totals.error_frames}, remote frames: {totals.remote_frames}")
    if malformed:
        lines.append(malformed)
    return "\n".join(lines)
