"""Collectors: exact metric names and labels from a snapshot, bounded ids, promtool-clean."""

from __future__ import annotations

import subprocess

from external_tools import require_tool
from prometheus_client import CollectorRegistry, generate_latest

from candiag.metrics.collectors import CandiagCollector
from candiag.metrics.snapshot import (
    ERROR_CLASSES,
    BusSnapshot,
    FindingSnapshot,
    HistogramSnapshot,
    MeterReading,
    ModbusDeviceSnapshot,
    NodeSnapshot,
    SignalValue,
    Snapshot,
)
from candiag.modbus.poller import DurationHistogram


def full_snapshot(n_modules: int = 2, n_signals: int = 3) -> Snapshot:
    hist = DurationHistogram()
    for d in (0.02, 0.04, 0.3, 7.0):
        hist.observe(d)
    duration = HistogramSnapshot(buckets=hist.cumulative(), total=hist.total, count=hist.count)
    signals = tuple(
        SignalValue(
            f"PM_Status_{m}", f"Sig{s}", str(m), ("V", "A", "°C", "%", "rpm", "")[s % 6], float(s)
        )
        for m in range(n_modules)
        for s in range(n_signals)
    )
    bus = BusSnapshot(
        name="can0",
        up=True,
        state="error_warning",
        frames={"data": 1000, "error": 12},
        id_frames={"0x0283F001": 900, "0x123": 100},
        error_frames={"ack": 10, "bus_error": 2},
        bus_off_total=1,
        restarts_total=2,
        load_ratio={"10s": 0.31, "60s": 0.3},
        error_window={"60s": {"ack": 4}},
        tx_errors=96,
        rx_errors=0,
        dropped={"socket": 3},
        nodes=(
            NodeSnapshot("power_module", "1", True, 1_700_000_000.0, "DCDC_Major=1 DCDC_Minor=4"),
            NodeSnapshot("power_module", "2", False, None, None),
        ),
        firmware_mismatch={"power_module": True},
        signals=signals,
    )
    meter = ModbusDeviceSnapshot(
        port="/dev/ttyUSB0",
        device="ac_meter",
        up=True,
        requests=50,
        failures={"timeout": 2},
        exceptions={"2": 1},
        last_success=1_700_000_001.0,
        duration=duration,
        readings=(
            MeterReading("voltage", 230.1, "l1"),
            MeterReading("current", 5.0, "total"),
            MeterReading("power", 1150.0, "total"),
            MeterReading("frequency", 50.0, ""),
            MeterReading("energy", 3.6e6, "", "import"),
            MeterReading("temperature", 31.0),
        ),
    )
    down = ModbusDeviceSnapshot(
        port="/dev/ttyUSB0",
        device="imd",
        up=False,
        readings=(MeterReading("insulation", 5e6),),
    )
    return Snapshot(
        version="0.1.0",
        buses=(bus,),
        modbus=(meter, down),
        findings=(FindingSnapshot("CAN-NODE-SILENT", "warning", "can0/power_module/2"),),
        loop_last_run=1_700_000_002.0,
    )


def registry_for(snap: Snapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(CandiagCollector(lambda: snap))
    return registry


def test_can_metrics_have_interface_names_and_values() -> None:
    r = registry_for(full_snapshot())
    g = r.get_sample_value
    assert g("candiag_build_info", {"version": "0.1.0"}) == 1
    assert g("candiag_can_bus_up", {"bus": "can0"}) == 1
    assert g("candiag_can_frames_total", {"bus": "can0", "kind": "data"}) == 1000
    assert g("candiag_can_frames_total", {"bus": "can0", "kind": "remote"}) == 0
    assert g("candiag_can_id_frames_total", {"bus": "can0", "id": "0x0283F001"}) == 900
    assert g("candiag_can_error_frames_total", {"bus": "can0", "class": "ack"}) == 10
    assert g("candiag_can_bus_off_total", {"bus": "can0"}) == 1
    assert g("candiag_can_bus_restarts_total", {"bus": "can0"}) == 2
    assert g("candiag_can_bus_load_ratio", {"bus": "can0", "window": "10s"}) == 0.31
    assert g("candiag_can_bus_load_ratio", {"bus": "can0", "window": "3600s"}) == 0
    assert g("candiag_can_bus_state", {"bus": "can0", "state": "error_warning"}) == 1
    assert g("candiag_can_bus_state", {"bus": "can0", "state": "down"}) == 0
    assert (
        g("candiag_can_error_frames_window", {"bus": "can0", "class": "ack", "window": "60s"}) == 4
    )
    assert g("candiag_can_controller_tx_errors", {"bus": "can0"}) == 96
    assert g("candiag_can_frames_dropped_total", {"bus": "can0", "source": "socket"}) == 3
    assert g("candiag_can_frames_dropped_total", {"bus": "can0", "source": "interface"}) == 0
    node1 = {"bus": "can0", "family": "power_module", "node": "1"}
    assert g("candiag_can_node_up", node1) == 1
    assert g("candiag_can_node_up", {**node1, "node": "2"}) == 0
    assert g("candiag_can_node_last_seen_timestamp_seconds", node1) == 1_700_000_000
    assert g("candiag_can_node_info", {**node1, "firmware": "DCDC_Major=1 DCDC_Minor=4"}) == 1
    assert g("candiag_can_firmware_mismatch", {"bus": "can0", "family": "power_module"}) == 1
    assert (
        g(
            "candiag_finding_active",
            {"code": "CAN-NODE-SILENT", "severity": "warning", "subject": "can0/power_module/2"},
        )
        == 1
    )
    assert g("candiag_loop_last_run_timestamp_seconds") == 1_700_000_002


def test_all_error_classes_and_windows_preinitialised() -> None:
    r = registry_for(Snapshot(version="x", buses=(BusSnapshot(name="b", up=False, state="down"),)))
    for cls in ERROR_CLASSES:
        assert r.get_sample_value("candiag_can_error_frames_total", {"bus": "b", "class": cls}) == 0
        for w in ("10s", "60s", "300s", "3600s"):
            labels = {"bus": "b", "class": cls, "window": w}
            assert r.get_sample_value("candiag_can_error_frames_window", labels) == 0
    assert r.get_sample_value("candiag_can_bus_state", {"bus": "b", "state": "down"}) == 1
    assert r.get_sample_value("candiag_can_bus_up", {"bus": "b"}) == 0
    # Unknown TEC/REC are absent, not 0.
    assert r.get_sample_value("candiag_can_controller_tx_errors", {"bus": "b"}) is None


def test_signals_by_unit_with_base_unit_conversion() -> None:
    snap = Snapshot(
        version="x",
        buses=(
            BusSnapshot(
                name="can0",
                up=True,
                state="error_active",
                signals=(
                    SignalValue("M", "Vout", "3", "V", 400.0),
                    SignalValue("M", "Iout", "3", "mA", 1500.0),
                    SignalValue("M", "Temp", "3", "°C", 41.0),
                    SignalValue("M", "P", "", "kW", 30.0),
                    SignalValue("M", "Duty", "", "%", 55.0),
                    SignalValue("M", "Fan", "", "rpm", 1200.0),
                    SignalValue("M", "Count", "", "", 7.0),
                ),
            ),
        ),
    )
    g = registry_for(snap).get_sample_value
    lab = {"bus": "can0", "message": "M", "node": "3", "role": ""}
    assert g("candiag_can_signal_volts", {**lab, "signal": "Vout"}) == 400
    assert g("candiag_can_signal_amperes", {**lab, "signal": "Iout"}) == 1.5
    assert g("candiag_can_signal_celsius", {**lab, "signal": "Temp"}) == 41
    lab["node"] = ""
    assert g("candiag_can_signal_watts", {**lab, "signal": "P"}) == 30_000
    assert g("candiag_can_signal_ratio", {**lab, "signal": "Duty"}) == 0.55
    assert g("candiag_can_signal_value", {**lab, "signal": "Fan", "unit": "rpm"}) == 1200
    assert g("candiag_can_signal_value", {**lab, "signal": "Count", "unit": ""}) == 7


def test_modbus_and_meter_metrics_down_device_withdrawn() -> None:
    g = registry_for(full_snapshot()).get_sample_value
    key = {"port": "/dev/ttyUSB0", "device": "ac_meter"}
    assert g("candiag_modbus_up", key) == 1
    assert g("candiag_modbus_up", {**key, "device": "imd"}) == 0
    assert g("candiag_modbus_requests_total", key) == 50
    assert g("candiag_modbus_request_failures_total", {**key, "reason": "timeout"}) == 2
    assert g("candiag_modbus_request_failures_total", {**key, "reason": "crc"}) == 0
    assert g("candiag_modbus_exception_replies_total", {**key, "code": "2"}) == 1
    assert g("candiag_modbus_last_success_timestamp_seconds", key) == 1_700_000_001
    assert g("candiag_modbus_request_duration_seconds_count", key) == 4
    assert g("candiag_modbus_request_duration_seconds_bucket", {**key, "le": "0.025"}) == 1
    assert g("candiag_modbus_request_duration_seconds_bucket", {**key, "le": "0.05"}) == 2
    assert g("candiag_modbus_request_duration_seconds_bucket", {**key, "le": "+Inf"}) == 4
    assert abs((g("candiag_modbus_request_duration_seconds_sum", key) or 0) - 7.36) < 1e-9
    assert g("candiag_meter_voltage_volts", {"device": "ac_meter", "phase": "l1"}) == 230.1
    assert g("candiag_meter_frequency_hertz", {"device": "ac_meter", "phase": ""}) == 50
    assert (
        g("candiag_meter_energy_joules_total", {"device": "ac_meter", "direction": "import"})
        == 3.6e6
    )
    assert g("candiag_meter_temperature_celsius", {"device": "ac_meter"}) == 31
    # The IMD is down: its (stale) reading must not be exported.
    assert g("candiag_meter_insulation_resistance_ohms", {"device": "imd"}) is None


def test_no_created_series_and_snapshot_taken_per_scrape() -> None:
    calls: list[int] = []

    def source() -> Snapshot:
        calls.append(1)
        return full_snapshot()

    registry = CollectorRegistry()
    registry.register(CandiagCollector(source))
    assert calls == []  # registering does not snapshot
    text = generate_latest(registry).decode()
    assert len(calls) == 1
    assert "_created" not in text


def test_promtool_check_metrics_on_full_scrape() -> None:
    promtool = require_tool("promtool")
    text = generate_latest(registry_for(full_snapshot(8, 30)))
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""
