"""UUGreen UR1000X0: the EVerest UUGreenPower driver's controller and its modules.

Facts (docs/protocols.md, pack ``uugreen_ur1000x0.dbc``): the monitor (address 1) sends
ReadData Vout and Iout_slow to every module, then sleeps 100 ms; SetData ShutdownDCDC,
VoutReference and IoutLimit (the total current shared equally) go out when the session
switches on or off and when the setpoints change (modelled: every second while charging);
ReadSN once at start.  Every frame has the same identifier layout in both directions; the
modules put their production date and serial-number low bits into the identifier of their
answers (UNCERTAIN, see the pack).  UUGreen publishes no error reply, so
``rejected_requests`` is refused, and no module timeout, so no self-off.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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
    periodic_times,
    rows,
)

MONITOR = 1
SET_DATA, SET_RESPONSE, READ_DATA, READ_RESPONSE, SN_RESPONSE = 0, 1, 2, 3, 4
VOUT, IOUT_SLOW, VOUT_REFERENCE, IOUT_LIMIT, SHUTDOWN_DCDC, READ_SN = 0, 1, 2, 3, 4, 5
POLL_SLEEP_S = 0.100  # tx_thread: sleep_for(100 ms) after the requests


def can_id(module: int | I64, date: int | I64 = 0, serial_low: int | I64 = 0) -> U32:
    """UUGreen identifier: version 1 28..25, monitor 24..21, module 20..14, date 13..9, SN 8..0."""
    out = (
        (1 << 25)
        | (MONITOR << 21)
        | (np.asarray(module, np.int64) << 14)
        | (np.asarray(date, np.int64) << 9)
        | np.asarray(serial_low, np.int64)
    )
    return out.astype(np.uint32)


def payload(
    msg_type: int | I64, command: int | I64, n: int, value: npt.ArrayLike | None = None
) -> U8:
    data = rows(n)
    data[:, 0] = np.asarray(msg_type, np.int64) & 0x0F
    data[:, 1] = np.asarray(command, np.int64) & 0x7F
    if value is not None:
        data[:, 4:8] = be_bytes(value, 4)
    return data


class UUGreen(CycleProtocol):
    name = "uugreen"
    default_modules = 2
    max_modules = 127
    module_current_a = 40.0
    default_error = None

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period = POLL_SLEEP_S
        self.first = self.first_cycle(self.period)

    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        ctx = self.ctx
        cycles = periodic_times(t_lo, t_hi, self.first, self.period)
        parts = []
        for k, address in enumerate(ctx.addresses):
            ident = can_id(address)
            for j, cmd in enumerate((VOUT, IOUT_SLOW)):
                t = cycles + (k * 2 + j) * 20e-6
                parts.append(Requests.build(t, k, cmd, ident, payload(READ_DATA, cmd, t.size)))
        if t_lo <= ctx.start_time + 0.02 < t_hi:  # request_module_info: ReadSN once
            for k, address in enumerate(ctx.addresses):
                t = np.array([ctx.start_time + 0.02 + k * 20e-6])
                parts.append(
                    Requests.build(t, k, READ_SN, can_id(address), payload(READ_DATA, READ_SN, 1))
                )
        parts.append(self._session_commands(t_lo, t_hi))
        return Requests.concat(parts)

    def _session_commands(self, t_lo: float, t_hi: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        parts = []
        n = ctx.modules
        on = ctx.session_times(t_lo, t_hi, m.precharge_at)
        off = ctx.session_times(t_lo, t_hi, m.session_s)
        setpoints = np.sort(
            np.concatenate([on + 0.001, ctx.setpoint_times(t_lo, t_hi)]), kind="stable"
        )
        volts = ctx.target_voltage(setpoints)
        amps = ctx.session.current(setpoints + 1.0) / n
        for k, address in enumerate(ctx.addresses):
            ident = can_id(address)
            for times, value in ((on, 0), (off, 1)):
                t = times + k * 20e-6
                data = payload(SET_DATA, SHUTDOWN_DCDC, t.size, np.full(t.size, value))
                parts.append(Requests.build(t, k, SHUTDOWN_DCDC, ident, data))
            t = setpoints + 0.002 + k * 40e-6
            parts.append(
                Requests.build(
                    t,
                    k,
                    VOUT_REFERENCE,
                    ident,
                    payload(SET_DATA, VOUT_REFERENCE, t.size, np.rint(volts * 1000)),
                )
            )
            parts.append(
                Requests.build(
                    t + 20e-6,
                    k,
                    IOUT_LIMIT,
                    ident,
                    payload(SET_DATA, IOUT_LIMIT, t.size, np.rint(amps * 1000)),
                )
            )
        return Requests.concat(parts)

    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        index = np.flatnonzero(req.module != BROADCAST).astype(np.intp)
        return index, req.module[index], np.zeros(index.size, np.int64)

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        address = np.asarray(self.ctx.addresses, np.int64)[ans.module]
        cmd = req.kind
        n = t.size
        msg_type = req.data[:, 0].astype(np.int64) & 0x0F
        reply_type = np.where(msg_type == SET_DATA, SET_RESPONSE, READ_RESPONSE)
        reply_type = np.where((msg_type == READ_DATA) & (cmd == READ_SN), SN_RESPONSE, reply_type)
        value = np.zeros(n, np.int64)
        value = np.where(cmd == VOUT, np.rint(v.voltage * 1000), value)
        value = np.where(cmd == IOUT_SLOW, np.rint(v.current * 1000), value)
        value = np.where(cmd == READ_SN, v.serial, value)
        data = payload(reply_type, cmd, n, value)
        data[reply_type == SN_RESPONSE, 2:4] = be_bytes(
            np.full(int((reply_type == SN_RESPONSE).sum()), 0x0401), 2
        )
        echo = msg_type == SET_DATA  # SetDataResponse echoes the value (UNCERTAIN, see the pack)
        data[echo, 4:8] = req.data[echo, 4:8]
        date = 1 + (v.serial % 31)
        return can_id(address, date, v.serial & 0x1FF), data
