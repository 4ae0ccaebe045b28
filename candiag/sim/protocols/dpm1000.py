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
    def _answer_time(self, t: F64, module: int, kind: I64) -> tuple[F64, np.ndarray]:
        """When the controller has its answer (reply end, or request + 250 ms), and whether
        the exchange succeeded (an answer without the error flag in time)."""
        ctx = self.ctx
        m = np.full(t.shape, module, np.int64)
        twin = np.zeros(t.shape, bool)
        reply_end = t + 2 * self.one + ctx.latency(t, m, kind, twin)
        answered = ~ctx.silent(t, m) & ~ctx.not_asked(t, m)
        in_time = answered & (reply_end - self.one - t <= self.timeout)
        ok = in_time & (ctx.error_code(t, m, kind, self.default_error, self.max_error) == 0)
        return np.where(in_time, reply_end, t + self.one + self.timeout), ok

    def _request(
        self, t: float, module: int, msg_type: int, kind: int, value: U8 | None
    ) -> Requests:
        address = self.ctx.addresses[module]
        data = rows(1)
        data[0, 0] = msg_type
        data[0, 1] = NO_ERROR  # set_header writes 0xF0 into b1 of requests too
        if kind != ON_OFF_KIND:
            data[0, 2:4] = be_bytes([kind], 2)[0]
        if value is not None:
            data[0, 4:8] = value[0]
        return Requests.build([t], module, kind, can_id(address, MONITOR), data)

    def _on_off(self, t: float, module: int, on: bool) -> tuple[list[Requests], float]:
        """set_state: the 0x00 request (not waited for), then 0x0030 (waited for)."""
        address = self.ctx.addresses[module]
        data = rows(1)
        data[0, 0] = SET_DATA_REQUEST
        data[0, 1] = NO_ERROR
        data[0, 2] = 0 if on else 0x84  # b2 bit 7 power off, bit 2 input relay open
        data[0, 3] = 0x80
        first = Requests.build([t], module, ON_OFF_KIND, can_id(address, MONITOR), data)
        t2 = t + self.one
        switch = self._request(t2, module, SET_DATA, SWITCH, be_bytes([0 if on else 1], 4))
        end, _ = self._answer_time(np.array([t2]), module, np.array([SWITCH]))
        return [first, switch], float(end[0]) + PROCESSING_S

    def _cycle(self, t: float, module: int) -> tuple[list[Requests], float]:
        """One loop iteration starting (after its 250 ms sleep) at ``t``."""
        ctx = self.ctx
        out: list[Requests] = []
        tt = np.array([t])
        current = float(ctx.session.current(tt + 1.0)[0]) / ctx.modules
        voltage = float(ctx.target_voltage(tt)[0]) if ctx.session.modules_on(tt)[0] else 300.0
        for msg_type, kind in CYCLE:
            value = None
            if msg_type == SET_DATA:
                number = {CURRENT_LIMIT: current, SET_VOLTAGE: voltage}.get(kind, 1.0)
                value = f32_bytes([number])
            out.append(self._request(t, module, msg_type, kind, value))
            end, ok = self._answer_time(np.array([t]), module, np.array([kind]))
            t = float(end[0]) + PROCESSING_S
            if msg_type == REQUEST_DATA and kind in (VOLTAGE, CURRENT) and not ok[0]:
                break  # 'continue' in the driver's loop: the rest of the cycle is skipped
        return out, t + SLEEP_S

    # -- the controller ----------------------------------------------------------------------
    def schedule(self, t_end: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        made: list[Requests] = [self.pending]
        if not self.started:
            self.started = True
            for k in range(ctx.modules):
                t = self.next_cycle[k]
                reqs, t = self._on_off(t, k, on=False)
                made += reqs
                mode = self._request(t, k, SET_DATA, SERIES_PARALLEL, f32_bytes([SERIES_MODE]))
                end, _ = self._answer_time(mode.t, k, mode.kind)
                made.append(mode)
                self.next_cycle[k] = float(end[0]) + PROCESSING_S + SLEEP_S
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
                    reqs, t = self._on_off(t, k, on)
                    made += reqs
                    continue
                reqs, t = self._cycle(t, k)
                made += reqs
            self.next_cycle[k] = t
        both = Requests.concat(made).sorted()
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
