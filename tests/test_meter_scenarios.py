"""Meter scenarios: the real poller against simulated meters, then the diagnosis engine.

For each meter scenario of the demo, the most severe finding names the injected cause;
the tour's meter steps switch those faults on and off on a running line.
"""

from __future__ import annotations

from typing import Any

import pytest

from candiag.diagnosis.engine import DiagnosisEngine
from candiag.live.simulation import MeterTour
from candiag.modbus.config import PortConfig
from candiag.modbus.poller import PortPoller
from candiag.modbus.sim import demo_line
from tests.bus_reports import bus_report

FAST = {"timeout": 0.2, "retries": 0, "gap": 0.0, "id_switch_pause": 0.0}
# The CAN side as the daemon reports it: modules delivering current to the vehicle.
CHARGING_BUS = bus_report({"name": "can0", "up": True, "currents": {"modules_output_a": 120.0}})
EXPECTED = {
    "meter_wrong_id": ("MODBUS_NO_ANSWER", "ac_meter"),
    # Noise on the line garbles every device's replies (the meters and the IMD alike):
    # whichever collected the most corrupted replies is listed first.
    "meter_crc_noise": ("MODBUS_CRC", "modbus/"),
    "meter_reversed": ("METER_REVERSED", "dc_meter"),
}


def poller_for(port: str, devices: list[dict[str, Any]]) -> PortPoller:
    config = PortConfig.from_mapping(
        {"name": "meters", "port": port, **FAST, "devices": devices}, "test"
    )
    return PortPoller(config)


def diagnose(poller: PortPoller, polls: int) -> list[Any]:
    engine = DiagnosisEngine()
    for i in range(polls):
        poller.poll_once()
        engine.update(float(i), [CHARGING_BUS], [s.as_dict() for s in poller.snapshot()])
    return engine.findings()


@pytest.mark.parametrize(
    "scenario",
    # meter_wrong_id waits out a timeout at every poll: seconds, so it runs with the slow ones.
    [
        pytest.param(s, marks=pytest.mark.slow) if s == "meter_wrong_id" else s
        for s in sorted(EXPECTED)
    ],
)
def test_meter_scenario_top_finding_names_the_cause(scenario: str) -> None:
    code, subject = EXPECTED[scenario]
    line, devices = demo_line(scenario)
    with line:
        poller = poller_for(line.port, devices)
        try:
            findings = diagnose(poller, 12)
        finally:
            poller.stop()
    assert findings, f"{scenario}: no finding"
    assert findings[0].code == code and subject in findings[0].subject, [
        (f.code, f.subject) for f in findings
    ]


def test_healthy_meters_give_no_finding() -> None:
    line, devices = demo_line("healthy")
    with line:
        poller = poller_for(line.port, devices)
        try:
            assert diagnose(poller, 8) == []
        finally:
            poller.stop()


def test_tour_switches_meter_faults_on_and_off() -> None:
    line, devices = demo_line("healthy")
    line.start()
    tour = MeterTour(line, t0=0.0)
    try:
        steps = {s.scenario: s for s in tour.steps}
        assert set(steps) == set(EXPECTED)
        poller = poller_for(line.port, devices)
        try:
            tour.apply(steps["meter_wrong_id"].start + 1)
            poller.poll_once()
            assert not {s.name: s for s in poller.snapshot()}["ac_meter"].up
            tour.apply(steps["meter_reversed"].start + 1)
            poller.poll_once()
            snaps = {s.name: s for s in poller.snapshot()}
            assert snaps["ac_meter"].up  # the earlier step's fault was undone
            assert snaps["dc_meter"].readings["current"].value < 0
            tour.apply(steps["meter_reversed"].end + 1)
            poller.poll_once()
            assert {s.name: s for s in poller.snapshot()}["dc_meter"].readings["current"].value > 0
        finally:
            poller.stop()
    finally:
        tour.stop()  # never started: stops the line only
