"""Config checks against the DBC files: family names and expected addresses vs the mask."""

from __future__ import annotations

from pathlib import Path

import pytest

from candiag.cli import main
from candiag.daemon.config import parse_config_text
from candiag.daemon.validate import check_against_dbc
from candiag.errors import ConfigError

BUS = '[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "can0"\n'


def test_reference_families_accepted() -> None:
    config = parse_config_text(
        BUS + '[[can.buses.families]]\nname = "power_module"\nexpected = ["1-8"]\n'
        '[[can.buses.families]]\nname = "imd"\nexpected = [0]\n'
    )
    dbs = check_against_dbc(config)
    assert "power_module" in dbs["can0"].families


def test_unknown_family_and_address_beyond_mask() -> None:
    config = parse_config_text(
        BUS
        + '[[can.buses.families]]\nname = "power_modules"\n'
        + '[[can.buses.families]]\nname = "power_module"\nexpected = [1, 256]\n'
        + '[[can.buses.families]]\nname = "imd"\nexpected = [0, 1]\n'
        + '[[can.buses.families]]\nname = "contactor"\nmask = 0x3\nexpected = [3, 4]\n'
    )
    with pytest.raises(ConfigError) as info:
        check_against_dbc(config)
    problems = info.value.problems
    assert problems[0].startswith("can.buses[0].families: a mask override makes two messages")
    problems = problems[1:]
    assert problems[0].startswith(
        "can.buses[0].families[0].name: expected a node family of the DBC files (contactor, cooling, dc_meter, imd, power_module), found 'power_modules'"
    )
    assert problems[1] == (
        "can.buses[0].families[1].expected: expected addresses 0..255 (address mask 0xFF), found [256]"
    )
    assert problems[2] == (
        "can.buses[0].families[2].expected: expected addresses 0..0 (address mask 0x0), found [1]"
    )
    assert problems[3] == (
        "can.buses[0].families[3].expected: expected addresses 0..3 (address mask 0x3), found [4]"
    )


def test_mask_override_within_range() -> None:
    config = parse_config_text(
        BUS + '[[can.buses.families]]\nname = "power_module"\nmask = 0x3\nexpected = [3, 4]\n'
    )
    with pytest.raises(ConfigError) as info:
        check_against_dbc(config)
    assert info.value.problems == [
        "can.buses[0].families[0].expected: expected addresses 0..3 (address mask 0x3), found [4]"
    ]


def test_broken_dbc_is_a_config_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.dbc").write_text('VERSION ""\nBO_ abc Broken: 8 X\n')
    config = parse_config_text(BUS + 'dbc = ["bad.dbc"]\n', base_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        check_against_dbc(config)
    assert info.value.problems[0].startswith("can.buses[0].dbc: ")
    assert "bad.dbc" in info.value.problems[0]


def test_check_config_cli_runs_dbc_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(BUS + '[[can.buses.families]]\nname = "nope"\n')
    assert main(["check-config", str(path)]) == 2
    assert "families[0].name: expected a node family" in capsys.readouterr().err


def test_web_config_is_checked_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: not-a-bcrypt-hash\n")
    path = tmp_path / "c.toml"
    path.write_text(BUS + '[metrics]\nweb_config_file = "web.yml"\n')
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "web.yml" in err and "prometheus" in err
