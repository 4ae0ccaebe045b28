"""The demo's figures come from one simulated charger: the CAN DC meter's frames, the Modbus
DC meter, AC meter and IMD read the same DC output, AC input and insulation."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from candiag.config.model import BusConfig
from candiag.decode.dbc import load_reference_database
from candiag.decode.decoder import BatchDecoder
from candiag.live.simulation import start_charger
from candiag.modbus.profile import find_profile
from candiag.modbus.sim import SimulatedMeter, demo_charger, demo_line
from candiag.sim.charger import ChargerSimulator, SimConfig
from candiag.sim.plant import ChargerModel
from candiag.sim.runner import running_charger

MODEL = ChargerModel()


def _meter(profile: str) -> SimulatedMeter:
    return SimulatedMeter(find_profile(profile), 1, charger=demo_charger())


def test_can_dc_meter_frames_carry_the_charger_electrical_state() -> None:
    sim = ChargerSimulator(SimConfig(start_time=1000.0))
    batch = sim.generate(1000.0, 1060.0)  # precharge, ramp, full current
    result = BatchDecoder(load_reference_database()).decode(batch)
    for message, signal, field in (
        ("Meter_Voltage1", "Voltage1", "dc_voltage"),
        ("Meter_Current", "Current", "dc_current"),
    ):
        decoded = result.messages[message]
        expected = np.array([getattr(sim.electrical(float(t)), field) for t in decoded.timestamp])
        got = decoded.signals[signal].astype(float)
        # the meter's resolution (mV, mA) and its noise (sigma 0.05 V, 0.02 A)
        assert np.abs(got - expected).max() < 0.3, message
    full = sim.electrical(1059.0)
    assert full.dc_current == pytest.approx(MODEL.target_current_a)
    assert full.ac_power_w == pytest.approx(
        full.dc_voltage * full.dc_current / MODEL.efficiency + MODEL.standby_w
    )


def test_modbus_meters_read_the_running_charger() -> None:
    channel = f"one-charger-{uuid.uuid4().hex[:8]}"
    charger = start_charger(BusConfig(name="b", interface="virtual", channel=channel), "healthy")
    try:
        running = running_charger()
        assert running is not None and running is charger.runner.sim
        now = time.time() + 30.0  # 30 s into the session: current ramping up
        e = running.electrical(now)
        assert 0 < e.dc_current < MODEL.target_current_a and e.dc_voltage > 700
        dc = _meter("djsf1352").model.values(now)
        assert dc["voltage"] == pytest.approx(e.dc_voltage, abs=0.06)
        assert dc["current"] == pytest.approx(e.dc_current)
        assert dc["power"] == pytest.approx(dc["voltage"] * dc["current"])
        ac = _meter("sdm630").model.values(now)
        # AC input = DC output / efficiency + standby, split over three phases
        assert ac["power_total"] == pytest.approx(e.ac_power_w)
        assert ac["power_total"] == pytest.approx(
            e.dc_voltage * e.dc_current / MODEL.efficiency + MODEL.standby_w
        )
        phase_current = ac["power_l1"] / (ac["voltage_l1"] * MODEL.power_factor)
        assert ac["current_l1"] == pytest.approx(phase_current)
        assert ac["voltage_l1"] == pytest.approx(MODEL.ac_line_v / 3**0.5, abs=0.6)
        imd = _meter("isocha425hv").model.values(now)
        assert imd["insulation_resistance"] == pytest.approx(MODEL.insulation_ohm, rel=0.011)
        assert imd["voltage"] == pytest.approx(e.dc_voltage, abs=0.06)
    finally:
        charger.stop()
    assert running_charger() is None


def test_a_demo_line_alone_reads_a_charger_at_full_current() -> None:
    assert running_charger() is None
    line, _devices = demo_line("healthy")  # not started: no server, just the models
    dc = next(m for m in line.meters.values() if m.profile.kind == "dc_meter")
    values = dc.model.values(time.time())
    assert values["current"] == pytest.approx(MODEL.target_current_a)
    assert MODEL.battery_start_v < values["voltage"] < MODEL.battery_end_v + 20


def test_reversed_modbus_meter_reads_the_charger_current_negated() -> None:
    line, _ = demo_line("meter_reversed")
    dc = next(m for m in line.meters.values() if m.profile.kind == "dc_meter")
    assert dc.model.values(time.time())["current"] == pytest.approx(-MODEL.target_current_a)
