"""Config validation: every kind of problem, with its file, line, column and key path, what was
expected and what was found (the one format of candiag.config.problems)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from candiag.cli import main
from candiag.config.listen import split_listen
from candiag.config.load import load_config, parse_config_text
from candiag.config.model import Config
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
    assert problems == [
        "t.toml:4:1: modbus.ports[0].baudrate: expected an integer in 300..1000000, "
        "found a string 'fast'",
        "t.toml:6:1: modbus.ports[0].devices[0].profile: expected a meter profile name "
        "(djsf1352, isocha425hv, sdm120, sdm630) or the path of a .toml profile, found "
        "'no_such_meter'",
        "t.toml:7:1: modbus.ports[0].devices[0].unit_id: expected an integer in 1..247, found 400",
    ]


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
    assert problems[0] == (
        "t.toml:11:9: can.buses[1].bitrate: expected an integer in 10000..1000000, "
        "found a string 'fast'"
    )
    assert problems[1].startswith("t.toml:14:9: can.buses[2].interface: expected a python-can")
    assert problems[2] == (
        "t.toml:16:9: can.buses[2].bitrate: expected an integer in 10000..1000000, found 5"
    )
    assert problems[3] == (
        "t.toml:18:9: log.level: expected one of debug, info, warning, error, found 'loud'"
    )
    assert len(problems) == 4


def test_unknown_keys_are_problems_with_suggestion() -> None:
    problems = problems_of(BUS + 'bitrat = 250000\n[metric]\nlisten = "x"\n')
    assert problems == [
        "t.toml:7:1: metric: expected a top-level key (can, daemon, diagnosis, log, metrics, "
        "modbus, simulator), found an unknown key; did you mean 'metrics'?",
        "t.toml:6:1: can.buses[0].bitrat: expected a key of can.buses[0] (bitrate, channel, "
        "data_bitrate, dbc, dbc_strict, families, fd, interface, listen_only, name), found an "
        "unknown key; did you mean 'bitrate'?",
    ]


def test_missing_required_keys() -> None:
    problems = problems_of("[[can.buses]]\nname = 'can0'\n")
    # A key that is not in the file is placed at the table it belongs in.
    assert problems[0].startswith("t.toml:1:1: can.buses[0].interface: expected a python-can ")
    assert problems[0].endswith(", found nothing; this key is required")
    assert problems[1] == (
        "t.toml:1:1: can.buses[0].channel: expected a string or integer (e.g. can0, "
        "PCAN_USBBUS1), found nothing; this key is required"
    )


def test_listen_only_false_refused_where_interface_supports_it() -> None:
    text = '[[can.buses]]\nname="p"\ninterface="pcan"\nchannel="PCAN_USBBUS1"\nlisten_only=false\n'
    problems = problems_of(text)
    assert problems == [
        "t.toml:5:1: can.buses[0].listen_only: expected true (candiag never transmits; "
        "interface 'pcan' supports listen-only, so it is always opened listen-only), found false"
    ]
    # socketcan cannot do listen-only from the application: accepted, receive-only.
    config = parse_config_text(BUS + "listen_only = false\n")
    assert config.buses[0].receive_only and not config.buses[0].listen_only


def test_duplicate_bus_names_and_channels() -> None:
    problems = problems_of(BUS + BUS.replace('name = "can0"', 'name = "other"') + BUS)
    assert problems == [
        "t.toml:10:1: can.buses[1].channel: expected a channel not opened twice (can.buses[0] "
        "opens it), found socketcan 'can0'",
        "t.toml:13:1: can.buses[2].name: expected a name not already used (can.buses[0] has "
        "it), found 'can0'",
        "t.toml:15:1: can.buses[2].channel: expected a channel not opened twice (can.buses[0] "
        "opens it), found socketcan 'can0'",
    ]


def test_fd_and_data_bitrate() -> None:
    problems = problems_of(BUS + "data_bitrate = 2000000\n")
    assert problems == [
        "t.toml:6:1: can.buses[0].data_bitrate: expected data_bitrate only with fd = true, "
        "found 2000000"
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
    assert problems == [
        "t.toml:9:1: can.buses[0].families[0].mask: expected an integer in 1..536870911, found 0",
        "t.toml:10:16: can.buses[0].families[0].expected[1]: expected a node address "
        "0..536870911 or a range \"lo-hi\" with lo <= hi and at most 4096 addresses, found '5-3'",
        "t.toml:10:23: can.buses[0].families[0].expected[2]: expected a node address "
        "0..536870911 or a range \"lo-hi\", found a string 'x'",
        "t.toml:10:1: can.buses[0].families[0].expected: expected each address once, "
        "found duplicates [1]",
        "t.toml:11:1: can.buses[0].families[0].timeout_s: expected a number in 0.01..86400 "
        "(seconds), found -1",
        "t.toml:12:21: can.buses[0].families[0].allowed_firmware[0]: expected a non-empty "
        "string, found an integer 3",
    ]


def test_paths_resolve_relative_to_config_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "dbc").mkdir()
    (tmp_path / "dbc" / "a.dbc").write_text('VERSION ""\n')
    (tmp_path / "empty").mkdir()
    config = parse_config_text(BUS + 'dbc = ["dbc"]\n', base_dir=tmp_path)
    assert config.buses[0].dbc == (tmp_path / "dbc",)
    problems = problems_of(BUS + 'dbc = ["missing.dbc", "empty"]\n', base_dir=tmp_path)
    assert problems[0].startswith("t.toml:6:8: can.buses[0].dbc[0]: expected an existing file")
    assert "does not exist" in problems[0]
    assert problems[1].startswith(
        "t.toml:6:23: can.buses[0].dbc[1]: expected a folder containing *.dbc files"
    )
    problems = problems_of('[diagnosis]\nthresholds_file = "nope.toml"\n', base_dir=tmp_path)
    assert problems[0].startswith("t.toml:2:1: diagnosis.thresholds_file: expected an existing")


def test_metrics_listen_parsing() -> None:
    assert split_listen("127.0.0.1:9847") == ("127.0.0.1", 9847)
    assert split_listen("[::1]:0") == ("::1", 0)
    config = parse_config_text('[metrics]\nlisten = "[::1]:9900"\n')
    assert config.metrics.listen == "[::1]:9900"
    for bad in ("9847", ":9847", "host:99999", "a:b"):
        problems = problems_of(f'[metrics]\nlisten = "{bad}"\n')
        assert problems[0].startswith("t.toml:2:1: metrics.listen: expected HOST:PORT"), bad


def test_wrong_types_for_sections() -> None:
    problems = problems_of('can = 3\nmetrics = "x"\n[[modbus.ports]]\ndevices = 1\n')
    assert "t.toml:1:1: can: expected a table, found an integer 3" in problems
    assert "t.toml:2:1: metrics: expected a table, found a string 'x'" in problems
    assert (
        "t.toml:4:1: modbus.ports[0].devices: expected an array of tables "
        "([[modbus.ports.devices]]), found an integer 1"
    ) in problems


def test_simulator_only_on_virtual_buses() -> None:
    text = BUS + '[[can.buses]]\nname = "sim0"\ninterface = "virtual"\nchannel = "x"\n'
    config = parse_config_text(text + '[simulator]\nbuses = ["sim0"]\n')
    assert config.simulator is not None and config.simulator.buses == ("sim0",)
    problems = problems_of(text + '[simulator]\nbuses = ["sim0"]\nscenario = "earthquake"\n')
    # The names come from the data files: the charger's scenarios, then the meters'.
    assert problems[0].startswith("t.toml:12:1: simulator.scenario: expected one of healthy, ")
    assert "jitter, tour, meter_wrong_id," in problems[0]
    assert problems[0].endswith("found 'earthquake'")
    problems = problems_of(text + '[simulator]\nbuses = ["sim0"]\nscenario = "meter_reversd"\n')
    assert problems[0].endswith("found 'meter_reversd'; did you mean 'meter_reversed'?")
    problems = problems_of(text + '[simulator]\nbuses = ["can0", "nope"]\n')
    assert problems[0].startswith(
        't.toml:11:10: simulator.buses[0]: expected a bus with interface = "virtual"'
    )
    assert problems[1].startswith("t.toml:11:18: simulator.buses[1]: expected the name of a")


def test_toml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[log]\nlevel = "info"\nthis is not toml\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:3:6: expected valid TOML, found a TOML syntax ")
    assert str(info.value).endswith("; fix the TOML syntax")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/candiag.toml")
    assert str(info.value) == (
        "/nonexistent/candiag.toml: expected an existing file, found no such file; pass the "
        "path of a candiag TOML config (see config/candiag.example.toml)"
    )


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
    assert f"{bad}:6:1: can.buses[0].bitrate: expected an integer" in err
    assert f"{bad}:7:1: can.buses[0].foo: expected a key of can.buses[0]" in err


def test_config_is_immutable() -> None:
    config: Config = parse_config_text(BUS)
    with pytest.raises(AttributeError):
        config.buses[0].bitrate = 1  # type: ignore[misc]


def test_listen_only_interfaces_match_the_reader() -> None:
    from candiag.config.model import LISTEN_ONLY_INTERFACES
    from candiag.ingest.live import LISTEN_ONLY_KWARGS

    assert frozenset(LISTEN_ONLY_KWARGS) == LISTEN_ONLY_INTERFACES


def test_scenario_names_are_data_both_simulators_agree_on() -> None:
    import tomllib

    from candiag.modbus.sim import SCENARIOS
    from candiag.sim.scenarios import all_scenario_names, meter_scenario_names, scenario_names

    meters = tomllib.loads((REPO / "candiag" / "sim" / "meter_scenarios.toml").read_text())
    assert meter_scenario_names() == list(meters) == list(SCENARIOS)
    assert all(entry["description"] for entry in meters.values())
    names = all_scenario_names()
    assert names[: len(scenario_names())] == scenario_names()
    assert names.count("healthy") == 1 and names[-3:] == meter_scenario_names()[1:]


def test_the_demo_config_with_the_command_lines_changes() -> None:
    from candiag.config.demo import demo_config
    from candiag.errors import InputError

    config = demo_config(scenario="meter_reversed", listen="127.0.0.1:0")
    assert config.simulator is not None and config.simulator.scenario == "meter_reversed"
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 0)
    with pytest.raises(InputError, match=r"unknown scenario 'meter_reversd'; choose one of "):
        demo_config(scenario="meter_reversd")
    with pytest.raises(InputError, match=r"\(did you mean 'meter_reversed'\?\)$"):
        demo_config(scenario="meter_reversd")
    with pytest.raises(InputError, match="--listen 'nowhere'"):
        demo_config(listen="nowhere")
