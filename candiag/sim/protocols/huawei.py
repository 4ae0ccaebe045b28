"""Huawei R100040Gx: the EVerest Huawei_R100040Gx driver's control unit and its modules.

Facts (docs/protocols.md, pack ``huawei_r100040gx.dbc``): a 50 ms loop with an 8-bit
counter that advances three times per iteration while the output is off and twice while
it is on; the real-time query (0x40, mask bit 22: signal 0x191) goes to every module when
the counter is a multiple of 5 (about every 250 ms), the output-mode configuration (0x81,
0x14A) when it is a multiple of 20 while off, the inherent-information query (0x50) to the
broadcast address when it is a multiple of 40.  On/off (0x80 0x132) and setpoints (0x80
0x100, 0x10F) go to every module when they change (modelled: every second while
charging).  Modules answer the real-time query with one 0x191 frame, the information query
with the serial number (0x002, "more frames" bit set) and the version (0x005), and control
and configuration commands with the signal echoed (UNCERTAIN).  EVerest raises
CommunicationFault after 2 s without any answer.  No module timeout is published (signal
0x118 sets it), so no self-off.
"""

from __future__ import annotations

import math

import numpy as np

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
    rows,
)

QUERY_REALTIME, QUERY_INFO, CONTROL, CONFIGURATION = 0x40, 0x50, 0x80, 0x81
BATCH, SERIAL, VERSION = 0x000, 0x002, 0x005
OUTPUT_VOLTAGE, OUTPUT_CURRENT, POWER_ON_OFF, AUTO_MODE = 0x100, 0x10F, 0x132, 0x14A
VI_STATUS = 0x191
RTQ_VI_STATUS = 1 << 22
NO_GROUP = 0x1F
LOOP_S = 0.050


def can_id(
    message: int | I64, from_control_unit: int, module: int | I64, more: int | I64 = 0
) -> U32:
    """Huawei identifier: 0x0D 28..23, module 22..16, message 15..8, bit 7 from the control
    unit, group 6..2 (0x1F none), bit 1 hardware address (0), bit 0 more frames follow."""
    out = (
        (0x0D << 23)
        | (np.asarray(module, np.int64) << 16)
        | (np.asarray(message, np.int64) << 8)
        | (from_control_unit << 7)
        | (NO_GROUP << 2)
        | np.asarray(more, np.int64)
    )
    return out.astype(np.uint32)


def payload(
    signal: int | I64, n: int, byte2: int = 0, byte3: int | I64 = 0, value: object = 0
) -> U8:
    data = rows(n)
    data[:, 0:2] = be_bytes(np.broadcast_to(np.asarray(signal, np.int64) & 0x0FFF, (n,)), 2)
    data[:, 2] = byte2
    data[:, 3] = np.asarray(byte3, np.int64) & 0xFF
    data[:, 4:8] = be_bytes(np.broadcast_to(np.asarray(value, np.int64), (n,)), 4)
    return data


class Huawei(CycleProtocol):
    name = "huawei"
    default_modules = 2
    max_modules = 127
    module_current_a = 50.0
    default_error = 2  # InvalidCommand (error nibble)
    max_error = 15

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.first = self.first_cycle(LOOP_S)
        self.counter = 0  # telemetry_cnt before the next iteration (kept mod 256)
        self.iterations_done = 0

    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        ctx = self.ctx
        k0 = self.iterations_done
        k1 = max(math.ceil((t_hi - self.first) / LOOP_S), k0)
        self.iterations_done = k1
        parts = []
        if t_lo <= ctx.start_time + 0.01 < t_hi:
            # set_mode() before the loop; connection_established() asks for the inherent
            # information (its switch_on(false) sends nothing: nothing changed).
            t = np.array([ctx.start_time + 0.01])
            parts.append(self._to_all(t, CONFIGURATION, AUTO_MODE, byte3=1))
            parts.append(self._broadcast(t + 0.002, QUERY_INFO, BATCH))
        if k1 > k0:
            times = self.first + LOOP_S * np.arange(k0, k1, dtype=np.float64)
            on = ctx.session.modules_on(times)
            steps = np.where(on, 2, 3)
            before = self.counter + np.concatenate([[0], np.cumsum(steps)[:-1]])
            self.counter = int((self.counter + steps.sum()) % 256)
            c0 = before % 256
            c1 = (before + 1) % 256
            c2 = (before + np.where(on, 1, 2)) % 256
            rt = times[c0 % 5 == 0]
            parts.append(self._to_all(rt, QUERY_REALTIME, BATCH, byte3=0xAA, value=RTQ_VI_STATUS))
            mode = times[~on & (c1 % 20 == 0)] + 1e-4
            parts.append(self._to_all(mode, CONFIGURATION, AUTO_MODE, byte3=1))
            info = times[c2 % 40 == 0] + 2e-4
            parts.append(self._broadcast(info, QUERY_INFO, BATCH))
        parts.append(self._session_commands(t_lo, t_hi))
        return Requests.concat(parts)

    def _to_all(
        self, times: F64, message: int, signal: int, byte3: int | I64 = 0, value: object = 0
    ) -> Requests:
        parts = []
        for k, address in enumerate(self.ctx.addresses):
            t = times + k * 20e-6
            kind = (message << 16) | signal
            data = payload(signal, t.size, byte3=byte3, value=value)
            parts.append(Requests.build(t, k, kind, can_id(message, 1, address), data))
        return Requests.concat(parts)

    def _broadcast(self, times: F64, message: int, signal: int) -> Requests:
        kind = (message << 16) | signal
        return Requests.build(
            times, BROADCAST, kind, can_id(message, 1, 0), payload(signal, times.size)
        )

    def _session_commands(self, t_lo: float, t_hi: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        n = ctx.modules
        on = ctx.session_times(t_lo, t_hi, m.precharge_at)
        off = ctx.session_times(t_lo, t_hi, m.session_s)
        # An on/off change is followed by the setpoints (tx_thread), also when switching off.
        setpoints = np.sort(
            np.concatenate([on + 0.001, off + 0.001, ctx.setpoint_times(t_lo, t_hi)]),
            kind="stable",
        )
        parts = [
            self._to_all(on, CONTROL, POWER_ON_OFF, byte3=0),
            self._to_all(off, CONTROL, POWER_ON_OFF, byte3=1),
        ]
        volts = np.rint(ctx.target_voltage(setpoints) * 1024)
        amps = np.rint(ctx.session.current(setpoints + 1.0) * 1024 / n)
        for k, address in enumerate(ctx.addresses):
            t = setpoints + 0.002 + k * 40e-6
            v_kind, i_kind = (CONTROL << 16) | OUTPUT_VOLTAGE, (CONTROL << 16) | OUTPUT_CURRENT
            ident = can_id(CONTROL, 1, address)
            parts.append(
                Requests.build(t, k, v_kind, ident, payload(OUTPUT_VOLTAGE, t.size, value=volts))
            )
            parts.append(
                Requests.build(
                    t + 20e-6,
                    k,
                    i_kind,
                    ident,
                    payload(OUTPUT_CURRENT, t.size, byte3=n, value=amps),
                )
            )
        return Requests.concat(parts)

    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        n = self.ctx.modules
        single = np.flatnonzero(req.module != BROADCAST).astype(np.intp)
        broadcast = np.flatnonzero(req.module == BROADCAST).astype(np.intp)
        # A broadcast information query: every module answers with two frames.
        b_rows = np.repeat(broadcast, 2 * n)
        b_modules = np.tile(np.repeat(np.arange(n, dtype=np.int64), 2), broadcast.size)
        b_parts = np.tile(np.array([0, 1], np.int64), broadcast.size * n)
        return (
            np.concatenate([single, b_rows]).astype(np.intp),
            np.concatenate([req.module[single], b_modules]),
            np.concatenate([np.zeros(single.size, np.int64), b_parts]),
        )

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        address = np.asarray(self.ctx.addresses, np.int64)[ans.module]
        message = req.kind >> 16
        data = req.data.copy()  # control/configuration answers echo (UNCERTAIN, see the pack)
        rt = message == QUERY_REALTIME
        data[rt] = payload(VI_STATUS, int(rt.sum()))
        vi = (np.rint(v.current[rt] * 10).astype(np.int64) << 16) | np.rint(
            v.voltage[rt] * 10
        ).astype(np.int64)
        data[rt, 4:8] = be_bytes(vi, 4)
        info = message == QUERY_INFO
        serial = info & (ans.part == 0)
        data[serial] = payload(
            SERIAL, int(serial.sum()), byte2=0x21, byte3=0x05, value=v.serial[serial]
        )
        version = info & (ans.part == 1)
        data[version] = payload(
            VERSION, int(version.sum()), byte2=0x01, byte3=0x02, value=0x01040200
        )
        data[:, 0] = (data[:, 0] & 0x0F) | ((error & 0x0F) << 4).astype(np.uint8)
        data[error != 0, 2:8] = 0
        more = serial.astype(np.int64)
        return can_id(message, 0, address, more), data
