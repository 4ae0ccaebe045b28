"""Offline analysis of a capture: the live pipeline run over capture time, plus diagnosis.

``candiag analyze`` streams a capture through the same :class:`BusPipeline`
the daemon uses, and evaluates the same :class:`DiagnosisEngine` at regular
instants of *capture* time, so a finding's ``since`` (and its clearing) is
when it happened on the bus, and a fault that came and went still shows.
Evaluation instants are every second for the first minute, then every 10 s.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candiag.decode.dbc import ChargerDatabase
from candiag.diagnosis.engine import DiagnosisEngine, RuleBook, load_rulebook
from candiag.health.busload import frame_bits
from candiag.health.nodes import FamilyPolicy
from candiag.health.pipeline import DEFAULT_BITRATE, BusPipeline, slice_decoded
from candiag.ingest.capture import CaptureReader, CaptureStats
from candiag.ingest.frames import FrameBatch


def evaluation_interval(elapsed_s: float) -> float:
    """Seconds between diagnosis evaluations, ``elapsed_s`` into the capture.

    Every second for the first minute (precise time to detect on short captures), then
    every 10 s: the shortest window the rules read, so a fault lasting 10 s or more is
    seen by at least one evaluation however long the capture.
    """
    return 1.0 if elapsed_s < 60 else 10.0


@dataclass
class AnalysisResult:
    report: dict[str, Any]
    timeline: dict[str, Any]
    evaluations: int
    first_detection: dict[str, float] = field(default_factory=dict)  # code -> capture time


@dataclass
class _Clock:
    """Walks evaluation instants through capture time."""

    start: float | None = None
    next_at: float | None = None

    def boundaries(self, lo: float, hi: float) -> Iterator[float]:
        if self.start is None:
            self.start = lo
            self.next_at = np.floor(lo) + 1.0
        assert self.next_at is not None
        while self.next_at <= hi:
            yield self.next_at
            self.next_at += evaluation_interval(self.next_at - self.start)


def analyze_capture(
    path: str | os.PathLike[str],
    db: ChargerDatabase,
    *,
    bitrate: int = DEFAULT_BITRATE,
    data_bitrate: int | None = None,
    policies: Sequence[FamilyPolicy] = (),
    book: RuleBook | None = None,
    keep_history: bool = False,
    chunk_lines: int = 262_144,
) -> AnalysisResult:
    """Analyze a capture file; the report has ``analyze``'s documented JSON keys."""
    reader = CaptureReader(path, chunk_lines=chunk_lines)
    book = book or load_rulebook()
    pipeline = BusPipeline(
        "can",
        db,
        bitrate=bitrate,
        data_bitrate=data_bitrate,
        policies=policies,
        burst_errors_per_s=int(book.t("burst_errors_per_s")),
        keep_history=keep_history,
    )
    engine = DiagnosisEngine(book=book)
    clock = _Clock()
    evaluations = 0
    first_detection: dict[str, float] = {}
    channels: set[str] = set()
    for batch in reader.batches():
        if len(batch) == 0:
            continue
        channels.update(batch.channels[i] for i in np.unique(batch.channel).tolist())
        batch, cuts = _evaluation_cuts(batch, clock)
        # Bits and decoding are computed once per chunk; each slice between two
        # evaluation instants gets its part (slicing is cheap, a call per slice is not).
        bits = frame_bits(batch)
        decoded = pipeline.decoder.decode(batch)
        pipeline.fold_signal_stats(decoded)  # min/max/mean do not depend on the instants
        lo = 0
        for hi, instant in cuts:
            pipeline.process(
                batch.take(slice(lo, hi)),
                bits=(bits[0][lo:hi], bits[1][lo:hi]),
                decoded=slice_decoded(decoded, lo, hi, totals=lo == 0),
                signal_stats=False,
            )
            lo = hi
            if instant is not None:
                _evaluate(engine, pipeline, instant, first_detection, clock)
                evaluations += 1
    if pipeline.last_ts is not None:
        _evaluate(engine, pipeline, pipeline.last_ts, first_detection, clock)
        evaluations += 1
    report = build_report(pipeline, reader.stats, engine, sorted(channels))
    timeline = pipeline.timeline_json() if keep_history else {}
    return AnalysisResult(report, timeline, evaluations, first_detection)


def _evaluation_cuts(
    batch: FrameBatch, clock: _Clock
) -> tuple[FrameBatch, list[tuple[int, float | None]]]:
    """The batch in time order, and where to cut it: (end index, instant) pairs.

    Each evaluation instant the batch crosses ends a slice; the last slice (the rest of
    the batch) has no instant.
    """
    ts = batch.timestamp
    instants = list(clock.boundaries(float(ts.min()), float(ts.max())))
    if instants and not bool(np.all(ts[1:] >= ts[:-1])):
        batch = batch.take(np.argsort(ts, kind="stable"))
        ts = batch.timestamp
    ends = np.searchsorted(ts, np.asarray(instants), side="left").tolist() if instants else []
    cuts: list[tuple[int, float | None]] = list(zip(ends, instants, strict=True))
    cuts.append((len(batch), None))
    return batch, cuts


def _evaluate(
    engine: DiagnosisEngine,
    pipeline: BusPipeline,
    instant: float,
    first_detection: dict[str, float],
    clock: _Clock,
) -> None:
    raised, _ = engine.update(instant, [pipeline.diagnosis_report(instant)], [])
    start = clock.start if clock.start is not None else instant
    for finding in raised:
        first_detection.setdefault(finding.code, instant - start)


def build_report(
    pipeline: BusPipeline,
    stats: CaptureStats,
    engine: DiagnosisEngine,
    channels: Sequence[str],
) -> dict[str, Any]:
    """``analyze``'s JSON: the documented keys first, the full bus report after them."""
    bus = pipeline.report()
    frames = bus["frames"]
    capture = {
        "path": stats.path,
        "format": stats.format,
        "channels": list(channels),
        "lines": stats.lines,
        "frames": frames["total"],
        "malformed_lines": stats.malformed,
        "malformed_examples": [
            {"line": m.line, "reason": m.reason, "text": m.text} for m in stats.examples
        ],
        "truncated": stats.truncated,
        "start": pipeline.first_ts,
        "end": pipeline.last_ts,
        "duration_s": round(pipeline.duration_s, 6),
    }
    notes = []
    if stats.truncated:
        notes.append(
            f"The capture ends abruptly ({stats.note or 'truncated'}): figures stop there."
        )
    if stats.malformed:
        notes.append(
            f"{stats.malformed} malformed lines were skipped (see capture.malformed_examples)."
        )
    late = pipeline.windows.ring.late_dropped
    if int(late.sum()):
        notes.append(
            "Some frames arrived more than an hour out of order and are missing from the "
            "sliding windows (totals are complete)."
        )
    return {
        "capture": capture,
        "frames": frames,
        "error_frames": bus["error_frames"],
        "bus_off_events": bus["bus_off_events"],
        "bus_load": bus["bus_load"],
        "ids": bus["ids"],
        "nodes": bus["nodes"],
        "signals": bus["signals"],
        "findings": [f.to_json() for f in engine.all_findings()],
        "bus_state": bus["bus_state"],
        "windows": bus["windows"],
        "decode": bus["decode"],
        "firmware_mismatches": bus["firmware_mismatches"],
        "contactors": bus["contactors"],
        "cooling": bus["cooling"],
        "currents": bus["currents"],
        "notes": notes,
    }
