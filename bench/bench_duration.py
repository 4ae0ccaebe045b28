"""Analyze time versus capture duration at a fixed frame count (issue 15).

The cached reference capture (``bench_decode``'s, 1,000,000 frames by default) is written
again with its timestamps stretched so that the same frames span 10 minutes, 10 hours and 100 hours
(the order and the payloads unchanged).  Each is analyzed in a fresh process
(:func:`candiag.analysis.analyze_capture`, reference DBCs, the reference bitrate): the time
should grow with frames, not with duration.  Prints seconds, frames/s and the number of
rule evaluations of each (one: the rules run once over the timelines), and their ratio.

``python -m bench.bench_duration [--frames N] [--quick]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.bench_decode import DEFAULT_CACHE, reference_capture

# 100 h as well: the 10 h capture is not the 10 min one slowed down for the diagnosis (its
# cooling and IMD nodes fall silent between frames: a thousand offline episodes to judge),
# and from 10 h to 100 h what grows, if anything, is the duration alone.
SPANS = {"10 min": 600.0, "10 h": 36_000.0, "100 h": 360_000.0}
BITRATE = 125_000


def stretched(source: Path, span_s: float) -> Path:
    """``source`` with its timestamps mapped linearly onto ``span_s`` seconds (cached)."""
    from candiag.capture import CandumpWriter, CaptureReader
    from candiag.ingest.frames import FrameBatch

    out = source.with_name(f"{source.stem}-span{int(span_s)}.log")
    if out.exists():
        return out
    batches = list(CaptureReader(source).batches())
    first = float(batches[0].timestamp[0])
    last = float(batches[-1].timestamp[-1])
    scale = span_s / max(last - first, 1e-9)
    partial = out.with_name(out.stem + ".partial.log")
    writer = CandumpWriter(partial, fsync=False)
    try:
        for b in batches:
            writer.write(
                FrameBatch(
                    timestamp=first + (b.timestamp - first) * scale,
                    can_id=b.can_id,
                    flags=b.flags,
                    dlc=b.dlc,
                    data=b.data,
                    channel=b.channel,
                    channels=b.channels,
                )
            )
    finally:
        writer.close()
    partial.rename(out)
    return out


CHILD = """
import json, sys, time
from candiag.analysis import analyze_capture
from candiag.decode.dbc import load_reference_database
started = time.perf_counter()
result = analyze_capture(sys.argv[1], load_reference_database(), bitrate={bitrate})
print(json.dumps({{"seconds": time.perf_counter() - started,
                  "frames": result.report.frames.total,
                  "evaluations": result.evaluations}}))
"""


def measure(path: Path) -> dict[str, float]:
    import json

    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(bitrate=BITRATE), str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["process_s"] = time.perf_counter() - started
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_duration", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 frames")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    frames = 100_000 if args.quick else args.frames
    source, origin = reference_capture(args.cache, frames)
    print(f"capture: {frames:,} frames of the {origin}")
    results = {}
    for label, span in SPANS.items():
        r = measure(stretched(source, span))
        results[label] = r
        print(
            f"{label:>7}: analyze {r['seconds']:.2f} s in-process ({r['process_s']:.2f} s whole "
            f"process), {r['frames'] / r['seconds']:,.0f} frames/s, "
            f"{int(r['evaluations'])} rule evaluation(s)"
        )
    ratio = results["10 h"]["seconds"] / results["10 min"]["seconds"]
    longer = results["100 h"]["seconds"] / results["10 h"]["seconds"]
    print(
        f"10 h / 10 min time ratio at {frames:,} frames: {ratio:.2f}; 100 h / 10 h: "
        f"{longer:.2f} (goal: about 1)"
    )


if __name__ == "__main__":
    main()
