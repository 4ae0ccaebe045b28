"""Every config-like input reports its problems in one format (docs/config-errors.md):

    FILE[:LINE:COL]: [KEY.PATH: ]expected WHAT, found WHAT[; HOW TO FIX]

A table of bad inputs per loader (candiag.toml, its Modbus ports and devices, meter profiles,
health thresholds, diagnosis overrides, the YAML web config), each refused with the expected
line, every other line of the error in the same shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from candiag.config.load import load_config
from candiag.diagnosis.engine import load_rulebook
from candiag.errors import ConfigError, ProfileError
from candiag.health.thresholds import load_thresholds
from candiag.metrics.webconfig import load_web_config
from candiag.modbus.profile import load_profile

LOADERS: dict[str, Callable[[Path], Any]] = {
    "config": load_config,
    "modbus": load_config,
    "profile": load_profile,
    "thresholds": load_thresholds,
    "diagnosis": load_rulebook,
    "web": load_web_config,
}
BUS = '[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "can0"\n'
PORT = '[[modbus.ports]]\nport = "/dev/ttyUSB0"\n'
DEVICE = '[[modbus.ports.devices]]\nprofile = "sdm630"\n'
PROFILE = '[meter]\nmodel = "M"\n[quantities.voltage]\nregister = 0\nfunction = 4\ntype = "f32"\n'

# (loader, content, a line the error must hold; {file} is the file's path)
CASES: list[tuple[str, str | bytes, str]] = [
    # candiag.toml
    ("config", BUS + "bitrat = 250000\n",
     "{file}:5:1: can.buses[0].bitrat: expected a key of can.buses[0] (bitrate, channel, "
     "data_bitrate, dbc, dbc_strict, families, fd, interface, listen_only, name), found an "
     "unknown key; did you mean 'bitrate'?"),
    ("config", BUS + 'bitrate = "fast"\n',
     "{file}:5:1: can.buses[0].bitrate: expected an integer in 10000..1000000, found a string "
     "'fast'"),
    ("config", "[[can.buses]]\nname = 'can0'\ninterface = 'virtual'\n",
     "{file}:1:1: can.buses[0].channel: expected a string or integer (e.g. can0, "
     "PCAN_USBBUS1), found nothing; this key is required"),
    ("config", '[daemon]\nprocessing_interval_s = inf\n',
     "{file}:2:1: daemon.processing_interval_s: expected a number in 0.01..10 (seconds), "
     "found inf"),
    ("config", '[log]\nlevel = "debg"\n',
     "{file}:2:1: log.level: expected one of debug, info, warning, error, found 'debg'; did "
     "you mean 'debug'?"),
    ("config", BUS + "[[can.buses.families]]\nname = 'pm'\nmask = 99999999999999999999\n",
     "{file}:7:1: can.buses[0].families[0].mask: expected a 64-bit integer, found a larger one"),
    ("config", "[log\n", "{file}:1:5: expected valid TOML, found a TOML syntax error (Expected "
     "']' at the end of a table declaration); fix the TOML syntax"),
    ("config", b"[log]\nlevel = '\xff'\n",
     "{file}:2:10: expected UTF-8 text, found byte 0xff; save the file as UTF-8"),
    # [[modbus.ports]] and [[modbus.ports.devices]]
    ("modbus", PORT + "parity = 'X'\n" + DEVICE,
     "{file}:3:1: modbus.ports[0].parity: expected one of N, E, O, found 'X'"),
    ("modbus", PORT + "timeout = nan\n" + DEVICE,
     "{file}:3:1: modbus.ports[0].timeout: expected a number in 0.01..30 (seconds), found nan"),
    ("modbus", PORT + "baud = 9600\n" + DEVICE,
     "{file}:3:1: modbus.ports[0].baud: expected a key of modbus.ports[0] (baudrate, devices, "
     "gap, id_switch_pause, name, parity, port, reopen_backoff_max, retries, stopbits, "
     "timeout, transport), found an unknown key; did you mean 'baudrate'?"),
    ("modbus", PORT + DEVICE + "unit_id = 0\n",
     "{file}:5:1: modbus.ports[0].devices[0].unit_id: expected an integer in 1..247, found 0"),
    ("modbus", PORT + '[[modbus.ports.devices]]\nprofile = "sdm620"\n',
     "{file}:4:1: modbus.ports[0].devices[0].profile: expected a meter profile name "
     "(djsf1352, isocha425hv, sdm120, sdm630) or the path of a .toml profile, found 'sdm620'; "
     "did you mean 'sdm630'?"),
    ("modbus", PORT + "[[modbus.ports.devices]]\nunit_id = 3\n",
     "{file}:3:1: modbus.ports[0].devices[0].profile: expected a meter profile name or the "
     "path of a .toml profile, found nothing; this key is required"),
    # meter profiles
    ("profile", PROFILE + 'unit = "volts"\n',
     "{file}:7:1: quantities.voltage.unit: expected one of V, kV, mV, A, mA, W, kW, Hz, Wh, "
     "kWh, MWh, Ω, ohm, kΩ, kohm, MΩ, °C, found 'volts'"),
    ("profile", PROFILE + 'unit = "V"\nscale = nan\n',
     "{file}:8:1: quantities.voltage.scale: expected a finite, non-zero number, found a number "
     "nan"),
    ("profile", PROFILE + 'unit = "V"\nregistr = 1\n',
     "{file}:8:1: quantities.voltage.registr: expected a key of quantities.voltage (exponent_"
     "offset, exponent_register, function, note, register, scale, type, uncertain, unit, "
     "word_order), found an unknown key; did you mean 'register'?"),
    ("profile", '[meter]\nmodel = "M"\n[defaults]\nunit_id = 300\n[quantities.voltage]\n'
     'register = 0\nfunction = 4\ntype = "f32"\nunit = "V"\n',
     "{file}:4:1: defaults.unit_id: expected an integer in 1..247, found 300"),
    ("profile", '[meter]\n[quantities.voltage]\nregister = 0\nfunction = 4\ntype = "f32"\n'
     'unit = "V"\n',
     "{file}:1:1: meter.model: expected a non-empty string, found nothing; this key is "
     "required"),
    # health thresholds
    ("thresholds", "[cycle]\np95_factor = 0.5\n",
     "{file}:2:1: cycle.p95_factor: expected a number in 1..100 (a multiple of the declared "
     "period), found 0.5"),
    ("thresholds", "[cycle]\nmin_intervals = 2.5\n",
     "{file}:2:1: cycle.min_intervals: expected an integer in 1..1000000 (measured periods), "
     "found a number 2.5"),
    ("thresholds", "[cycles]\nmin_intervals = 2\n",
     "{file}:1:1: cycles: expected a section (cycle), found an unknown key; did you mean "
     "'cycle'?"),
    ("thresholds", "[cycle]\nmean_tolerance = -inf\n",
     "{file}:2:1: cycle.mean_tolerance: expected a number in 0..10 (a fraction of the declared "
     "period), found -inf"),
    # diagnosis overrides
    ("diagnosis", "[thresholds]\nbus_load_warning = 70\n",
     "{file}:2:1: thresholds.bus_load_warning: expected a number in 0.01..1 (a load ratio, 0-1, "
     "not percent), found 70"),
    ("diagnosis", "[engine]\nraise_after = 1\n",
     "{file}:2:1: engine.raise_after: expected a key of engine (clear_after_s, raise_after_s), "
     "found an unknown key; did you mean 'raise_after_s'?"),
    ("diagnosis", "[rules.CAN_ERR_ACK]\nseverity = 'warn'\n",
     "{file}:2:1: rules.CAN_ERR_ACK.severity: expected one of critical, warning, info, found "
     "'warn'; did you mean 'warning'?"),
    ("diagnosis", "[thresholds]\nburst_errors_per_s = 2.5\n",
     "{file}:2:1: thresholds.burst_errors_per_s: expected a whole number in 1..1000000 "
     "(protocol errors in one second), found 2.5"),
    # the YAML web config
    ("web", "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS14\n",
     "{file}:4:3: tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13 "
     "(one word, no list), found 'TLS14'; did you mean 'TLS13'?"),
    ("web", "basic_auth_user:\n  a: b\n",
     "{file}:1:1: basic_auth_user: expected a top-level key (basic_auth_users, "
     "tls_server_config), found an unknown key; did you mean 'basic_auth_users'?"),
    ("web", "tls_server_config:\n  cert_file: a.crt\n",
     "{file}:1:1: tls_server_config.key_file: expected the path of a PEM file, found nothing; "
     "this key is required"),
    ("web", "basic_auth_users:\n  a: [1\n",
     "{file}:3:1: expected valid YAML, found a YAML syntax error (expected ',' or ']', but got "
     "'<stream end>'); fix the YAML syntax"),
    ("web", b"basic_auth_users:\n  a: \xfe\n",
     "{file}:2:6: expected UTF-8 text, found byte 0xfe; save the file as UTF-8"),
]  # fmt: skip


def _shape(file: Path) -> re.Pattern[str]:
    """The one format, for problems of ``file`` (key path optional, fix optional)."""
    return re.compile(
        rf"^{re.escape(str(file))}(:\d+:\d+)?: ([^\n]+?: )?expected [^\n]+?, found [^\n]+$"
    )


@pytest.mark.parametrize(
    ("loader", "content", "expected"),
    CASES,
    ids=[f"{loader}-{i}" for i, (loader, _, _) in enumerate(CASES)],
)
def test_every_loader_reports_in_the_one_format(
    tmp_path: Path, loader: str, content: str | bytes, expected: str
) -> None:
    (tmp_path / "a.crt").write_text("placeholder\n")
    (tmp_path / "a.key").write_text("placeholder\n")
    path = tmp_path / ("web.yml" if loader == "web" else f"{loader}.toml")
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        LOADERS[loader](path)
    problems = info.value.problems
    assert expected.format(file=path) in problems, problems
    shape = _shape(path)
    assert all(shape.match(p) for p in problems), problems
    if len(problems) == 1:
        assert str(info.value) == problems[0]
    else:
        assert str(info.value).startswith(f"{path}: {len(problems)} problems:\n  - ")


def test_every_loader_is_in_the_table() -> None:
    assert {loader for loader, _, _ in CASES} == set(LOADERS)


def test_a_profile_error_is_a_config_error_in_the_profile_file(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(PROFILE + 'unit = "A"\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert info.value.problems == [
        f"{path}:7:1: quantities.voltage.unit: expected a unit of voltage (base unit V), found 'A'"
    ]


def test_a_device_profile_with_problems_lists_them_in_the_profile_file(tmp_path: Path) -> None:
    profile = tmp_path / "m.toml"
    profile.write_text(PROFILE + 'unit = "volts"\n')
    config = tmp_path / "candiag.toml"
    config.write_text(PORT + f'[[modbus.ports.devices]]\nprofile = "{profile}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert info.value.problems == [
        f"{config}:4:1: modbus.ports[0].devices[0].profile: expected a valid meter profile, "
        f"found '{profile}' with a problem (listed next)",
        f"{profile}:7:1: quantities.voltage.unit: expected one of V, kV, mV, A, mA, W, kW, Hz, "
        "Wh, kWh, MWh, Ω, ohm, kΩ, kohm, MΩ, °C, found 'volts'",
    ]
