"""candump -L parsing and formatting: every line form, every malformed form, round trips."""

from __future__ import annotations

import io

import can
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candiag.capture.formats.candump import format_candump, parse_candump, parse_line
from candiag.ingest.frames import (
    FLAG_BRS,
    FLAG_ERROR,
    FLAG_ESI,
    FLAG_EXTENDED,
    FLAG_FD,
    FLAG_REMOTE,
    FrameBatch,
)

TS = "(1700000000.000100)"


def one(line: str) -> FrameBatch:
    parsed = parse_candump(line.encode() + b"\n")
    assert parsed.malformed == [], parsed.malformed
    assert len(parsed.batch) == 1
    return parsed.batch


def test_standard_data_frame() -> None:
    b = one(f"{TS} can0 123#DEADBEEF")
    assert b.timestamp[0] == 1700000000.0001
    assert b.can_id[0] == 0x123 and b.flags[0] == 0 and b.dlc[0] == 4
    assert b.data[0, :4].tolist() == [0xDE, 0xAD, 0xBE, 0xEF]
    assert b.channels[b.channel[0]] == "can0"


def test_extended_data_frame_lowercase_hex() -> None:
    b = one(f"{TS} vcan1 18ff50e5#0102030405060708")
    assert b.can_id[0] == 0x18FF50E5 and b.flags[0] == FLAG_EXTENDED and b.dlc[0] == 8
    assert b.data[0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert b.channels == ["vcan1"]


def test_extended_frame_with_small_id_stays_extended() -> None:
    b = one(f"{TS} can0 00000123#")
    assert b.can_id[0] == 0x123 and b.flags[0] == FLAG_EXTENDED and b.dlc[0] == 0


def test_remote_frames() -> None:
    b = one(f"{TS} can0 123#R")
    assert b.flags[0] == FLAG_REMOTE and b.dlc[0] == 0
    b = one(f"{TS} can0 18FF50E5#R5")
    assert b.flags[0] == FLAG_REMOTE | FLAG_EXTENDED and b.dlc[0] == 5
    assert b.data[0].tolist() == [0] * 8


def test_fd_frame_with_flags() -> None:
    payload = bytes(range(12))
    b = one(f"{TS} can1 123##3{payload.hex()}")
    assert b.flags[0] == FLAG_FD | FLAG_BRS | FLAG_ESI
    assert b.dlc[0] == 12 and b.data.shape[1] == 64
    assert bytes(b.data[0, :12]) == payload
    b = one(f"{TS} can1 18FF50E5##1{'AA' * 64}")
    assert b.flags[0] == FLAG_FD | FLAG_BRS | FLAG_EXTENDED and b.dlc[0] == 64


def test_bus_off_error_frame_kept_exactly() -> None:
    b = one(f"{TS} can0 20000040#0000000000000000")
    assert b.flags[0] == FLAG_ERROR and b.can_id[0] == 0x40 and b.dlc[0] == 8
    assert bool(b.is_error[0]) and not bool(b.is_data[0])


def test_error_frame_with_counters_and_several_classes() -> None:
    b = one(f"{TS} any 20000204#0004000000007F85")
    assert b.flags[0] == FLAG_ERROR and b.can_id[0] == 0x204
    assert b.data[0].tolist() == [0, 4, 0, 0, 0, 0, 0x7F, 0x85]
    assert b.channels == ["any"]


def test_dlc_suffix_and_separators_and_direction() -> None:
    b = one(f"{TS} can0 123#1122334455667788_C")
    assert b.dlc[0] == 8 and b.data[0, 7] == 0x88
    b = one(f"{TS} can0 123#11.22.33")
    assert b.dlc[0] == 3 and b.data[0, :3].tolist() == [0x11, 0x22, 0x33]
    b = one(f"{TS} can0 123#0102 T")
    assert b.dlc[0] == 2


def test_crlf_line_endings() -> None:
    parsed = parse_candump(f"{TS} can0 123#01\r\n{TS} can0 124#02\r\n".encode())
    assert parsed.malformed == [] and parsed.batch.can_id.tolist() == [0x123, 0x124]


def test_relative_and_short_timestamps() -> None:
    parsed = parse_candump(b"(0.5) can0 123#01\n(12.000001) can0 123#02\n")
    assert parsed.batch.timestamp.tolist() == [0.5, 12.000001]


MALFORMED = [
    ("(17000x0000.000100) can0 123#00", "bad timestamp"),
    ("1700000000.000100 can0 123#00", "bad timestamp"),
    ("(1700000000.000100) 123#00", "channel name missing"),
    ("(1700000000.000100) can0 12G#00", "not hexadecimal"),
    ("(1700000000.000100) can0 123#0G", "not hexadecimal"),
    ("(1700000000.000100) can0 123#012", "odd number of hex digits"),
    ("(1700000000.000100) can0 123456789#00", "must be 3 (standard) or 8"),
    ("(1700000000.000100) can0 1234#00", "must be 3 (standard) or 8"),
    ("(1700000000.000100) can0 FFF#00", "above 0x7FF"),
    ("(1700000000.000100) can0 C0000001#00", "above 0x1FFFFFFF"),
    ("(1700000000.000100) can0 123#010203040506070809", "at most 8"),
    ("(1700000000.000100) can0 123##1AABBCCDDEEFF00112233", "not a CAN FD length"),
    ("(1700000000.000100) can0 20000040#R", "error frame cannot be a remote"),
    ("(1700000000.000100) can0 12300", "no '#'"),
    ("(1700000000.000100) can0 123###00", "CAN XL"),
    ("", "empty line"),
    ("   ", "empty line"),
    ("\x01\x02garbage\x7f", "expected 3 fields"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
def test_each_malformed_form_is_reported(line: str, reason: str) -> None:
    result = parse_line(line.encode())
    assert isinstance(result, str) and reason in result


def test_malformed_lines_have_line_numbers_and_do_not_stop_parsing() -> None:
    good = f"{TS} can0 123#01"
    lines = [good] + [m[0] for m in MALFORMED] + [good]
    raw = ("\n".join(lines) + "\n").encode() + b"(17\xff\xfe0) can0 123#00\n"
    parsed = parse_candump(raw, first_line=10)
    assert len(parsed.batch) == 2
    numbers = [m.line for m in parsed.malformed]
    # Blank lines are counted as blank, neither frames nor malformed (issue 13 §1 item 15).
    blank = [11 + i for i, m in enumerate(MALFORMED) if m[1] == "empty line"]
    assert parsed.blank == len(blank) == 2
    expected = [n for n in range(11, 11 + len(MALFORMED)) if n not in blank]
    assert numbers == [*expected, 10 + len(lines)]
    assert "non-ASCII" in parsed.malformed[-1].reason
    assert parsed.malformed[-1].text.startswith("(17\\xff\\xfe0)")
    assert parsed.malformed[0].text == MALFORMED[0][0]


def test_non_ascii_channel_is_rejected_not_mangled() -> None:
    parsed = parse_candump(b"(1.000000) c\xe4n0 123#01\n(1.000000) can0 123#01\n")
    assert len(parsed.batch) == 1 and parsed.batch.channels == ["can0"]
    assert parsed.malformed[0].line == 1


def test_chunk_channel_table_is_shared_and_stable() -> None:
    channels: list[str] = []
    a = parse_candump(b"(1.0) can1 123#01\n", channels=channels)
    b = parse_candump(b"(2.0) can0 123#01\n(3.0) can1 123#01\n", channels=channels)
    assert channels == ["can1", "can0"]
    assert a.batch.channel.tolist() == [0] and b.batch.channel.tolist() == [1, 0]


CLASSIC_CAPTURE = """\
(1700000000.000100) can0 123#
(1700000000.000200) can0 7FF#0102030405060708
(1700000000.000300) can1 18FF50E5#AABBCC
(1700000000.000400) can0 00000001#11
(1700000000.100500) can1 0CF00400#F0FFFF0000FFFFFF
(1700000001.999999) can0 000#00
"""


def test_data_frames_equal_python_can_reader() -> None:
    ours = parse_candump(CLASSIC_CAPTURE.encode()).batch
    theirs = list(can.CanutilsLogReader(io.StringIO(CLASSIC_CAPTURE)))
    assert len(theirs) == len(ours)
    for i, msg in enumerate(theirs):
        assert ours.timestamp[i] == msg.timestamp
        assert ours.can_id[i] == msg.arbitration_id
        assert bool(ours.is_extended[i]) == msg.is_extended_id
        assert bytes(ours.data[i, : ours.dlc[i]]) == bytes(msg.data)
        assert ours.channels[ours.channel[i]] == msg.channel


def test_python_can_loses_error_classes_but_we_keep_them() -> None:
    line = "(1700000000.000100) can0 20000040#0000000000000000\n"
    theirs = next(iter(can.CanutilsLogReader(io.StringIO(line))))
    assert not theirs.is_error_frame and theirs.arbitration_id == 0x40  # python-can's loss
    ours = parse_candump(line.encode()).batch
    assert ours.is_error.tolist() == [True] and ours.can_id[0] == 0x40


def test_format_matches_candump_text() -> None:
    batch = parse_candump(CLASSIC_CAPTURE.encode()).batch
    assert format_candump(batch).decode() == CLASSIC_CAPTURE


def test_format_all_odd_forms_exactly() -> None:
    text = (
        f"{TS} can0 123#R\n{TS} can0 18FF50E5#R5\n{TS} can0 123##3{'AB' * 12}\n"
        f"{TS} can0 20000040#0000000000000000\n{TS} can0 123##0\n{TS} vcan1 124#01\n"
    )
    batch = parse_candump(text.encode()).batch
    assert format_candump(batch).decode() == text


def test_format_empty_batch() -> None:
    assert format_candump(FrameBatch.empty()) == b""


KIND_FLAGS = {
    "s": 0,
    "x": int(FLAG_EXTENDED),
    "e": int(FLAG_ERROR),
    "r": int(FLAG_REMOTE),
    "f": int(FLAG_FD),
}


@st.composite
def frame_batches(draw: st.DrawFn) -> FrameBatch:
    n = draw(st.integers(1, 40))
    kinds = draw(st.lists(st.sampled_from("sxerf"), min_size=n, max_size=n))
    timestamps = draw(st.lists(st.integers(0, 4_000_000_000_000_000), min_size=n, max_size=n))
    channel = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    rows = []
    for kind, micros, ch in zip(kinds, timestamps, channel, strict=True):
        flags = KIND_FLAGS[kind]
        can_id = draw(st.integers(0, 0x7FF if kind in "srf" else 0x1FFFFFFF))
        if kind == "f":
            flags |= draw(
                st.sampled_from([0, int(FLAG_BRS), int(FLAG_ESI), int(FLAG_BRS | FLAG_ESI)])
            )
            nbytes = draw(st.sampled_from([0, 1, 8, 12, 16, 20, 24, 32, 48, 64]))
        else:
            nbytes = draw(st.integers(0, 8))
        payload = b"" if kind == "r" else draw(st.binary(min_size=nbytes, max_size=nbytes))
        rows.append((micros / 1e6, can_id, flags, nbytes, payload, ch))
    data = np.zeros((n, 64), np.uint8)
    for i, row in enumerate(rows):
        data[i, : len(row[4])] = np.frombuffer(row[4], np.uint8)
    return FrameBatch(
        timestamp=np.array([r[0] for r in rows]),
        can_id=np.array([r[1] for r in rows], np.uint32),
        flags=np.array([r[2] for r in rows], np.uint8),
        dlc=np.array([r[3] for r in rows], np.uint8),
        data=data,
        channel=np.array([r[5] for r in rows], np.int16),
        channels=["can0", "vcan12", "any"],
    )


@settings(max_examples=150, deadline=None)
@given(frame_batches())
def test_round_trip_is_exact(batch: FrameBatch) -> None:
    text = format_candump(batch)
    back = parse_candump(text)
    assert back.malformed == []
    got = back.batch
    assert np.array_equal(got.timestamp, batch.timestamp)
    assert np.array_equal(got.can_id, batch.can_id)
    assert np.array_equal(got.flags, batch.flags)
    assert np.array_equal(got.dlc, batch.dlc)
    width = got.data.shape[1]
    assert np.array_equal(got.data, batch.data[:, :width])
    assert not batch.data[:, width:].any()
    assert [got.channels[c] for c in got.channel] == [batch.channels[c] for c in batch.channel]
    assert format_candump(got) == text


def test_odd_channel_names_become_one_token() -> None:
    batch = parse_candump(b"(1.000000) can0 123#01\n").batch
    batch.channels = ["my bus#1"]
    text = format_candump(batch)
    assert text == b"(0000000001.000000) my_bus_1 123#01\n"
    assert parse_candump(text).batch.channels == ["my_bus_1"]


def test_reads_python_can_written_log() -> None:
    out = io.StringIO()
    writer = can.CanutilsLogWriter(out, channel="vcan0")
    msgs = [
        can.Message(timestamp=1.25, arbitration_id=0x123, is_extended_id=False, data=b"\x01"),
        can.Message(timestamp=1.5, arbitration_id=0x1ABCDEF, data=bytes(range(8))),
        can.Message(timestamp=1.75, arbitration_id=0x7, is_extended_id=False, is_remote_frame=True),
    ]
    for msg in msgs:
        writer.on_message_received(msg)
    parsed = parse_candump(out.getvalue().encode())
    assert parsed.malformed == []
    batch = parsed.batch
    assert batch.can_id.tolist() == [0x123, 0x1ABCDEF, 0x7]
    assert batch.is_extended.tolist() == [False, True, False]
    assert batch.is_remote.tolist() == [False, False, True]
    assert np.allclose(batch.timestamp - batch.timestamp[0], [0, 0.25, 0.5])


@pytest.mark.parametrize("channel", ["can0", "can-1", "slcan_0"])
def test_uniform_captures_with_any_channel_name(channel: str) -> None:
    text = "".join(f"(1700000000.{i:06d}) {channel} {i:03X}#{i:02X}\n" for i in range(200))
    parsed = parse_candump(text.encode())
    assert parsed.malformed == [] and parsed.batch.channels == [channel]
    assert parsed.batch.can_id.tolist() == list(range(200))
    assert format_candump(parsed.batch).decode() == text
