"""Config checks against the DBC files: family names and expected addresses vs the mask."""

from __future__ import annotations

from pathlib import Path

import pytest

from candiag.cli import main
from candiag.config.check import check_config
from candiag.config.load import parse_config_text
from candiag.decode.dbc import ChargerDatabase
from candiag.errors import ConfigError

BUS = '[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "can0"\n'
METRICS = '[metrics]\nlisten = "127.0.0.1:0"\n'


def databases(text: str, base_dir: Path | None = None) -> dict[str, ChargerDatabase]:
    """The databases :func:`check_config` loads for the config ``text`` (file ``c.toml``)."""
    config = parse_config_text(METRICS + text, source="c.toml", base_dir=base_dir)
    return dict(check_config(config).databases)


def problems_of(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        databases(text, base_dir)
    return info.value.problems


def test_reference_families_accepted() -> None:
    dbs = databases(
        BUS + '[[can.buses.families]]\nname = "power_module"\nexpected = ["1-8"]\n'
        '[[can.buses.families]]\nname = "imd"\nexpected = [0]\n'
    )
    assert "power_module" in dbs["can0"].families


def test_unknown_family_and_address_beyond_mask() -> None:
    problems = problems_of(
        BUS
        + '[[can.buses.families]]\nname = "power_modules"\n'
        + '[[can.buses.families]]\nname = "power_module"\nexpected = [1, 256]\n'
        + '[[can.buses.families]]\nname = "imd"\nexpected = [0, 1]\n'
        + '[[can.buses.families]]\nname = "contactor"\nmask = 0x3\nexpected = [3, 4]\n'
    )
    assert problems[0].startswith(
        "c.toml:7:1: can.buses[0].families: expected mask overrides that keep every message's "
        "identifier its own, found two messages sharing one ("
    )
    assert problems[1:] == [
        "c.toml:8:1: can.buses[0].families[0].name: expected a node family of the DBC files "
        "(contactor, cooling, dc_meter, imd, power_module), found 'power_modules'; check "
        "CandiagNodeFamily in the DBC or the name",
        "c.toml:11:1: can.buses[0].families[1].expected: expected addresses 0..255 (address "
        "mask 0xFF), found [256]",
        "c.toml:14:1: can.buses[0].families[2].expected: expected addresses 0..0 (address "
        "mask 0x0), found [1]",
        "c.toml:18:1: can.buses[0].families[3].expected: expected addresses 0..3 (address "
        "mask 0x3), found [4]",
    ]


def test_mask_override_within_range() -> None:
    problems = problems_of(
        BUS + '[[can.buses.families]]\nname = "power_module"\nmask = 0x3\nexpected = [3, 4]\n'
    )
    assert problems == [
        "c.toml:10:1: can.buses[0].families[0].expected: expected addresses 0..3 (address "
        "mask 0x3), found [4]"
    ]


def test_broken_dbc_is_a_config_problem(tmp_path: Path) -> None:
    (tmp_path / "bad.dbc").write_text('VERSION ""\nBO_ abc Broken: 8 X\n')
    (problem,) = problems_of(BUS + 'dbc = ["bad.dbc"]\n', base_dir=tmp_path)
    assert problem.startswith("c.toml:7:1: can.buses[0].dbc: expected DBC files candiag can ")
    assert f"found {tmp_path / 'bad.dbc'}:2:" in problem


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
