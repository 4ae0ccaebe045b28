"""Offline analysis of a capture: the live pipeline run over capture time, plus diagnosis.

``candiag analyze`` streams a capture through the same :class:`BusPipeline`
the daemon uses, one pipeline per channel of the capture (each channel is a bus of
its own: its load, error frames and nodes are its own).  The trackers record, while the
frames go by, what the diagnosis needs as intervals and per-second series (each bus's
:class:`~candiag.diagnosis.timeline.BusTimeline`); the same :class:`DiagnosisEngine`
rules then run **once**, at the end, over each whole timeline
(:mod:`candiag.diagnosis.intervals`), so a finding's episodes are when it happened on
the bus, exact to the frames, a fault that came and went between any two instants
still shows, and the cost grows with the frames, not with the capture's duration.

Before the stream is analyzed, its first chunk decides what the analysis cannot know
by itself: which of the shipped reference DBCs describe this traffic, when no DBC was
given (:mod:`candiag.decode.identify`).  What was decided, and how, is in the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from candiag.analysis_report import AnalysisReport, CaptureReport, ClockEvent, DbcReport
from candiag.capture import STDIN, CaptureReader, CaptureStats
from candiag.capture.metadata import MetadataReading, read_recording_metadata
from candiag.capture.readahead import read_ahead
from candiag.decode.dbc import ChargerDatabase
from candiag.decode.identify import DbcMatch, select_reference_dbcs
from candiag.diagnosis.engine import DiagnosisEngine, RuleBook, load_rulebook
from candiag.diagnosis.rules import capture_conditions
from candiag.diagnosis.timeline import bus_timeline
from candiag.health.bitrate import (
    BitrateChoice,
    BitrateEvidence,
    BitrateInference,
    choose_bitrate,
)
from candiag.health.bus import channel_rows
from candiag.health.busload import frame_bits
from candiag.health.nodes import FamilyPolicy
from candiag.health.pipeline import BusPipeline
from candiag.health.report import BusReport, TimelineReport
from candiag.ingest.frames import FrameBatch

# Frames read ahead to decide which reference DBCs describe the traffic.
SAMPLE_FRAMES = 20_000
# The bitrate, when it is not given, is inferred from the first this many frames (the first
# chunk of a capture read in chunks of 262,144 lines, as it always was): back-to-back pairs
# are rare on a lightly loaded bus, and a smaller sample assumed a rate it used to infer
# (a review).
BITRATE_SAMPLE_FRAMES = 262_144


__all__ = ["AnalysisReport", "AnalysisResult", "ClockEvent", "analyze_capture"]


@dataclass
class AnalysisResult:
    report: AnalysisReport
    timeline: TimelineReport | None  # with keep_history=True
    # How many times the rules ran: once at the end (the timelines hold the history).
    evaluations: int
    # code -> capture time (from the capture's first frame) its evidence first proved it
    first_detection: dict[str, float] = field(default_factory=dict)


# A forward jump this long out of a never-set clock is a clock step, not a silence.
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
                whole_capture=True,  # the interval rules read the whole capture's evidence
            )
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
    # The next chunk is read, parsed and its frames' bits counted in a thread while this
    # one is folded (the bits are a function of the frames alone).
    source = reader.batches()
    if progress is not None:  # the command line's progress display (candiag.cli.progress)
        source = progress(reader, source)
    # Only a regular file is read in a thread (standard input or a FIFO may block it for
    # ever: capture/readahead.py).
    regular = str(path) != STDIN and os.path.isfile(path)
    ahead = read_ahead(_with_bits(source), threaded=regular)
    try:
        sample = _read_sample(ahead, SAMPLE_FRAMES if bitrate else BITRATE_SAMPLE_FRAMES)
        sample_batch = FrameBatch.concat([item.batch for item in sample])
        bitrates = _Bitrates(bitrate, config_bitrate, data_bitrate, _metadata(path))
        if bitrate is None:
            evidence = BitrateEvidence()
            evidence.update(sample_batch.take(slice(0, BITRATE_SAMPLE_FRAMES)))
            bitrates.inferred = evidence.results()
        matches: list[DbcMatch] = []
        if db is None:
            # The first SAMPLE_FRAMES frames decide (a reader's first chunk may hold far more).
            first = sample_batch.take(slice(0, SAMPLE_FRAMES))
            db, matches = select_reference_dbcs(first, reference_dbcs)
        buses = _Buses(db, bitrates, policies, int(book.t("burst_errors_per_s")), keep_history)
        engine = DiagnosisEngine(book=book)
        steps = _TimeSteps()
        for item in _chain(sample, ahead):
            if len(item.batch) == 0:
                continue
            for channel, piece in _pieces(_Read(steps.remap(item.batch), item.bits)):
                buses.pipeline(channel).process(piece.batch, bits=piece.bits)
    finally:
        ahead.close()  # an error on the way stops the reading thread at once
    end = buses.last_ts
    first_detection: dict[str, float] = {}
    evaluations = 0
    if end is not None:
        first_detection = _evaluate_once(engine, buses, end)
        evaluations = 1
    engine.add_conditions(end or 0.0, capture_conditions(book, reader.stats))
    report = build_report(buses, reader.stats, engine, matches, steps.events)
    timeline = _timeline(buses) if keep_history else None
    return AnalysisResult(report, timeline, evaluations, first_detection)


def _metadata(path: str | os.PathLike[str]) -> MetadataReading:
    if str(path) == "-":
        return MetadataReading(None, "", "")
    return read_recording_metadata(path)


@dataclass(frozen=True)
class _Read:
    """A batch as the reading thread hands it over: with its frames' bits on the wire."""

    batch: FrameBatch
    bits: tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]

    def take(self, rows: npt.NDArray[np.intp] | slice) -> _Read:
        return _Read(self.batch.take(rows), (self.bits[0][rows], self.bits[1][rows]))


def _with_bits(batches: Iterable[FrameBatch]) -> Iterator[_Read]:
    for batch in batches:
        yield _Read(batch, frame_bits(batch))


def _read_sample(items: Iterator[_Read], frames: int) -> list[_Read]:
    """The first batches, up to ``frames`` frames (the rest stays in the stream)."""
    sample: list[_Read] = []
    seen = 0
    for item in items:
        sample.append(item)
        seen += len(item.batch)
        if seen >= frames:
            break
    return sample


def _chain(first: Iterable[_Read], rest: Iterator[_Read]) -> Iterator[_Read]:
    yield from first
    yield from rest


def _pieces(read: _Read) -> Iterator[tuple[str, _Read]]:
    """Each channel's frames, in time order.

    A piece may span hours (a thin stretch of a capture in one chunk): the per-second
    rings take a batch longer than their hour whole (``SecondRing.add``: seconds older
    than the new window go straight to history), so no slicing is needed, and a capture's
    time is spent on its frames, not on passes per half hour (bench_duration)."""
    ts = read.batch.timestamp
    if not bool(np.all(ts[1:] >= ts[:-1])):  # interleaved sources of one file may not be
        read = read.take(np.argsort(ts, kind="stable"))
    for name, rows in channel_rows(read.batch).items():
        yield name, read if rows is None else read.take(rows)


def _evaluate_once(engine: DiagnosisEngine, buses: _Buses, end: float) -> dict[str, float]:
    """Every rule once over each bus's whole timeline; when each code was first proved.

    The instant rules see the report at the end (what only a state at the end can say:
    a link down, a firmware map); for the codes the interval rules own, the timeline is
    the whole truth (:meth:`DiagnosisEngine.update`).
    """
    timelines = [bus_timeline(p, end) for p in buses.pipelines.values()]
    engine.update(end, buses.diagnosis_reports(end), [], timelines)
    starts = [p.first_ts for p in buses.pipelines.values() if p.first_ts is not None]
    start = min(starts) if starts else end
    first: dict[str, float] = {}
    for finding in engine.all_findings_flat():
        proved = finding.detected_at if finding.detected_at is not None else finding.start
        detected = max(0.0, proved - start)
        first[finding.code] = min(first.get(finding.code, detected), detected)
    return first


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
    # Every bus as of the capture's end, as the rules judged it: a channel that went
    # silent before the others is silent in its report too (not "online" at its last frame).
    end = buses.last_ts
    for channel, p in buses.pipelines.items():
        choice = buses.choices[channel]
        report = p.report(end)
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
