"""What a module's exchanges showed over time: the liveness tracker's record for the
interval rules (:mod:`candiag.liveness.intervals`, docs/liveness.md "Findings as episodes").

Per module the tracker appends, batch by batch (arrays, no per-frame Python):

* every judged request: when it was asked, the latency of its first answer (NaN: none
  came in the reply window) and how many further answers repeated it (an address conflict);
* replies that answered no request (late after the controller asked again, or unsolicited);
* error replies with their code; changes of the serial number under the address; replies
  carrying the duplicate-address bit.

Offline (``keep_history``) every row is kept; live, rows older than :data:`HISTORY_S` are
dropped, so memory is bounded by an hour of traffic.  :class:`ModuleExchanges` is the frozen
view a bus timeline carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Live: seconds of exchanges kept for the interval rules (the windows' ring keeps an hour too).
HISTORY_S = 3600.0
#: Appended chunks before a log is compacted (and, live, trimmed) into one array per column.
_CHUNKS = 64


class EventLog:
    """Rows (a time and a few numeric columns) appended per batch, read sorted by time."""

    def __init__(self, *columns: str, keep_history: bool = False) -> None:
        self.columns = columns
        self.keep_history = keep_history
        self._t: list[F64] = []
        self._cols: dict[str, list[npt.NDArray[np.generic]]] = {c: [] for c in columns}
        self._dirty = False  # appended since the last compaction (maybe out of order)

    def add(self, t: F64, **values: npt.ArrayLike) -> None:
        if not t.size:
            return
        self._t.append(np.asarray(t, np.float64))
        for name in self.columns:
            self._cols[name].append(np.asarray(values[name]))
        self._dirty = True
        if len(self._t) > _CHUNKS:
            self._compact()

    def _compact(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        t = np.concatenate(self._t)
        order = np.argsort(t, kind="stable")
        if not self.keep_history and t.size:
            order = order[t[order] >= t[order[-1]] - HISTORY_S]
        self._t = [t[order]]
        for name in self.columns:
            self._cols[name] = [np.concatenate(self._cols[name])[order]]

    def __len__(self) -> int:
        return sum(int(t.size) for t in self._t)

    def arrays(self) -> tuple[F64, dict[str, npt.NDArray[np.generic]]]:
        """Times (sorted) and each column in the same order."""
        self._compact()
        if not self._t:
            return np.zeros(0), {name: np.zeros(0) for name in self.columns}
        return self._t[0], {name: self._cols[name][0] for name in self.columns}


def _empty_f() -> F64:
    return np.zeros(0, np.float64)


def _empty_i() -> I64:
    return np.zeros(0, np.int64)


@dataclass(frozen=True)
class ModuleExchanges:
    """One module's exchanges as the interval rules read them (times sorted)."""

    protocol: str
    address: int
    poll_period_s: float | None  # the pack's CandiagPollPeriodMs; None: not declared
    reply_window_s: float
    first_asked: float | None
    last_asked: float | None  # including requests still inside their reply window
    asked_t: F64 = field(default_factory=_empty_f)  # judged requests
    latency_s: F64 = field(default_factory=_empty_f)  # NaN: unanswered
    second: I64 = field(default_factory=_empty_i)  # further answers repeating the request
    late_t: F64 = field(default_factory=_empty_f)  # replies answering no request
    error_t: F64 = field(default_factory=_empty_f)
    error_code: I64 = field(default_factory=_empty_i)
    error_meanings: Mapping[int, str] = field(default_factory=dict)
    serial_t: F64 = field(default_factory=_empty_f)  # a serial differing from the one before
    serial: I64 = field(default_factory=_empty_i)
    dup_t: F64 = field(default_factory=_empty_f)  # replies with the duplicate-address bit
