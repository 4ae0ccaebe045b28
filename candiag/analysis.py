"""Offline analysis of a capture: the live pipeline run over capture time, plus diagnosis.

``candiag analyze`` streams a capture through the same :class:`BusPipeline`
the daemon uses, one pipeline per channel of the capture (each channel is a bus of
its own: its load, error frames and nodes are its own), and evaluates the same
:class:`DiagnosisEngine` at regular instants of *capture* time, so a finding's
``since`` (and its clearing) is when it happened on the bus, and a fault that came
and went still shows.  Evaluation instants are every second for the first minute,
then every 10 s.

Before the stream is analyzed, its first chunk decides what the analysis cannot know
by itself: which of the shipped reference DBCs describe this traffic, when no DBC was
given (:mod:`candiag.decode.identify`).  What was decided, and how, is in the report.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from candiag.capture import CaptureReader, CaptureStats
from candiag.capture.metadata import MetadataReading, read_recording_metadata
from candiag.decode.dbc import ChargerDatabase
from candiag.decode.identify import DbcMatch, select_reference_dbcs
from candiag.diagnosis.engine import DiagnosisEngine, RuleBook, load_rulebook
from candiag.diagnosis.intervals import INTERVAL_CODES
from candiag.diagnosis.rules import capture_conditions
from candiag.diagnosis.timeline import bus_timeline
from candiag.health.bitrate import (
    BitrateChoice,
    BitrateEvidence,
    BitrateInference,
    choose_bitrate,
)
from candiag.health.bus import split_by_channel
from candiag.health.busload import frame_bits
from candiag.health.nodes import FamilyPolicy
from candiag.health.pipeline import BusPipeline, slice_decoded
from candiag.ingest.frames import FrameBatch

# Frames read ahead to decide which reference DBCs describe the traffic.
SAMPLE_FRAMES = 20_000


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


# After its last frame a stretch of capture is still evaluated this long (timeouts fire,
# findings settle); a longer silence is skipped, so a gap costs nothing however long.
SETTLE_S = 120.0
# A silence longer than this is listed in the report's notes.
LONG_GAP_S = 600.0
# In recording order, a timestamp this far behind the previous one is a clock step (NTP,
# an RTC reset), not the jitter of interleaved sources.
BACKWARD_STEP_S = 1.0
# Before this (2000-01-01) a timestamp is a clock that was never set (a controller booting
# at 1970): a jump from there to a real date is a clock step, not a silence.
PLAUSIBLE_EPOCH = 946_684_800.0


@dataclass
class _Clock:
    """Walks evaluation instants through capture time, skipping long silences."""

    start: float | None = None
    next_at: float | None = None
    last_frame: float | None = None

    def boundaries(self, ts: np.ndarray[Any, Any]) -> list[float]:
        """Evaluation instants up to the last of the sorted timestamps ``ts``.

        Instants fall on the evaluation grid, and only within :data:`SETTLE_S` after some
        frame: across a longer silence the clock jumps to the next frame.
        """
        if self.start is None:
            self.start = float(ts[0])
            self.next_at = float(np.floor(ts[0])) + 1.0
        assert self.next_at is not None
        points = ts if self.last_frame is None else np.concatenate([[self.last_frame], ts])
        gaps = np.flatnonzero(np.diff(points) > SETTLE_S).tolist()
        out: list[float] = []
        for g in gaps:
            self._walk(float(points[g]) + SETTLE_S, out)
            self.next_at = max(self.next_at, float(np.floor(points[g + 1])) + 1.0)
        self._walk(float(ts[-1]), out)
        self.last_frame = float(ts[-1])
        return out

    def _walk(self, until: float, out: list[float]) -> None:
        assert self.next_at is not None and self.start is not None
        while self.next_at <= until:
            out.append(self.next_at)
            self.next_at += evaluation_interval(self.next_at - self.start)


@dataclass(frozen=True)
class ClockEvent:
    """A step of the recording's clock, or a long silence, found in recording order."""

    kind: str  # "step" or "gap"
    frame: int  # frames before it, in recording order
    before: float  # timestamp before (as recorded)
    after: float  # timestamp after (as recorded)

    @property
    def seconds(self) -> float:
        return self.after - self.before

    def text(self) -> str:
        if self.kind == "gap":
            return (
                f"no frames for {_span_words(self.seconds)} after frame {self.frame:,} "
                f"({_utc(self.before)} to {_utc(self.after)})"
            )
        sign = "+" if self.seconds >= 0 else "-"
        return (
            f"clock stepped {sign}{_span_words(abs(self.seconds))} after frame {self.frame:,} "
            f"({_utc(self.before)} to {_utc(self.after)}); the frames after it are analyzed as "
            "continuing from the frame before"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "frame": self.frame,
            "before": self.before,
            "after": self.after,
            "seconds": self.seconds,
            "text": self.text(),
        }


@dataclass
class _TimeSteps:
    """Takes clock steps out of the timeline, in recording order, vectorized per batch.

    A step (backward beyond :data:`BACKWARD_STEP_S`, or forward out of a never-set clock)
    shifts every later timestamp so that time continues from the frame before it; long
    forward silences stay (they are real) and are only noted.
    """

    offset: float = 0.0
    last_raw: float | None = None
    frames: int = 0
    events: list[ClockEvent] = field(default_factory=list)

    def remap(self, batch: FrameBatch) -> FrameBatch:
        ts = batch.timestamp
        prev = np.concatenate([[ts[0] if self.last_raw is None else self.last_raw], ts[:-1]])
        delta = ts - prev
        unset = (prev < PLAUSIBLE_EPOCH) & (ts >= PLAUSIBLE_EPOCH)
        step = (delta < -BACKWARD_STEP_S) | (unset & (delta > SETTLE_S))
        gap = ~step & (delta > LONG_GAP_S)
        for i in np.flatnonzero(step | gap).tolist():
            kind = "step" if step[i] else "gap"
            self.events.append(ClockEvent(kind, self.frames + i, float(prev[i]), float(ts[i])))
        self.frames += len(ts)
        self.last_raw = float(ts[-1])
        if not step.any() and self.offset == 0.0:
            return batch
        # Each step's correction takes its jump out of every later timestamp.
        correction = np.cumsum(np.where(step, -delta, 0.0)) + self.offset
        self.offset = float(correction[-1])
        return FrameBatch(
            timestamp=ts + correction,
            can_id=batch.can_id,
            flags=batch.flags,
            dlc=batch.dlc,
            data=batch.data,
            channel=batch.channel,
            channels=batch.channels,
        )


def _span_words(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _utc(ts: float) -> str:
    import time

    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        return f"{ts:.6f}"


@dataclass
class _Bitrates:
    """The bitrate of each channel: given, recorded, configured, inferred or assumed."""

    flag: int | None
    config: int | None
    data_bitrate: int | None
    metadata: MetadataReading
    inferred: dict[str, BitrateInference] = field(default_factory=dict)

    def choice(self, channel: str) -> BitrateChoice:
        recording = self.metadata.metadata
        return choose_bitrate(
            flag=self.flag,
            recorded=recording.bitrate_for(channel) if recording is not None else None,
            config=self.config,
            inference=self.inferred.get(channel),
        )


@dataclass
class _Buses:
    """One :class:`BusPipeline` per channel of the capture, made when the channel appears."""

    db: ChargerDatabase
    bitrates: _Bitrates
    policies: Sequence[FamilyPolicy]
    burst_errors_per_s: int
    keep_history: bool
    pipelines: dict[str, BusPipeline] = field(default_factory=dict)
    choices: dict[str, BitrateChoice] = field(default_factory=dict)

    def pipeline(self, channel: str) -> BusPipeline:
        if channel not in self.pipelines:
            choice = self.choices[channel] = self.bitrates.choice(channel)
            self.pipelines[channel] = BusPipeline(
                bus_name(channel),
                self.db,
                bitrate=choice.bitrate,
                data_bitrate=self.bitrates.data_bitrate,
                policies=self.policies,
                burst_errors_per_s=self.burst_errors_per_s,
                keep_history=self.keep_history,
                bitrate_known=choice.known,
            )
        return self.pipelines[channel]

    def diagnosis_reports(self, instant: float) -> list[dict[str, Any]]:
        return [p.diagnosis_report(instant) for p in self.pipelines.values()]

    @property
    def last_ts(self) -> float | None:
        ends = [p.last_ts for p in self.pipelines.values() if p.last_ts is not None]
        return max(ends) if ends else None


def bus_name(channel: str) -> str:
    """How a capture's channel is named in findings: ``can0`` as is, a bare number (Vector
    and PEAK tools number their channels) as ``CAN 1``."""
    return f"CAN {channel}" if channel.isdigit() else channel


def analyze_capture(
    path: str | os.PathLike[str],
    db: ChargerDatabase | None = None,
    *,
    bitrate: int | None = None,
    config_bitrate: int | None = None,
    data_bitrate: int | None = None,
    policies: Sequence[FamilyPolicy] = (),
    book: RuleBook | None = None,
    keep_history: bool = False,
    chunk_lines: int = 262_144,
    reference_dbcs: Sequence[str | os.PathLike[str]] = (),
) -> AnalysisResult:
    """Analyze a capture file; the report has ``analyze``'s documented JSON keys.

    ``db``: the DBCs to decode with; ``None`` applies those of ``reference_dbcs`` (by
    default the shipped reference charger's) that the traffic matches, and no other.
    Each channel's bitrate is ``bitrate`` (given by the user), else the one the recording
    carries, else ``config_bitrate``, else inferred from the spacing of the first frames,
    else assumed (:func:`candiag.health.bitrate.choose_bitrate`).
    """
    reader = CaptureReader(path, chunk_lines=chunk_lines)
    book = book or load_rulebook()
    batches = reader.batches()
    sample = _read_sample(batches)
    sample_batch = FrameBatch.concat(sample)
    bitrates = _Bitrates(bitrate, config_bitrate, data_bitrate, _metadata(path))
    if bitrate is None:
        evidence = BitrateEvidence()
        evidence.update(sample_batch)
        bitrates.inferred = evidence.results()
    matches: list[DbcMatch] = []
    if db is None:
        db, matches = select_reference_dbcs(sample_batch, reference_dbcs)
    buses = _Buses(db, bitrates, policies, int(book.t("burst_errors_per_s")), keep_history)
    engine = DiagnosisEngine(book=book)
    clock = _Clock()
    evaluations = 0
    first_detection: dict[str, float] = {}
    steps = _TimeSteps()
    for batch in _chain(sample, batches):
        if len(batch) == 0:
            continue
        batch, cuts = _evaluation_cuts(steps.remap(batch), clock)
        parts = [
            _Part(buses.pipeline(ch), part, ends) for ch, part, ends in _per_channel(batch, cuts)
        ]
        for k, (_, instant) in enumerate(cuts):
            for part in parts:
                part.process_to(k)
            if instant is not None:
                _evaluate(engine, buses, instant, first_detection, clock)
                evaluations += 1
    end = buses.last_ts
    if end is not None:
        _evaluate(engine, buses, end, first_detection, clock)
        evaluations += 1
        _apply_timelines(engine, buses, end, first_detection, clock)
    engine.add_conditions(end or 0.0, capture_conditions(book, _capture_facts(reader.stats)))
    report = build_report(buses, reader.stats, engine, matches, steps.events)
    timeline = _timeline(buses) if keep_history else {}
    return AnalysisResult(report, timeline, evaluations, first_detection)


def _metadata(path: str | os.PathLike[str]) -> MetadataReading:
    if str(path) == "-":
        return MetadataReading(None, "", "")
    return read_recording_metadata(path)


def _read_sample(batches: Iterator[FrameBatch]) -> list[FrameBatch]:
    """The first batches, up to :data:`SAMPLE_FRAMES` frames (the rest stays in the stream)."""
    sample: list[FrameBatch] = []
    frames = 0
    for batch in batches:
        sample.append(batch)
        frames += len(batch)
        if frames >= SAMPLE_FRAMES:
            break
    return sample


def _chain(first: Iterable[FrameBatch], rest: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
    yield from first
    yield from rest


def _per_channel(
    batch: FrameBatch, cuts: list[tuple[int, float | None]]
) -> Iterator[tuple[str, FrameBatch, list[int]]]:
    """Each channel's frames of a time-sorted batch, with the cut indices mapped onto them."""
    ends = [end for end, _ in cuts]
    parts = split_by_channel(batch)
    if len(parts) == 1:
        ((channel, part),) = parts.items()
        yield channel, part, ends
        return
    names = batch.channels or ["can0"]
    for channel, part in parts.items():
        rows = np.flatnonzero(batch.channel == names.index(channel))
        yield channel, part, np.searchsorted(rows, np.asarray(ends), side="left").tolist()


@dataclass
class _Part:
    """One channel's frames of a chunk, fed to its pipeline slice by slice.

    Bits and decoding are computed once per chunk; each slice between two evaluation
    instants gets its part (slicing is cheap, a call per slice is not).
    """

    pipeline: BusPipeline
    batch: FrameBatch
    ends: list[int]
    done: int = 0
    totals_given: bool = False

    def __post_init__(self) -> None:
        self.bits = frame_bits(self.batch)
        self.decoded = self.pipeline.decoder.decode(self.batch)
        self.pipeline.fold_signal_stats(self.decoded)  # min/max/mean need no instants

    def process_to(self, cut: int) -> None:
        lo, hi = self.done, self.ends[cut]
        if hi <= lo:
            return
        totals = not self.totals_given
        self.totals_given = True
        self.pipeline.process(
            self.batch.take(slice(lo, hi)),
            bits=(self.bits[0][lo:hi], self.bits[1][lo:hi]),
            decoded=slice_decoded(self.decoded, lo, hi, totals=totals),
            signal_stats=False,
        )
        self.done = hi


def _evaluation_cuts(
    batch: FrameBatch, clock: _Clock
) -> tuple[FrameBatch, list[tuple[int, float | None]]]:
    """The batch in time order, and where to cut it: (end index, instant) pairs.

    Each evaluation instant the batch crosses ends a slice; the last slice (the rest of
    the batch) has no instant.
    """
    ts = batch.timestamp
    if not bool(np.all(ts[1:] >= ts[:-1])):
        batch = batch.take(np.argsort(ts, kind="stable"))
        ts = batch.timestamp
    instants = clock.boundaries(ts)
    ends = np.searchsorted(ts, np.asarray(instants), side="left").tolist() if instants else []
    cuts: list[tuple[int, float | None]] = list(zip(ends, instants, strict=True))
    cuts.append((len(batch), None))
    return batch, cuts


def _evaluate(
    engine: DiagnosisEngine,
    buses: _Buses,
    instant: float,
    first_detection: dict[str, float],
    clock: _Clock,
) -> None:
    raised, _ = engine.update(instant, buses.diagnosis_reports(instant), [])
    start = clock.start if clock.start is not None else instant
    for finding in raised:
        first_detection.setdefault(finding.code, instant - start)


def _apply_timelines(
    engine: DiagnosisEngine,
    buses: _Buses,
    end: float,
    first_detection: dict[str, float],
    clock: _Clock,
) -> None:
    """The interval rules over each bus's whole timeline (exact episodes, once)."""
    timelines = [bus_timeline(p, end) for p in buses.pipelines.values()]
    engine.apply_timelines(end, timelines)
    start = clock.start if clock.start is not None else end
    for finding in engine.all_findings_flat():
        if finding.code in INTERVAL_CODES and finding.detected_at is not None:
            detected = finding.detected_at - start
            old = first_detection.get(finding.code)
            first_detection[finding.code] = detected if old is None else min(old, detected)


def _capture_facts(stats: CaptureStats) -> dict[str, Any]:
    """What the capture-level rules read about the reading of the file."""
    return {
        "path": stats.path,
        "format": stats.format,
        "format_reason": stats.format_reason,
        "lines": stats.lines,
        "frames": stats.frames,
        "malformed": stats.malformed,
        "first_malformed": stats.examples[0].line if stats.examples else None,
        "first_reason": stats.examples[0].reason if stats.examples else "",
        "truncated": stats.truncated,
        "note": stats.stop_text() if stats.stopped_at is not None else stats.note,
    }


def _timeline(buses: _Buses) -> dict[str, Any]:
    """The per-second series of the busiest channel (the report plots one bus)."""
    if not buses.pipelines:
        return {}
    busiest = max(buses.pipelines.values(), key=lambda p: p.frames["total"])
    out = busiest.timeline_json()
    out["bus"] = busiest.name
    return out


def build_report(
    buses: _Buses,
    stats: CaptureStats,
    engine: DiagnosisEngine,
    matches: Sequence[DbcMatch] = (),
    clock_events: Sequence[ClockEvent] = (),
) -> dict[str, Any]:
    """``analyze``'s JSON: the documented keys first, then per-bus reports when several."""
    if not buses.pipelines:
        buses.pipeline("can")  # nothing read: a report of an empty bus, not a missing one
    reports: dict[str, dict[str, Any]] = {}
    bitrates: dict[str, dict[str, Any]] = {}
    for channel, p in buses.pipelines.items():
        reports[p.name] = p.report()
        bitrates[p.name] = _bitrate_json(buses.choices[channel])
        reports[p.name]["bus_load"].update(
            bitrate_source=bitrates[p.name]["source"], bitrate_detail=bitrates[p.name]["detail"]
        )
    merged = _merge_buses(reports)
    pipelines = list(buses.pipelines.values())
    starts = [p.first_ts for p in pipelines if p.first_ts is not None]
    ends = [p.last_ts for p in pipelines if p.last_ts is not None]
    start, end = (min(starts), max(ends)) if starts else (None, None)
    capture = {
        "path": stats.path,
        "format": stats.format,
        "format_reason": stats.format_reason,
        "channels": list(buses.pipelines),
        "lines": stats.lines,
        "frames": merged["frames"]["total"],
        "malformed_lines": stats.malformed,
        "blank_lines": stats.blank,
        "malformed_examples": [
            {"line": m.line, "reason": m.reason, "text": m.text} for m in stats.examples
        ],
        "truncated": stats.truncated,
        "not_frames": dict(stats.not_frames),
        "stopped_at": stats.stopped_at,
        "unread": stats.unread,
        "unread_unit": stats.unread_unit or None,
        "overflow_frames": stats.overflow_frames,
        "clock_events": [e.to_json() for e in clock_events],
        "start": start,
        "end": end,
        "duration_s": round(end - start, 6) if start is not None and end is not None else 0.0,
    }
    merged["decode"]["dbc"] = _dbc_json(buses.db, matches)
    report: dict[str, Any] = {
        "capture": capture,
        "frames": merged["frames"],
        "error_frames": merged["error_frames"],
        "bus_off_events": merged["bus_off_events"],
        "bus_load": merged["bus_load"],
        "bitrate": next(iter(bitrates.values())) if len(bitrates) == 1 else bitrates,
        "ids": merged["ids"],
        "nodes": merged["nodes"],
        "signals": merged["signals"],
        "findings": [f.to_json() for f in engine.all_findings()],
        "bus_state": merged["bus_state"],
        "windows": merged["windows"],
        "decode": merged["decode"],
        "firmware_mismatches": merged["firmware_mismatches"],
        "contactors": merged["contactors"],
        "cooling": merged["cooling"],
        "currents": merged["currents"],
        "notes": _notes(stats, buses, matches)
        + [f"Capture time: {e.text()}." for e in clock_events],
    }
    if len(reports) > 1:
        report["buses"] = reports
    return report


def _bitrate_json(choice: BitrateChoice) -> dict[str, Any]:
    return {
        "bitrate": choice.bitrate,
        "source": choice.source,
        "known": choice.known,
        "detail": choice.detail,
        "disagreements": list(choice.notes),
    }


def _notes(stats: CaptureStats, buses: _Buses, matches: Sequence[DbcMatch]) -> list[str]:
    notes = []
    if stats.stopped_at is not None:
        notes.append(
            f"The {stats.format} reader could not go on: {stats.stop_text()}; figures stop there."
        )
    elif stats.truncated:
        notes.append(
            f"The capture ends abruptly ({stats.note or 'truncated'}): figures stop there."
        )
    elif stats.note:
        notes.append(f"Reading the capture: {stats.note}.")
    if stats.overflow_frames:
        notes.append(f"Reading the capture: {stats.overflow_text()}.")
    if stats.not_frames:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(stats.not_frames.items()))
        notes.append(f"Records that are not CAN frames were counted and left out: {kinds}.")
    if stats.malformed:
        notes.append(
            f"{stats.malformed} malformed lines were skipped (see capture.malformed_examples)."
        )
    if buses.db.warnings:
        notes.append(
            f"The DBCs loaded with {len(buses.db.warnings)} warning(s) (decoded as cantools "
            f"--no-strict decodes them; see decode.dbc.warnings): {buses.db.warnings[0]}."
        )
    if buses.bitrates.metadata.problem:
        notes.append(f"Recording metadata ignored: {buses.bitrates.metadata.problem}.")
    per_bus: dict[str, list[str]] = {}  # a note -> the buses it is true of
    for channel, p in buses.pipelines.items():
        for note in _bus_notes(p, buses.choices[channel]):
            per_bus.setdefault(note, []).append(p.name)
    notes.extend(f"{_names(names)}: {note}" for note, names in per_bus.items())
    if matches and not any(m.matched for m in matches) and any(m.sample_frames for m in matches):
        notes.append(
            "No DBC was given and the traffic does not match the reference charger's DBCs: "
            "nothing was decoded (give the charger's DBCs with --dbc)."
        )
    return notes


def _bus_notes(p: BusPipeline, choice: BitrateChoice) -> list[str]:
    """What is not known, or not to be taken at face value, about one bus's figures."""
    notes = []
    if not choice.known:
        notes.append(
            f"bitrate {choice.detail}. Load figures use it and are marked assumed; no finding "
            "gives a bitrate-specific instruction (give --bitrate)."
        )
    elif choice.source == "inferred":
        notes.append(f"bitrate {choice.bitrate:,} bit/s inferred: {choice.detail}.")
    notes.extend(f"bitrate {n}." for n in choice.notes)
    load_note = p.health.load_note()
    if load_note:
        notes.append(f"{load_note}.")
    if int(p.windows.ring.late_dropped.sum()):
        notes.append(
            "some frames arrived more than an hour out of order and are missing from the "
            "sliding windows (totals are complete)."
        )
    return notes


def _names(names: list[str], shown: int = 3) -> str:
    """``can0, can1`` or ``can0, can1, can2 and 254 more buses``."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more buses"


def _dbc_json(db: ChargerDatabase, matches: Sequence[DbcMatch]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "files": list(db.sources),
        "messages": len(db),
        "strict": db.strict,
        # What cantools' strict mode would have refused, each at its file:line.
        "warnings": [w.as_dict() for w in db.warnings],
    }
    if matches:
        out["selection"] = "reference DBCs matched against the traffic (no --dbc given)"
        out["reference"] = [m.to_json() for m in matches]
    else:
        out["selection"] = "given"
    return out


# -- several buses in one report ------------------------------------------------------------


def _merge_buses(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The top-level sections over all buses (one bus: its report unchanged).

    Counts add up; per-id, per-node and per-signal entries say which bus they belong to
    and are keyed ``"<bus> <key>"`` so no two buses' entries collide.
    """
    if len(reports) == 1:
        only = next(iter(reports.values()))
        return {**only, "ids": dict(only["ids"])}
    parts = list(reports.values())
    frames = _sum_dicts(p["frames"] for p in parts)
    merged: dict[str, Any] = dict(parts[0])
    merged.update(
        frames=frames,
        error_frames=_merge_error_frames([p["error_frames"] for p in parts]),
        bus_off_events=sum(int(p["bus_off_events"]) for p in parts),
        bus_load=_merge_load(reports),
        ids={f"{name} {k}": v for name, p in reports.items() for k, v in p["ids"].items()},
        nodes=[{**n, "bus": name} for name, p in reports.items() for n in p["nodes"]],
        signals={f"{name} {k}": v for name, p in reports.items() for k, v in p["signals"].items()},
        firmware_mismatches=[
            {**m, "bus": name} for name, p in reports.items() for m in p["firmware_mismatches"]
        ],
        decode=_merge_decode([p["decode"] for p in parts]),
        windows={name: p["windows"] for name, p in reports.items()},
        bus_state={name: p["bus_state"] for name, p in reports.items()},
    )
    for key in ("contactors", "cooling", "currents"):
        merged[key] = {name: p.get(key) for name, p in reports.items()}
    return merged


def _sum_dicts(items: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        for k, v in item.items():
            out[k] = out.get(k, 0) + int(v)
    return out


def _merge_error_frames(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(parts[0])
    for key, value in parts[0].items():
        if isinstance(value, dict) and all(isinstance(v, int) for v in value.values()):
            out[key] = _sum_dicts(p.get(key) or {} for p in parts)
    for key in ("tec_max", "rec_max"):
        if key in out:
            out[key] = max(int(p.get(key) or 0) for p in parts)
    return out


def _merge_load(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loads = {name: p["bus_load"] for name, p in reports.items()}
    first = next(iter(loads.values()))
    means = [v["mean_ratio"] for v in loads.values() if v["mean_ratio"] is not None]
    return {
        **first,
        "mean_ratio": max(means) if means else None,
        "max_ratio_1s": max(v["max_ratio_1s"] for v in loads.values()),
        "channels": loads,
    }


def _merge_decode(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(parts[0])
    for key in ("decoded_frames", "unknown_frames", "untracked_frames"):
        out[key] = sum(int(p[key]) for p in parts)
    for key in ("unknown_ids", "short_frames"):
        out[key] = _sum_dicts(p[key] for p in parts)
    return out


def all_clear_sentence(report: dict[str, Any]) -> str:
    """What "no findings" means for this report: only statements that are true of it."""
    said = []
    if report["frames"]["error"] == 0:
        said.append("zero error frames")
    nodes = report.get("nodes") or []
    if nodes and all(n["status"] == "online" for n in nodes):
        said.append(f"all {len(nodes)} nodes present")
    elif not nodes:
        said.append("no node known to the DBCs, so node liveness was not judged")
    if nodes and not report.get("firmware_mismatches"):
        said.append("firmware consistent")
    head = f"No findings in {report['frames']['total']:,} frames"
    return f"{head}: {', '.join(said)}." if said else f"{head}."
