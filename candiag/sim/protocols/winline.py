"""Winline V1.50: the EVerest Winline driver's controller and its modules.

Facts (docs/protocols.md, pack ``winline_v150.dbc``): every 1000 ms the controller (0xF0)
reads V (0x0001) and I (0x0002) from every configured module, then V, I and the status word
(0x0040) from every active module, plus 0x0011, 0x0012, 0x0054, 0x0055 until the serial is
known.  Good replies (error byte 0xF0) to these refresh the module; 15 s without one drops it
from the active list (its configured V/I reads go on) and its next answer re-adds it, with
the altitude and current-limit settings sent again.  At start EVerest switches every module
off (0x0030); the session switches them on and sets 0x0021 (V, float) and 0x001B (A x 1024)
per module (modelled: every second while charging).  SET requests are answered with the
register echoed (UNCERTAIN, see the pack).  No module timeout is published, so no self-off.
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
    fault_module,
    next_cycle,
    periodic_times,
    rows,
)

CONTROLLER = 0xF0
READ, SET = 0x10, 0x03
FLOAT, INTEGER = 0x41, 0x42
OK = 0xF0
VOLTAGE, CURRENT, STATUS = 0x0001, 0x0002, 0x0040
RATED_POWER, RATED_CURRENT, SERIAL_LOW, SERIAL_HIGH = 0x0011, 0x0012, 0x0054, 0x0055
DC_TEMP, AMBIENT = 0x0004, 0x000B
SET_ALTITUDE, SET_CURRENT, SET_VOLTAGE, SET_LIMIT_POINT, POWER = (
    0x0017,
    0x001B,
    0x0021,
    0x0022,
    0x0030,
)
FLOAT_REGISTERS = (0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0008, 0x000A, 0x000B, 0x000C, 0x000D,
                   0x000E, 0x0010, 0x0011, 0x0012, 0x0021, 0x0022, 0x0023)  # fmt: skip
UNTIL_SERIAL = (RATED_POWER, RATED_CURRENT, SERIAL_LOW, SERIAL_HIGH)
DROP_S = 15.0  # EVerest device_connection_timeout_s default
POWER_ON, POWER_OFF = 0x00000000, 0x00010000
ALTITUDE_M = 1000
RATED_W, RATED_A = 30_000.0, 100.0


def can_id(dst: int | I64, src: int | I64, ptp: int = 1, group: int = 0) -> U32:
    """Winline identifier: PROTNO 0x060 28..20, PTP 19, dst 18..11, src 10..3, group 2..0."""
    out = (
        (0x060 << 20)
        | (ptp << 19)
        | (np.asarray(dst, np.int64) << 11)
        | (np.asarray(src, np.int64) << 3)
        | group
    )
    return out.astype(np.uint32)


def request_rows(function: int, register: int, n: int, value: U8 | None = None) -> U8:
    data = rows(n)
    data[:, 0] = function
    data[:, 2:4] = be_bytes(np.full(n, register), 2)
    if value is not None:
        data[:, 4:8] = value
    return data


class Winline(CycleProtocol):
    name = "winline"
    default_modules = 4
    max_modules = 64
    module_current_a = 40.0
    default_error = 0xF2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period = ctx.pack.poll_period_ms / 1000.0
        self.first = self.first_cycle(self.period)
        self.inactive = [self._inactive(k) for k in range(ctx.modules)]
        self.serial_until = [self._serial_known(k) for k in range(ctx.modules)]

    def _no_refresh(self, module: int) -> list[Window]:
        """When no good reply refreshes the module: it is silent, or every request to it is
        rejected (error replies return before the refresh, WinlineCanDevice.cpp)."""
        windows = self.ctx.windows("module_silent", module)
        windows += [
            Window(*f.window(self.ctx.start_time))
            for f in self.ctx.faults
            if f.kind == "rejected_requests"
            and f.number("ratio", 1.0) >= 1.0
            and fault_module(f, self.ctx.addresses) in (None, module)
        ]
        return sorted(windows, key=lambda w: w.begin)

    def _inactive(self, module: int) -> list[Window]:
        """Polls at which the module is off the active list: from the first poll 15 s after its
        last refresh (the configuration time counts as one) to the poll after it answers."""
        out = []
        for w in self._no_refresh(module):
            last = max(
                next_cycle(w.begin, self.first, self.period) - self.period, self.ctx.start_time
            )
            drop = next_cycle(last + DROP_S + 1e-6, self.first, self.period)
            if drop >= w.end:
                continue
            # Answered at the first poll after, re-added at the next one.
            back = (
                next_cycle(w.end, self.first, self.period) + self.period
                if math.isfinite(w.end)
                else math.inf
            )
            out.append(Window(drop, back))
        return out

    def _serial_known(self, module: int) -> float:
        """Time of the first poll at which the module is active, asked and answers (the
        ratings and serial are read up to it)."""
        ctx = self.ctx
        quiet = (
            ctx.windows("module_silent", module)
            + ctx.windows("controller_silent", module)
            + self.inactive[module]
        )
        return self.first_poll_outside(quiet, self.first, self.period, self.first)

    def _active(self, module: int, t: F64) -> np.ndarray:
        mask = np.ones(t.shape, bool)
        for w in self.inactive[module]:
            mask &= ~w.contains(t)
        return mask

    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        ctx = self.ctx
        cycles = periodic_times(t_lo, t_hi, self.first, self.period)
        parts = []
        n = ctx.modules
        for k, address in enumerate(ctx.addresses):
            ident = can_id(address, CONTROLLER)
            for j, register in enumerate((VOLTAGE, CURRENT)):  # every configured module
                t = cycles + (k * 2 + j) * 20e-6
                parts.append(
                    Requests.build(t, k, register, ident, request_rows(READ, register, t.size))
                )
            active = cycles[self._active(k, cycles)]
            for j, register in enumerate((VOLTAGE, CURRENT, STATUS, *UNTIL_SERIAL)):
                times = active if j < 3 else active[active <= self.serial_until[k]]
                t = times + (2 * n + k * 7 + j) * 20e-6
                parts.append(
                    Requests.build(t, k, register, ident, request_rows(READ, register, t.size))
                )
            # Re-added at a poll: altitude and current-limit point sent again (to every module).
            for w in self.inactive[k]:
                if t_lo <= w.end < t_hi and math.isfinite(w.end):
                    parts.append(self._configure(w.end + 0.005))
        parts.append(self._session_commands(t_lo, t_hi))
        return Requests.concat(parts)

    def _configure(self, at: float) -> Requests:
        parts = []
        for k, address in enumerate(self.ctx.addresses):
            t = np.array([at + k * 40e-6])
            ident = can_id(address, CONTROLLER)
            parts.append(
                Requests.build(
                    t,
                    k,
                    SET_ALTITUDE,
                    ident,
                    request_rows(SET, SET_ALTITUDE, 1, be_bytes([ALTITUDE_M], 4)),
                )
            )
            # EVerest sends the (float) limit point through its integer setter: 1.0 -> 1.
            parts.append(
                Requests.build(
                    t + 20e-6,
                    k,
                    SET_LIMIT_POINT,
                    ident,
                    request_rows(SET, SET_LIMIT_POINT, 1, be_bytes([1], 4)),
                )
            )
        return Requests.concat(parts)

    def _session_commands(self, t_lo: float, t_hi: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        parts = []
        off = ctx.session_times(t_lo, t_hi, m.session_s)
        if t_lo <= ctx.start_time + 0.01 < t_hi:  # initial_ping: switch every module off
            off = np.concatenate([[ctx.start_time + 0.01], off])
        on = ctx.session_times(t_lo, t_hi, m.precharge_at)
        setpoints = ctx.setpoint_times(t_lo, t_hi)
        for k, address in enumerate(ctx.addresses):
            ident = can_id(address, CONTROLLER)
            for times, value in ((on, POWER_ON), (off, POWER_OFF)):
                t = times[self._active(k, times)] + k * 20e-6
                parts.append(
                    Requests.build(
                        t,
                        k,
                        POWER,
                        ident,
                        request_rows(SET, POWER, t.size, be_bytes(np.full(t.size, value), 4)),
                    )
                )
            t = setpoints[self._active(k, setpoints)]
            active = np.zeros(t.shape)
            for j in range(ctx.modules):
                active += self._active(j, t)
            volts = ctx.target_voltage(t)
            amps = ctx.session.current(t + 1.0) / np.maximum(active, 1.0)
            base = t + 0.002 + k * 40e-6
            parts.append(
                Requests.build(
                    base,
                    k,
                    SET_VOLTAGE,
                    ident,
                    request_rows(SET, SET_VOLTAGE, t.size, f32_bytes(volts)),
                )
            )
            parts.append(
                Requests.build(
                    base + 20e-6,
                    k,
                    SET_CURRENT,
                    ident,
                    request_rows(SET, SET_CURRENT, t.size, be_bytes(np.rint(amps * 1024), 4)),
                )
            )
        return Requests.concat(parts)

    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        index = np.flatnonzero(req.module != BROADCAST).astype(np.intp)
        return index, req.module[index], np.zeros(index.size, np.int64)

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        address = np.asarray(self.ctx.addresses, np.int64)[ans.module]
        register = req.kind
        n = t.size
        data = rows(n)
        is_float = np.isin(register, FLOAT_REGISTERS)
        data[:, 0] = np.where(is_float, FLOAT, INTEGER)
        data[:, 1] = np.where(error != 0, error, OK)
        data[:, 2:4] = be_bytes(register, 2)
        values = np.zeros(n)
        values = np.where(register == VOLTAGE, v.voltage, values)
        values = np.where(register == CURRENT, v.current, values)
        values = np.where(register == DC_TEMP, v.temperature, values)
        values = np.where(
            register == AMBIENT, self.ctx.session.m.ambient_c + (v.noise - 0.5), values
        )
        values = np.where(register == RATED_POWER, RATED_W, values)
        values = np.where(register == RATED_CURRENT, RATED_A, values)
        data[is_float, 4:8] = f32_bytes(values[is_float])
        status = np.where(v.on, 0, 1 << 22) | np.where(v.comm_alarm, 1 << 16, 0)
        ints = np.zeros(n, np.int64)
        ints = np.where(register == STATUS, status, ints)
        ints = np.where(register == SERIAL_LOW, v.serial, ints)
        ints = np.where(register == SERIAL_HIGH, 0x5700_0000 + address, ints)
        data[~is_float, 4:8] = be_bytes(ints[~is_float], 4)
        echo = req.data[:, 0] == SET  # SET replies echo the value (UNCERTAIN, see the pack)
        data[echo, 4:8] = req.data[echo, 4:8]
        data[error != 0, 4:8] = 0
        return can_id(CONTROLLER, address), data
