"""Config validation: every kind of problem, key paths, unknown keys, TOML syntax positions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from candiag.cli import main
from candiag.daemon.config import Config, load_config, parse_config_text, parse_listen
from candiag.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

BUS = """
[[can.buses]]
name = "can0"
interface = "socketcan"
channel = "can0"
"""


def problems_of(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(textwrap.dedent(text), source="t.toml", base_dir=base_dir)
    return info.value.problems


def test_example_config_is_valid_and_safe() -> None:
    config = load_config(REPO / "config" / "candiag.example.toml")
    assert [b.name for b in config.buses] == ["can0"]
    bus = config.buses[0]
    assert bus.listen_only is True
    assert bus.bitrate == 125_000
    assert [f.name for f in bus.families] == ["power_module", "contactor"]
    assert bus.families[0].expected == (1, 2, 3, 4)
    assert config.metrics.host == "127.0.0.1" and config.metrics.port == 9847
    assert config.summary() == "1 bus, 1 Modbus device"
    assert [p.name for p in config.modbus_ports] == ["rs485"]
    assert config.modbus_ports[0].devices[0].profile == "sdm630"


def test_modbus_problems_have_key_paths() -> None:
    problems = problems_of(
        """
        [[modbus.ports]]
        port = "/dev/ttyUSB0"
        baudrate = "fast"
        [[modbus.ports.devices]]
        profile = "no_such_meter"
        unit_id = 400
        """
    )
    joined = "\n".join(problems)
    assert "modbus.ports[0].baudrate" in joined
    assert "modbus.ports[0].devices[0].profile" in joined
    assert "modbus.ports[0].devices[0].unit_id" in joined


def test_defaults_are_safe() -> None:
    config = parse_config_text(BUS)
    assert config.buses[0].listen_only is True
    assert config.buses[0].receive_only is True
    assert config.metrics.listen == "127.0.0.1:9847"
    assert config.log.level == "info"
    assert config.daemon.processing_interval_s == 0.25
    assert config.simulator is None
    assert parse_config_text("").summary() == "0 buses, 0 Modbus devices"


def test_all_problems_listed_with_key_paths() -> None:
    problems = problems_of(
        BUS
        + """
        [[can.buses]]
        name = "can1"
        interface = "socketcan"
        channel = "can1"
        bitrate = "fast"
        [[can.buses]]
        name = "can2"
        interface = "nosuchif"
        channel = "can2"
        bitrate = 5
        [log]
        level = "loud"
        """
    )
    joined = "\n".join(problems)
    assert (
        "can.buses[1].bitrate: expected an integer in 10000..1000000, found a string 'fast'"
        in joined
    )
    assert "can.buses[2].interface: expected a python-can interface" in joined
    assert "can.buses[2].bitrate: expected an integer in 10000..1000000, found 5" in joined
    assert "log.level: expected one of debug, info, warning, error, found 'loud'" in joined
    assert len(problems) == 4


def test_unknown_keys_are_problems_with_suggestion() -> None:
    problems = problems_of(BUS + 'bitrat = 250000\n[metric]\nlisten = "x"\n')
    assert any(
        p.startswith("can.buses[0].bitrat: unknown key (did you mean 'bitrate'?)") for p in problems
    )
    assert any(p.startswith("metric: unknown key (did you mean 'metrics'?)") for p in problems)


def test_missing_required_keys() -> None:
    problems = problems_of("[[can.buses]]\nname = 'can0'\n")
    assert "can.buses[0].interface: missing; this key is required" in problems
    assert "can.buses[0].channel: missing; this key is required" in problems


def test_listen_only_false_refused_where_interface_supports_it() -> None:
    text = '[[can.buses]]\nname="p"\ninterface="pcan"\nchannel="PCAN_USBBUS1"\nlisten_only=false\n'
    problems = problems_of(text)
    assert len(problems) == 1 and problems[0].startswith("can.buses[0].listen_only: expected true")
    # socketcan cannot do listen-only from the application: accepted, receive-only.
    config = parse_config_text(BUS + "listen_only = false\n")
    assert config.buses[0].receive_only and not config.buses[0].listen_only


def test_duplicate_bus_names_and_channels() -> None:
    problems = problems_of(BUS + BUS.replace('name = "can0"', 'name = "other"') + BUS)
    assert any(
        p.startswith("can.buses[2].name: expected a name not already used") for p in problems
    )
    assert any(
        p.startswith("can.buses[1].channel: expected a channel not opened twice") for p in problems
    )


def test_fd_and_data_bitrate() -> None:
    problems = problems_of(BUS + "data_bitrate = 2000000\n")
    assert problems == [
        "can.buses[0].data_bitrate: expected data_bitrate only with fd = true, found 2000000"
    ]
    config = parse_config_text(BUS + "fd = true\ndata_bitrate = 2000000\n")
    assert config.buses[0].fd and config.buses[0].data_bitrate == 2_000_000


def test_families_addresses_masks_timeouts() -> None:
    config = parse_config_text(
        BUS
        + """
        [[can.buses.families]]
        name = "power_module"
        mask = 0xFF
        expected = [1, "3-5", 9]
        timeout_s = 2.5
        allowed_firmware = ["A=1"]
        """.replace("        ", "")
    )
    fam = config.buses[0].families[0]
    assert fam.expected == (1, 3, 4, 5, 9)
    assert fam.mask == 0xFF and fam.timeout_s == 2.5 and fam.allowed_firmware == ("A=1",)

    problems = problems_of(
        BUS
        + """
        [[can.buses.families]]
        name = "power_module"
        mask = 0
        expected = [1, "5-3", "x", 1]
        timeout_s = -1
        allowed_firmware = [3]
        [[can.buses.families]]
        name = "power_module"
        """.replace("        ", "")
    )
    joined = "\n".join(problems)
    assert "can.buses[0].families[0].mask: expected an integer in 1..536870911, found 0" in joined
    assert "can.buses[0].families[0].expected[1]:" in joined
    assert "can.buses[0].families[0].expected[2]:" in joined
    assert (
        "can.buses[0].families[0].expected: expected each address once, found duplicates [1]"
        in joined
    )
    assert (
        "can.buses[0].families[0].timeout_s: expected a number in 0.01..86400, found -1" in joined
    )
    assert "can.buses[0].families[0].allowed_firmware[0]: expected a non-empty string" in joined


def test_paths_resolve_relative_to_config_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "dbc").mkdir()
    (tmp_path / "dbc" / "a.dbc").write_text('VERSION ""\n')
    (tmp_path / "empty").mkdir()
    config = parse_config_text(BUS + 'dbc = ["dbc"]\n', base_dir=tmp_path)
    assert config.buses[0].dbc == (tmp_path / "dbc",)
    problems = problems_of(BUS + 'dbc = ["missing.dbc", "empty"]\n', base_dir=tmp_path)
    assert problems[0].startswith("can.buses[0].dbc[0]: expected an existing file")
    assert "does not exist" in problems[0]
    assert problems[1].startswith("can.buses[0].dbc[1]: expected a folder containing *.dbc files")
    problems = problems_of('[diagnosis]\nthresholds_file = "nope.toml"\n', base_dir=tmp_path)
    assert problems[0].startswith("diagnosis.thresholds_file: expected an existing file")


def test_metrics_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:9847") == ("127.0.0.1", 9847)
    assert parse_listen("[::1]:0") == ("::1", 0)
    config = parse_config_text('[metrics]\nlisten = "[::1]:9900"\n')
    assert config.metrics.listen == "[::1]:9900"
    for bad in ("9847", ":9847", "host:99999", "a:b"):
        problems = problems_of(f'[metrics]\nlisten = "{bad}"\n')
        assert problems[0].startswith("metrics.listen: expected HOST:PORT"), bad


def test_wrong_types_for_sections() -> None:
    problems = problems_of('can = 3\nmetrics = "x"\n[[modbus.ports]]\ndevices = 1\n')
    assert "can: expected a table, found an integer 3" in problems
    assert "metrics: expected a table, found a string 'x'" in problems
    assert any(
        p.startswith("modbus.ports[0].devices: expected an array of tables") for p in problems
    )


def test_simulator_only_on_virtual_buses() -> None:
    text = BUS + '[[can.buses]]\nname = "sim0"\ninterface = "virtual"\nchannel = "x"\n'
    config = parse_config_text(text + '[simulator]\nbuses = ["sim0"]\n')
    assert config.simulator is not None and config.simulator.buses == ("sim0",)
    problems = problems_of(text + '[simulator]\nbuses = ["sim0"]\nscenario = "earthquake"\n')
    assert problems[0].startswith("simulator.scenario: expected one of healthy, ")
    assert problems[0].endswith("found 'earthquake'")
    problems = problems_of(text + '[simulator]\nbuses = ["can0", "nope"]\n')
    assert problems[0].startswith('simulator.buses[0]: expected a bus with interface = "virtual"')
    assert problems[1].startswith("simulator.buses[1]: expected the name of a configured")


def test_toml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[log]\nlevel = "info"\nthis is not toml\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:3:")
    assert "TOML syntax error" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config("/nonexistent/candiag.toml")


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text(BUS + BUS.replace("can0", "can1"))
    assert main(["check-config", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "OK: 2 buses, 0 Modbus devices"

    bad = tmp_path / "bad.toml"
    bad.write_text(BUS + "bitrate = 1\nfoo = 2\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err
    assert "can.buses[0].bitrate" in err and "can.buses[0].foo: unknown key" in err


def test_config_is_immutable() -> None:
    config: Config = parse_config_text(BUS)
    with pytest.raises(AttributeError):
        config.buses[0].bitrate = 1  # type: ignore[misc]


def test_listen_only_interfaces_match_the_reader() -> None:
    from candiag.daemon.config import LISTEN_ONLY_INTERFACES
    from candiag.ingest.live import LISTEN_ONLY_KWARGS

    assert frozenset(LISTEN_ONLY_KWARGS) == LISTEN_ONLY_INTERFACES
