"""The physics of the simulated charger: a repeating charging session on a time grid.

The session (pre-charge, contactors closing, voltage and current ramps, ramp
down, contactors opening, idle) is a closed-form function of time; temperatures,
coolant flow and the meter's charge/energy counters need state, so they are
integrated on a fixed grid (``dt`` = 0.1 s) that is extended chunk by chunk and
sampled at frame times with ``np.interp``.  Everything is vectorized over the
grid; first-order lags use a blockwise closed form of the recursion
``y[n] = a*y[n-1] + (1-a)*x[n]`` instead of a Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

GRID_DT = 0.1
# Water-glycol: density kg/L and specific heat J/(kg K), for the coolant temperature rise.
COOLANT_DENSITY = 1.05
COOLANT_HEAT_CAPACITY = 3500.0


@dataclass(frozen=True)
class ChargerModel:
    """Parameters of the reference charger and its charging session (seconds, V, A, degC)."""

    ambient_c: float = 25.0
    battery_start_v: float = 750.0
    battery_end_v: float = 800.0
    internal_resistance_ohm: float = 0.05
    target_current_a: float = 320.0
    efficiency: float = 0.96
    precharge_at: float = 2.0
    dc_plus_at: float = 8.0
    precharge_open_at: float = 8.3
    current_ramp_s: float = 30.0
    ramp_down_s: float = 10.0
    session_s: float = 1200.0
    idle_after_s: float = 30.0
    nominal_flow_lpm: float = 25.0
    idle_pump_percent: float = 30.0
    ac_line_v: float = 400.0
    module_heat_k_per_kw: float = 12.0
    coolant_inlet_k_per_kw: float = 0.8
    max_coolant_rise_k: float = 60.0
    insulation_ohm: float = 3.5e6  # DC+/DC- to earth, as the IMD measures it
    standby_w: float = 180.0  # controller, fans and pump drawn from the grid at idle
    power_factor: float = 0.99  # of the PFC stages, at the AC meter

    @property
    def ac_phase_v(self) -> float:
        return self.ac_line_v / math.sqrt(3.0)

    @property
    def cycle_s(self) -> float:
        return self.session_s + self.idle_after_s


@dataclass(frozen=True)
class Window:
    begin: float
    end: float

    def contains(self, t: F64) -> BoolArray:
        return (t >= self.begin) & (t < self.end)


def any_window(t: F64, windows: Sequence[Window]) -> BoolArray:
    mask = np.zeros(t.shape, bool)
    for w in windows:
        mask |= w.contains(t)
    return mask


class Session:
    """Closed-form session schedule: commands, output voltage and current versus time."""

    def __init__(self, model: ChargerModel, start: float) -> None:
        self.m = model
        self.start = start

    def phase(self, t: F64) -> F64:
        return np.mod(t - self.start, self.m.cycle_s)

    def sessions_begun(self, t: F64, at: float) -> F64:
        """How many times the event at session time ``at`` has happened by ``t``."""
        elapsed = t - self.start
        full = np.floor(elapsed / self.m.cycle_s)
        return full + (np.mod(elapsed, self.m.cycle_s) >= at)

    def dc_minus_closed(self, t: F64) -> BoolArray:
        tau = self.phase(t)
        return (tau >= self.m.precharge_at) & (tau < self.m.session_s + 0.5)

    def precharge_closed(self, t: F64) -> BoolArray:
        tau = self.phase(t)
        return (tau >= self.m.precharge_at) & (tau < self.m.precharge_open_at)

    def dc_plus_closed(self, t: F64) -> BoolArray:
        tau = self.phase(t)
        return (tau >= self.m.dc_plus_at) & (tau < self.m.session_s)

    def modules_on(self, t: F64) -> BoolArray:
        tau = self.phase(t)
        return (tau >= self.m.precharge_at) & (tau < self.m.session_s)

    def current(self, t: F64) -> F64:
        m = self.m
        tau = self.phase(t)
        up_start = m.dc_plus_at + 0.5
        down_end = m.session_s - 0.5
        up = np.clip((tau - up_start) / m.current_ramp_s, 0.0, 1.0)
        down = np.clip((down_end - tau) / m.ramp_down_s, 0.0, 1.0)
        return m.target_current_a * np.minimum(up, down)

    def battery_voltage(self, t: F64) -> F64:
        m = self.m
        progress = np.clip((self.phase(t) - m.dc_plus_at) / (m.session_s - m.dc_plus_at), 0, 1)
        return m.battery_start_v + (m.battery_end_v - m.battery_start_v) * progress

    def voltage(self, t: F64) -> F64:
        """Module output voltage: ramp during pre-charge, battery + I*R while charging."""
        m = self.m
        tau = self.phase(t)
        vbat = self.battery_voltage(t)
        ramp = np.clip((tau - m.precharge_at) / (m.dc_plus_at - m.precharge_at), 0.0, 1.0)
        charging = vbat + m.internal_resistance_ohm * self.current(t)
        decay = np.clip(1.0 - (tau - m.session_s) / 2.0, 0.0, 1.0) * m.battery_end_v
        return np.where(
            tau < m.dc_plus_at, vbat * ramp, np.where(tau < m.session_s, charging, decay)
        )

    def pump_command(self, t: F64) -> F64:
        load = self.current(t) / self.m.target_current_a
        return self.m.idle_pump_percent + (90.0 - self.m.idle_pump_percent) * load


@dataclass(frozen=True)
class Electrical:
    """What meters on the charger read at one instant: the DC output and the AC input.

    The CAN DC meter (IVT-S), the Modbus DC meter and the Modbus AC meter and IMD of the
    demo all read these, so their figures agree: DC power = voltage x current, AC input =
    DC power / efficiency + standby.
    """

    dc_voltage: float
    dc_current: float
    ac_phase_voltage: float
    ac_power_w: float
    power_factor: float
    insulation_ohm: float

    @property
    def dc_power_w(self) -> float:
        return self.dc_voltage * self.dc_current

    @property
    def ac_phase_current(self) -> float:
        return self.ac_power_w / 3.0 / (self.ac_phase_voltage * self.power_factor)


def electrical(session: Session, t: float) -> Electrical:
    """The charger's electrical state at ``t`` (closed form: safe from any thread)."""
    m = session.m
    at = np.array([t])
    volts = float(session.voltage(at)[0])
    amps = float(session.current(at)[0])
    return Electrical(
        dc_voltage=volts,
        dc_current=amps,
        ac_phase_voltage=m.ac_phase_v,
        ac_power_w=volts * amps / m.efficiency + m.standby_w,
        power_factor=m.power_factor,
        insulation_ohm=m.insulation_ohm,
    )


def first_order_lag(x: F64, y_prev: F64, tau: float, dt: float = GRID_DT) -> F64:
    """``y[n] = a*y[n-1] + (1-a)*x[n]`` along axis 0, ``a = exp(-dt/tau)``, vectorized.

    Blocks are short enough that ``a**-block`` stays below 1e8, so the closed
    form keeps full float64 precision.
    """
    a = math.exp(-dt / tau)
    if a < 1e-12:
        return x.copy()
    block = max(1, int(8 * math.log(10) / -math.log(a)))
    out = np.empty_like(x)
    prev = y_prev
    for lo in range(0, x.shape[0], block):
        chunk = x[lo : lo + block]
        j = np.arange(chunk.shape[0], dtype=np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
        weighted = np.cumsum(chunk * a ** (-j), axis=0)
        y = a ** (j + 1) * prev + (1 - a) * a**j * weighted
        out[lo : lo + block] = y
        prev = y[-1]
    return out


@dataclass
class PlantFaults:
    """What the faults change in the physics (windows in absolute time)."""

    no_flow: list[Window]
    meter_reversed: list[Window]
    # Per physical module: windows in which it delivers no power (silent or absent).
    module_off: list[list[Window]]


class Plant:
    """The grid-integrated state of the charger, extended on demand."""

    def __init__(
        self,
        model: ChargerModel,
        session: Session,
        imbalance: F64,
        faults: PlantFaults,
    ) -> None:
        self.m = model
        self.session = session
        self.imbalance = imbalance
        self.faults = faults
        self.start = session.start
        self.reset()

    def reset(self) -> None:
        m = self.m
        n_mod = self.imbalance.shape[0]
        self.k0 = 0
        self.t = np.array([self.start])
        self.v = np.zeros(1)
        self.i_total = np.zeros(1)
        self.i_mod = np.zeros((1, n_mod))
        self.flow = np.full(1, m.nominal_flow_lpm * m.idle_pump_percent / 100.0)
        self.t_in = np.full(1, m.ambient_c)
        self.rise = np.zeros(1)
        self.t_mod = np.full((1, n_mod), m.ambient_c)
        self.t_meter = np.full(1, m.ambient_c)
        self.meter_i = np.zeros(1)
        self.charge_as = np.zeros(1)
        self.energy_j = np.zeros(1)

    def ensure(self, t0: float, t1: float) -> None:
        """Make the grid cover ``[t0, t1]`` (restarting if ``t0`` was already dropped)."""
        if t0 < self.t[0]:
            self.reset()
        k_end = math.ceil((t1 - self.start) / GRID_DT) + 1
        k_last = self.k0 + self.t.shape[0] - 1
        if k_end > k_last:
            self._extend(k_last, k_end)
        keep = max(0, int((t0 - 1.0 - self.start) / GRID_DT) - self.k0)
        if keep:
            self._trim(keep)

    def _extend(self, k_last: int, k_end: int) -> None:
        m = self.m
        t = self.start + np.arange(k_last + 1, k_end + 1, dtype=np.float64) * GRID_DT
        v = self.session.voltage(t)
        i_total = self.session.current(t)
        on = np.stack(
            [~any_window(t, windows) for windows in self.faults.module_off], axis=1
        ).astype(np.float64)
        weights = on * self.imbalance
        total_w = weights.sum(axis=1, keepdims=True)
        share = np.divide(weights, total_w, out=np.zeros_like(weights), where=total_w > 0)
        i_mod = i_total[:, None] * share
        loss_w = (1 - m.efficiency) * v * i_total
        flow_target = m.nominal_flow_lpm * self.session.pump_command(t) / 100.0
        flow_target = np.where(any_window(t, self.faults.no_flow), 0.0, flow_target)
        flow = first_order_lag(flow_target, self.flow[-1], tau=2.0)
        t_in = first_order_lag(
            m.ambient_c + m.coolant_inlet_k_per_kw * loss_w / 1000.0, self.t_in[-1], tau=180.0
        )
        mass_flow = np.maximum(flow, 0.01) / 60.0 * COOLANT_DENSITY
        rise_target = np.minimum(loss_w / (mass_flow * COOLANT_HEAT_CAPACITY), m.max_coolant_rise_k)
        rise = first_order_lag(rise_target, self.rise[-1], tau=20.0)
        module_loss_kw = (1 - m.efficiency) * v[:, None] * i_mod / 1000.0
        t_mod_target = (t_in + rise)[:, None] + m.module_heat_k_per_kw * module_loss_kw
        t_mod = first_order_lag(t_mod_target, self.t_mod[-1], tau=60.0)
        t_meter = first_order_lag(
            m.ambient_c + 4.0 * (i_total / m.target_current_a) ** 2, self.t_meter[-1], tau=300.0
        )
        sign = np.where(any_window(t, self.faults.meter_reversed), -1.0, 1.0)
        meter_i = sign * i_total
        charge = self._integrate(self.charge_as[-1], self.meter_i[-1], meter_i)
        energy = self._integrate(self.energy_j[-1], self.meter_i[-1] * self.v[-1], meter_i * v)
        self.t = np.concatenate([self.t, t])
        self.v = np.concatenate([self.v, v])
        self.i_total = np.concatenate([self.i_total, i_total])
        self.i_mod = np.concatenate([self.i_mod, i_mod])
        self.flow = np.concatenate([self.flow, flow])
        self.t_in = np.concatenate([self.t_in, t_in])
        self.rise = np.concatenate([self.rise, rise])
        self.t_mod = np.concatenate([self.t_mod, t_mod])
        self.t_meter = np.concatenate([self.t_meter, t_meter])
        self.meter_i = np.concatenate([self.meter_i, meter_i])
        self.charge_as = np.concatenate([self.charge_as, charge])
        self.energy_j = np.concatenate([self.energy_j, energy])

    @staticmethod
    def _integrate(acc: float, y_prev: float, y: F64) -> F64:
        """Trapezoid cumulative integral continuing from ``acc`` (value ``y_prev`` before)."""
        left = np.concatenate([[y_prev], y[:-1]])
        return acc + np.cumsum((left + y) * 0.5 * GRID_DT)

    def _trim(self, keep: int) -> None:
        self.k0 += keep
        for name in (
            "t", "v", "i_total", "i_mod", "flow", "t_in", "rise", "t_mod",
            "t_meter", "meter_i", "charge_as", "energy_j",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name)[keep:])

    def sample(self, name: str, t: F64) -> F64:
        grid: F64 = getattr(self, name)
        return np.asarray(np.interp(t, self.t, grid), np.float64)

    def sample_module(self, name: str, t: F64, module: npt.NDArray[np.intp]) -> F64:
        """Per-module quantity of the module each frame comes from."""
        grid: F64 = getattr(self, name)
        pos = np.clip((t - self.t[0]) / GRID_DT, 0, self.t.shape[0] - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, self.t.shape[0] - 1)
        frac = pos - lo
        out: F64 = grid[lo, module] * (1 - frac) + grid[hi, module] * frac
        return out
