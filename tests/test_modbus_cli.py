"""``candiag modbus read|scan`` end to end against simulated meters on a pty."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from candiag.cli import main
from candiag.modbus.sim import SimulatedMeterLine, demo_line


@pytest.fixture
def line() -> Iterator[SimulatedMeterLine]:
    with SimulatedMeterLine([("sdm630", 1), ("djsf1352", 2)], baudrate=9600) as sim:
        yield sim


def test_read_prints_a_table_with_units(
    line: SimulatedMeterLine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["modbus", "read", "--port", line.port, "--profile", "sdm630"]) == 0
    out = capsys.readouterr().out
    assert "Eastron SDM630 v2 at unit id 1" in out and "answers" in out
    assert "voltage_l1" in out and "1234.5 kWh" in out


def test_read_json(line: SimulatedMeterLine, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["modbus", "read", "--port", line.port, "--profile", "djsf1352", "--id", "2", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"]["unit_id"] == 2 and data["device"]["up"] is True
    assert data["device"]["model"] == "Acrel DJSF1352-RN"
    assert data["readings"]["voltage"]["unit"] == "V"
    assert 390 < data["readings"]["voltage"]["value"] < 410
    assert data["errors"] == []


def test_read_of_a_silent_id_exits_non_zero_with_the_errors(
    line: SimulatedMeterLine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["modbus", "read", "--port", line.port, "--profile", "sdm630", "--id", "9"]
    assert main([*argv, "--timeout", "0.1", "--retries", "0", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["device"]["up"] is False and data["readings"] == {}
    assert len(data["errors"]) == 2 and all(e.startswith("timeout") for e in data["errors"])


def test_read_of_a_missing_port_is_a_link_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["modbus", "read", "--port", "/dev/ttyNOPE9", "--profile", "sdm630"]
    assert main(argv) == 3
    assert "serial port /dev/ttyNOPE9 does not exist" in capsys.readouterr().err


def test_read_of_an_unknown_profile_is_an_input_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modbus", "read", "--port", "/dev/null", "--profile", "nope"]) == 2
    assert "unknown meter profile 'nope'" in capsys.readouterr().err


def test_scan_finds_ids_settings_and_fitting_profiles(
    line: SimulatedMeterLine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["modbus", "scan", "--port", line.port, "--ids", "1-4", "--baudrates", "19200", "9600"]
    assert main([*argv, "--parities", "N", "--timeout", "0.1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    found = {(h["baudrate"], h["unit_id"]): h for h in data["hits"]}
    assert set(found) == {(9600, 1), (9600, 2)}
    assert "sdm630" in found[(9600, 1)]["fits"] and "djsf1352" not in found[(9600, 1)]["fits"]
    assert found[(9600, 2)]["fits"] == ["djsf1352"]
    assert data["complete"] is True


def test_scan_finds_a_meter_at_the_wrong_id(capsys: pytest.CaptureFixture[str]) -> None:
    sim, _devices = demo_line("meter_wrong_id")
    with sim:
        argv = ["modbus", "scan", "--port", sim.port, "--ids", "1,11", "--baudrates", "9600"]
        assert main([*argv, "--parities", "N", "--timeout", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "1 device(s) answer" in out and "sdm630" in out


def test_scan_time_is_bounded(line: SimulatedMeterLine, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["modbus", "scan", "--port", line.port, "--ids", "10-247", "--baudrates", "9600"]
    assert main([*argv, "--timeout", "0.05", "--max-time", "0.3", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["complete"] is False and data["elapsed_s"] < 2.0 and data["hits"] == []


def test_scan_rejects_bad_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modbus", "scan", "--port", "/dev/null", "--ids", "0-300"]) == 2
    assert "--ids" in capsys.readouterr().err


def test_scan_over_modbus_tcp(capsys: pytest.CaptureFixture[str]) -> None:
    with SimulatedMeterLine([("isocha425hv", 3)], transport="tcp") as sim:
        argv = ["modbus", "scan", "--port", sim.port, "--ids", "1-5", "--timeout", "0.1"]
        assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(h["baudrate"], h["unit_id"], h["fits"]) for h in data["hits"]] == [
        (None, 3, ["isocha425hv"])
    ]
