"""Foreign capture formats read truthfully: python-can's own sample logs, error records,
a bad line skipped, format detection with reasons, standard input, CRLF, MF4."""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import can
import numpy as np
import pytest

from candiag.capture import CaptureReader
from candiag.capture.formats import errormap
from candiag.errors import CaptureError
from candiag.health.busstate import BusStateTracker
from candiag.health.errorframes import ErrorFrameSummary
from candiag.ingest.frames import FrameBatch

DATA = Path(__file__).parent / "data" / "pycan"
ASC_HEAD = (
    "date Sat Nov 21 10:00:00.000 am 2026\nbase hex  timestamps absolute\n"
    "internal events logged\nBegin Triggerblock Sat Nov 21 10:00:00.000 am 2026\n"
)


def read(path: Path | str) -> tuple[FrameBatch, CaptureReader]:
    reader = CaptureReader(path)
    return FrameBatch.concat(list(reader.batches())), reader


def rows(batch: FrameBatch) -> list[tuple[object, ...]]:
    return [
        (
            round(float(batch.timestamp[i]), 6),
            int(batch.can_id[i]),
            int(batch.flags[i]),
            int(batch.dlc[i]),
            bytes(batch.data[i, : batch.dlc[i]]),
            batch.channels[batch.channel[i]],
        )
        for i in range(len(batch))
    ]


# -- fidelity on python-can's sample files ----------------------------------------------------
def _pycan_frames(path: Path) -> list[can.Message]:
    with can.LogReader(str(path)) as reader:
        return list(reader)


@pytest.mark.parametrize(
    "name",
    ["logfile.asc", "logfile_errorframes.asc", "test_CanErrorFrames.asc", "test_CanFdMessage.blf",
     "test_CanMessage_V2_1.trc", "test_CanMessage_V1_1.trc"],
)  # fmt: skip
def test_data_and_remote_frames_equal_python_cans(name: str) -> None:
    batch, _ = read(DATA / name)
    ours = batch.take(~batch.is_error)
    theirs = [m for m in _pycan_frames(DATA / name) if not m.is_error_frame]
    assert len(ours) == len(theirs)
    for i, msg in enumerate(theirs):
        assert int(ours.can_id[i]) == msg.arbitration_id
        assert bool(ours.is_extended[i]) == msg.is_extended_id
        assert bool(ours.flags[i] & 0x02) == msg.is_remote_frame
        assert float(ours.timestamp[i]) == pytest.approx(msg.timestamp, abs=1e-6)
        if msg.is_remote_frame:
            assert int(ours.dlc[i]) == msg.dlc
        else:
            assert bytes(ours.data[i, : ours.dlc[i]]) == bytes(msg.data)
        # Channels keep the file's own numbering (python-can counts from 0 for ASC and BLF).
        offset = 1 if name.endswith((".asc", ".blf")) else 0
        assert ours.channels[ours.channel[i]] == str(msg.channel + offset)


def test_logfile_asc_counts_match_the_text() -> None:
    text = (DATA / "logfile.asc").read_text("latin-1").splitlines()
    event = r"^\s*\d+\.\d+\s+"
    data = sum(bool(re.match(event + r"\d+\s+\S+\s+(Rx|Tx)\s+d\s", ln)) for ln in text)
    remote = sum(bool(re.match(event + r"\d+\s+\S+\s+(Rx|Tx)\s+r\b", ln)) for ln in text)
    fd_lines = [
        ln.split() for ln in text if re.match(event + r"CANFD\s+\d+\s+(Rx|Tx)\s+\w+x?\s", ln)
    ]
    fd_lines = [f for f in fd_lines if f[4] != "ErrorFrame"]
    fd_remote = sum(1 for f in fd_lines if (f[8] if f[5].isdigit() else f[9]) == "0")
    errors = sum("ErrorFrame" in ln for ln in text)
    status = sum("Status:chip status" in ln for ln in text)
    batch, reader = read(DATA / "logfile.asc")
    assert int(batch.is_error.sum()) == errors + status == 7
    assert int(batch.is_remote.sum()) == remote + fd_remote
    assert int(batch.is_data.sum()) == data + len(fd_lines) - fd_remote
    assert reader.stats.malformed == 0
    assert reader.stats.not_frames == {
        "ASC 'J1939TP' events (not CAN frames)": 2,
        "ASC 'Statistic' events (not CAN frames)": 6,
    }


def test_multichannel_asc_keeps_each_channel() -> None:
    batch, _ = read(DATA / "logfile.asc")
    rows_18eb = batch.take(batch.is_data & (batch.can_id == 0x18EBFF00))
    names = [rows_18eb.channels[c] for c in rows_18eb.channel]
    assert names.count("1") == 4 and names.count("2") == 4


def test_asc_error_lines_map_as_documented() -> None:
    batch, _ = read(DATA / "test_CanErrorFrames.asc")
    got = {round(float(t), 3): (int(i), bytes(d)) for t, i, d in
           zip(batch.timestamp, batch.can_id, batch.data[:, :8], strict=True)}  # fmt: skip
    # "ErrorFrame": nothing recorded about the kind.
    assert got[2.501] == (0, bytes(8))
    # "ECC: 10100010": SJA1000 ECC 0xA2 = stuff error (10), receiving (bit 5), segment 0x02.
    assert got[3.501] == (0x008 | 0x080, bytes([0, 0, 0x04, 0x02, 0, 0, 0, 0]))
    # "Flags = 0xe ... Code = 0x82": CAN-Core code valid; 0x82 = stuff error (2), RX (2).
    assert got[4.501] == (0x008 | 0x080, bytes([0, 0, 0x04, 0x00, 0, 0, 0, 0]))
    # CAN FD "Not Acknowledge error": no ACK on transmission.
    assert got[30.807] == (0x020 | 0x080, bytes(8))


def test_chip_status_gives_controller_state_and_counters() -> None:
    batch, _ = read(DATA / "logfile.asc")
    ch1 = batch.take(batch.channel == batch.channels.index("1"))
    summary = ErrorFrameSummary()
    summary.update(ch1)
    assert summary.tec_max == 132 and summary.rec_max == 0
    assert summary.controller["tx_passive"] == 2 and summary.by_class["counters"] == 2
    state = BusStateTracker()
    state.update(ch1)
    assert state.state_name == "error_passive"


def test_blf_error_ext_gives_no_socketcan_class() -> None:
    batch, _ = read(DATA / "test_CanErrorFrameExt.blf")
    assert int(batch.is_error.sum()) == 2
    assert batch.can_id.tolist() == [0, 0]  # never the failed frame's id 0x19999999
    assert not batch.data.any()
    summary = ErrorFrameSummary()
    summary.update(batch)
    assert summary.by_class["unclassified"] == 2
    assert sum(summary.by_class.values()) == 2


def test_analyze_blf_error_ext_has_no_trx_finding(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(DATA / "test_CanErrorFrameExt.blf"),
         "--json", "-"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    import json

    report = json.loads(out.stdout)
    classes = report["error_frames"]["by_class"]
    assert classes["unclassified"] == 2
    assert sum(v for k, v in classes.items() if k != "unclassified") == 0
    codes = [f["code"] for f in report["findings"]]
    assert "CAN_ERR_TRX" not in codes and "CAN_ERROR_FRAMES_UNCLASSIFIED" in codes
    assert report["capture"]["format"] == "blf"


# -- BLF error records built with python-can's writer, then given their fields ----------------
def _blf_with_error_records(tmp_path: Path, fields: list[tuple[int, int]]) -> Path:
    path = tmp_path / "errors.blf"
    writer = can.BLFWriter(str(path), compression_level=0)
    for i, _ in enumerate(fields):
        writer.on_message_received(
            can.Message(timestamp=1.7e9 + i, is_error_frame=True, arbitration_id=0x19999999,
                        data=bytes(8), channel=0)
        )  # fmt: skip
    writer._add_object(2, struct.pack("<HH", 1, 0), 1.7e9 + len(fields))  # plain CAN_ERROR
    writer.stop()
    raw = bytearray(path.read_bytes())
    pos, k = 0, 0
    while (pos := raw.find(b"LOBJ", pos)) >= 0:
        _, header_size, _, _, kind = struct.unpack_from("<4sHHLL", raw, pos)
        if kind == 73:
            flags, ecc = fields[k]
            struct.pack_into("<L", raw, pos + header_size + 4, flags)
            raw[pos + header_size + 8] = ecc
            k += 1
        pos += 4
    path.write_bytes(bytes(raw))
    return path


def test_blf_error_ext_fields_are_mapped(tmp_path: Path) -> None:
    path = _blf_with_error_records(
        tmp_path,
        [(0x1, 0b01_0_11001),  # SJA1000: form error, transmitting, ACK slot (0x19)
         (0x2, 0b01_000011),  # CAN-Core: TX NAK (not acknowledged)
         (0x2, 0b11_000100),  # CAN-Core: CRC error while transmitting
         (0x3, 0x00),  # both "valid" bits: ambiguous
         (0x0, 0x44)],  # neither: the kind is not recorded
    )  # fmt: skip
    batch, reader = read(path)
    assert [int(x) for x in batch.can_id] == [0x88, 0xA0, 0x88, 0, 0, 0]
    assert bytes(batch.data[0, :4]) == bytes([0, 0, 0x02 | 0x80, 0x19])
    assert bytes(batch.data[2, :4]) == bytes([0, 0, 0x80, 0x08])
    assert batch.is_error.all() and reader.stats.malformed == 0
    assert batch.channels == ["1"]


def test_blf_damaged_container_says_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "damaged.blf"
    writer = can.BLFWriter(str(path), compression_level=0)
    writer.max_container_size = 512
    for i in range(100):
        writer.on_message_received(can.Message(timestamp=1.7e9 + i, arbitration_id=i, data=b"\1"))
    writer.stop()
    raw = bytearray(path.read_bytes())
    first = raw.find(b"LOBJ")
    second = first + struct.unpack_from("<L", raw, first + 8)[0]
    second += (4 - second % 4) % 4 if raw[second : second + 4] != b"LOBJ" else 0
    second = raw.find(b"LOBJ", second - 4)
    raw[second : second + 4] = b"XXXX"  # the second container's signature
    path.write_bytes(bytes(raw))
    batch, reader = read(path)
    stats = reader.stats
    assert 0 < len(batch) < 100
    assert stats.stopped_at == len(batch) + 1 and stats.unread == 100 - len(batch)
    assert f"reader stopped at record {len(batch) + 1}, {100 - len(batch)} records not read" in (
        stats.summary()
    )
    assert stats.malformed == 0  # not a "skipped line"


# -- the error-record mapping itself ----------------------------------------------------------
@pytest.mark.parametrize(
    ("ecc", "type_bits", "location"),
    [(0b00_1_00011, 0x01, 0x03), (0b01_1_11000, 0x02, 0x18), (0b10_1_01010, 0x04, 0x0A),
     (0b11_1_11010, 0x00, 0x1A), (0b00_0_11001, 0x81, 0x19)],
)  # fmt: skip
def test_sja1000_ecc(ecc: int, type_bits: int, location: int) -> None:
    record = errormap.from_sja1000_ecc(ecc)
    assert record.can_id == 0x088
    assert record.data == bytes([0, 0, type_bits, location, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("ecc", "can_id", "type_bits", "location"),
    [(0x80, 0x88, 0x01, 0), (0xC1, 0x88, 0x82, 0), (0x82, 0x88, 0x04, 0), (0x83, 0x88, 0, 0),
     (0x84, 0x88, 0, 0x08), (0x85, 0x88, 0x02, 0x1B), (0x40, 0xA0, 0, 0), (0x00, 0x88, 0x01, 0),
     (0x86, 0, 0, 0)],
)  # fmt: skip
def test_can_core_code(ecc: int, can_id: int, type_bits: int, location: int) -> None:
    record = errormap.from_can_core(ecc)
    assert record.can_id == can_id
    assert record.data[2:4] == bytes([type_bits, location])


def test_controller_states() -> None:
    passive = errormap.controller_state("passive", 132, 0)
    assert passive.can_id == 0x004 | 0x200 and passive.data[1] == 0x20 and passive.data[6] == 132
    assert errormap.controller_state("warning", None, None).data[1] == 0x04 | 0x08
    assert errormap.controller_state("active", None, None).data[1] == 0x40
    assert errormap.controller_state("bus_off", 256, 0).can_id == 0x040 | 0x200
    assert errormap.state_from_words("chip status busoff") == "bus_off"
    assert errormap.state_from_words("chip status error warning") == "warning"
    assert errormap.state_from_words("chip status unknown thing") is None


# -- one bad line does not drop the rest ------------------------------------------------------
def _asc(n: int, bad_at: int) -> str:
    lines = [f"   {i * 0.01:.6f} 1  123             Rx   d 2 01 02" for i in range(n)]
    lines[bad_at - 5] = lines[bad_at - 5].replace("01 02", "ZZ 02")
    return ASC_HEAD + "\n".join(lines) + "\n"


def test_bad_asc_line_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "zz.asc"
    path.write_text(_asc(1998, 1000))
    batch, reader = read(path)
    assert len(batch) == 1997 and reader.stats.lines == 2002
    (bad,) = reader.stats.examples
    assert bad.line == 1000 and bad.reason == "ASC: data byte 'ZZ' is not hexadecimal"
    assert float(batch.timestamp[-1]) == pytest.approx(19.97)


def test_bad_trc_row_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    text = (DATA / "test_CanMessage_V2_1.trc").read_text("latin-1")
    text = text.replace(
        "19500.600 DT 1      0000 Tx -  8    00 00", "19500.600 DT 1      00G0 Tx -  8    00 00"
    )
    path = tmp_path / "bad.trc"
    path.write_text(text)
    batch, reader = read(path)
    assert len(batch) == 10
    (bad,) = reader.stats.examples
    assert bad.reason == "TRC 2.1: '00G0' is not hexadecimal"
    assert "00G0" in bad.text


def test_bad_csv_rows_keep_line_numbers(tmp_path: Path) -> None:
    rows_ = ["timestamp,arbitration_id,extended,remote,error,dlc,data"]
    rows_ += [f"{i}.0,0x123,0,0,0,1,AQ==" for i in range(10)]
    rows_[4] = "3.0,0xZZ3,0,0,0,1,AQ=="
    rows_[7] = "6.0,0x123,0,0,0,1,A?=="
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(rows_) + "\n")
    batch, reader = read(path)
    assert len(batch) == 8
    assert [(m.line, m.reason) for m in reader.stats.examples] == [
        (5, "CSV: arbitration_id '0xZZ3' is not hexadecimal"),
        (8, "CSV: data 'A?==' is not base64"),
    ]


def test_csv_error_rows_are_unclassified(tmp_path: Path) -> None:
    path = tmp_path / "err.csv"
    path.write_text("timestamp,arbitration_id,extended,remote,error,dlc,data\n"
                    "1.0,0x19999999,1,0,1,8,AAAAAAAAAAA=\n")  # fmt: skip
    batch, _ = read(path)
    assert batch.is_error.tolist() == [True] and batch.can_id.tolist() == [0]


# -- detection --------------------------------------------------------------------------------
def test_asc_saved_as_log_is_read_as_asc(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    path.write_bytes((DATA / "logfile.asc").read_bytes())
    batch, reader = read(path)
    assert reader.stats.format == "asc" and len(batch) == 23
    assert reader.stats.format_reason.startswith("suffix .log but line 'date Sam Sep 30")
    assert "(Vector ASC)" in reader.stats.format_reason


def test_candump_named_txt_says_why(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_text("(1700000000.000100) can0 123#0102\n")
    _, reader = read(path)
    assert reader.stats.format == "candump"
    assert reader.stats.format_reason == (
        "content: line '(1700000000.000100) can0 123#0102' is a candump -L log line"
    )


SCREEN_ABSOLUTE = (
    " (1700000000.000100)  can0  123   [2]  01 02\n"
    " (1700000000.000200)  can0  18FF50E5   [8]  00 01 02 03 04 05 06 07\n"
    " (1700000000.000300)  can0  20000004   [8]  00 20 00 00 00 00 88 00   ERRORFRAME\n"
    " (1700000000.000400)  can1  321   [3]  remote request\n"
)


def test_candump_screen_output_with_timestamps_is_read(tmp_path: Path) -> None:
    path = tmp_path / "screen.log"
    path.write_text(SCREEN_ABSOLUTE)
    batch, reader = read(path)
    assert reader.stats.format == "candump-screen"
    assert "suffix .log but line" in reader.stats.format_reason and "-t a" in (
        reader.stats.format_reason
    )
    assert rows(batch) == [
        (1700000000.0001, 0x123, 0, 2, b"\1\2", "can0"),
        (1700000000.0002, 0x18FF50E5, 1, 8, bytes(range(8)), "can0"),
        (1700000000.0003, 0x004, 4, 8, bytes([0, 0x20, 0, 0, 0, 0, 0x88, 0]), "can0"),
        (1700000000.0004, 0x321, 2, 3, bytes(3), "can1"),  # remote: no payload (zeros)
    ]


def test_candump_screen_delta_timestamps_are_summed(tmp_path: Path) -> None:
    path = tmp_path / "delta.log"
    path.write_text(
        " (000.000000)  can0  123   [1]  01\n (000.010000)  can0  123   [1]  02\n"
        " (000.005000)  can0  123   [1]  03\n"
    )
    batch, reader = read(path)
    assert "-t d" in reader.stats.format_reason
    assert batch.timestamp.tolist() == pytest.approx([0.0, 0.01, 0.015])


@pytest.mark.parametrize(
    ("text", "message"),
    [("  can0  123   [2]  01 02\n  can0  124   [1]  03\n", "without timestamps"),
     ("1 (1700000000.000100) can0 123#0102\n2 (1700000000.000200) can0 123#0102\n",
      "line number"),
     ("     1\t(1700000000.000100) can0 123#0102\n", "line number")],
)  # fmt: skip
def test_recognized_but_unreadable_text_is_refused_with_the_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "x.log"
    path.write_text(text)
    with pytest.raises(CaptureError, match=message) as info:
        CaptureReader(path)
    assert str(path) in str(info.value)


# -- standard input, CRLF ---------------------------------------------------------------------
CANDUMP = "(1700000000.000100) can0 123#0102\n(1700000000.000200) can1 18FF50E5#01\n"


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [(CANDUMP.encode(), "candump"), (gzip.compress(CANDUMP.encode()), "candump"),
     ((DATA / "logfile.asc").read_bytes(), "asc"),
     ((DATA / "test_CanErrorFrameExt.blf").read_bytes(), "blf"),
     (gzip.compress((DATA / "test_CanMessage_V2_1.trc").read_bytes()), "trc")],
)  # fmt: skip
def test_standard_input_by_content(payload: bytes, fmt: str) -> None:
    reader = CaptureReader("-", stdin=io.BytesIO(payload))
    batch = FrameBatch.concat(list(reader.batches()))
    assert reader.stats.format == fmt and reader.stats.path == "<stdin>"
    assert len(batch) > 0 and reader.stats.malformed == 0


def test_crlf_captures_equal_lf(tmp_path: Path) -> None:
    samples = {
        "c.log": CANDUMP,
        "a.asc": (DATA / "logfile.asc").read_text("latin-1").replace("\r\n", "\n"),
        "v.csv": "timestamp,arbitration_id,extended,remote,error,dlc,data\n1.5,0x123,0,0,0,2,AQI=\n",
    }
    for name, text in samples.items():
        lf, crlf, cr = tmp_path / f"lf-{name}", tmp_path / f"crlf-{name}", tmp_path / f"cr-{name}"
        lf.write_bytes(text.encode("latin-1"))
        crlf.write_bytes(text.replace("\n", "\r\n").encode("latin-1"))
        cr.write_bytes(text.replace("\n", "\r").encode("latin-1"))
        want, want_reader = read(lf)
        assert len(want) > 0 and want_reader.stats.malformed == 0, name
        for other in (crlf, cr):
            got, got_reader = read(other)
            assert rows(got) == rows(want), other.name
            assert got_reader.stats.malformed == 0, other.name


def _run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "candiag", *args], input=stdin, capture_output=True, timeout=120
    )


def test_analyze_reads_standard_input() -> None:
    import json

    out = _run(["analyze", "-", "--json", "-"], CANDUMP.replace("\n", "\r\n").encode())
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["capture"]["path"] == "<stdin>" and report["frames"]["data"] == 2


def test_decode_reads_standard_input() -> None:
    dbc = Path(__file__).parent / "data" / "decode_fixture.dbc"
    out = _run(["decode", "-", "--dbc", str(dbc)], gzip.compress(CANDUMP.encode()))
    assert out.returncode == 0, out.stderr.decode()
    assert "<stdin>: 2 frames from 2 lines" in out.stderr.decode()
    assert "read as candump -L" in out.stderr.decode()


# -- MF4 --------------------------------------------------------------------------------------
def test_mf4_written_by_python_can_is_read(tmp_path: Path) -> None:
    pytest.importorskip("asammdf")
    path = tmp_path / "bus.mf4"
    writer = can.MF4Writer(str(path))
    messages = [
        can.Message(timestamp=1.7e9 + i * 0.01, arbitration_id=0x100 + i, data=bytes([i] * 8),
                    is_extended_id=False, channel=1)
        for i in range(5)
    ]  # fmt: skip
    messages.append(can.Message(timestamp=1.7e9 + 1, arbitration_id=0x18FF50E5, data=b"\1\2",
                                channel=2))  # fmt: skip
    messages.append(can.Message(timestamp=1.7e9 + 2, arbitration_id=0x19999999,
                                is_error_frame=True, channel=1))  # fmt: skip
    for msg in messages:
        writer.on_message_received(msg)
    writer.stop()
    batch, reader = read(path)
    assert reader.stats.format == "mf4"
    assert batch.can_id.tolist() == [0x100, 0x101, 0x102, 0x103, 0x104, 0x18FF50E5, 0]
    assert batch.is_error.tolist() == [False] * 6 + [True]
    assert batch.channels == ["1", "2"]
    assert np.allclose(batch.timestamp[:2], [1.7e9, 1.7e9 + 0.01])


def test_mf4_without_the_extra_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from candiag.capture.formats import mf4

    monkeypatch.setattr(mf4, "available", lambda: False)
    path = tmp_path / "x.mf4"
    path.write_bytes(b"MDF     4.10    " + bytes(48))
    with pytest.raises(CaptureError, match=r"candiag\[mf4\]"):
        list(CaptureReader(path).batches())


def test_help_does_not_import_asammdf() -> None:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "candiag", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "asammdf" not in imported and "pandas" not in imported
    assert "candiag" in imported  # the import log is really there


def _imported(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    """Modules a ``candiag`` process imported (over 100 µs: a failed import costs a few µs,
    and the deferred ``asammdf`` is such an import)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "candiag", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    names = set()
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and int(parts[1]) > 100:
            names.add(parts[2].strip())
    assert "candiag.cli" in names, out.stderr[-2000:]  # the import log is really there
    return names


def test_a_capture_command_defers_asammdf_even_when_installed(tmp_path: Path) -> None:
    path = tmp_path / "one.log"
    path.write_text("(1.0) can0 123#0102\n", encoding="utf-8")
    # No DBC cache: the reference DBCs are parsed, so cantools imports python-can.
    imported = _imported(["analyze", str(path)], {"CANDIAG_CACHE_DIR": "off"})
    assert "cantools" in imported and "can" in imported
    assert "asammdf" not in imported and "pandas" not in imported


def test_the_command_line_still_reads_mf4_after_deferring_asammdf(tmp_path: Path) -> None:
    pytest.importorskip("asammdf")
    path = tmp_path / "bus.mf4"
    writer = can.MF4Writer(str(path))
    for i in range(5):
        writer.on_message_received(
            can.Message(timestamp=1.7e9 + i, arbitration_id=0x100, data=b"\1", channel=1)
        )
    writer.stop()
    import json

    out = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(path), "--json", "-"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["capture"]["format"] == "mf4" and report["frames"]["data"] == 5


def test_a_command_imports_only_its_own_subcommand_module() -> None:
    imported = _imported(["analyze", "--help"])
    assert "candiag.analysis" not in imported  # help does not import the work either
    assert not {"candiag.cli.simulate", "candiag.cli.monitor", "candiag.sim.scenarios"} & imported
