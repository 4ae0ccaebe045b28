"""``candiag decode``: JSON Lines in capture order, equal to cantools, and an honest summary."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from candiag.capture import CandumpWriter
from candiag.cli import main
from candiag.decode.dbc import load_dbc_paths
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_REMOTE, FrameBatch

FIXTURE = Path(__file__).parent / "data" / "decode_fixture.dbc"

CAPTURE = """\
(1700000000.000100) can0 08000007#1D5B2EFB5A420100
(1700000000.000200) can0 040#0903
(1700000000.000300) can0 20000040#0000000000000000
(1700000000.000400) can0 040#R2
(1700000000.000500) can0 123#0011223344556677
(1700000000.000600) can1 100#0210270000000000
this is not a candump line
(1700000000.000700) can0 100#02E2080CFE000000
(1700000000.000800) can0 040#05
(1700000000.000900) can0 18FF50E5#0000000000000000
(1700000000.001000) can0 123#00
(1700000000.001100) can0 100#07AABBCCDDEEFF00
"""


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_known_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "charger.log"
    capture.write_text(CAPTURE)
    code, out, err = run(["decode", str(capture), "--dbc", str(FIXTURE)], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["timestamp"] for r in rows] == [
        1700000000.0001,
        1700000000.0002,
        1700000000.0006,
        1700000000.0007,
        1700000000.0011,
    ]
    assert rows[0] == {
        "timestamp": 1700000000.0001,
        "channel": "can0",
        "id": "0x08000007",
        "extended": True,
        "arbitration_id": 0x08000007,
        "message": "PM_Status",
        "node": 7,
        "signals": {
            "OutputVoltage": 751.5,
            "OutputCurrent": -12.34,
            "Temperature": 50,
            "FwMajor": 2,
            "FwMinor": 4,
            "OverTemp": 1,
        },
    }
    assert rows[1] == {
        "timestamp": 1700000000.0002,
        "channel": "can0",
        "id": "0x040",
        "extended": False,
        "arbitration_id": 64,
        "message": "Heartbeat",
        "signals": {"Alive": 9, "HeartbeatCounter": 3},
    }
    assert rows[2]["channel"] == "can1"
    assert rows[3]["signals"] == {"Register": 2, "Voltage": 227.4, "Current": -5.0}
    assert rows[4]["signals"] == {"Register": 7}  # register 7 selects no signals
    assert "node" not in rows[3]

    assert out.splitlines()[0].startswith('{"timestamp": 1700000000.000100, "channel": "can0"')
    assert "11 frames from 12 lines, 1 malformed lines skipped" in err
    assert "decoded: 5 frames of 3 messages (MeterRegister x3, " in err
    assert "not decoded: 6 of 11 frames (3 with an unknown id, 1 short, 1 error, 1 remote)" in err
    assert "unknown ids: 3 frames with 2 ids; top: 0x123 x2, 0x18FF50E5 x1" in err
    assert "short frames" in err and "0x040 x1" in err
    assert "error frames: 1, remote frames: 1" in err
    assert "line 7:" in err and "this is not a candump line" in err


def test_output_file_and_chunks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "charger.log"
    capture.write_text(CAPTURE)
    target = tmp_path / "out.jsonl"
    argv = ["decode", str(capture), "--dbc", str(FIXTURE), "-o", str(target)]
    code, out, err = run([*argv, "--chunk-lines", "2"], capsys)
    assert code == 0 and out == ""
    chunked = target.read_text()
    code, out, _ = run(["decode", str(capture), "--dbc", str(FIXTURE)], capsys)
    assert chunked == out  # same lines, same order whatever the chunking
    assert len(chunked.splitlines()) == 5
    assert "decoded: 5 frames" in err


def test_candump_writer_capture_matches_cantools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = load_dbc_paths([FIXTURE])
    rng = np.random.default_rng(5)
    n = 300
    ids = rng.choice(np.array([0x40, 0x08000000, 0x08000011, 0x100, 0x321], np.uint32), n)
    flags = np.where(ids > 0x7FF, FLAG_EXTENDED, 0).astype(np.uint8)
    flags[rng.random(n) < 0.05] = FLAG_ERROR
    flags[(rng.random(n) < 0.05) & (flags != FLAG_ERROR)] |= FLAG_REMOTE
    dlc = np.where(ids == 0x40, 2, 8).astype(np.uint8)
    data = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    data[ids == 0x100, 0] = rng.choice([1, 2, 3], int(np.count_nonzero(ids == 0x100)))
    data[np.arange(8)[None, :] >= dlc[:, None]] = 0
    batch = FrameBatch(
        timestamp=(1_700_000_000.0 + np.arange(n) * 0.001).astype(np.float64),
        can_id=ids,
        flags=flags,
        dlc=dlc,
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )
    capture = tmp_path / "recorded.log.gz"
    writer = CandumpWriter(capture, fsync=False)
    writer.write(batch)
    writer.close()

    code, out, err = run(["decode", str(capture), "--dbc", str(FIXTURE)], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    data_frames = (flags & (FLAG_ERROR | FLAG_REMOTE)) == 0
    expected_rows = np.flatnonzero(data_frames & (ids != 0x321))
    assert len(rows) == expected_rows.size
    for row, i in zip(rows, expected_rows.tolist(), strict=True):
        msg = db.by_name(row["message"])
        assert row["arbitration_id"] == int(ids[i])
        assert row["timestamp"] == pytest.approx(batch.timestamp[i], abs=1e-6)
        want: dict[str, Any] = db.cantools_db.decode_message(  # type: ignore[assignment]
            msg.frame_id, bytes(data[i, : dlc[i]]), decode_choices=False
        )
        assert set(row["signals"]) == set(want)
        for name, value in want.items():
            assert math.isclose(row["signals"][name], value, rel_tol=1e-9), (i, name)
        if msg.node_mask:
            assert row["node"] == int(ids[i]) & 0xFF
    assert f"error frames: {int(np.count_nonzero(flags == FLAG_ERROR))}," in err
    assert f"0x321 x{int(np.count_nonzero(data_frames & (ids == 0x321)))}" in err


def test_bad_dbc_exits_2_with_file_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = tmp_path / "c.log"
    capture.write_text(CAPTURE)
    bad = tmp_path / "bad.dbc"
    bad.write_text('VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_:\n\nBO_ 1 X: 8 Y\n SG_ A 0|8@1+\n')
    code, out, err = run(["decode", str(capture), "--dbc", str(bad)], capsys)
    assert code == 2 and out == ""
    assert f"{bad}:10:" in err and "invalid syntax" in err
    assert "Traceback" not in err


def test_missing_capture_and_bad_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["decode", str(tmp_path / "nope.log"), "--dbc", str(FIXTURE)], capsys)
    assert code == 2 and "nope.log" in err
    capture = tmp_path / "c.log"
    capture.write_text(CAPTURE)
    target = tmp_path / "missing-dir" / "out.jsonl"
    argv = ["decode", str(capture), "--dbc", str(FIXTURE), "-o", str(target)]
    code, _, err = run(argv, capsys)
    assert code == 2 and "missing-dir does not exist" in err


def test_default_dbcs_are_the_reference_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from candiag.decode.dbc import reference_dbc_dir

    db = load_dbc_paths([reference_dbc_dir()])
    msg = db.messages[0]
    can_id = msg.can_id_for(1) if msg.node_mask else msg.frame_id
    text = f"0x{can_id:08X}" if msg.is_extended else f"{can_id:03X}"
    capture = tmp_path / "ref.log"
    capture.write_text(f"(1.000000) can0 {text.removeprefix('0x')}#{'00' * msg.length}\n")
    code, out, _ = run(["decode", str(capture)], capsys)
    assert code == 0
    assert json.loads(out)["message"] == msg.name


def test_summary_ids_keep_their_width(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12 item 11: 0x285 sent extended is 0x00000285 in the summary, not 0x285."""
    capture = tmp_path / "ide.log"
    capture.write_text(
        "(1.000000) can0 00000285#01\n"  # extended 0x285: unknown to the fixture DBC
        "(1.000100) can0 285#01\n"  # standard 0x285: unknown too, counted apart
        "(1.000200) can0 285#01\n"
        "(1.000300) can0 00000040#0903\n"  # extended 0x40: not the standard Heartbeat
        "(1.000400) can0 08000011#00\n"  # PM_Status of node 0x11, 1 byte: short
    )
    code, out, err = run(["decode", str(capture), "--dbc", str(FIXTURE)], capsys)
    assert code == 0 and out == ""
    assert "unknown ids: 4 frames with 3 ids; top: 0x285 x2, 0x00000040 x1, 0x00000285 x1" in err
    assert "short frames (payload shorter than the DBC says, not decoded): 1 with 1 ids; " in err
    assert "0x08000011 x1" in err


def test_units_and_choices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dbc = tmp_path / "named.dbc"
    dbc.write_text(
        'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: X\n\n'
        "BO_ 768 CoolingStatus: 8 X\n"
        ' SG_ Temperature : 0|16@1- (0.1,0) [-40|150] "\u00b0C" X\n'
        ' SG_ State : 16|4@1+ (1,0) [0|15] "" X\n'
        ' SG_ Mode : 20|4@1+ (2,1) [0|31] "" X\n\n'
        'VAL_ 768 State 0 "Off" 2 "Running" ;\n'
        'VAL_ 768 Mode 1 "Eco" ;\n',
        encoding="cp1252",
    )
    capture = tmp_path / "c.log"
    capture.write_text(
        "(1.000000) can0 300#7B00120000000000\n"  # 12.3 °C, State 2, Mode raw 1 (value 3)
        "(1.000001) can0 300#85FF030000000000\n"  # -12.3 °C, State 3 (no name), Mode raw 0
    )
    argv = ["decode", str(capture), "--dbc", str(dbc)]
    code, out, _ = run(argv, capsys)
    plain = [json.loads(line) for line in out.splitlines()]
    assert plain[0]["signals"] == {"Temperature": 12.3, "State": 2, "Mode": 3}
    assert plain[1]["signals"] == {"Temperature": -12.3, "State": 3, "Mode": 1}
    assert "units" not in plain[0]  # the default line stays compact
    code, out, _ = run([*argv, "--units", "--choices"], capsys)
    assert code == 0
    named = [json.loads(line) for line in out.splitlines()]
    assert named[0]["signals"] == {"Temperature": 12.3, "State": "Running", "Mode": "Eco"}
    assert named[1]["signals"] == {"Temperature": -12.3, "State": 3, "Mode": 1}
    assert named[0]["units"] == {"Temperature": "\u00b0C"}
    assert '"\u00b0C"' in out  # UTF-8, not \\u escapes


def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``candiag decode x.log | head -1``: no traceback, status 0, through a real pipe."""
    import subprocess
    import sys

    capture = tmp_path / "long.log"
    line = "(1700000000.000100) can0 08000007#1D5B2EFB5A420100\n"
    capture.write_text(line * 40_000)  # ~12 MB of JSON: far more than a pipe buffer
    command = [sys.executable, "-m", "candiag", "decode", str(capture), "--dbc", str(FIXTURE)]
    reader = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent
    )
    assert reader.stdout is not None and reader.stderr is not None
    first = reader.stdout.readline()
    reader.stdout.close()  # what head does after its line
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=60) == 0
    assert json.loads(first)["message"] == "PM_Status"
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert err == ""  # quiet: the summary of an interrupted run is not printed


def test_shell_pipe_to_head(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    if shutil.which("head") is None:
        pytest.skip("no head(1)")
    capture = tmp_path / "long.log"
    capture.write_text("(1700000000.000100) can0 040#0903\n" * 50_000)
    script = (
        f"set -o pipefail; '{sys.executable}' -m candiag decode '{capture}' "
        f"--dbc '{FIXTURE}' | head -n 1"
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["signals"] == {"Alive": 9, "HeartbeatCounter": 3}
    assert done.stderr == ""
