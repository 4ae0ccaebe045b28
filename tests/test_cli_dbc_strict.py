"""The real CLI on DBCs that load only leniently: warnings located, ``--strict`` refuses,
the config's ``dbc_strict`` does the same, and cantools never prints on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from candiag.cli import main

DATA_DBC = Path(__file__).parent / "data" / "dbc"
AA = DATA_DBC / "canmatrix_aa.dbc"  # two messages named Receive_PDO_Mapping_Parameter_1
NISSAN = DATA_DBC / "opendbc_nissan_xterra_2011.dbc"  # overlapping signals

# 0x181 and 0x301 are the two Receive_PDO_Mapping_Parameter_1 of aa.dbc; 0x80 is SYNC.
AA_CAPTURE = """\
(1700000000.000100) can0 181#0100000002000000
(1700000000.000200) can0 301#0300000000000000
(1700000000.000300) can0 080#
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_prints_located_warnings_and_nothing_raw(tmp_path: Path) -> None:
    capture = tmp_path / "aa.log"
    capture.write_text(AA_CAPTURE)
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "decode", str(capture), "--dbc", str(AA)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["message"] for r in rows] == [
        "Receive_PDO_Mapping_Parameter_1",
        "Receive_PDO_Mapping_Parameter_1@0x301",
        "SYNC",
    ]
    assert rows[0]["signals"] == {"CMD_Raw": 1, "CMD_Display": 2}
    assert rows[1]["signals"] == {"SPDigital": 3}
    err = done.stderr
    assert "Overwriting" not in err  # cantools' own log line, now a located warning
    assert "DBC warnings: 1 (loaded as cantools --no-strict loads it" in err
    assert f"{AA}:52: message name Receive_PDO_Mapping_Parameter_1 (0x181)" in err
    assert err.index("candiag decode:") < err.index("DBC warnings")  # in the summary


def test_decode_strict_refuses_with_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "aa.log"
    capture.write_text(AA_CAPTURE)
    code, out, err = run(["decode", str(capture), "--dbc", str(AA), "--strict"], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"candiag: error: {AA}:52: message name Receive_PDO_Mapping_Parameter_1")
    assert f"also defined in {AA}:49" in err


def test_analyze_strict_refuses_and_lenient_analyzes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "aa.log"
    capture.write_text(AA_CAPTURE)
    base = ["analyze", str(capture), "--dbc", str(NISSAN), "--bitrate", "500000"]
    code, _, err = run([*base, "--strict"], capsys)
    assert code == 2
    assert f"{NISSAN}: 2 problems (strict loading refuses them" in err
    assert f"{NISSAN}:76: signals WHEEL_2 and WHEEL_1 of message ABS_1 overlap" in err
    code, out, _ = run([*base, "--json", "-"], capsys)
    assert code == 0 and json.loads(out)["frames"]["total"] == 3


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "candiag.toml"
    path.write_text(
        '[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "dbc-strict"\n'
        f'dbc = ["{AA}"]\n{extra}'
    )
    return path


def test_check_config_lists_the_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["check-config", str(_config(tmp_path))], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("OK: 1 bus")
    assert lines[1] == (
        "warning: can.buses[0].dbc: 1 DBC problems; the DBC loads as cantools --no-strict "
        "loads it (dbc_strict = true refuses it):"
    )
    assert lines[2].startswith(f"  {AA}:52: message name Receive_PDO_Mapping_Parameter_1")


def test_check_config_with_dbc_strict_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["check-config", str(_config(tmp_path, "dbc_strict = true\n"))], capsys)
    assert code == 2
    assert (
        ":5:1: can.buses[0].dbc: expected DBC files candiag can load, found "
        f"{AA}:52: message name Receive_PDO_Mapping_Parameter_1"
    ) in err


def test_dbc_strict_must_be_a_boolean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["check-config", str(_config(tmp_path, 'dbc_strict = "yes"\n'))], capsys)
    assert code == 2
    assert "can.buses[0].dbc_strict: expected true or false, found a string 'yes'" in err


def test_analyze_takes_dbc_strict_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = tmp_path / "aa.log"
    capture.write_text(AA_CAPTURE)
    config = _config(tmp_path, "dbc_strict = true\n")
    code, _, err = run(["analyze", str(capture), "--config", str(config)], capsys)
    assert code == 2 and f"{AA}:52:" in err
    code, _, _ = run(["analyze", str(capture), "--config", str(_config(tmp_path))], capsys)
    assert code == 0


def test_monitor_strict_refuses_a_lenient_dbc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["monitor", "--config", str(_config(tmp_path)), "--plain", "--duration", "0.3"]
    code, _, err = run([*argv, "--strict"], capsys)
    assert code == 2 and f"{AA}:52: message name" in err
    code, out, _ = run(argv, capsys)
    assert code == 0 and "candiag monitor" in out
