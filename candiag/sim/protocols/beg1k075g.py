"""Infy BEG1K075G: the EVerest InfyPower_BEG1K075G driver's controller and its one module.

Facts (docs/protocols.md, pack ``infy_beg1k075g.dbc``): one frame every 50 ms, a cycle of
read 0x1001 and 0x1002 (broadcast 0x3F), read 0x1110 and 0x1111 (group 0), write on/off
0x1110, write V 0x1001 and I 0x1002 when the voltage setpoint is above 150 V, write walk-in
0x1122 and working mode 0x2110 (all broadcast).  The writes are the keep-alive; EVerest has
no offline detection and the module's own timeout is not published, so no self-off.  One
module (address 0, UNCERTAIN); it answers reads and writes with the register, errors in
the identifier.

Why a loop over cycles: whether a cycle has 7 or 9 steps depends on the setpoint at its
start, so each cycle's start depends on the one before; at 20 frames/s this is not a hot
path.
"""

from __future__ import annotations

import numpy as np

from candiag.sim.protocols.engine import (
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
from candiag.sim.protocols.infy import DEV_SINGLE, can_id

CONTROLLER = 0xF0
READ, WRITE = 0x23, 0x24
DEV_GROUP = 0x0B  # a group of modules (DEV_SINGLE: one module, as Infy V1.13)
BROADCAST_ADDRESS, GROUP = 0x3F, 0x00
DC_VOLTAGE, DC_CURRENT, STATUS, INVERTER, WALK_IN, MODE = (
    0x1001,
    0x1002,
    0x1110,
    0x1111,
    0x1122,
    0x2110,
)
ON, OFF, DISABLED, RECTIFIER = 0xA0, 0xA1, 0xA0, 0xA0
STEP_S = 0.050  # usleep(50000) after every frame
WRITE_KIND = 0x10000  # kind = register | WRITE_KIND for writes


class BEG1K075G(CycleProtocol):
    name = "beg1k075g"
    default_modules = 1
    max_modules = 1
    module_current_a = 25.0
    default_error = 2  # CommandInvalid (identifier error code)
    max_error = 7

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.next_cycle = self.first_cycle(STEP_S)

    @staticmethod
    def addresses(n: int) -> list[int]:
        return [0]

    def _steps(self, t: float) -> list[tuple[int, int, int, int]]:
        """(command, register, device, value) of the cycle starting at ``t``."""
        tt = np.array([t])
        on = bool(self.ctx.session.modules_on(tt)[0])
        voltage = float(self.ctx.target_voltage(tt)[0]) if on else 0.0
        current = float(self.ctx.session.current(tt + 1.0)[0])
        steps = [
            (READ, DC_VOLTAGE, DEV_SINGLE, 0),
            (READ, DC_CURRENT, DEV_SINGLE, 0),
            (READ, STATUS, DEV_GROUP, 0),
            (READ, INVERTER, DEV_GROUP, 0),
            (WRITE, STATUS, DEV_SINGLE, ON if on else OFF),
        ]
        if voltage > 150.0:
            steps += [
                (WRITE, DC_VOLTAGE, DEV_SINGLE, round(voltage * 1000)),
                (WRITE, DC_CURRENT, DEV_SINGLE, round(current * 1000)),
            ]
        steps += [(WRITE, WALK_IN, DEV_SINGLE, DISABLED), (WRITE, MODE, DEV_SINGLE, RECTIFIER)]
        return steps

    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        made: list[float] = []
        steps: list[tuple[int, int, int, int]] = []
        t = self.next_cycle
        while t < t_hi:
            for step in self._steps(t):
                made.append(t)
                steps.append(step)
                t += STEP_S
        self.next_cycle = t
        if not made:
            return Requests.empty()
        times = np.array(made)
        cmd, register, dev, value = (
            np.array(column, np.int64) for column in zip(*steps, strict=True)
        )
        data = rows(times.size)
        data[:, 0:2] = be_bytes(register, 2)
        data[:, 4:8] = be_bytes(value, 4)
        dst = np.where(dev == DEV_GROUP, GROUP, BROADCAST_ADDRESS)
        kind = register | np.where(cmd == WRITE, WRITE_KIND, 0)
        # Broadcast and group 0 both reach the one module (index 0).
        return Requests.build(times, 0, kind, can_id(cmd, dst, CONTROLLER, dev=dev), data)

    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        index = np.arange(len(req), dtype=np.intp)  # the one module answers every request
        return index, np.zeros(index.size, np.int64), np.zeros(index.size, np.int64)

    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        register = req.kind & 0xFFFF
        write = (req.kind & WRITE_KIND) != 0
        n = t.size
        data = rows(n)
        data[:, 0:2] = be_bytes(register, 2)
        value = np.zeros(n, np.int64)
        value = np.where(register == DC_VOLTAGE, np.rint(v.voltage * 1000), value)
        value = np.where(register == DC_CURRENT, np.rint(v.current * 1000), value)
        data[:, 4:8] = be_bytes(value, 4)
        status = register == STATUS
        # status2 b5 bit1 id_repeat; status1 b6: bit0 dc_side_off, bit7 communication interrupt
        data[status, 5] = np.where(v.duplicate_alarm[status], 0x02, 0)
        data[status, 6] = np.where(v.on[status], 0, 0x01) | np.where(v.comm_alarm[status], 0x80, 0)
        data[status, 4] = 0
        data[register == INVERTER, 4:8] = 0
        data[write, 4:8] = 0  # write answers: register only (UNCERTAIN, see the pack)
        data[error != 0, 4:8] = 0
        cmd = np.where(write, WRITE, READ)
        return can_id(cmd, CONTROLLER, 0, error), data
