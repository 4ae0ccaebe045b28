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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from candiag.analysis_report import AnalysisReport, CaptureReport, ClockEvent, DbcReport
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
from candiag.health.report import BusReport, TimelineReport
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


__all__ = ["AnalysisReport", "AnalysisResult", "ClockEvent", "analyze_capture"]


@dataclass
class AnalysisResult:
    report: AnalysisReport
    timeline: TimelineReport | None  # with keep_history=True
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
            # Offline: every exchange of polled modules for the liveness interval rules.
            self.pipelines[channel].liveness.keep_all()
        return self.pipelines[channel]

    def diagnosis_reports(self, instant: float) -> list[BusReport]:
        return [p.report(instant, detail=False) for p in self.pipelines.values()]

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
    progress: Callable[[CaptureReader, Iterator[FrameBatch]], Iterator[FrameBatch]] | None = None,
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
    if progress is not None:  # the command line's progress display (candiag.cli.progress)
        batches = progress(reader, batches)
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
    engine.add_conditions(end or 0.0, capture_conditions(book, reader.stats))
    report = build_report(buses, reader.stats, engine, matches, steps.events)
    timeline = _timeline(buses) if keep_history else None
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


def _timeline(buses: _Buses) -> TimelineReport | None:
    """The per-second series of the busiest channel (the report plots one bus)."""
    if not buses.pipelines:
        return None
    busiest = max(buses.pipelines.values(), key=lambda p: p.frames["total"])
    return busiest.timeline_report()


def build_report(
    buses: _Buses,
    stats: CaptureStats,
    engine: DiagnosisEngine,
    matches: Sequence[DbcMatch] = (),
    clock_events: Sequence[ClockEvent] = (),
) -> AnalysisReport:
    """``analyze``'s report: the capture, each bus, the DBCs, the findings and the notes."""
    if not buses.pipelines:
        # Nothing read: a report of an empty bus, not a missing one, named by its channel
        # when the recording says which (a `record` that heard nothing), else "can".
        recording = buses.bitrates.metadata.metadata
        channels = [b.channel for b in recording.buses] if recording is not None else []
        buses.pipeline(channels[0] if channels else "can")
    reports: dict[str, BusReport] = {}
    for channel, p in buses.pipelines.items():
        choice = buses.choices[channel]
        report = p.report()
        assert report.bus_load is not None  # a full report
        load = replace(report.bus_load, bitrate_source=choice.source, bitrate_detail=choice.detail)
        reports[p.name] = replace(report, bus_load=load)
    pipelines = list(buses.pipelines.values())
    starts = [p.first_ts for p in pipelines if p.first_ts is not None]
    ends = [p.last_ts for p in pipelines if p.last_ts is not None]
    span = (min(starts), max(ends)) if starts else (None, None)
    frames = sum(r.frames.total for r in reports.values())
    capture = CaptureReport.build(stats, buses.pipelines, frames, clock_events, span)
    return AnalysisReport(
        capture=capture,
        buses=reports,
        bitrates={buses.pipelines[ch].name: c for ch, c in buses.choices.items()},
        dbc=DbcReport(
            files=tuple(buses.db.sources),
            messages=len(buses.db),
            strict=buses.db.strict,
            warnings=tuple(buses.db.warnings),
            reference=tuple(matches),
        ),
        findings=tuple(engine.all_findings()),
        notes=tuple(
            _notes(stats, buses, matches) + [f"Capture time: {e.text()}." for e in clock_events]
        ),
    )


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
