"""[[modbus.ports]] validation: every problem names its key path, expected and found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from candiag.errors import ConfigError
from candiag.modbus.config import DeviceConfig, PortConfig


def _port(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "port": "/dev/ttyUSB0",
        "devices": [{"name": "ac_meter", "profile": "sdm630", "unit_id": 1}],
    }
    table.update(overrides)
    return table


def _problems(table: dict[str, Any], source: str = "m") -> list[str]:
    with pytest.raises(ConfigError) as info:
        PortConfig.from_mapping(table, source)
    return info.value.problems


def test_a_minimal_port_gets_safe_defaults() -> None:
    config = PortConfig.from_mapping(_port())
    assert (config.name, config.transport, config.baudrate, config.parity) == (
        "ttyUSB0",
        "rtu",
        9600,
        "N",
    )
    assert config.timeout == 0.5 and config.retries == 1 and config.id_switch_pause == 0.2
    assert config.devices == (DeviceConfig("ac_meter", "sdm630", 1),)


def test_transport_follows_the_port_string_and_id_alias() -> None:
    config = PortConfig.from_mapping(
        _port(port="rtu+tcp://10.0.0.5:4001", devices=[{"profile": "djsf1352", "id": 7}])
    )
    assert config.transport == "rtu+tcp" and config.name == "10.0.0.5:4001"
    assert config.devices[0].unit_id == 7 and config.devices[0].name == "djsf1352-7"
    config = PortConfig.from_mapping(_port(port="tcp://127.0.0.1:502", devices=[]))
    assert config.transport == "tcp"


def test_device_unit_id_defaults_to_the_profile_default() -> None:
    config = PortConfig.from_mapping(_port(devices=[{"profile": "isocha425hv"}]))
    assert config.devices[0].unit_id == 3


def test_every_problem_is_reported_with_its_key_path() -> None:
    table = _port(
        baudrate="fast",
        parity="X",
        timeout=0,
        transport="tcp",
        colour="blue",
        devices=[
            {"name": "a", "profile": "sdm630", "unit_id": 248},
            {"name": "b", "profile": "no_such_meter", "unit_id": 2},
            {"name": "c", "unit_id": 3, "interval": -1},
            {"name": "d", "profile": "sdm120", "unit_id": 4},
            {"name": "d", "profile": "sdm120", "unit_id": 4},
            "not a table",
        ],
    )
    problems = _problems(table, "cli")
    text = "\n".join(problems)
    for expected in (
        "cli: colour: expected a top-level key (baudrate, devices, gap, id_switch_pause, name, "
        "parity, port, reopen_backoff_max, retries, stopbits, timeout, transport), found an "
        "unknown key",
        "cli: transport: expected 'rtu' for port '/dev/ttyUSB0', found 'tcp'",
        "cli: baudrate: expected an integer in 300..1000000, found a string 'fast'",
        "cli: parity: expected one of N, E, O, found 'X'",
        "cli: timeout: expected a number in 0.01..30 (seconds), found 0",
        "cli: devices[0].unit_id: expected an integer in 1..247, found 248",
        "cli: devices[1].profile: expected a meter profile name (",
        "cli: devices[2].profile: expected a meter profile name or the path of a .toml profile, "
        "found nothing; this key is required",
        "cli: devices[2].interval: expected a number in 0.05..3600 (seconds), found -1",
        "cli: devices[4].name: expected a name unique on the port, found 'd' (also devices[3])",
        "cli: devices[4].unit_id: expected one device per unit id, found 4 twice (also "
        "devices[3]); two meters with one id garble each other's replies",
        "cli: devices[5]: expected a table, found a string 'not a table'",
    ):
        assert expected in text, f"missing: {expected}\n{text}"
    assert len(problems) == 12


def test_a_profile_with_problems_lists_them_in_its_own_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[meter]\nmodel = "x"\n[quantities.voltage]\nregister = 0\nfunction = 3\n')
    problems = _problems(_port(devices=[{"profile": str(bad), "unit_id": 1}]))
    assert problems == [
        f"m: devices[0].profile: expected a valid meter profile, found '{bad}' with 2 problems "
        "(listed next)",
        f"{bad}:3:1: quantities.voltage.type: expected one of u16, i16, u32, i32, f32, f64, "
        "found nothing; this key is required",
        f"{bad}:3:1: quantities.voltage.unit: expected one of V, kV, mV, A, mA, W, kW, Hz, "
        "Wh, kWh, MWh, Ω, ohm, kΩ, kohm, MΩ, °C, found nothing; this key is required",
    ]


def test_a_profile_asking_for_a_write_is_a_config_problem(tmp_path: Path) -> None:
    evil = tmp_path / "evil.toml"
    evil.write_text(
        '[meter]\nmodel = "x"\n[quantities.voltage]\nregister = 0\nfunction = 6\n'
        'type = "u16"\nunit = "V"\n'
    )
    problems = _problems(_port(devices=[{"profile": str(evil), "unit_id": 1}]))
    assert problems == [
        f"m: devices[0].profile: expected a meter profile that only reads, found '{evil}', "
        "which asks for a write (next)",
        f"{evil}:5:1: quantities.voltage.function: expected 3 (holding registers) or 4 (input "
        "registers), found function code 6, which is not a read; candiag only reads Modbus "
        "(function codes 1-4) and never writes to a meter",
    ]


def test_a_misspelt_profile_name_gets_a_suggestion() -> None:
    (problem,) = _problems(_port(devices=[{"profile": "sdm63", "unit_id": 1}]))
    assert problem.endswith("found 'sdm63'; did you mean 'sdm630'?")


def test_bad_gateway_url() -> None:
    problems = _problems(_port(port="udp://host:1"))
    assert "m: port: expected a tty path, tcp://HOST:PORT or rtu+tcp://HOST:PORT, found " in (
        "\n".join(problems)
    )
