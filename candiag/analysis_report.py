"""``candiag analyze``'s report as typed values: the capture, each bus, the findings.

:class:`AnalysisReport` holds what :func:`candiag.analysis.analyze_capture` found: how
the capture was read (:class:`CaptureReport`), each bus's
:class:`~candiag.health.report.BusReport`, how each bus's bitrate was chosen, which DBCs
decoded it, the findings and the notes.  The top-level sections over all buses (frames,
error frames, load, ids, nodes, signals...) are derived from the buses: counts add up,
per-id, per-node and per-signal entries are keyed ``"<bus> <key>"`` when there are
several buses.  ``to_json()`` is ``analyze --json`` (keys in README.md, guarded by
tests/test_golden_reports.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property

from candiag.capture import CaptureStats
from candiag.capture.stats import MalformedLine
from candiag.decode.dbc import DbcWarning
from candiag.decode.identify import DbcMatch
from candiag.diagnosis.engine import Finding
from candiag.health.bitrate import BitrateChoice
from candiag.health.nodes import FirmwareMismatch, NodeView
from candiag.health.report import (
    BusReport,
    DecodeReport,
    ErrorCounters,
    ErrorFramesReport,
    FrameCounts,
    IdEntry,
    Json,
    JsonObject,
    LoadReport,
    SignalReport,
    json_object,
)


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

    def to_json(self) -> JsonObject:
        return {
            "kind": self.kind,
            "frame": self.frame,
            "before": self.before,
            "after": self.after,
            "seconds": self.seconds,
            "text": self.text(),
        }


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


@dataclass(frozen=True)
class CaptureReport:
    """How the capture file was read: format, lines, what was skipped, where time jumped.

    ``start``/``end``: the first and last frame time (``None``: no frame); ``stopped_at``
    and ``unread``: where a reader that cannot resume stopped (``None``: it did not, or
    how much was left is not known).
    """

    path: str
    format: str
    format_reason: str
    channels: tuple[str, ...]
    lines: int
    frames: int
    malformed_lines: int
    blank_lines: int
    malformed_examples: tuple[MalformedLine, ...]
    truncated: bool
    not_frames: Mapping[str, int]
    stopped_at: int | None
    unread: int | None
    unread_unit: str | None
    overflow_frames: int
    clock_events: tuple[ClockEvent, ...]
    start: float | None
    end: float | None
    duration_s: float

    @classmethod
    def build(
        cls,
        stats: CaptureStats,
        channels: Iterable[str],
        frames: int,
        clock_events: Iterable[ClockEvent],
        span: tuple[float | None, float | None],
    ) -> CaptureReport:
        start, end = span
        return cls(
            path=stats.path,
            format=stats.format,
            format_reason=stats.format_reason,
            channels=tuple(channels),
            lines=stats.lines,
            frames=frames,
            malformed_lines=stats.malformed,
            blank_lines=stats.blank,
            malformed_examples=tuple(stats.examples),
            truncated=stats.truncated,
            not_frames=dict(stats.not_frames),
            stopped_at=stats.stopped_at,
            unread=stats.unread,
            unread_unit=stats.unread_unit or None,
            overflow_frames=stats.overflow_frames,
            clock_events=tuple(clock_events),
            start=start,
            end=end,
            duration_s=round(end - start, 6) if start is not None and end is not None else 0.0,
        )

    def to_json(self) -> JsonObject:
        return {
            "path": self.path,
            "format": self.format,
            "format_reason": self.format_reason,
            "channels": list(self.channels),
            "lines": self.lines,
            "frames": self.frames,
            "malformed_lines": self.malformed_lines,
            "blank_lines": self.blank_lines,
            "malformed_examples": [
                {"line": m.line, "reason": m.reason, "text": m.text}
                for m in self.malformed_examples
            ],
            "truncated": self.truncated,
            "not_frames": dict(self.not_frames),
            "stopped_at": self.stopped_at,
            "unread": self.unread,
            "unread_unit": self.unread_unit,
            "overflow_frames": self.overflow_frames,
            "clock_events": [e.to_json() for e in self.clock_events],
            "start": self.start,
            "end": self.end,
            "duration_s": self.duration_s,
        }


@dataclass(frozen=True)
class DbcReport:
    """Which DBCs decoded the capture: given, or reference DBCs matched to the traffic."""

    files: tuple[str, ...]
    messages: int
    strict: bool
    warnings: tuple[DbcWarning, ...]  # what cantools' strict mode would have refused
    reference: tuple[DbcMatch, ...]  # empty: the DBCs were given

    def to_json(self) -> JsonObject:
        out: JsonObject = {
            "files": list(self.files),
            "messages": self.messages,
            "strict": self.strict,
            "warnings": [json_object(w.as_dict()) for w in self.warnings],
        }
        if self.reference:
            out["selection"] = "reference DBCs matched against the traffic (no --dbc given)"
            out["reference"] = [json_object(m.to_json()) for m in self.reference]
        else:
            out["selection"] = "given"
        return out


def bitrate_json(choice: BitrateChoice) -> JsonObject:
    return {
        "bitrate": choice.bitrate,
        "source": choice.source,
        "known": choice.known,
        "detail": choice.detail,
        "disagreements": list(choice.notes),
    }


@dataclass(frozen=True)
class AnalysisReport:
    """Everything ``candiag analyze`` found in one capture.

    ``buses``: each bus's full report, by name, in the order the channels appeared;
    ``bitrates``: how each bus's bitrate was chosen.
    """

    capture: CaptureReport
    buses: Mapping[str, BusReport]
    bitrates: Mapping[str, BitrateChoice]
    dbc: DbcReport
    findings: tuple[Finding, ...]
    notes: tuple[str, ...]

    @property
    def _parts(self) -> list[BusReport]:
        return list(self.buses.values())

    @property
    def _several(self) -> bool:
        return len(self.buses) > 1

    # -- the top-level sections over all buses ------------------------------------------
    @cached_property
    def frames(self) -> FrameCounts:
        parts = self._parts
        return FrameCounts(
            total=sum(p.frames.total for p in parts),
            data=sum(p.frames.data for p in parts),
            remote=sum(p.frames.remote for p in parts),
            error=sum(p.frames.error for p in parts),
        )

    @cached_property
    def error_frames(self) -> ErrorFramesReport:
        parts = [p.error_frames for p in self._parts]
        first = parts[0]
        if len(parts) == 1:
            return first
        counters = [p.counters for p in parts]
        summed = first.counters
        if _all_known(first.counters):
            # As before typed reports: summed when every counter of the first bus is known.
            summed = ErrorCounters(
                tec_max=_sum_opt(c.tec_max for c in counters),
                rec_max=_sum_opt(c.rec_max for c in counters),
                tec_last=_sum_opt(c.tec_last for c in counters),
                rec_last=_sum_opt(c.rec_last for c in counters),
                frames_flagged=sum(c.frames_flagged for c in counters),
                frames_unflagged_nonzero=sum(c.frames_unflagged_nonzero for c in counters),
                unflagged_tec_last=_sum_opt(c.unflagged_tec_last for c in counters),
                unflagged_rec_last=_sum_opt(c.unflagged_rec_last for c in counters),
            )
        return replace(
            first,
            by_class=_sum_counts(p.by_class for p in parts),
            controller=_sum_counts(p.controller for p in parts),
            protocol_type=_sum_counts(p.protocol_type for p in parts),
            protocol_location=_sum_counts(p.protocol_location for p in parts),
            transceiver=_sum_counts(p.transceiver for p in parts),
            lost_arbitration_bits=_sum_counts(p.lost_arbitration_bits for p in parts),
            tec_max=max(p.tec_max for p in parts),
            rec_max=max(p.rec_max for p in parts),
            counters=summed,
        )

    @property
    def bus_off_events(self) -> int:
        return sum(p.bus_off_events for p in self._parts)

    @cached_property
    def bus_load(self) -> LoadReport:
        loads = {name: _load(p) for name, p in self.buses.items()}
        first = next(iter(loads.values()))
        if not self._several:
            return first
        means = [v.mean_ratio for v in loads.values() if v.mean_ratio is not None]
        return replace(
            first,
            mean_ratio=max(means) if means else None,
            max_ratio_1s=max(v.max_ratio_1s for v in loads.values()),
            channels=loads,
        )

    @cached_property
    def ids(self) -> dict[str, IdEntry]:
        if not self._several:
            return dict(self._parts[0].ids)
        return {f"{name} {k}": v for name, p in self.buses.items() for k, v in p.ids.items()}

    @cached_property
    def nodes(self) -> tuple[NodeView, ...]:
        return tuple(n for p in self._parts for n in p.nodes)

    @cached_property
    def firmware_mismatches(self) -> tuple[FirmwareMismatch, ...]:
        return tuple(m for p in self._parts for m in p.firmware_mismatches)

    @cached_property
    def signals(self) -> dict[str, SignalReport]:
        if not self._several:
            return dict(self._parts[0].signals or {})
        return {
            f"{name} {k}": v for name, p in self.buses.items() for k, v in (p.signals or {}).items()
        }

    @cached_property
    def decode(self) -> DecodeReport:
        parts = [_decode(p) for p in self._parts]
        if len(parts) == 1:
            return parts[0]
        return replace(
            parts[0],
            decoded_frames=sum(p.decoded_frames for p in parts),
            unknown_frames=sum(p.unknown_frames for p in parts),
            untracked_frames=sum(p.untracked_frames for p in parts),
            unknown_ids=_sum_counts(p.unknown_ids for p in parts),
            short_frames=_sum_counts(p.short_frames for p in parts),
        )

    # -- JSON ---------------------------------------------------------------------------
    def to_json(self) -> JsonObject:
        """``analyze``'s JSON: the documented keys first, then per-bus reports when several."""
        bus_json = {name: p.to_json() for name, p in self.buses.items()}
        first = next(iter(bus_json.values()))
        several = self._several
        bitrates = {name: bitrate_json(c) for name, c in self.bitrates.items()}
        decode = self.decode.to_json()
        decode["dbc"] = self.dbc.to_json()

        def per_bus(key: str) -> Json:
            return {name: b[key] for name, b in bus_json.items()} if several else first[key]

        out: JsonObject = {
            "capture": self.capture.to_json(),
            "frames": self.frames.to_json(),
            "error_frames": self.error_frames.to_json(),
            "bus_off_events": self.bus_off_events,
            "bus_load": self.bus_load.to_json(),
            "bitrate": next(iter(bitrates.values())) if len(bitrates) == 1 else dict(bitrates),
            "ids": {k: v.to_json() for k, v in self.ids.items()},
            "nodes": self._with_bus(lambda p: [n.to_json() for n in p.nodes]),
            "signals": {k: v.to_json() for k, v in self.signals.items()},
            "findings": [f.to_json() for f in self.findings],
            "bus_state": per_bus("bus_state"),
            "windows": per_bus("windows"),
            "decode": decode,
            "firmware_mismatches": self._with_bus(
                lambda p: [m.to_json() for m in p.firmware_mismatches]
            ),
            "contactors": per_bus("contactors"),
            "cooling": per_bus("cooling"),
            "currents": per_bus("currents"),
            "notes": list(self.notes),
        }
        liveness = {name: b["liveness"] for name, b in bus_json.items() if "liveness" in b}
        if liveness:  # candiag/liveness: request/response exchanges of protocol packs
            out["liveness"] = next(iter(liveness.values())) if not several else liveness
        if several:
            out["buses"] = dict(bus_json)
        return out

    def _with_bus(self, items: Callable[[BusReport], Iterable[Mapping[str, object]]]) -> list[Json]:
        """Each bus's entries; with several buses, each says which bus it belongs to."""
        out: list[Json] = []
        for name, p in self.buses.items():
            for item in items(p):
                entry = json_object(item)
                if self._several:
                    entry["bus"] = name
                out.append(entry)
        return out


def _load(bus: BusReport) -> LoadReport:
    if bus.bus_load is None:
        raise ValueError(f"bus {bus.name}: a report without load figures (detail=False)")
    return bus.bus_load


def _decode(bus: BusReport) -> DecodeReport:
    if bus.decode is None:
        raise ValueError(f"bus {bus.name}: a report without decode counters (detail=False)")
    return bus.decode


def _all_known(c: ErrorCounters) -> bool:
    return None not in (
        c.tec_max,
        c.rec_max,
        c.tec_last,
        c.rec_last,
        c.unflagged_tec_last,
        c.unflagged_rec_last,
    )


def _sum_opt(values: Iterable[int | None]) -> int:
    return sum(v or 0 for v in values)


def _sum_counts(items: Iterable[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        for k, v in item.items():
            out[k] = out.get(k, 0) + int(v)
    return out
