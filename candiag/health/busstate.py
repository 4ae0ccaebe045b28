"""CAN controller bus state (error-active/-warning/-passive, bus-off) tracked from evidence.

Owns the state machine fed by error frames (and, through :meth:`BusStateTracker.observe`,
by other sources: netlink link statistics, PCAN status codes, the daemon's "down").
Drivers report state **only on transitions** (docs/can-errors.md §2), so the last known state is
kept until new evidence arrives; a bus that never reported anything is assumed
error-active.

Evidence from one error frame, most significant first: ``bus_off`` class → bus-off;
``restarted`` class → error-active; controller data[1] passive bits → error-passive,
warning bits → error-warning, ``active`` (back to error-active) → error-active; otherwise
the TEC/REC carried with ``CAN_ERR_CNT`` against the thresholds 96/128/256
(``CAN_ERROR_WARNING_THRESHOLD`` ...).  Frames with none of these (e.g. a plain protocol
error) leave the state alone.

Vectorized: each error frame gets an implied state (or "none"); the last implied state
wins and the time in each state is a bincount of the intervals between evidence frames.

The counters' direction (rising or falling) is kept as a list of changes, exact to the
error frame that showed it (:attr:`BusStateTracker.trend_changes`): the diagnosis's
``CAN_TEC_RISING`` holds only while the counters rise (:mod:`candiag.diagnosis.windowrules`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candiag.health.jsontypes import JsonObject
from candiag.ingest.frames import FLAG_ERROR, FrameBatch
from candiag.socketcan_errors import (
    BUS_OFF_THRESHOLD,
    CAN_ERR_BUSOFF,
    CAN_ERR_CNT,
    CAN_ERR_CRTL,
    CAN_ERR_RESTARTED,
    CONTROLLER_FLAGS,
    ERROR_PASSIVE_THRESHOLD,
    ERROR_WARNING_THRESHOLD,
)

BUS_STATES: tuple[str, ...] = ("error_active", "error_warning", "error_passive", "bus_off", "down")
ERROR_ACTIVE, ERROR_WARNING, ERROR_PASSIVE, BUS_OFF, DOWN = range(5)
NO_EVIDENCE = -1
# Intervals remembered per state (exact bounds for the diagnosis's episodes).
MAX_STATE_INTERVALS = 1000
# Changes of the counters' direction remembered (a flapping counter makes two a cycle).
MAX_TREND_CHANGES = 10_000

_CRTL_WARNING = CONTROLLER_FLAGS["rx_warning"] | CONTROLLER_FLAGS["tx_warning"]
_CRTL_PASSIVE = CONTROLLER_FLAGS["rx_passive"] | CONTROLLER_FLAGS["tx_passive"]
_CRTL_ACTIVE = CONTROLLER_FLAGS["active"]


def state_from_counters(tec: npt.ArrayLike, rec: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """State implied by TEC/REC (0-95 active, 96-127 warning, 128-255 passive, >=256 bus-off)."""
    worst = np.maximum(np.asarray(tec, np.int32), np.asarray(rec, np.int32))
    out = np.full(worst.shape, ERROR_ACTIVE, np.int8)
    out[worst >= ERROR_WARNING_THRESHOLD] = ERROR_WARNING
    out[worst >= ERROR_PASSIVE_THRESHOLD] = ERROR_PASSIVE
    # REC stops at 127/128 in most controllers; only TEC reaches the bus-off threshold.
    out[np.asarray(tec, np.int32) >= BUS_OFF_THRESHOLD] = BUS_OFF
    return out


def implied_states(
    can_id: npt.NDArray[np.uint32], data: npt.NDArray[np.uint8]
) -> npt.NDArray[np.int8]:
    """Per error frame: the state it implies, or ``NO_EVIDENCE`` (-1)."""
    out = np.full(can_id.shape, NO_EVIDENCE, np.int8)
    # Assigned from the weakest evidence to the strongest, so the strongest wins.
    has_cnt = (can_id & CAN_ERR_CNT) != 0
    out[has_cnt] = state_from_counters(data[has_cnt, 6], data[has_cnt, 7])
    crtl = (can_id & CAN_ERR_CRTL) != 0
    ctl_byte = data[:, 1]
    out[crtl & ((ctl_byte & _CRTL_ACTIVE) != 0)] = ERROR_ACTIVE
    out[crtl & ((ctl_byte & _CRTL_WARNING) != 0)] = ERROR_WARNING
    out[crtl & ((ctl_byte & _CRTL_PASSIVE) != 0)] = ERROR_PASSIVE
    out[(can_id & CAN_ERR_RESTARTED) != 0] = ERROR_ACTIVE
    out[(can_id & CAN_ERR_BUSOFF) != 0] = BUS_OFF
    return out


@dataclass(frozen=True)
class StateChange:
    """One transition, with the evidence that caused it."""

    timestamp: float
    old: str
    new: str
    source: str  # "error_frame", "netlink", "pcan", "daemon"

    def to_json(self) -> JsonObject:
        return {
            "timestamp": self.timestamp,
            "from": self.old,
            "to": self.new,
            "source": self.source,
        }


class BusStateTracker:
    """Current bus state, bus-off events, restarts and time spent in each state.

    Time is frame time (captures) or wall time (live, via :meth:`advance`): every update
    first accounts the time from the last accounted instant up to the new evidence.
    """

    def __init__(self, keep_changes: int = 100) -> None:
        self.state: int = ERROR_ACTIVE
        self.state_since: float | None = None
        self.bus_off_events = 0
        self.restarts = 0
        self.seconds_in_state = np.zeros(len(BUS_STATES), np.float64)
        self.changes: deque[StateChange] = deque(maxlen=keep_changes)
        self.transitions = 0
        self._clock: float | None = None  # the instant up to which time is accounted
        self.tec: int | None = None
        self.rec: int | None = None
        self.sources: set[str] = set()
        # True while the error counters are on their way down (the worst of TEC/REC fell
        # since the counter frame before, or a worse state was left): passing through the
        # warning level on the way back is recovery, not a problem building up.
        self.falling = False
        self._worst: int | None = None
        # Every change of ``falling``: (instant, falling), oldest first, the last
        # MAX_TREND_CHANGES kept.
        self.trend_changes: list[tuple[float, bool]] = []
        # Every stay in a state other than error-active: state -> [(entered, left)], the
        # current stay last with ``left`` None.  Unlike ``changes`` none is dropped early.
        self.intervals: dict[str, list[tuple[float, float | None]]] = {}

    def _record(self, old: int, new: int, t: float) -> None:
        left = self.intervals.get(BUS_STATES[old])
        if left and left[-1][1] is None:
            left[-1] = (left[-1][0], t)
        if new != ERROR_ACTIVE:
            stays = self.intervals.setdefault(BUS_STATES[new], [])
            stays.append((t, None))
            if len(stays) > MAX_STATE_INTERVALS:
                del stays[: len(stays) - MAX_STATE_INTERVALS]

    @property
    def state_name(self) -> str:
        return BUS_STATES[self.state]

    def _account_until(self, t: float) -> None:
        if self._clock is None:
            self._clock = t
            self.state_since = t
            return
        if t > self._clock:
            self.seconds_in_state[self.state] += t - self._clock
            self._clock = t

    def advance(self, now: float) -> None:
        """Account time up to ``now`` in the current state (live bus, nothing new received)."""
        self._account_until(now)

    def _enter(self, new: int, t: float, source: str) -> None:
        if new == self.state:
            return
        self.changes.append(StateChange(t, BUS_STATES[self.state], BUS_STATES[new], source))
        self._record(self.state, new, t)
        self.transitions += 1
        if new == BUS_OFF:
            self.bus_off_events += 1
        self.state = new
        self.state_since = t

    def observe(self, state: str, timestamp: float, source: str = "daemon") -> None:
        """Evidence from another source: netlink state, a PCAN status, the daemon's ``down``."""
        code = BUS_STATES.index(state)
        self.sources.add(source)
        self._account_until(timestamp)
        self._enter(code, max(timestamp, self._clock or timestamp), source)

    def update(self, batch: FrameBatch) -> npt.NDArray[np.float64]:
        """Apply the error frames of ``batch``; returns the timestamps of new bus-off events."""
        if len(batch) == 0:
            return np.empty(0, np.float64)
        if self._clock is None:
            self._account_until(float(batch.timestamp.min()))
        rows = np.flatnonzero(batch.flags & FLAG_ERROR)
        if rows.size == 0:  # the usual batch: only the time in the current state moves on
            self._account_until(float(batch.timestamp.max()))
            return np.empty(0, np.float64)
        rows = rows[np.argsort(batch.timestamp[rows], kind="stable")]
        can_id = batch.can_id[rows]
        data = batch.data[rows, :8]
        self.restarts += int(np.count_nonzero(can_id & CAN_ERR_RESTARTED))
        has_cnt = (can_id & CAN_ERR_CNT) != 0
        if has_cnt.any():
            self.tec, self.rec = int(data[has_cnt, 6][-1]), int(data[has_cnt, 7][-1])
        states = implied_states(can_id, data)
        evidence = states != NO_EVIDENCE
        ts = batch.timestamp[rows]
        bus_off_times, state_ts, state_falling = self._apply_evidence(
            ts[evidence], states[evidence]
        )
        moved_ts, moved_falling = self._counter_moves(
            ts[has_cnt], np.maximum(data[has_cnt, 6], data[has_cnt, 7]).astype(np.int32)
        )
        # State changes first, so that a counter frame at the same instant (the counters
        # say more than the state's direction) is the later word.
        self._note_trend(
            np.concatenate((state_ts, moved_ts)), np.concatenate((state_falling, moved_falling))
        )
        self._account_until(float(batch.timestamp.max()))
        return bus_off_times

    def _counter_moves(
        self, ts: npt.NDArray[np.float64], worst: npt.NDArray[np.int32]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Each counter frame whose worst counter moved: (instant, fell)."""
        if worst.size == 0:
            return np.empty(0, np.float64), np.empty(0, np.bool_)
        series = worst if self._worst is None else np.concatenate(([self._worst], worst))
        steps = np.diff(series)
        at = ts[-steps.size :] if steps.size else ts[:0]
        self._worst = int(series[-1])
        moved = steps != 0
        return at[moved], steps[moved] < 0

    def _note_trend(self, ts: npt.NDArray[np.float64], falling: npt.NDArray[np.bool_]) -> None:
        """Direction of the counters after each event, in time order; changes recorded."""
        if ts.size == 0:
            return
        order = np.argsort(ts, kind="stable")
        ts, falling = ts[order], falling[order]
        before = np.concatenate(([self.falling], falling[:-1]))
        for i in np.flatnonzero(falling != before).tolist():
            self.trend_changes.append((float(ts[i]), bool(falling[i])))
        if len(self.trend_changes) > MAX_TREND_CHANGES:
            del self.trend_changes[: len(self.trend_changes) - MAX_TREND_CHANGES]
        self.falling = bool(falling[-1])

    def _apply_evidence(
        self, ts: npt.NDArray[np.float64], states: npt.NDArray[np.int8]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Apply the evidence frames; return the bus-off instants and each state change's
        (instant, towards a better state)."""
        if ts.size == 0:
            return np.empty(0, np.float64), np.empty(0, np.float64), np.empty(0, np.bool_)
        self.sources.add("error_frame")
        # Evidence older than what is already accounted is applied at the accounted instant.
        assert self._clock is not None
        ts = np.maximum(ts, self._clock)
        previous = np.concatenate(([self.state], states[:-1])).astype(np.int8)
        changed = states != previous
        # Time between evidence frames belongs to the state before each frame.
        edges = np.concatenate(([self._clock], ts))
        self.seconds_in_state += np.bincount(
            previous.astype(np.intp), weights=np.diff(edges), minlength=len(BUS_STATES)
        )
        self._clock = float(ts[-1])
        bus_off_times: npt.NDArray[np.float64] = ts[changed & (states == BUS_OFF)]
        for i in np.flatnonzero(changed).tolist():
            self._record(int(previous[i]), int(states[i]), float(ts[i]))
        for i in np.flatnonzero(changed)[-self.changes.maxlen if self.changes.maxlen else 0 :]:
            self.changes.append(
                StateChange(
                    float(ts[i]), BUS_STATES[previous[i]], BUS_STATES[states[i]], "error_frame"
                )
            )
        self.transitions += int(changed.sum())
        self.bus_off_events += int(bus_off_times.size)
        if changed.any():
            self.state_since = float(ts[np.flatnonzero(changed)[-1]])
        self.state = int(states[-1])
        return bus_off_times, ts[changed], states[changed] < previous[changed]

    def to_json(self) -> JsonObject:
        return {
            "sources": sorted(self.sources),
            "state": self.state_name,
            "state_since": self.state_since,
            "bus_off_events": self.bus_off_events,
            "restarts": self.restarts,
            "transitions": self.transitions,
            "tec": self.tec,
            "rec": self.rec,
            "seconds_in_state": {
                name: float(self.seconds_in_state[i]) for i, name in enumerate(BUS_STATES)
            },
            "changes": [c.to_json() for c in self.changes],
        }
