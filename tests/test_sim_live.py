"""The simulator live on python-can's virtual bus, and the ``candiag simulate`` command."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import can
import numpy as np
import pytest

from candiag.capture import read_capture
from candiag.cli import main
from candiag.sim.charger import ChargerSimulator, SimConfig
from candiag.sim.faults import parse_fault
from candiag.sim.runner import SimulatorRunner, open_sim_bus


def _drain(bus: can.BusABC, seconds: float) -> list[can.Message]:
    out: list[can.Message] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = bus.recv(timeout=0.05)
        if msg is not None:
            out.append(msg)
    return out


def test_runner_delivers_paced_frames_over_virtual_and_stops_cleanly() -> None:
    sender = open_sim_bus("virtual", "sim-live-test")
    receiver = can.Bus(interface="virtual", channel="sim-live-test", ignore_config=True)
    try:
        sim = ChargerSimulator(SimConfig(faults=(parse_fault("error_frames@0:class=ack,rate=20"),)))
        runner = SimulatorRunner(sender, sim, speed=2.0)
        started = time.monotonic()
        runner.start()
        received = _drain(receiver, 1.0)
        runner.stop()
        elapsed = time.monotonic() - started
        assert not runner.running and runner.error is None
        simulated = runner.sim_time - sim.start_time
        # Paced: about speed x wall time, never more than that.
        assert 1.0 < simulated <= 2.0 * elapsed + 0.05
        assert runner.frames_sent >= 200 and runner.send_errors == 0
        assert len(received) >= 0.9 * runner.frames_sent
        ids = {m.arbitration_id for m in received if not m.is_error_frame}
        assert 0x0283F001 in ids and 0x201 in ids
        errors = [m for m in received if m.is_error_frame]
        assert errors and all(m.arbitration_id == 0x0A0 for m in errors)
        assert all(m.is_extended_id == (m.arbitration_id > 0x7FF) for m in received)
    finally:
        sender.shutdown()
        receiver.shutdown()


def test_runner_with_duration_finishes_by_itself() -> None:
    bus = open_sim_bus("virtual", "sim-live-duration")
    try:
        sim = ChargerSimulator()
        with SimulatorRunner(bus, sim, speed=50.0, duration=3.0) as runner:
            assert runner.wait(5.0)
        assert runner.sim_time == pytest.approx(sim.start_time + 3.0)
        expected = len(ChargerSimulator().generate(sim.start_time, sim.start_time + 3.0))
        assert runner.frames_sent == expected
    finally:
        bus.shutdown()


@pytest.mark.parametrize("suffix", [".log", ".log.gz"])
def test_cli_writes_a_parseable_candump_log(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"x{suffix}"
    assert main(["simulate", "--output", str(out), "--duration", "5"]) == 0
    batch, stats = read_capture(out)
    assert stats.malformed == 0 and stats.frames == len(batch) > 1000
    assert batch.channels == ["can0"]
    assert batch.timestamp[0] >= 1_700_000_000.0 and batch.timestamp[-1] < 1_700_000_005.0
    expected = ChargerSimulator().generate(1_700_000_000.0, 1_700_000_005.0)
    np.testing.assert_array_equal(batch.can_id, expected.can_id)
    np.testing.assert_array_equal(batch.data, expected.data)
    if suffix == ".log.gz":
        assert gzip.open(out).readline().startswith(b"(1700000000.")


def test_cli_scenario_with_error_frames_round_trips(tmp_path: Path) -> None:
    out = tmp_path / "bus_off.log"
    args = ["simulate", "-o", str(out), "-d", "20", "--scenario", "bus_off", "--modules", "4"]
    assert main(args) == 0
    batch, stats = read_capture(out)
    assert stats.malformed == 0
    errors = batch.take(batch.is_error)
    assert sorted(set(errors.can_id.tolist())) == [0x040, 0x100, 0x204]
    assert {int(i) & 0xFF for i in batch.can_id[batch.is_extended]} == {1, 2, 3, 4}


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-o", str(tmp_path / "a.log")]) == 2
    assert "--duration" in capsys.readouterr().err
    assert main(["simulate", "-o", str(tmp_path / "b.log"), "-d", "1", "--fault", "zap"]) == 2
    assert "unknown fault kind 'zap'" in capsys.readouterr().err
    assert main(["simulate", "-o", str(tmp_path / "c.txt"), "-d", "1"]) == 2
    assert main(["simulate", "--list-scenarios"]) == 0
    assert "duplicate_address" in capsys.readouterr().out


def test_simulate_refuses_a_real_interface_without_transmit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from candiag.cli import main
    from candiag.cli.simulate import is_virtual_target

    assert main(["simulate", "-i", "pcan", "-c", "PCAN_USBBUS1", "-d", "1"]) == 2
    err = capsys.readouterr().err
    assert "would transmit on pcan:PCAN_USBBUS1" in err and "--transmit" in err
    assert main(["simulate", "-i", "socketcan", "-c", "can0", "-d", "1"]) == 2
    assert is_virtual_target("virtual", "anything")
    assert is_virtual_target("socketcan", "vcan0") and is_virtual_target("socketcan", "vxcan1")
    assert not is_virtual_target("socketcan", "can0")
    assert not is_virtual_target("pcan", "vcan0")
