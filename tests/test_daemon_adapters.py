"""Adapters: Modbus poller state to metric snapshots, profile quantity names to meter series."""

from __future__ import annotations

from candiag.live.adapters import meter_reading, modbus_device_snapshot
from candiag.metrics.snapshot import MeterReading
from candiag.modbus.poller import DeviceSnapshot, Reading


def test_quantity_names_map_to_agreed_series() -> None:
    assert meter_reading("voltage_l1", 230.0) == MeterReading("voltage", 230.0, phase="l1")
    assert meter_reading("power_total", 5.0) == MeterReading("power", 5.0, phase="total")
    assert meter_reading("frequency", 50.0) == MeterReading("frequency", 50.0, phase="")
    assert meter_reading("energy_import", 1.0) == MeterReading("energy", 1.0, direction="import")
    assert meter_reading("insulation_resistance", 1e6) == MeterReading("insulation", 1e6)
    assert meter_reading("temperature", 30.0) == MeterReading("temperature", 30.0)
    # No agreed series for these: not exported rather than mislabelled.
    assert meter_reading("voltage_l1_earth", 1.0) is None
    assert meter_reading("energy_import_l1", 1.0) is None
    assert meter_reading("bogus", 1.0) is None


def device(up: bool) -> DeviceSnapshot:
    return DeviceSnapshot(
        name="ac_meter",
        port="rs485",
        profile="sdm630",
        unit_id=1,
        up=up,
        polled=True,
        last_success=1000.0,
        requests=10,
        failures_by_reason={"timeout": 1, "crc": 0, "exception": 0, "wrong_device": 0, "io": 0},
        exceptions_by_code={2: 3},
        latency_buckets=((0.05, 4), (float("inf"), 9)),
        latency_sum=1.5,
        latency_count=9,
        latency_last=0.02,
        latency_max=0.3,
        readings={
            "voltage_l1": Reading(230.0, "V", 999.0),
            "voltage_l1_earth": Reading(1.0, "V", 999.0),
        },
        last_error=None,
        port_error=None,
    )


def test_device_snapshot_conversion() -> None:
    snap = modbus_device_snapshot(device(True))
    assert (snap.port, snap.device, snap.up, snap.requests) == ("rs485", "ac_meter", True, 10)
    assert snap.failures["timeout"] == 1 and snap.exceptions == {"2": 3}
    assert snap.duration is not None and snap.duration.count == 9 and snap.duration.total == 1.5
    assert snap.readings == (MeterReading("voltage", 230.0, phase="l1"),)
    assert modbus_device_snapshot(device(False)).readings == ()
