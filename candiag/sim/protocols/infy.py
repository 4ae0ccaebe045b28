"""Infy REG/CEG/LRG V1.13: the EVerest InfyPower driver's controller and its modules.

Facts (docs/protocols.md, pack ``infy_v113.dbc``): the controller (0xF0) polls every
active module every 1000 ms with commands 0x03 (V/I), 0x04 (status) and 0x0C (V/I after
the diode), and 0x0A/0x0B (capabilities, barcode) until the module's serial is known; read
requests carry 8 zero bytes.  A module that has answered a status request before and then
stays silent 15 s is dropped at the next poll and never polled again (fixed-address mode);
a module without a request for 10 s switches its output off (V1.13).  In fixed-address
mode EVerest switches every module off at start; the session switches them on and sends
V/I setpoints (modelled: every second while charging).  Not simulated: group discovery
(cmd 0x02), which needs the modules' dial settings.
"""

from __future__ import annotations

import math

import numpy as np

from candiag.sim.plant import Window
from candiag.sim.protocols.engine import (
    BROADCAST,
    F64,
    I64,
    U8,
    U32,
    Answers,
    Context,
    CycleProtocol,
    IntpArray,
    Requests,
    Values,
    be_bytes,
    f32_bytes,
    next_cycle,
    periodic_times,
    rows,
)

CONTROLLER = 0xF0
DEV_SINGLE = 0x0A
READ_VI, READ_STATUS, READ_AFTER_DIODE, READ_CAPS, READ_BARCODE = 0x03, 0x04, 0x0C, 0x0A, 0x0B
SET_ON_OFF, SET_VI = 0x1A, 0x1C
POLLED = (READ_VI, READ_STATUS, READ_AFTER_DIODE)
UNTIL_SERIAL = (READ_CAPS, READ_BARCODE)
DROP_S = 15.0  # EVerest device_connection_timeout_s default
MAX_V, MIN_V, MAX_I, RATED_W = 1000, 150, 100.0, 30_000


def can_id(
    cmd: int | I64,
    dst: int | I64,
    src: int | I64,
    error: int | I64 = 0,
    *,
    dev: int | I64 = DEV_SINGLE,
) -> U32:
    """Infy identifier: error 28..26, device 25..22, command 21..16, dst 15..8, src 7..0
    (also the BEG1K075G's, whose group requests use device 0x0B)."""
    out = (
        (np.asarray(error, np.int64) << 26)
        | (np.asarray(dev, np.int64) << 22)
        | (np.asarray(cmd, np.int64) << 16)
        | (np.asarray(dst, np.int64) << 8)
        | np.asarray(src, np.int64)
    )
    return out.astype(np.uint32)


class Infy(CycleProtocol):
    name = "infy"
    default_modules = 4
    max_modules = 60
    module_current_a = 40.0
    default_error = 2  # CommandInvalid (identifier error code)
    max_error = 7

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period = ctx.pack.poll_period_ms / 1000.0
        self.first = self.first_cycle(self.period)
        self.drop_at = [self._drop_time(k) for k in range(ctx.modules)]
        self.serial_until = [self._serial_known(k) for k in range(ctx.modules)]

    # -- when EVerest drops a module and when it knows its serial ----------------------------

    def _drop_time(self, module: int) -> float:
        """The poll at which EVerest removes the module: 15 s after its last status answer,
        if it had answered before and is still silent (``remove_expired_telemetry_entries``)."""
        for w in sorted(self.ctx.windows("module_silent", module), key=lambda w: w.begin):
            last = (
                next_cycle(w.begin, self.first, self.period) - self.period
            )  # the last poll it answered
            if last < self.first:
                continue  # never answered before: EVerest has no entry to expire
            drop = next_cycle(last + DROP_S + 1e-6, self.first, self.period)
            if drop < w.end:
                return drop
        return math.inf

    def _serial_known(self, module: int) -> float:
        """Time of the first poll the module answers (0x0A/0x0B are sent up to it)."""
        ctx = self.ctx
        quiet = ctx.windows("module_silent", module) + ctx.windows("controller_silent", module)
        t = self.first_poll_outside(quiet, self.first, self.period, self.first)
        return t if t < self.drop_at[module] else math.inf

    def silence_windows(self, module: int) -> list[Window]:
        windows = super().silence_windows(module)
        if math.isfinite(self.drop_at[module]):
            windows.append(Window(self.drop_at[module], math.inf))
        return windows

    def active(self, t: F64) -> F64:
        """Modules EVerest has not dropped, at each time (the current divisor)."""
        count = np.zeros(t.shape)
        for k in range(self.ctx.modules):
            count += t < self.drop_at[k]
        return np.maximum(count, 1.0)

    # -- the controller ----------------------------------------------------------------------
    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        ctx = self.ctx
        cycles = periodic_times(t_lo, t_hi, self.first, self.period)
        parts = []
        for k, address in enumerate(ctx.addresses):
            polled = cycles[cycles < self.drop_at[k]]
            for j, cmd in enumerate(POLLED + UNTIL_SERIAL):
                times = polled if cmd in POLLED else polled[polled <= self.serial_until[k]]
                t = times + (k * 5 + j) * 20e-6
                parts.append(
                    Requests.build(t, k, cmd, can_id(cmd, address, CONTROLLER), rows(t.size))
                )
        parts.append(self._session_commands(t_lo, t_hi))
        return Requests.concat(parts)

    def _session_commands(self, t_lo: float, t_hi: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        parts = []
        off_times = ctx.session_times(t_lo, t_hi, m.session_s)
        if t_lo <= ctx.start_time + 0.01 < t_hi:  # initial_ping: switch every module off
            off_times = np.concatenate([[ctx.start_time + 0.01], off_times])
        for times, value in ((ctx.session_times(t_lo, t_hi, m.precharge_at), 0), (off_times, 1)):
            for k, address in enumerate(ctx.addresses):
                t = times[times < self.drop_at[k]] + k * 20e-6
                data = rows(t.size)
                data[:, 0] = value
                parts.append(
                    Requests.build(t, k, SET_ON_OFF, can_id(SET_ON_OFF, address, CONTROLLER), data)
                )
        setpoints = ctx.setpoint_times(t_lo, t_hi)
        volts = ctx.target_voltage(setpoints)
        amps = ctx.session.current(setpoints + 1.0) / self.active(setpoints)
        for k, address in enumerate(ctx.addresses):
            keep = setpoints < self.drop_at[k]
            t = setpoints[keep] + 0.002 + k * 20e-6
            data = rows(t.size)
            data[:, 0:4] = be_bytes(np.rint(volts[keep] * 1000), 4)
            data[:, 4:8] = be_bytes(np.rint(amps[keep] * 1000), 4)
            parts.append(Requests.build(t, k, SET_VI, can_id(SET_VI, address, CONTROLLER), data))
        return Requests.concat(parts)

    # -- the modules -------------------------------------------------------------------------
    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        index = np.flatnonzero(req.module != BROADCAST).astype(np.intp)
        return index, req.module[index], np.zeros(index.size, np.int64)

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        address = np.asarray(self.ctx.addresses, np.int64)[ans.module]
        cmd = req.kind
        n = t.size
        data = rows(n)
        vi = cmd == READ_VI
        data[vi, 0:4] = f32_bytes(v.voltage[vi])
        data[vi, 4:8] = f32_bytes(v.current[vi])
        st = cmd == READ_STATUS
        data[st, 4] = be_bytes(np.clip(np.rint(v.temperature[st]), -128, 127), 1)[:, 0]
        data[st, 5] = np.where(v.duplicate_alarm[st], 0x02, 0)  # status2 bit1 id_repeat_alarm
        # status1: bit0 dc_side_off, bit7 communication_interrupt_alarm
        data[st, 6] = np.where(v.on[st], 0, 0x01) | np.where(v.comm_alarm[st], 0x80, 0)
        ad = cmd == READ_AFTER_DIODE
        bus = self.ctx.session.voltage(t[ad]) * self.ctx.session.modules_on(t[ad])
        data[ad, 0:2] = be_bytes(np.rint(bus * 10), 2)
        data[ad, 2:4] = be_bytes(np.full(int(ad.sum()), int(MAX_I * 10)), 2)
        caps = cmd == READ_CAPS
        count = int(caps.sum())
        for first, value in ((0, MAX_V), (2, MIN_V), (4, int(MAX_I * 10)), (6, RATED_W // 10)):
            data[caps, first : first + 2] = be_bytes(np.full(count, value), 2)
        bc = cmd == READ_BARCODE
        data[bc, 0] = ord("V")
        data[bc, 1:8] = be_bytes(0x130C15A3F00000 + v.serial[bc] * 7919, 7)
        echo = (cmd == SET_ON_OFF) | (cmd == SET_VI)
        data[echo] = req.data[echo]
        data[error != 0] = 0
        return can_id(cmd, CONTROLLER, address, error), data
