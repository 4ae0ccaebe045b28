"""Hand-built bus reports for rule and view tests, written as the partial JSON of one bus.

:func:`bus_report` reads a report in ``analyze --json``'s shape (only the keys a test
cares about) and gives the typed :class:`~candiag.health.report.BusReport`, with what the
test leaves out as a quiet bus: no frames, no errors, no nodes, nothing read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from candiag.health.errorframes import ERROR_CLASSES
from candiag.health.nodes import FirmwareMismatch, NodeView
from candiag.health.report import (
    BusReport,
    ContactorReport,
    CoolingReport,
    CurrentsReport,
    ErrorBursts,
    ErrorCounters,
    ErrorFramesReport,
    FrameCounts,
    IdEntry,
    WindowReport,
)


def window(spec: Mapping[str, Any], worst_10s: float = 0.0) -> WindowReport:
    """``worst_10s``: the load of the last 10 s, which a longer window's worst 10 s is at least."""
    by_class = {**dict.fromkeys(ERROR_CLASSES, 0), **(spec.get("error_frames") or {})}
    return WindowReport(
        frames=int(spec.get("frames", 0)),
        frames_per_second=float(spec.get("frames_per_second", 0.0)),
        error_frames=by_class,
        error_frames_total=int(spec.get("error_frames_total", max(by_class.values()))),
        protocol_type=dict(spec.get("protocol_type") or {}),
        bus_off=int(spec.get("bus_off", by_class.get("bus_off", 0))),
        load_ratio=float(spec.get("load_ratio", 0.0)),
        load_ratio_max_10s=float(
            spec.get("load_ratio_max_10s", max(worst_10s, float(spec.get("load_ratio", 0.0))))
        ),
    )


def node(spec: Mapping[str, Any]) -> NodeView:
    status = str(spec.get("status", "online"))
    return NodeView(
        family=str(spec.get("family", "node")),
        address=int(spec.get("address", 0)),
        status=status,
        online=bool(spec.get("online", status != "offline")),
        last_seen=spec.get("last_seen"),
        silent_s=spec.get("silent_s"),
        timeout_s=float(spec.get("timeout_s", 1.0)),
        frames=int(spec.get("frames", 0)),
        dropouts=int(spec.get("dropouts", 0)),
        last_dropout_end=spec.get("last_dropout_end"),
        firmware=spec.get("firmware"),
        alarms=tuple(spec.get("alarms") or ()),
        rate_ratio=spec.get("rate_ratio"),
        expected=bool(spec.get("expected", False)),
        duplicate_recently=bool(spec.get("duplicate_recently", False)),
    )


def id_entry(key: str, spec: Mapping[str, Any]) -> IdEntry:
    return IdEntry(
        id=str(spec.get("id", key)),
        extended=bool(spec.get("extended", False)),
        kind=str(spec.get("kind", "data")),
        name=spec.get("name"),
        family=spec.get("family"),
        node=spec.get("node"),
        channel=spec.get("channel"),
        count=int(spec.get("count", 0)),
        first_seen=spec.get("first_seen"),
        last_seen=spec.get("last_seen"),
        mean_period_s=spec.get("mean_period_s"),
        jitter_s=spec.get("jitter_s"),
        min_period_s=spec.get("min_period_s"),
        max_period_s=spec.get("max_period_s"),
        p95_period_s=spec.get("p95_period_s"),
        cycle_ms=spec.get("cycle_ms"),
        cycle_ok=spec.get("cycle_ok"),
        cycle_note=spec.get("cycle_note"),
    )


def firmware_mismatch(spec: Mapping[str, Any]) -> FirmwareMismatch:
    return FirmwareMismatch(
        family=str(spec.get("family", "node")),
        majority=spec.get("majority"),
        by_version={str(v): list(a) for v, a in (spec.get("by_version") or {}).items()},
        not_allowed={int(a): str(v) for a, v in (spec.get("not_allowed") or {}).items()},
    )


def error_frames(spec: Mapping[str, Any]) -> ErrorFramesReport:
    tec, rec = spec.get("tec_last"), spec.get("rec_last")
    return ErrorFramesReport(
        error_frames=int(spec.get("error_frames", 0)),
        by_class=dict.fromkeys(ERROR_CLASSES, 0),
        controller={},
        protocol_type={},
        protocol_location={},
        transceiver={},
        lost_arbitration_bits={},
        first_timestamp=None,
        last_timestamp=None,
        tec_max=int(spec.get("tec_max") or tec or 0),
        rec_max=int(spec.get("rec_max") or rec or 0),
        tec_last=int(tec or 0),
        rec_last=int(rec or 0),
        counters=ErrorCounters(tec, rec, tec, rec, 0, 0, None, None),
        counters_source=spec.get(
            "counters_source", "none" if tec is None and rec is None else "error_frames"
        ),
    )


def windows(specs: Mapping[str, Mapping[str, Any]]) -> dict[str, WindowReport]:
    last_10s = float((specs.get("10s") or {}).get("load_ratio", 0.0))
    return {label: window(w, last_10s) for label, w in specs.items()}


def bus_report(spec: Mapping[str, Any]) -> BusReport:
    """The typed report of a partial JSON bus report (see the module docstring)."""
    bursts = spec.get("error_bursts") or {}
    frames = spec.get("frames") or {}
    return BusReport(
        name=str(spec.get("name", "can0")),
        bitrate=int(spec.get("bitrate", 500_000)),
        bitrate_known=bool(spec.get("bitrate_known", True)),
        up=bool(spec.get("up", True)),
        down_since=spec.get("down_since"),
        state=str(spec.get("state", "error_active")),
        counters_falling=bool(spec.get("counters_falling", False)),
        frames=FrameCounts(
            total=int(frames.get("total", 0)),
            data=int(frames.get("data", 0)),
            remote=int(frames.get("remote", 0)),
            error=int(frames.get("error", 0)),
        ),
        error_frames=error_frames(spec.get("error_frames") or {}),
        bus_off_events=int(spec.get("bus_off_events", 0)),
        windows=windows(spec.get("windows") or {}),
        error_bursts=ErrorBursts(
            burst_seconds=int(bursts.get("burst_seconds", 0)),
            in_bursts=int(bursts.get("in_bursts", 0)),
            protocol_total=int(bursts.get("protocol_total", 0)),
        ),
        ids={key: id_entry(key, e) for key, e in (spec.get("ids") or {}).items()},
        nodes=tuple(node(n) for n in spec.get("nodes") or ()),
        firmware_mismatches=tuple(
            firmware_mismatch(m) for m in spec.get("firmware_mismatches") or ()
        ),
        dropped=dict(spec.get("dropped") or {}),
        dropped_recent=int(spec.get("dropped_recent", 0)),
        contactors=tuple(
            ContactorReport(
                name=str(c.get("name", "contactor")),
                command=c.get("command"),
                feedback=c.get("feedback"),
                weld=bool(c.get("weld", False)),
                mismatch_s=float(c.get("mismatch_s", 0.0)),
            )
            for c in spec.get("contactors") or ()
        ),
        cooling=CoolingReport(**(spec.get("cooling") or {})),
        currents=CurrentsReport(**(spec.get("currents") or {})),
    )
