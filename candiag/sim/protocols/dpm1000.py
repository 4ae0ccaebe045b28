"""DPM1000-30: the EVerest DPM1000 module's controller (one per device) and its modules.

Facts (docs/protocols.md, pack ``dpm1000.dbc``): each EVerest DPM1000 instance drives one
device (``device_address``, 0 by default; here one instance per simulated module, addresses
0..N-1).  At start it switches the module off (a 0x00 request, not waited for, then 0x0030)
and sets the series/parallel mode (0x0023).  Then, every 250 ms plus the exchanges: set
current limit (0x0022), default current limit (0x0019, 1.0), voltage (0x0021), power limit
(0x0020, 1.0), read voltage (0x0001), current (0x0007) and the alarm word (0x0040).  Each
request waits for its answer up to 250 ms (``ACCESS_TIMEOUT``); a voltage or current read that
fails or times out skips the rest of the cycle.  The session switches the module on and off
(0x00 request + 0x0030).  No module timeout is published, so no self-off.

Why a loop over controller cycles: the controller waits for every answer, so each request's
time depends on the answers before it (a dependency chain).  The chain is computed cycle by
cycle with the seven exchanges of a cycle at once; at about 28 frames/s per module this is
not a hot path.
"""

from __future__ import annotations

import numpy as np

from candiag.sim.protocols.engine import (
    BROADCAST,
    F64,
    I64,
    U8,
    U32,
    Answers,
    Context,
    IntpArray,
    Protocol,
    Requests,
    Values,
    be_bytes,
    f32_bytes,
    frame_seconds,
    rows,
)

#: One request as the chain makes it: time, module, message type, value type, b2 bits of an
#: on/off request, value (float: float32; int: u32; None: zero).
_Row = tuple[float, int, int, int, int, "float | int | None"]

MONITOR = 0xF0
SET_DATA_REQUEST, REQUEST_DATA, SET_DATA = 0x00, 0x01, 0x03
RESPONSE_REQUEST, RESPONSE_CONFIGURATION = 0x41, 0x43
NO_ERROR = 0xF0
ERROR_FLAG = 0x80
VOLTAGE, CURRENT, ALARM = 0x0001, 0x0007, 0x0040
DEFAULT_CURRENT_LIMIT, POWER_LIMIT, SET_VOLTAGE, CURRENT_LIMIT = 0x0019, 0x0020, 0x0021, 0x0022
SERIES_PARALLEL, SWITCH = 0x0023, 0x0030
ON_OFF_KIND = 0x10000  # the 0x00 request has no value type; a kind of its own
SERIES_MODE = 1050.0  # manifest default series_parallel_mode "Series"
SLEEP_S = 0.250
# The controller's time from an answer to its next request (modelled), above the stuff bits
# two frames may add to the nominal 67 + 8n bits the chain reckons with.
PROCESSING_S = 0.5e-3
#: One cycle: (message type, value type, float value or None for "the setpoint").
CYCLE = (
    (SET_DATA, CURRENT_LIMIT),
    (SET_DATA, DEFAULT_CURRENT_LIMIT),
    (SET_DATA, SET_VOLTAGE),
    (SET_DATA, POWER_LIMIT),
    (REQUEST_DATA, VOLTAGE),
    (REQUEST_DATA, CURRENT),
    (REQUEST_DATA, ALARM),
)


def can_id(dst: int | I64, src: int | I64, ptp: int | I64 = 1) -> U32:
    """DPM1000 identifier: header 0x060 28..20, PTP 19, dst 18..11, src 10..3, CNT 2, 1..0 = 3."""
    out = (
        (0b001100000 << 20)
        | (np.asarray(ptp, np.int64) << 19)
        | (np.asarray(dst, np.int64) << 11)
        | (np.asarray(src, np.int64) << 3)
        | 0b11
    )
    return out.astype(np.uint32)


class DPM1000(Protocol):
    name = "dpm1000"
    default_modules = 1
    max_modules = 64
    module_current_a = 30.0
    default_error = 0xF2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.timeout = ctx.pack.reply_timeout_ms / 1000.0
        self.one = frame_seconds(ctx.bitrate)
        # Per module: when its next cycle starts, and requests made but not yet returned.
        self.next_cycle = [ctx.start_time + 0.05 + 0.001 * k for k in range(ctx.modules)]
        self.pending = Requests.empty()
        self.switched_until = [ctx.start_time] * ctx.modules  # session on/off handled up to
        self.started = False

    @staticmethod
    def addresses(n: int) -> list[int]:
        return list(range(n))

    # -- one exchange ------------------------------------------------------------------------
    def _exchange(self, t: float, module: int, kind: int) -> tuple[float, bool]:
        """When the controller has its answer (reply end, or request + 250 ms), and whether
        the exchange succeeded (an answer without the error flag in time)."""
        answered, latency, error = self.ctx.exchange(
            t, module, kind, self.default_error, self.max_error
        )
        if answered and self.one + latency <= self.timeout:
            return t + 2 * self.one + latency + PROCESSING_S, error == 0
        return t + self.one + self.timeout + PROCESSING_S, False

    def _on_off(self, t: float, module: int, on: bool, out: list[_Row]) -> float:
        """set_state: the 0x00 request (not waited for), then 0x0030 (waited for)."""
        out.append((t, module, SET_DATA_REQUEST, ON_OFF_KIND, 0 if on else 0x84, None))
        t += self.one
        out.append((t, module, SET_DATA, SWITCH, 0, 0 if on else 1))
        return self._exchange(t, module, SWITCH)[0]

    def _cycle(self, t: float, module: int, out: list[_Row]) -> float:
        """One loop iteration starting (after its 250 ms sleep) at ``t``."""
        ctx = self.ctx
        tt = np.array([t])
        current = float(ctx.session.current(tt + 1.0)[0]) / ctx.modules
        voltage = float(ctx.target_voltage(tt)[0]) if ctx.session.modules_on(tt)[0] else 300.0
        for msg_type, kind in CYCLE:
            value: float | None = None
            if msg_type == SET_DATA:
                value = {CURRENT_LIMIT: current, SET_VOLTAGE: voltage}.get(kind, 1.0)
            out.append((t, module, msg_type, kind, 0, value))
            t, ok = self._exchange(t, module, kind)
            if msg_type == REQUEST_DATA and kind in (VOLTAGE, CURRENT) and not ok:
                break  # 'continue' in the driver's loop: the rest of the cycle is skipped
        return t + SLEEP_S

    def _requests(self, made: list[_Row]) -> Requests:
        if not made:
            return Requests.empty()
        t, module, msg_type, kind, bits, value = zip(*made, strict=True)
        n = len(t)
        modules = np.array(module, np.int64)
        kinds = np.array(kind, np.int64)
        types = np.array(msg_type, np.int64)
        data = rows(n)
        data[:, 0] = types
        data[:, 1] = NO_ERROR  # set_header writes 0xF0 into b1 of requests too
        data[:, 2:4] = be_bytes(np.where(kinds == ON_OFF_KIND, 0, kinds), 2)
        on_off = types == SET_DATA_REQUEST
        data[on_off, 2] = np.array(bits, np.int64)[on_off]  # b2 bit 7 off, bit 2 relay open
        data[on_off, 3] = 0x80
        floats = np.array([v is not None and isinstance(v, float) for v in value])
        ints = np.array([isinstance(v, int) for v in value])
        numbers = np.array([0.0 if v is None else float(v) for v in value])
        data[floats, 4:8] = f32_bytes(numbers[floats])
        data[ints, 4:8] = be_bytes(numbers[ints].astype(np.int64), 4)
        address = np.asarray(self.ctx.addresses, np.int64)[modules]
        return Requests.build(np.array(t), modules, kinds, can_id(address, MONITOR), data)

    # -- the controller ----------------------------------------------------------------------
    def schedule(self, t_end: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        made: list[_Row] = []
        if not self.started:
            self.started = True
            for k in range(ctx.modules):
                t = self._on_off(self.next_cycle[k], k, False, made)
                made.append((t, k, SET_DATA, SERIES_PARALLEL, 0, SERIES_MODE))
                self.next_cycle[k] = self._exchange(t, k, SERIES_PARALLEL)[0] + SLEEP_S
        for k in range(ctx.modules):
            t = self.next_cycle[k]
            lo, hi = self.switched_until[k], max(t_end, t) + 1.0
            todo = sorted(
                [(float(x), True) for x in ctx.session_times(lo, hi, m.precharge_at)]
                + [(float(x), False) for x in ctx.session_times(lo, hi, m.session_s)]
            )
            while t < t_end:
                if todo and todo[0][0] <= t:
                    at, on = todo.pop(0)
                    self.switched_until[k] = at + 1e-3  # past it at 1e9-second resolution
                    t = self._on_off(t, k, on, made)
                    continue
                t = self._cycle(t, k, made)
            self.next_cycle[k] = t
        both = Requests.concat([self.pending, self._requests(made)]).sorted()
        now = both.t < t_end
        self.pending = both.take(~now)
        return both.take(now)

    # -- the modules -------------------------------------------------------------------------
    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        answered = (req.module != BROADCAST) & (req.kind != ON_OFF_KIND)
        index = np.flatnonzero(answered).astype(np.intp)
        return index, req.module[index], np.zeros(index.size, np.int64)

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        address = np.asarray(self.ctx.addresses, np.int64)[ans.module]
        kind = req.kind
        n = t.size
        data = rows(n)
        is_read = req.data[:, 0] == REQUEST_DATA
        data[:, 0] = np.where(is_read, RESPONSE_REQUEST, RESPONSE_CONFIGURATION) | np.where(
            error != 0, ERROR_FLAG, 0
        )
        data[:, 1] = np.where(error != 0, error, NO_ERROR)
        data[:, 2:4] = be_bytes(kind, 2)
        value = np.where(kind == VOLTAGE, v.voltage, np.where(kind == CURRENT, v.current, 0.0))
        floats = is_read & (kind != ALARM)
        data[floats, 4:8] = f32_bytes(value[floats])
        alarm = (
            np.where(v.on, 0, 1 << 22)
            | np.where(v.duplicate_alarm, 1 << 10, 0)
            | np.where(v.comm_alarm, 1 << 16, 0)
        )
        alarms = is_read & (kind == ALARM)
        data[alarms, 4:8] = be_bytes(alarm[alarms], 4)
        data[~is_read, 4:8] = req.data[~is_read, 4:8]  # a configuration answer echoes (UNCERTAIN)
        data[error != 0, 4:8] = 0
        return can_id(MONITOR, address), data
