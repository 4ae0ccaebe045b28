"""The live loop's CPU cost at 8,000 frames/s: frame processing and the once-a-second diagnosis.

The daemon's loop (:class:`candiag.live.engine.LiveEngine`) polls each bus every step and,
once a second, builds each bus's report and timeline and runs the diagnosis over them
(the same rules ``analyze`` runs once over a capture, :mod:`candiag.diagnosis.intervals`).
This replays the reference capture (``bench_decode``'s, the simulated reference charger)
re-timed to a steady 8,000 frames/s (looped when longer than the capture) into a :class:`~candiag.live.bus.LiveBus` as the loop
does (a step every 0.25 s of bus time, a diagnosis every second, the last hour remembered),
and reports process CPU seconds per second of traffic: for the frames, for the diagnosis,
and in all (1.0 would be one core).  Bus time runs as fast as the CPU allows, so the figure
is the loop's own cost, not the neighbours' (``time.process_time``).

``python -m bench.bench_liveloop [--seconds S] [--quick]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

from bench.bench_decode import DEFAULT_CACHE, reference_capture

RATE = 8_000.0
STEP_S = 0.25


def replay(seconds: float) -> dict[str, float]:
    from candiag.capture import CaptureReader
    from candiag.config.model import BusConfig
    from candiag.decode.dbc import load_reference_database
    from candiag.diagnosis.engine import DiagnosisEngine
    from candiag.diagnosis.timeline import bus_timeline
    from candiag.ingest.frames import FrameBatch
    from candiag.live.bus import LiveBus

    frames = int(seconds * RATE)
    path, _ = reference_capture(DEFAULT_CACHE, 1_000_000)
    base = FrameBatch.concat(list(CaptureReader(path).batches()))
    t0 = float(base.timestamp[0])

    def frames_of(lo: int, hi: int) -> FrameBatch:
        """Frames ``lo..hi`` of the endless replay: the capture again and again, re-timed."""
        rows = np.arange(lo, hi) % len(base)
        b = base.take(rows)
        return FrameBatch(
            timestamp=t0 + np.arange(lo, hi, dtype=np.float64) / RATE,
            can_id=b.can_id, flags=b.flags, dlc=b.dlc, data=b.data,
            channel=b.channel, channels=b.channels,
        )  # fmt: skip

    bus = LiveBus(BusConfig(name="can0", interface="virtual", channel="bench"),
                  load_reference_database())  # fmt: skip
    bus.set_link(True, t0)
    engine = DiagnosisEngine()
    edges = np.ceil(np.arange(0, seconds + STEP_S, STEP_S) * RATE).astype(np.int64)
    frame_cpu = diagnosis_cpu = last_minute = 0.0
    last_diagnosis = t0
    for k, (lo, hi) in enumerate(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)):
        now = t0 + (k + 1) * STEP_S
        c0 = time.process_time()
        bus.process(frames_of(lo, hi))
        bus.advance(now)
        c1 = time.process_time()
        frame_cpu += c1 - c0
        if now - last_diagnosis >= 1.0:
            last_diagnosis = now
            report = bus.report(now)
            engine.update(now, [report], [], [bus_timeline(bus.pipeline, now)])
            spent = time.process_time() - c1
            diagnosis_cpu += spent
            if now > t0 + seconds - 60:
                last_minute += spent
    return {"seconds": seconds, "frames": float(frames), "frame_cpu": frame_cpu,
            "diagnosis_cpu": diagnosis_cpu, "last_minute": last_minute}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_liveloop", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--quick", action="store_true", help="90 s of traffic")
    args, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    seconds = 90.0 if args.quick else args.seconds
    r = replay(seconds)
    per_s = {k: r[k] / seconds for k in ("frame_cpu", "diagnosis_cpu")}
    print(f"{int(r['frames']):,} frames of the reference charger at {RATE:,.0f} frames/s "
          f"over {seconds:.0f} s of bus time, a step every {STEP_S} s, a diagnosis every 1 s")  # fmt: skip
    print(f"CPU per second of traffic: frames {per_s['frame_cpu']:.3f} s, diagnosis "
          f"{per_s['diagnosis_cpu']:.3f} s, in all {sum(per_s.values()):.3f} s "
          f"(1.0 = one core); diagnosis over the last minute (history {seconds - 60:.0f} s): "
          f"{r['last_minute'] / 60:.3f} s per second")  # fmt: skip


if __name__ == "__main__":
    main()
