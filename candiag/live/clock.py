"""The daemon's time: a clock that never steps, and frame timestamps mapped onto it.

A charger controller's wall clock steps: it boots at 1970 and NTP sets it minutes later, an
operator corrects it by an hour, a GPS fix arrives.  Live windows, node timeouts, signal
freshness and the diagnosis' raise/clear delays must not follow such a step (a step back of
an hour made every new frame "older than the 1 h ring", the 10 s load read 0 and
CAN_BUS_SILENT was raised while frames kept arriving; docs/operations.md "Clocks").

* :class:`LiveClock` is ``time.monotonic()`` shown in the units of the wall clock: its
  origin is the wall clock read once when the daemon starts, after which it only moves
  forward at the rate of real time.  Everything live (windows, states, timeouts, the
  Modbus pollers' freshness) runs on it.  What users see (``*_timestamp_seconds`` metrics)
  is converted back with the wall clock's *current* offset (:meth:`LiveClock.to_wall`), so
  ages stay right and an exported time is a wall-clock time even after a step.
* :class:`FrameTimes` maps one bus's frame timestamps onto the live clock.  Sources stamp
  frames on different clocks: SocketCAN with the kernel's wall clock (it steps with it),
  PCAN and the simulator with a clock fixed at open (it does not), some adapters with their
  own counter.  A frame cannot have been received in the future nor long before the
  previous drain, so a timestamp outside that window shows the source's clock stepped (or
  drifted): the frame is re-anchored, first with the wall clock's step, else at its arrival,
  and later frames keep the new offset.  Vectorized: a few array operations per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

# A frame stamped later than the drain that delivered it by more than this is on a clock
# that stepped forward (or drifted); the same for one stamped more than PAST_S before the
# previous drain (a reader hands frames over within 0.1 s; the kernel queue holds < 1 s).
FUTURE_S = 1.0
PAST_S = 10.0


class LiveClock:
    """Monotonic time on the wall clock's scale (see module docstring); clocks injectable."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.origin = wall() - monotonic()

    def now(self) -> float:
        """The live time: never steps, starts at the wall-clock time of the daemon's start."""
        return self._monotonic() + self.origin

    def wall(self) -> float:
        return self._wall()

    def wall_offset(self) -> float:
        """Live minus wall time: 0 until the wall clock steps (+3600 after a step back of 1 h)."""
        return self.now() - self._wall()

    def to_wall(self, live: float) -> float:
        """A live instant as a wall-clock time now (its age is kept)."""
        return live - self.wall_offset()


class FrameTimes:
    """Maps one bus's frame timestamps onto the live clock, following steps of their clock."""

    def __init__(self) -> None:
        self.offset: float | None = None  # live minus frame clock, for the next frame
        self.steps = 0  # times the frame clock was re-anchored
        self.last_step_s = 0.0  # by how much, the last time (+: frames stamped too early)
        self._previous_drain: float | None = None

    def to_live(self, timestamp: F64, now: float, wall_offset: float) -> F64:
        """Live times of frames delivered at live time ``now`` (arrival order).

        ``wall_offset``: :meth:`LiveClock.wall_offset` now, the first guess for a source
        that stamps with the wall clock.
        """
        previous, self._previous_drain = self._previous_drain, now
        if timestamp.size == 0:
            return timestamp
        if self.offset is None:
            self.offset = wall_offset
        lo = (now if previous is None else min(previous, now)) - PAST_S
        hi = now + FUTURE_S
        offsets = np.full(timestamp.shape, self.offset)
        live: F64 = timestamp + offsets
        outside = (live < lo) | (live > hi)
        if not outside.any():
            return live
        # The wall clock's step first (a source stamping with it), else the arrival: the
        # newest such frame was received just before this drain.
        arrival = now - float(timestamp[outside].max())
        for candidate in (wall_offset, arrival):
            moved = timestamp[outside] + candidate
            rows = np.flatnonzero(outside)[(moved >= lo) & (moved <= hi)]
            offsets[rows] = candidate
            outside[rows] = False
        offsets[outside] = arrival  # spread over more than the window: spacing kept
        step = float(offsets[-1]) - self.offset
        self.offset = float(offsets[-1])
        if step:
            self.steps += 1
            self.last_step_s = step
        mapped: F64 = timestamp + offsets
        return mapped
