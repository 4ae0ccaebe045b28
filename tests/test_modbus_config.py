"""[[modbus.ports]] validation: every problem names its key path, expected and found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from candiag.modbus.config import DeviceConfig, PortConfig, from_mapping


def _port(**overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "port": "/dev/ttyUSB0",
        "devices": [{"name": "ac_meter", "profile": "sdm630", "unit_id": 1}],
    }
    table.update(overrides)
    return table


def test_a_minimal_port_gets_safe_defaults() -> None:
    config, problems = PortConfig.from_mapping(_port(), "modbus.ports[0]")
    assert problems == [] and config is not None
    assert (config.name, config.transport, config.baudrate, config.parity) == (
        "ttyUSB0",
        "rtu",
        9600,
        "N",
    )
    assert config.timeout == 0.5 and config.retries == 1 and config.id_switch_pause == 0.2
    assert config.devices == (DeviceConfig("ac_meter", "sdm630", 1),)


def test_transport_follows_the_port_string_and_id_alias() -> None:
    config, problems = from_mapping(
        _port(port="rtu+tcp://10.0.0.5:4001", devices=[{"profile": "djsf1352", "id": 7}]),
        "modbus.ports[1]",
    )
    assert problems == [] and config is not None
    assert config.transport == "rtu+tcp" and config.name == "10.0.0.5:4001"
    assert config.devices[0].unit_id == 7 and config.devices[0].name == "djsf1352-7"
    config, _ = from_mapping(_port(port="tcp://127.0.0.1:502", devices=[]), "p")
    assert config is not None and config.transport == "tcp"


def test_device_unit_id_defaults_to_the_profile_default() -> None:
    config, _ = from_mapping(_port(devices=[{"profile": "isocha425hv"}]), "p")
    assert config is not None and config.devices[0].unit_id == 3


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
    config, problems = PortConfig.from_mapping(table, "modbus.ports[2]")
    assert config is None
    text = "\n".join(problems)
    for expected in (
        "modbus.ports[2].baudrate: expected an integer 300..1000000, found 'fast'",
        "modbus.ports[2].parity: expected one of N, E, O, found 'X'",
        "modbus.ports[2].timeout: expected a number of seconds",
        "modbus.ports[2].transport: expected 'rtu' for port '/dev/ttyUSB0', found 'tcp'",
        "modbus.ports[2].colour: expected one of",
        "modbus.ports[2].devices[0].unit_id: expected an integer 1..247, found 248",
        "modbus.ports[2].devices[1].profile: expected a valid meter profile",
        "modbus.ports[2].devices[2].profile: expected a string, found nothing",
        "modbus.ports[2].devices[2].interval",
        "modbus.ports[2].devices[4].name: expected a name unique on the port",
        "modbus.ports[2].devices[4].unit_id: expected one device per unit id",
        "modbus.ports[2].devices[5]: expected a table",
    ):
        assert expected in text, f"missing: {expected}\n{text}"
    assert len(problems) == 12


def test_a_profile_asking_for_a_write_is_a_config_problem(tmp_path: Path) -> None:
    evil = tmp_path / "evil.toml"
    evil.write_text(
        '[meter]\nmodel = "x"\n[quantities.voltage]\nregister = 0\nfunction = 6\n'
        'type = "u16"\nunit = "V"\n'
    )
    _, problems = from_mapping(_port(devices=[{"profile": str(evil), "unit_id": 1}]), "m")
    assert len(problems) == 1
    assert "m.devices[0].profile" in problems[0]
    assert "function code 6 is not a read" in problems[0]


def test_bad_gateway_url() -> None:
    _, problems = from_mapping(_port(port="udp://host:1"), "m")
    assert any(p.startswith("m.port: expected a tty path") for p in problems)
