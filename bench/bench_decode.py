"""Decode benchmark: candiag's capture reader + vectorized decoder vs python-can + cantools.

On one capture of the simulated reference charger (1,000,000 frames by default, generated
once with :mod:`candiag.sim` and cached in ``.bench/``), in the same run:

(a) candiag: :class:`~candiag.capture.reader.CaptureReader` streaming the candump ``-L``
    file into batches and :class:`~candiag.decode.decoder.BatchDecoder` producing signal
    arrays (best of 5); also the decoder alone on in-memory batches (goal >= 2M frames/s);
(b) the straightforward pipeline: python-can's ``can.CanutilsLogReader`` and cantools'
    ``decode_message(..., decode_choices=False)`` per frame into Python lists (node-address
    masks resolved by a dict cache, the cheapest per-frame way), best of 3 over the first
    300,000 frames (``--baseline-frames``; the simulated traffic is stationary, and the
    machine is shared, so both sides are timed as their best run);

then frames/s of each, the ratio (goal >= 25x) and each run's peak RSS; ``candiag decode``'s
JSON Lines rate, measured as its whole work (read + decode + format + write to /dev/null,
as the CLI does it, best of 5; goal >= 1,000,000 frames/s) with the read+decode and
format+write shares, the first 20,000 lines checked equal to one ``json.dumps`` per frame,
and the CLI itself timed end to end; and a 10,000,000-frame run (the 1M capture repeated
with shifted timestamps) streamed chunk by chunk, whose peak RSS must stay < 400 MB.

Every measured pipeline runs in its own worker process started by a small "meter"
process whose only child it is, so ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in the meter
is exactly the worker's peak RSS.  Database loading is not timed; reading the file is.

``python -m bench.bench_decode [--frames N] [--big-frames N] [--quick]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".bench"
RSS_GOAL_MB = 400
RATIO_GOAL = 25
DECODER_GOAL_FPS = 2_000_000
JSONL_GOAL_FPS = 1_000_000
REFERENCE_CHECK_FRAMES = 20_000  # lines compared with one json.dumps per frame


# -- captures --------------------------------------------------------------------------------
def reference_capture(cache: Path, frames: int) -> tuple[Path, str]:
    """The cached capture of ``frames`` frames of the simulated reference charger."""
    from candiag.capture import CandumpWriter

    path = cache / f"reference-{_inputs_digest()}-{frames}.log"
    origin = "simulated reference charger (candiag.sim, 8 power modules)"
    if path.exists():
        return path, origin
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.log")
    partial.unlink(missing_ok=True)
    writer = CandumpWriter(partial, fsync=False)
    try:
        written = 0
        for batch in _simulated_chunks():
            take = min(len(batch), frames - written)
            writer.write(batch.take(slice(0, take)) if take < len(batch) else batch)
            written += take
            if written >= frames:
                break
    finally:
        writer.close()
    partial.rename(path)
    return path, origin


def _inputs_digest() -> str:
    """Short hash of the reference DBCs and the simulator: a changed bus is regenerated."""
    from candiag.decode.dbc import reference_dbc_dir

    digest = hashlib.sha256()
    sources = sorted(reference_dbc_dir().glob("*.dbc")) + sorted(
        (REPO / "candiag" / "sim").glob("*")
    )
    for source in sources:
        if source.is_file():
            digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()[:10]


def _simulated_chunks() -> Any:
    from candiag.sim.charger import ChargerSimulator, SimConfig

    sim = ChargerSimulator(SimConfig(modules=8, seed=1))
    return sim.chunks(duration=1e9, chunk_seconds=120.0)


def repeated_capture(source: Path, copies: int) -> Path:
    """``copies`` back-to-back copies of ``source``, timestamps shifted past the previous."""
    from candiag.capture import read_capture
    from candiag.capture.formats.candump import format_candump

    path = source.with_name(f"{source.stem}x{copies}.log")
    if path.exists():
        return path
    batch, _ = read_capture(source)
    span = float(batch.timestamp[-1] - batch.timestamp[0]) + 1.0
    partial = path.with_name(path.stem + ".partial.log")
    with partial.open("wb") as out:
        for k in range(copies):
            batch.timestamp += span if k else 0.0
            out.write(format_candump(batch))
    partial.rename(path)
    return path


# -- workers (each runs in its own process) --------------------------------------------------
def work_candiag(path: str, repeats: int) -> dict[str, Any]:
    """CaptureReader + BatchDecoder over the whole file, streaming; best of ``repeats``."""
    from candiag.capture import CaptureReader
    from candiag.decode.dbc import load_reference_database
    from candiag.decode.decoder import BatchDecoder

    decoder = BatchDecoder(load_reference_database())
    best = math.inf
    frames = decoded = values = 0
    for _ in range(repeats):
        started = time.perf_counter()
        frames = decoded = values = 0
        for batch in CaptureReader(path).batches():
            result = decoder.decode(batch)
            frames += len(batch)
            decoded += result.decoded_frames
            values += sum(len(m) * len(m.signals) for m in result.messages.values())
        best = min(best, time.perf_counter() - started)
    return {"frames": frames, "decoded": decoded, "values": values, "seconds": best}


def work_decoder_only(path: str, repeats: int) -> dict[str, Any]:
    """BatchDecoder alone on batches already in memory; best of ``repeats``."""
    from candiag.capture import CaptureReader
    from candiag.decode.dbc import load_reference_database
    from candiag.decode.decoder import BatchDecoder

    decoder = BatchDecoder(load_reference_database())
    batches = list(CaptureReader(path).batches())
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        decoded = sum(decoder.decode(b).decoded_frames for b in batches)
        best = min(best, time.perf_counter() - started)
    return {"frames": sum(len(b) for b in batches), "decoded": decoded, "seconds": best}


def work_jsonl(path: str, repeats: int) -> dict[str, Any]:
    """``candiag decode``'s whole work, as its CLI does it, writing to /dev/null; best of
    ``repeats``: read + decode (CaptureReader, BatchDecoder) and format + write
    (JsonLinesFormatter), each timed."""
    from candiag.capture import CaptureReader
    from candiag.cli.decode import DEFAULT_CHUNK_LINES
    from candiag.decode.dbc import load_reference_database
    from candiag.decode.decoder import BatchDecoder
    from candiag.decode.jsonl import JsonLinesFormatter

    db = load_reference_database()
    decoder = BatchDecoder(db)
    formatter = JsonLinesFormatter(db)
    best: dict[str, Any] = {"seconds": math.inf}
    for _ in range(repeats):
        frames = lines = written = 0
        reading = formatting = 0.0
        started = time.perf_counter()
        cpu = time.process_time()
        with open(os.devnull, "wb") as sink:
            batches = iter(CaptureReader(path, chunk_lines=DEFAULT_CHUNK_LINES).batches())
            while True:
                mark = time.perf_counter()
                batch = next(batches, None)
                if batch is None:
                    reading += time.perf_counter() - mark
                    break
                result = decoder.decode(batch)
                done = time.perf_counter()
                pieces = formatter.format_pieces(batch, result)
                sink.writelines(pieces)
                formatting += time.perf_counter() - done
                reading += done - mark
                frames += len(batch)
                lines += result.decoded_frames
                written += sum(len(p) for p in pieces)
        seconds = time.perf_counter() - started
        if seconds < best["seconds"]:
            best = {
                "cpu_seconds": time.process_time() - cpu,
                "frames": frames,
                "lines": lines,
                "bytes": written,
                "seconds": seconds,
                "read_decode": reading,
                "format_write": formatting,
            }
    best["reference"] = _reference_check(path, db)
    return best


def _reference_check(path: str, db: Any) -> dict[str, int]:
    """The first lines of the capture, fast formatter vs one ``json.dumps`` per frame."""
    from candiag.capture import CaptureReader
    from candiag.decode.decoder import BatchDecoder
    from candiag.decode.jsonl import JsonLinesFormatter, JsonLinesOptions, reference_lines

    checked = differ = 0
    for options in (JsonLinesOptions(), JsonLinesOptions(units=True, choices=True)):
        formatter = JsonLinesFormatter(db, options)
        batch = next(iter(CaptureReader(path, chunk_lines=REFERENCE_CHECK_FRAMES).batches()))
        result = BatchDecoder(db).decode(batch)
        fast = formatter.format(batch, result).decode().splitlines()
        slow = reference_lines(formatter, batch, result)
        differ += abs(len(fast) - len(slow))
        differ += sum(json.loads(a) != json.loads(b) for a, b in zip(fast, slow, strict=False))
        checked += len(slow)
    return {"checked": checked, "differ": differ}


def work_cli(path: str) -> dict[str, Any]:
    """``python -m candiag decode CAPTURE -o /dev/null``: wall time, startup included."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "decode", path, "-o", os.devnull],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"candiag decode failed:\n{done.stderr}")
    frames = int(done.stderr.split(" frames from ")[0].rsplit(" ", 1)[1])
    return {"frames": frames, "seconds": seconds}


def work_baseline(path: str, limit: int, repeats: int) -> dict[str, Any]:
    """python-can's candump log reader + cantools ``decode_message`` per frame, into lists.

    Best of ``repeats`` passes over the first ``limit`` frames (the machine is shared, so
    both pipelines are timed as their best run).
    """
    from candiag.decode.dbc import load_reference_database

    charger = load_reference_database()
    best: dict[str, Any] = {"seconds": math.inf}
    for _ in range(repeats):
        run = _baseline_pass(path, limit, charger)
        if run["seconds"] < best["seconds"]:
            best = run
    return best


def message_resolver(charger: Any) -> Any:
    """Per-frame lookup of a frame's message for the baselines: exact ids, then node masks.

    Cached per (id, extended): the cheapest way a straightforward script would do it.
    """
    exact = {(m.frame_id, m.is_extended): m for m in charger.messages if not m.node_mask}
    masked = [m for m in charger.messages if m.node_mask]
    resolved: dict[tuple[int, bool], Any] = {}

    def resolve(key: tuple[int, bool]) -> Any:
        target = resolved.get(key, False)
        if target is False:
            target = exact.get(key) or next(
                (
                    m
                    for m in masked
                    if m.is_extended == key[1] and key[0] & ~m.node_mask == m.frame_id
                ),
                None,
            )
            resolved[key] = target
        return target

    return resolve


def _baseline_pass(path: str, limit: int, charger: Any) -> dict[str, Any]:
    import can
    from cantools.database.errors import DecodeError

    db: Any = charger.cantools_db  # per-frame calls below, exactly as a user would write
    resolve = message_resolver(charger)
    columns: dict[tuple[str, str], list[Any]] = {}
    timestamps: dict[str, list[float]] = {}
    frames = decoded = unknown = failed = 0
    started = time.perf_counter()
    for msg in can.CanutilsLogReader(path):
        if frames >= limit:
            break
        frames += 1
        if msg.is_error_frame or msg.is_remote_frame:
            continue
        key = (msg.arbitration_id, msg.is_extended_id)
        target = resolve(key)
        if target is None:
            unknown += 1
            continue
        try:
            signals = db.decode_message(
                target.frame_id,
                msg.data,
                decode_choices=False,
                force_extended_id=target.is_extended,
            )
        except DecodeError:
            failed += 1
            continue
        decoded += 1
        timestamps.setdefault(target.name, []).append(msg.timestamp)
        for name, value in signals.items():
            columns.setdefault((target.name, name), []).append(value)
    seconds = time.perf_counter() - started
    return {"frames": frames, "decoded": decoded, "unknown": unknown, "seconds": seconds}


WORKERS = {
    "candiag": lambda a: work_candiag(a.path, a.repeats),
    "decoder": lambda a: work_decoder_only(a.path, a.repeats),
    "jsonl": lambda a: work_jsonl(a.path, a.repeats),
    "cli": lambda a: work_cli(a.path),
    "baseline": lambda a: work_baseline(a.path, a.limit, a.repeats),
}


def measured(
    kind: str,
    path: Path,
    *,
    repeats: int = 1,
    limit: int = 0,
    module: str = "bench.bench_decode",
) -> dict[str, Any]:
    """Run worker ``kind`` of ``module`` under a meter process; its result plus ``peak_rss_mb``."""
    worker = [
        sys.executable, "-m", module, "--worker", kind, str(path),
        "--repeats", str(repeats), "--limit", str(limit or 2**62),
    ]  # fmt: skip
    command = [sys.executable, "-m", module, "--meter", "--", *worker]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def meter(command: Sequence[str]) -> None:
    """Run ``command`` as this process's only child; print its JSON plus its peak RSS."""
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit(done.returncode)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


# -- the report -----------------------------------------------------------------------------
def fps(result: dict[str, Any]) -> float:
    return float(result["frames"]) / max(float(result["seconds"]), 1e-9)


def report_jsonl(capture: Path, decoder_alone: dict[str, Any]) -> None:
    """The ``candiag decode`` figures: whole work in process and through the CLI."""
    export = measured("jsonl", capture, repeats=5)
    verdict = "meets" if fps(export) >= JSONL_GOAL_FPS else "MISSES"
    split = (
        f"read+decode {export['read_decode']:.2f} s, format+write {export['format_write']:.2f} s"
    )
    decode_only = export["frames"] / fps(decoder_alone)
    print(
        f"JSON Lines, whole candiag decode work (read + decode + format + write to /dev/null, "
        f"{export['lines']:,} lines, {export['bytes'] / 1e6:.0f} MB; best of 5): "
        f"{fps(export):,.0f} frames/s ({verdict} the goal >= {JSONL_GOAL_FPS:,}), "
        f"{export['seconds']:.2f} s (CPU {export['cpu_seconds']:.2f} s): {split} "
        f"({export['format_write'] / decode_only:.1f}x the BatchDecoder alone), "
        f"peak RSS {export['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    check = export["reference"]
    same = "equal" if check["differ"] == 0 else f"{check['differ']} DIFFERENT"
    print(
        f"    {check['checked']:,} lines (plain, and --units --choices) {same} to one "
        "json.dumps per frame (jsonl.reference_lines)",
        flush=True,
    )
    cli = measured("cli", capture)
    print(
        f"    candiag decode {capture.name} -o /dev/null (the CLI, interpreter start and DBC "
        f"load included): {fps(cli):,.0f} frames/s ({cli['seconds']:.2f} s)",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["--meter", "--"]:
        meter(argv[2:])  # everything after "--" is the worker's command line
        return
    parser = argparse.ArgumentParser(prog="bench_decode", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="capture size")
    parser.add_argument("--big-frames", type=int, default=10_000_000, help="memory run size")
    parser.add_argument(
        "--baseline-frames",
        type=int,
        default=300_000,
        help="frames timed for (b), best of 3 (default 300,000; the traffic is stationary)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=2**62, help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)  # other benchmarks' options are not ours
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return
    if args.quick:
        args.frames, args.big_frames = 20_000, 100_000
        args.baseline_frames = min(args.baseline_frames, 5_000)
        args.cache_dir = args.cache_dir / "quick"
    baseline_frames = min(args.baseline_frames, args.frames)
    report(args.frames, args.big_frames, baseline_frames, args.cache_dir)


def report(frames: int, big_frames: int, baseline_frames: int, cache: Path) -> None:
    started = time.perf_counter()
    capture, origin = reference_capture(cache, frames)
    size_mb = capture.stat().st_size / 1e6
    print(f"capture: {capture} ({frames:,} frames, {size_mb:.0f} MB, {origin}), "
          f"ready in {time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip

    ours = measured("candiag", capture, repeats=5)
    print(
        f"(a) candiag CaptureReader + BatchDecoder: {fps(ours):,.0f} frames/s "
        f"({ours['seconds']:.2f} s for {ours['frames']:,} frames, {ours['decoded']:,} decoded, "
        f"{ours['values']:,} signal values; best of 5), peak RSS {ours['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    alone = measured("decoder", capture, repeats=3)
    print(
        f"    BatchDecoder alone on in-memory batches: {fps(alone):,.0f} frames/s "
        f"(goal >= {DECODER_GOAL_FPS:,}; best of 3)",
        flush=True,
    )
    base = measured("baseline", capture, limit=baseline_frames, repeats=3)
    print(
        f"(b) python-can CanutilsLogReader + cantools decode_message: {fps(base):,.0f} frames/s "
        f"({base['seconds']:.2f} s for the first {base['frames']:,} frames, {base['decoded']:,} "
        "decoded; best of 3), "
        f"peak RSS {base['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    ratio = fps(ours) / fps(base)
    verdict = "meets" if ratio >= RATIO_GOAL else "MISSES"
    print(f"ratio (a)/(b): {ratio:.1f}x ({verdict} the goal >= {RATIO_GOAL}x)", flush=True)
    report_jsonl(capture, alone)

    copies = max(1, math.ceil(big_frames / frames))
    started = time.perf_counter()
    big = repeated_capture(capture, copies)
    print(
        f"memory run: {big} ({copies * frames:,} frames, {big.stat().st_size / 1e6:.0f} MB), "
        f"ready in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    mem = measured("candiag", big)
    verdict = "meets" if mem["peak_rss_mb"] < RSS_GOAL_MB else "MISSES"
    print(
        f"{mem['frames']:,} frames streamed in chunks: {mem['seconds']:.1f} s "
        f"({fps(mem):,.0f} frames/s), peak RSS {mem['peak_rss_mb']:.0f} MB "
        f"({verdict} the goal < {RSS_GOAL_MB} MB)",
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
