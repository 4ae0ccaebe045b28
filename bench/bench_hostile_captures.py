"""Hostile captures benchmark (issue 13 §1 items 6 and 15): what blank lines and channel names cost.

* blank lines: a gzip of N MiB of newlines between two candump frames, and the same inside
  an ASC file, read with :class:`~candiag.capture.reader.CaptureReader` (MiB/s of
  decompressed text, peak RSS of the process);
* channel names: a candump capture with one new channel name per frame (70,000 by default,
  past the int16 channel indices of old), read, then analyzed end to end.

``python -m bench.bench_hostile_captures [--blank-mib N] [--channels N] [--quick]``
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

MIB = 1 << 20


def _gzip_with_newlines(path: Path, head: bytes, tail: bytes, mib: int) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\n" * MIB
    with open(path, "wb") as out:
        out.write(packer.compress(head))
        for _ in range(mib):
            out.write(packer.compress(block))
        out.write(packer.compress(tail))
        out.write(packer.flush())


def _read(path: Path) -> tuple[float, int, int]:
    from candiag.capture import CaptureReader

    started = time.perf_counter()
    reader = CaptureReader(path)
    frames = sum(len(b) for b in reader.batches())
    return time.perf_counter() - started, frames, reader.stats.lines


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_blank(folder: Path, mib: int) -> None:
    candump = folder / "blank.log.gz"
    _gzip_with_newlines(
        candump, b"(1.000000) can0 123#01\n", b"(2.000000) can0 123#02\n", mib
    )  # fmt: skip
    asc = folder / "blank.asc.gz"
    header = b"date Mon Jan 1 00:00:00 2024\nbase hex  timestamps absolute\n"
    _gzip_with_newlines(asc, header, b"   1.000000 1  123             Rx   d 2 01 02\n", mib)
    for name, path in (("candump -L", candump), ("ASC", asc)):
        seconds, frames, lines = _read(path)
        print(
            f"{name:10s} {mib} MiB of newlines ({path.stat().st_size / 1024:.0f} KiB gzip): "
            f"{seconds:.2f} s, {mib / seconds:.0f} MiB/s, {frames} frames of {lines:,} lines; "
            f"peak RSS so far {_peak_rss_mib():.0f} MiB"
        )


def bench_channels(folder: Path, count: int) -> None:
    from candiag.analysis import analyze_capture

    path = folder / "channels.log"
    lines = [f"({1_700_000_000 + k * 0.001:.6f}) c{k} 123#0102" for k in range(count)]
    path.write_text("\n".join(lines) + "\n")
    seconds, frames, _ = _read(path)
    print(f"{count:,} channel names: read {frames:,} frames in {seconds:.2f} s")
    started = time.perf_counter()
    report = analyze_capture(str(path), None, bitrate=125_000).report
    print(
        f"{count:,} channel names: analyze in {time.perf_counter() - started:.2f} s, "
        f"{len(report.capture.channels)} channels kept, "
        f"{report.capture.overflow_frames:,} frames in the overflow channel"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_hostile_captures")
    parser.add_argument("--blank-mib", type=int, default=1024, help="MiB of newlines (1024)")
    parser.add_argument("--channels", type=int, default=70_000, help="channel names (70000)")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 5,000 names")
    args, _ = parser.parse_known_args(argv)
    mib, channels = (64, 5_000) if args.quick else (args.blank_mib, args.channels)
    with tempfile.TemporaryDirectory(prefix="candiag-bench-") as tmp:
        bench_blank(Path(tmp), mib)
        bench_channels(Path(tmp), channels)


if __name__ == "__main__":
    main()
