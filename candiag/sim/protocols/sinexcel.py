"""Sinexcel DC charging modules, after the protocol published by F1atline (no EVerest driver).

Facts (docs/protocols.md, pack ``sinexcel.dbc``): the controller (0x0F0) sends the
comprehensive query (type 0x50, message id 0x0202) to each module (group 0, sub-addresses
1..N); the module answers with six frames: operating status (0x0202), DC and AC
status/fault words (0x0203, 0x0204), output voltage x10 (0x0205), current x100 (0x0206) and
versions (0x020A).  On/off is a bit per module address in message 0x0230, sent to the
global broadcast address (group 31, sub-address 0).  No poll period, timeout or setpoint
scaling is published: the simulator polls every 1000 ms, sends no setpoints and does not
switch modules off on silence (all modelled choices, docs/protocols.md).
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
    CycleProtocol,
    IntpArray,
    Requests,
    Values,
    be_bytes,
    periodic_times,
    rows,
)

CONTROLLER = 0x0F0
QUERY, REPLY, SET, SET_REPLY = 0x50, 0x41, 0x03, 0x43
NO_ERROR = 0xF0
COMPREHENSIVE = 0x0202
ANSWER_IDS = (0x0202, 0x0203, 0x0204, 0x0205, 0x0206, 0x020A)
ON_OFF_1_31 = 0x0230
GLOBAL_BROADCAST = 31 << 6
POLL_S = 1.0  # modelled: no poll period is published
DC_DONE, AC_NORMAL, AC_STANDBY = 0x0007, 3, 1


def can_id(dst: int | I64, src: int | I64) -> U32:
    """Sinexcel identifier: protocol 0x60 28..22, destination 21..11, source 10..0."""
    out = (0x60 << 22) | (np.asarray(dst, np.int64) << 11) | np.asarray(src, np.int64)
    return out.astype(np.uint32)


class Sinexcel(CycleProtocol):
    name = "sinexcel"
    default_modules = 4
    max_modules = 63
    module_current_a = 40.0
    default_error = 0xF2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.first = self.first_cycle(POLL_S)

    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        ctx, m = self.ctx, self.ctx.session.m
        cycles = periodic_times(t_lo, t_hi, self.first, POLL_S)
        parts = []
        for k, address in enumerate(ctx.addresses):
            t = cycles + k * 20e-6
            data = rows(t.size)
            data[:, 0], data[:, 1] = QUERY, NO_ERROR
            data[:, 2:4] = be_bytes(np.full(t.size, COMPREHENSIVE), 2)
            parts.append(Requests.build(t, k, COMPREHENSIVE, can_id(address, CONTROLLER), data))
        mask = sum(1 << (a - 1) for a in ctx.addresses if 1 <= a <= 31)
        for at, value in ((m.precharge_at, mask), (m.session_s, 0)):
            t = ctx.session_times(t_lo, t_hi, at)
            data = rows(t.size)
            data[:, 0], data[:, 1] = SET, NO_ERROR
            data[:, 2:4] = be_bytes(np.full(t.size, ON_OFF_1_31), 2)
            data[:, 4:8] = be_bytes(np.full(t.size, value), 4)
            parts.append(
                Requests.build(
                    t, BROADCAST, ON_OFF_1_31, can_id(GLOBAL_BROADCAST, CONTROLLER), data
                )
            )
        return Requests.concat(parts)

    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        # Each query is answered by six frames; a broadcast setting is not answered (modelled).
        single = np.flatnonzero(req.module != BROADCAST).astype(np.intp)
        k = len(ANSWER_IDS)
        return (
            np.repeat(single, k),
            np.repeat(req.module[single], k),
            np.tile(np.arange(k, dtype=np.int64), single.size),
        )

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        address = np.asarray(self.ctx.addresses, np.int64)[ans.module]
        n = t.size
        ids = np.asarray(ANSWER_IDS, np.int64)[ans.part]
        data = rows(n)
        data[:, 0] = REPLY
        data[:, 1] = np.where(error != 0, error, NO_ERROR)
        data[:, 2:4] = be_bytes(np.where(error != 0, req.kind, ids), 2)
        word = np.zeros(n, np.int64)
        op = ids == 0x0202
        word = np.where(
            op, (np.where(v.on, DC_DONE, 0) << 16) | np.where(v.on, AC_NORMAL, AC_STANDBY), word
        )
        dc1 = (
            np.where(v.on, 0, 1 << 9)
            | np.where(v.duplicate_alarm, 1 << 13, 0)
            | np.where(v.comm_alarm, 1 << 15, 0)
        )
        word = np.where(ids == 0x0203, dc1, word)  # DC status/fault 1 in b6-7, fault 2 (0) in b4-5
        word = np.where(ids == 0x0205, np.rint(v.voltage * 10), word)
        word = np.where(ids == 0x0206, np.rint(v.current * 100), word)
        word = np.where(ids == 0x020A, (0x0102 << 16) | 0x0103, word)
        data[:, 4:8] = be_bytes(word, 4)
        data[error != 0, 4:8] = 0
        return can_id(CONTROLLER, address), data
