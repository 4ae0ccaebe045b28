"""The raw per-id view's model: per bus an :class:`IdTracker`, its DBC and an optional filter.

:class:`RawViews` receives every drained batch of the session (the hook in
:meth:`MonitorSession.step <candiag.tui.session.MonitorSession.step>`), filters it with
the ``--filter`` of ``monitor`` (candump syntax, :mod:`candiag.ingest.filters`) and feeds
the bus's tracker.  The filter applies to this view only: the health analysis, the
findings and the recording keep seeing every frame, so a filter never makes a node look
offline.  :meth:`RawViews.views` decodes the last frame of every identifier at once (one
:class:`~candiag.decode.decoder.BatchDecoder` call per bus and screen refresh) into the
message name, node and signal values the view shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from candiag.decode.dbc import ChargerDatabase
from candiag.decode.decoder import BatchDecoder, DecodeResult
from candiag.ingest.filters import FrameFilter
from candiag.ingest.frames import FLAG_EXTENDED, FLAG_REMOTE, FrameBatch
from candiag.tui.idtracker import IdRow, IdTracker
from candiag.tui.view import RawBusView, RawRow, fmt_quantity

MAX_VALUES_SHOWN = 6


@dataclass
class RawBus:
    name: str
    db: ChargerDatabase
    tracker: IdTracker = field(default_factory=IdTracker)
    filtered_out: int = 0

    def __post_init__(self) -> None:
        self.decoder = BatchDecoder(self.db)


class RawViews:
    """The raw view of every bus of a session."""

    def __init__(self, frame_filter: FrameFilter | None = None) -> None:
        self.frame_filter = frame_filter
        self.buses: dict[str, RawBus] = {}

    def add_bus(self, name: str, db: ChargerDatabase) -> None:
        self.buses.setdefault(name, RawBus(name, db))

    def feed(self, bus_name: str, batch: FrameBatch) -> None:
        bus = self.buses.get(bus_name)
        if bus is None or not len(batch):
            return
        if self.frame_filter is not None:
            kept = self.frame_filter.apply(batch)
            bus.filtered_out += len(batch) - len(kept)
            batch = kept
        bus.tracker.feed(batch)

    def reset(self) -> None:
        for bus in self.buses.values():
            bus.tracker.reset()
            bus.filtered_out = 0

    def views(self, now: float) -> list[RawBusView]:
        return [
            RawBusView(
                name=bus.name,
                rows=raw_rows(bus, now),
                error_frames=bus.tracker.error_frames,
                untracked=bus.tracker.untracked,
                filtered_out=bus.filtered_out,
            )
            for bus in self.buses.values()
        ]


def raw_rows(bus: RawBus, now: float) -> list[RawRow]:
    """The tracker's rows with message names, nodes and decoded values of the last frames."""
    rows = bus.tracker.snapshot(now)
    if not rows:
        return []
    batch = last_frames(rows)
    result = bus.decoder.decode(batch)
    names = [""] * len(rows)
    nodes = [-1] * len(rows)
    values = [""] * len(rows)
    _fill_decoded(result, names, nodes, values)
    return [
        RawRow(
            id_text=row.id_text,
            name=names[i],
            node=nodes[i],
            count=row.count,
            period_s=row.mean_period,
            last_interval_s=row.last_interval,
            age_s=row.age(now),
            stale=row.stale(now),
            data=row.data,
            changed=row.changed,
            remote=row.remote,
            values=values[i],
        )
        for i, row in enumerate(rows)
    ]


def last_frames(rows: Sequence[IdRow]) -> FrameBatch:
    """The last frame of every row as one batch (for one decoder call)."""
    n = len(rows)
    width = max((len(r.data) for r in rows), default=8)
    width = 8 if width <= 8 else 64
    data = np.zeros((n, width), np.uint8)
    for i, row in enumerate(rows):
        data[i, : len(row.data)] = np.frombuffer(row.data, np.uint8)
    flags = np.array(
        [(FLAG_EXTENDED if r.extended else 0) | (FLAG_REMOTE if r.remote else 0) for r in rows],
        np.uint8,
    )
    return FrameBatch(
        timestamp=np.array([r.last_ts for r in rows], np.float64),
        can_id=np.array([r.can_id for r in rows], np.uint32),
        flags=flags,
        dlc=np.array([r.dlc for r in rows], np.uint8),
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["raw"],
    )


def _fill_decoded(
    result: DecodeResult, names: list[str], nodes: list[int], values: list[str]
) -> None:
    for decoded in result.messages.values():
        message = decoded.message
        # Physical quantities (with a unit) first: counters and result ids come last.
        signals = sorted(
            (s for s in message.signals if s.name in decoded.signals), key=lambda s: not s.unit
        )
        for k, row in enumerate(decoded.index.tolist()):
            names[row] = message.name
            nodes[row] = int(decoded.node[k])
            parts = []
            for sig in signals:
                if not bool(decoded.present[sig.name][k]):
                    continue
                value = float(decoded.signals[sig.name][k])
                if not math.isfinite(value):
                    continue
                parts.append(f"{sig.name} {_value_text(value, sig.unit, sig.is_integer)}")
            values[row] = ", ".join(parts[:MAX_VALUES_SHOWN]) + (
                f", +{len(parts) - MAX_VALUES_SHOWN}" if len(parts) > MAX_VALUES_SHOWN else ""
            )


def _value_text(value: float, unit: str, integer: bool) -> str:
    if integer and not unit:
        return str(int(value))
    return fmt_quantity(value, unit)
