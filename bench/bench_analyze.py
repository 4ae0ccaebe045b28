"""Analyze benchmark: ``candiag analyze`` vs a straightforward per-frame Python pipeline.

On the cached capture of the simulated reference charger (``bench_decode``'s, 1,000,000
frames by default), in the same run:

(a) candiag: :func:`candiag.analysis.analyze_capture` with the reference DBCs: streaming
    reader, vectorized decoder, error classes, exact bus load, sliding windows, id
    statistics with cycle checks, nodes, firmware, signal statistics and the diagnosis
    engine evaluated over capture time (best of 3);
(b) the straightforward pipeline computing the same figures: python-can's
    ``CanutilsLogReader``, cantools ``decode_message`` per frame, per-frame exact bit
    counting (candiag's pure-Python reference, ``frame_bits_reference``), and dict
    counting of frames per kind, error classes, per-id count/period/jitter, per-second
    bits (for the 1 s peak load), per-signal min/max/sum/last and per-node last seen
    (best of 3 over the first 200,000 frames: the traffic is stationary and the machine
    shared).

(a') the same as a technician runs it: ``candiag analyze FILE --json FILE -q`` in a fresh
    process (start-up, reference DBC identification and the JSON included; best of 3, the
    DBC cache in a fresh folder, so the first run parses the DBCs and is also shown).

Prints frames/s of both, the ratios (goal >= 40x, whole process) and each run's peak RSS, then the cost of
one sliding-window update per 1,000-frame batch and the windows' memory.

``python -m bench.bench_analyze [--frames N] [--baseline-frames N] [--quick]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import bench_decode as decode_bench
from bench.bench_decode import DEFAULT_CACHE, meter, reference_capture

if TYPE_CHECKING:
    from candiag.analysis import AnalysisReport

RATIO_GOAL = 40  # issue 15: the whole process, at least 40x the straightforward pipeline
BITRATE = 125_000  # the simulated reference bus


def work_analyze(path: str, repeats: int) -> dict[str, Any]:
    from candiag.analysis import analyze_capture
    from candiag.decode.dbc import load_reference_database

    db = load_reference_database()
    best = math.inf
    report: AnalysisReport | None = None
    evaluations = 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = analyze_capture(path, db, bitrate=BITRATE)
        best = min(best, time.perf_counter() - started)
        report, evaluations = result.report, result.evaluations
    assert report is not None
    return {
        "frames": report.frames.total,
        "seconds": best,
        "evaluations": evaluations,
        "ids": len(report.ids),
        "signals": len(report.signals),
        "mean_ratio": report.bus_load.mean_ratio,
    }


def work_baseline(path: str, limit: int, repeats: int) -> dict[str, Any]:
    from candiag.decode.dbc import load_reference_database

    charger = load_reference_database()
    best: dict[str, Any] = {"seconds": math.inf}
    for _ in range(repeats):
        run = _baseline_pass(path, limit, charger)
        if run["seconds"] < best["seconds"]:
            best = run
    return best


def _baseline_pass(path: str, limit: int, charger: Any) -> dict[str, Any]:
    import can
    from cantools.database.errors import DecodeError

    from tests.can_bitstream import frame_bits_reference

    db: Any = charger.cantools_db
    resolve = decode_bench.message_resolver(charger)
    kinds = {"data": 0, "remote": 0, "error": 0}
    classes = [0] * 10
    per_id: dict[tuple[int, bool], list[float]] = {}  # count, last, sum dt, sum dt^2
    bits_per_second: dict[int, int] = {}
    signals: dict[tuple[str, int, str], list[float]] = {}  # min, max, sum, count, last
    node_last: dict[tuple[str, int], float] = {}
    frames = 0
    first = last = None
    started = time.perf_counter()
    for msg in can.CanutilsLogReader(path):
        if frames >= limit:
            break
        frames += 1
        ts = msg.timestamp
        first = ts if first is None else first
        last = ts
        if msg.is_error_frame:
            kinds["error"] += 1
            for bit in range(10):
                if msg.arbitration_id >> bit & 1:
                    classes[bit] += 1
            continue
        kinds["remote" if msg.is_remote_frame else "data"] += 1
        nominal, _ = frame_bits_reference(
            msg.arbitration_id,
            extended=msg.is_extended_id,
            remote=msg.is_remote_frame,
            dlc=msg.dlc,
            data=bytes(msg.data),
        )
        second = int(ts)
        bits_per_second[second] = bits_per_second.get(second, 0) + nominal
        key = (msg.arbitration_id, msg.is_extended_id)
        stats = per_id.get(key)
        if stats is None:
            per_id[key] = [1, ts, 0.0, 0.0]
        else:
            dt = ts - stats[1]
            stats[0] += 1
            stats[1] = ts
            stats[2] += dt
            stats[3] += dt * dt
        if msg.is_remote_frame:
            continue
        target = resolve(key)
        if target is None:
            continue
        try:
            decoded = db.decode_message(
                target.frame_id,
                msg.data,
                decode_choices=False,
                force_extended_id=target.is_extended,
            )
        except DecodeError:
            continue
        node = (key[0] & target.node_mask) if target.node_mask else -1
        node_last[(target.family or "", node)] = ts
        for name, value in decoded.items():
            s = signals.get((target.name, node, name))
            v = float(value)
            if s is None:
                signals[(target.name, node, name)] = [v, v, v, 1.0, v]
            else:
                s[0] = min(s[0], v)
                s[1] = max(s[1], v)
                s[2] += v
                s[3] += 1
                s[4] = v
    max_1s = max(bits_per_second.values(), default=0) / BITRATE
    span = (last - first) if first is not None and last is not None else 0.0
    mean_ratio = sum(bits_per_second.values()) / (BITRATE * span) if span > 0 else 0.0
    seconds = time.perf_counter() - started
    return {
        "frames": frames,
        "seconds": seconds,
        "ids": len(per_id),
        "signals": len(signals),
        "max_1s": max_1s,
        "mean_ratio": mean_ratio,
    }


def work_windows() -> dict[str, Any]:
    """Cost of one BusWindows update with a 1,000-frame batch, and the windows' memory."""
    from candiag.health.windows import BusWindows
    from tests.synthetic import synthetic_batch

    windows = BusWindows(500_000)
    batches = [synthetic_batch(1000, start=1_700_000_000.0 + 0.25 * i) for i in range(400)]
    started = time.perf_counter()
    for batch in batches:
        windows.update(batch)
    per_batch = (time.perf_counter() - started) / len(batches)
    return {"update_us": per_batch * 1e6, "nbytes": windows.nbytes}


WORKERS = {
    "analyze": lambda a: work_analyze(a.path, a.repeats),
    "baseline": lambda a: work_baseline(a.path, a.limit, a.repeats),
    "windows": lambda a: work_windows(),
}


def measured(kind: str, path: Path, *, repeats: int = 1, limit: int = 0) -> dict[str, Any]:
    return decode_bench.measured(
        kind, path, repeats=repeats, limit=limit, module="bench.bench_analyze"
    )


def _whole_process(capture: Path, repeats: int) -> tuple[float, float]:
    """Best wall time of ``candiag analyze`` on ``capture`` in a fresh process, and the
    first run's (an empty DBC cache: the reference DBCs parsed)."""
    import os
    import subprocess
    import tempfile

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["CANDIAG_CACHE_DIR"] = str(Path(tmp) / "dbc-cache")
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "candiag", "analyze", str(capture), "-b", str(BITRATE),
                 "--json", str(out), "-q"],
                check=True, capture_output=True, env=env, timeout=600,
            )  # fmt: skip
            times.append(time.perf_counter() - started)
    return min(times), times[0]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--meter", "--"]:
        meter(argv[2:])
        return
    parser = argparse.ArgumentParser(prog="bench_analyze", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="capture size")
    parser.add_argument("--baseline-frames", type=int, default=200_000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=2**62, help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    if args.quick:
        args.frames, args.baseline_frames = 20_000, 5_000
        args.cache_dir = args.cache_dir / "quick"
    capture, origin = reference_capture(args.cache_dir, args.frames)
    print(f"capture: {capture} ({args.frames:,} frames, {origin})", flush=True)
    ours = measured("analyze", capture, repeats=3)
    ours_fps = ours["frames"] / ours["seconds"]
    print(
        f"(a) candiag analyze: {ours_fps:,.0f} frames/s ({ours['seconds']:.2f} s for "
        f"{ours['frames']:,} frames, {ours['evaluations']} diagnosis evaluations, "
        f"{ours['ids']} ids, {ours['signals']} signal series; best of 3), "
        f"peak RSS {ours['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    whole, cold = _whole_process(capture, repeats=3)
    whole_fps = ours["frames"] / whole
    print(
        f"(a') candiag analyze, whole process: {whole_fps:,.0f} frames/s ({whole:.2f} s; best "
        f"of 3; the first, with an empty DBC cache: {cold:.2f} s)",
        flush=True,
    )
    base = measured("baseline", capture, repeats=3, limit=min(args.baseline_frames, args.frames))
    base_fps = base["frames"] / base["seconds"]
    print(
        f"(b) python-can + cantools + per-frame bits and dicts: {base_fps:,.0f} frames/s "
        f"({base['seconds']:.2f} s for {base['frames']:,} frames; best of 3), "
        f"peak RSS {base['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    ratio = ours_fps / base_fps
    ratio_whole = whole_fps / base_fps
    verdict = "meets" if ratio_whole >= RATIO_GOAL else "MISSES"
    print(
        f"ratio (a)/(b): {ratio:.1f}x in process; (a')/(b): {ratio_whole:.1f}x whole process "
        f"({verdict} the goal of >= {RATIO_GOAL}x)",
        flush=True,
    )
    win = measured("windows", capture)
    print(
        f"sliding windows: {win['update_us']:.0f} us per 1,000-frame batch update (exact bit counting included); "
        f"memory {win['nbytes'] / 1024:.0f} KiB (fixed by the 3600 s horizon)",
        flush=True,
    )


if __name__ == "__main__":
    main()
