"""The real poller against simulated meters on pseudo-terminals and 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from candiag.modbus.config import PortConfig
from candiag.modbus.poller import DeviceSnapshot, DurationHistogram, PortPoller
from candiag.modbus.profile import find_profile
from candiag.modbus.sim import SimulatedMeterLine, demo_line
from tests.waiting import wait_for

FAST: dict[str, Any] = {
    "timeout": 0.2,
    "retries": 0,
    "gap": 0.0,
    "id_switch_pause": 0.0,
    "reopen_backoff_max": 0.2,
}


def port_config(port: str, devices: list[dict[str, Any]], **overrides: Any) -> PortConfig:
    config = PortConfig.from_mapping(
        {"name": "line", "port": port, **FAST, **overrides, "devices": devices}, "test"
    )
    return config


def by_name(poller: PortPoller) -> dict[str, DeviceSnapshot]:
    return {s.name: s for s in poller.snapshot()}


@pytest.fixture
def line() -> Iterator[SimulatedMeterLine]:
    with SimulatedMeterLine([("sdm630", 1), ("djsf1352", 2), ("isocha425hv", 3)]) as sim:
        yield sim


DEVICES = [
    {"name": "ac", "profile": "sdm630", "unit_id": 1},
    {"name": "dc", "profile": "djsf1352", "unit_id": 2},
    {"name": "imd", "profile": "isocha425hv", "unit_id": 3},
]


def test_one_poll_reads_every_device_in_coalesced_blocks(line: SimulatedMeterLine) -> None:
    poller = PortPoller(port_config(line.port, DEVICES))
    try:
        poller.poll_once()
        snaps = by_name(poller)
    finally:
        poller.stop()
    for name, profile in (("ac", "sdm630"), ("dc", "djsf1352"), ("imd", "isocha425hv")):
        snap = snaps[name]
        assert snap.up and snap.last_success is not None
        assert snap.requests == len(find_profile(profile).blocks)
        assert sum(snap.failures_by_reason.values()) == 0
        assert set(snap.readings) == {q.name for q in find_profile(profile).quantities}
    assert snaps["ac"].requests == 2  # 16 quantities of an SDM630 in two reads
    ac, dc, imd = snaps["ac"].readings, snaps["dc"].readings, snaps["imd"].readings
    assert 220 < ac["voltage_l1"].value < 240 and ac["voltage_l1"].unit == "V"
    assert 49.9 < ac["frequency"].value < 50.1
    assert ac["energy_import"].unit == "J" and ac["energy_import"].value > 1000 * 3.6e6
    assert 390 < dc["voltage"].value < 410 and dc["current"].value > 0
    assert dc["power"].value == pytest.approx(dc["voltage"].value * dc["current"].value, rel=0.01)
    assert (
        4e6 < imd["insulation_resistance"].value < 6e6 and imd["insulation_resistance"].unit == "Ω"
    )
    assert snaps["ac"].latency_count == 2 and snaps["ac"].latency_buckets[-1] == (float("inf"), 2)


@pytest.mark.parametrize("transport", ["rtu+tcp", "tcp"])
def test_gateway_transports(transport: str) -> None:
    with SimulatedMeterLine([("sdm120", 5)], transport=transport) as sim:
        assert sim.port.startswith(f"{transport}://127.0.0.1:")
        poller = PortPoller(
            port_config(sim.port, [{"name": "m", "profile": "sdm120", "unit_id": 5}])
        )
        try:
            poller.poll_once()
            snap = poller.snapshot()[0]
        finally:
            poller.stop()
    assert snap.up and 220 < snap.readings["voltage_l1"].value < 240


def test_energy_increases_with_power(line: SimulatedMeterLine) -> None:
    poller = PortPoller(port_config(line.port, DEVICES[:1]))
    try:
        poller.poll_once()
        first = poller.snapshot()[0].readings["energy_import"].value
        time.sleep(0.3)
        poller.poll_once()
        second = poller.snapshot()[0].readings["energy_import"].value
    finally:
        poller.stop()
    assert second > first


@pytest.mark.parametrize(
    ("fault", "value", "reason"),
    [
        ("silent", True, "timeout"),
        ("bad_crc", True, "crc"),
        ("duplicate", True, "crc"),
        ("reply_as", 9, "wrong_device"),
        ("exception_code", 4, "exception"),
    ],
)
def test_each_failure_is_classified_and_readings_are_withdrawn(
    line: SimulatedMeterLine, fault: str, value: Any, reason: str
) -> None:
    poller = PortPoller(port_config(line.port, DEVICES))
    try:
        poller.poll_once()
        assert by_name(poller)["dc"].readings
        setattr(line.faults(2), fault, value)
        poller.poll_once()
        snaps = by_name(poller)
    finally:
        poller.stop()
    dc = snaps["dc"]
    assert dc.requests == 2
    assert dc.failures_by_reason[reason] == 1
    assert sum(dc.failures_by_reason.values()) == 1
    assert dc.readings == {}, "a failed block must not keep its old readings"
    assert reason in (dc.last_error or "")
    # An exception reply proves the meter is alive (a profile problem, not a link one).
    assert dc.up is (reason == "exception")
    if reason == "exception":
        assert dc.exceptions_by_code == {4: 1}
    assert snaps["ac"].up and snaps["imd"].up and snaps["ac"].readings


@pytest.mark.slow
def test_absent_unit_id_times_out_with_retries(line: SimulatedMeterLine) -> None:
    poller = PortPoller(
        port_config(line.port, [{"name": "ghost", "profile": "sdm120", "unit_id": 42}], retries=2)
    )
    try:
        poller.poll_once()
        snap = poller.snapshot()[0]
    finally:
        poller.stop()
    assert not snap.up and snap.polled and snap.readings == {}
    assert snap.requests == 2 * 3  # two blocks, three attempts each
    assert snap.failures_by_reason["timeout"] == 6


def test_wrong_baud_rate_gets_no_answer() -> None:
    # Parity is not tried: Linux ptys do not keep PARENB, so a mismatch is invisible.
    with SimulatedMeterLine([("sdm630", 1)], baudrate=9600) as sim:
        results = {}
        for baudrate in (19200, 2400, 9600):
            poller = PortPoller(port_config(sim.port, DEVICES[:1], baudrate=baudrate))
            try:
                poller.poll_once()
                results[baudrate] = poller.snapshot()[0]
            finally:
                poller.stop()
    assert results[19200].failures_by_reason["timeout"] == 2 and not results[19200].up
    assert results[2400].failures_by_reason["timeout"] == 2
    assert results[9600].up


def test_a_port_that_cannot_be_opened_is_an_io_failure(tmp_path: Path) -> None:
    not_a_tty = tmp_path / "ttyUSB0"
    not_a_tty.write_text("")
    poller = PortPoller(port_config(str(not_a_tty), DEVICES[:1]))
    try:
        poller.poll_once()
        snap = poller.snapshot()[0]
    finally:
        poller.stop()
    assert not snap.up and snap.failures_by_reason["io"] == 1 and snap.requests == 1
    assert snap.port_error is not None and "cannot open serial port" in snap.port_error


def test_crc_noise_scenario_mixes_ok_and_crc() -> None:
    with SimulatedMeterLine([("sdm630", 1)], scenario="meter_crc_noise", seed=7) as sim:
        poller = PortPoller(port_config(sim.port, DEVICES[:1]))
        try:
            for _ in range(10):
                poller.poll_once()
            snap = poller.snapshot()[0]
        finally:
            poller.stop()
    ok = snap.requests - sum(snap.failures_by_reason.values())
    assert snap.requests == 20 and ok > 0 and snap.failures_by_reason["crc"] > 0
    assert snap.failures_by_reason["timeout"] == 0


def test_meter_reversed_scenario_reports_negative_dc_current() -> None:
    sim, devices = demo_line("meter_reversed")
    with sim:
        poller = PortPoller(port_config(sim.port, devices))
        try:
            poller.poll_once()
            dc = by_name(poller)["dc_meter"]
        finally:
            poller.stop()
    assert dc.readings["current"].value < -50 and dc.readings["voltage"].value > 350


def test_meter_wrong_id_scenario_leaves_the_configured_id_silent() -> None:
    sim, devices = demo_line("meter_wrong_id")
    with sim:
        poller = PortPoller(port_config(sim.port, devices))
        try:
            poller.poll_once()
            snaps = by_name(poller)
        finally:
            poller.stop()
    assert not snaps["ac_meter"].up and snaps["ac_meter"].failures_by_reason["timeout"] == 2
    assert snaps["dc_meter"].up and snaps["imd"].up


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_readings_older_than_three_intervals_are_not_exported(line: SimulatedMeterLine) -> None:
    clock = FakeClock()
    config = port_config(line.port, [{**DEVICES[0], "interval": 1.0}])
    poller = PortPoller(config, clock=clock)
    try:
        poller.poll_once()
        assert poller.snapshot()[0].readings
        clock.now += 3.0  # within 3 intervals + one worst-case poll (0.4 s)
        assert poller.snapshot()[0].readings
        clock.now += 0.5
        snap = poller.snapshot()[0]
    finally:
        poller.stop()
    assert snap.readings == {} and snap.up  # the poller stalled: nothing is fresh


def test_thread_polls_and_survives_the_port_vanishing(line: SimulatedMeterLine) -> None:
    config = port_config(line.port, [{**DEVICES[0], "interval": 0.05}])
    with PortPoller(config) as poller:
        wait_for(lambda: poller.snapshot()[0].requests >= 4)
        assert poller.snapshot()[0].up
        line.vanish()  # the USB adapter is unplugged
        wait_for(lambda: poller.snapshot()[0].port_error is not None)
        snap = poller.snapshot()[0]
        assert not snap.up and snap.readings == {}
        assert snap.failures_by_reason["io"] >= 1
        # Reopening is retried with backoff and says why it fails.
        wait_for(lambda: "does not exist" in (poller.snapshot()[0].port_error or ""))
        line.restore()  # plugged in again, same /dev/serial/by-id path
        wait_for(lambda: poller.snapshot()[0].up and poller.snapshot()[0].port_error is None)
        assert poller.snapshot()[0].readings


def test_thread_is_named_after_the_port_and_stops(line: SimulatedMeterLine) -> None:
    import threading

    poller = PortPoller(port_config(line.port, DEVICES[:1]))
    poller.start()
    try:
        assert "candiag-modbus-line" in {t.name for t in threading.enumerate()}
        with pytest.raises(RuntimeError):
            poller.poll_once()
    finally:
        poller.stop()
    assert "candiag-modbus-line" not in {t.name for t in threading.enumerate()}


def test_snapshot_as_dict_is_json_ready(line: SimulatedMeterLine) -> None:
    import json

    poller = PortPoller(port_config(line.port, DEVICES[1:2]))
    try:
        poller.poll_once()
        data = json.loads(json.dumps(poller.snapshot()[0].as_dict()))
    finally:
        poller.stop()
    assert data["name"] == "dc" and data["up"] is True
    assert data["dc"] is True and data["kind"] == "dc_meter" and data["id"] == 2
    zero = {"timeout": 0, "crc": 0, "exception": 0, "wrong_device": 0, "bad_reply": 0, "io": 0}
    assert data["failures"] == zero
    assert data["readings"]["voltage"]["unit"] == "V"


def test_port_lost_in_the_middle_of_a_poll() -> None:
    """A gateway answers the first block, then drops the connection: one io failure."""
    import socket
    import struct
    import threading

    from candiag.modbus.link import with_crc

    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            request = conn.recv(64)
            count = struct.unpack(">H", request[4:6])[0]
            conn.sendall(with_crc(bytes([1, 4, 2 * count]) + b"\x43\x66\x00\x00" * (count // 2)))
            conn.recv(64)  # the second request; close without answering

    thread = threading.Thread(target=serve, name="test-gateway")
    thread.start()
    port = f"rtu+tcp://127.0.0.1:{server.getsockname()[1]}"
    poller = PortPoller(port_config(port, [{"name": "m", "profile": "sdm120", "unit_id": 1}]))
    try:
        poller.poll_once()
        snap = poller.snapshot()[0]
    finally:
        poller.stop()
        server.close()
        thread.join(5)
    assert snap.requests == 2 and snap.failures_by_reason["io"] == 1
    assert sum(snap.failures_by_reason.values()) == 1
    assert not snap.up and snap.readings == {} and snap.port_error is not None
    assert snap.last_success is not None  # the first block was read


def test_a_slow_reply_times_out_and_its_late_bytes_are_not_taken_for_the_next(
    line: SimulatedMeterLine,
) -> None:
    poller = PortPoller(port_config(line.port, DEVICES[1:2]))
    try:
        line.faults(2).delay_s = 0.35
        poller.poll_once()
        assert poller.snapshot()[0].failures_by_reason["timeout"] == 1
        line.faults(2).delay_s = 0.0
        time.sleep(0.3)  # the late reply lands in the tty's input queue meanwhile
        poller.poll_once()
        snap = poller.snapshot()[0]
    finally:
        poller.stop()
    assert snap.up and snap.readings
    assert snap.failures_by_reason["wrong_device"] == 0 and snap.failures_by_reason["crc"] == 0


def test_duration_histogram_buckets_as_prometheus_does() -> None:
    hist = DurationHistogram(bounds=(0.025, 0.05))
    for seconds in (0.02, 0.025, 0.04, 0.3):
        hist.observe(seconds)  # a duration equal to a bound counts in that bound's bucket
    assert hist.cumulative() == ((0.025, 2), (0.05, 3), (float("inf"), 4))
    assert hist.count == 4 and hist.total == pytest.approx(0.385)
