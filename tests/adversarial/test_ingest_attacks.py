"""Hostile captures (issue 13 §1 items 6 and 15): too many channel names, a sea of blank lines,
old Mac line ends.  Each runs the real CLI in a bounded child; the bounds are generous (speed
is measured in bench), a hang or a crash is what they catch.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import can
import numpy as np
import pytest
from frame_batches import batch_of

from candiag.capture import read_capture
from candiag.capture.formats.candump import parse_candump
from candiag.ingest.frames import MAX_CHANNELS, ChannelTable, FrameBatch
from tests.adversarial.bounded import run_bounded

MIB = 1 << 20
OVERFLOW = "(other channels)"


def _many_channels(tmp_path: Path, count: int) -> Path:
    """One frame on each of ``count`` distinct channel names (names of 2..6 characters)."""
    capture = tmp_path / "channels.log"
    lines = [f"({1_700_000_000 + k * 0.001:.6f}) c{k} 123#0102" for k in range(count)]
    capture.write_text("\n".join(lines) + "\n")
    return capture


@pytest.mark.slow
def test_seventy_thousand_channel_names_are_capped_and_analyzed(tmp_path: Path) -> None:
    capture = _many_channels(tmp_path, 70_000)
    out = tmp_path / "r.json"
    result = run_bounded(
        ["analyze", str(capture), "--bitrate", "125000", "--json", str(out)], timeout_s=180
    )
    assert result.code == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["frames"]["total"] == 70_000  # every frame read, none lost to the cap
    channels = report["capture"]["channels"]
    assert len(channels) == 257 and OVERFLOW in channels and channels[:2] == ["c0", "c1"]
    assert report["capture"]["overflow_frames"] == 70_000 - 256
    assert any("more than 256 channel names" in note for note in report["notes"])


def test_seventy_thousand_channel_names_decode(tmp_path: Path) -> None:
    capture = _many_channels(tmp_path, 70_000)
    out = tmp_path / "d.jsonl"
    result = run_bounded(["decode", str(capture), "-o", str(out)], timeout_s=180)
    assert result.code == 0, result.stderr[-2000:]
    assert "70000 frames from 70000 lines" in result.stderr
    assert f"({70_000 - 256} frames) are read into one channel '{OVERFLOW}'" in result.stderr


def _gzip(*parts: bytes, newlines: int) -> bytes:
    """``parts[0]``, ``newlines`` newline bytes, then the other parts, as one gzip member."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [packer.compress(parts[0])]
    block = b"\n" * MIB
    for _ in range(newlines // MIB):
        out.append(packer.compress(block))
    out.extend(packer.compress(p) for p in parts[1:])
    out.append(packer.flush())
    return b"".join(out)


@pytest.mark.slow
def test_a_gzip_of_200_mb_of_newlines_costs_nothing_per_line(tmp_path: Path) -> None:
    capture = tmp_path / "blank.log.gz"
    first, last = b"(1700000000.000000) can0 123#01\n", b"(1700000001.000000) can0 123#02\n"
    capture.write_bytes(_gzip(first, last, newlines=200 * MIB))
    assert capture.stat().st_size < MIB  # the attack: a small file
    out = tmp_path / "r.json"
    result = run_bounded(
        ["analyze", str(capture), "--bitrate", "125000", "--json", str(out)], timeout_s=60
    )
    assert result.code == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["frames"]["data"] == 2
    assert report["capture"]["lines"] == 200 * MIB + 2
    assert report["capture"]["malformed_lines"] == 0  # blank lines are not malformed
    assert report["capture"]["blank_lines"] == 200 * MIB  # but counted: every line accounted


@pytest.mark.slow
def test_an_asc_file_with_200_mb_of_blank_lines(tmp_path: Path) -> None:
    capture = tmp_path / "blank.asc.gz"
    header = b"date Mon Jan 1 00:00:00 2024\nbase hex  timestamps absolute\n"
    frame = b"   1.000000 1  123             Rx   d 2 01 02\n"
    capture.write_bytes(_gzip(header, b" \r\n\t\n" + frame, newlines=200 * MIB))
    result = run_bounded(["decode", str(capture), "-o", str(tmp_path / "d.jsonl")], timeout_s=60)
    assert result.code == 0, result.stderr[-2000:]
    assert f"1 frames from {200 * MIB + 5} lines, {200 * MIB + 2} blank lines" in result.stderr
    assert "malformed" not in result.stderr


def test_a_cr_only_capture_reads_every_line(tmp_path: Path) -> None:
    """Old Mac line ends (CR alone): each CR ends a line, none is one long malformed line."""
    capture = tmp_path / "mac.log"
    lines = [f"({1_700_000_000 + k * 0.01:.6f}) can0 1{k % 100:02X}#0102" for k in range(500)]
    capture.write_bytes(("\r".join(lines) + "\r").encode())
    out = tmp_path / "r.json"
    result = run_bounded(["analyze", str(capture), "--bitrate", "125000", "--json", str(out)])
    assert result.code == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["frames"]["data"] == 500 and report["capture"]["malformed_lines"] == 0
    assert report["capture"]["lines"] == 500


# -- the pieces, fast --------------------------------------------------------------------------
def test_the_channel_table_caps_names_and_keeps_given_ones() -> None:
    table = ChannelTable(["x", "y"])
    assert [table.lookup(f"n{k}") for k in range(MAX_CHANNELS + 50)][-1] == MAX_CHANNELS
    assert len(table) == MAX_CHANNELS + 1 and table[-1] == OVERFLOW
    assert table[:2] == ["x", "y"] and table.lookup("y") == 1
    assert table.overflow_index == MAX_CHANNELS
    assert ChannelTable(["a"]).overflow_index is None


def test_a_plain_list_given_to_the_parser_is_extended_in_place_and_capped() -> None:
    channels = ["can0"]
    text = "".join(f"(1.0) ch{k} 123#01\n" for k in range(400)).encode()
    parsed = parse_candump(text, channels=channels)
    assert len(parsed.batch) == 400 and len(channels) == MAX_CHANNELS + 1
    names = [parsed.batch.channels[c] for c in parsed.batch.channel]
    assert names[:3] == ["ch0", "ch1", "ch2"] and names[-1] == OVERFLOW
    assert names.count(OVERFLOW) == 400 - (MAX_CHANNELS - 1)


def test_concat_and_live_batches_cap_channels_too() -> None:
    singles = [FrameBatch.empty(channels=[f"c{k}"]) for k in range(3)]
    msgs = [
        can.Message(timestamp=k, arbitration_id=1, data=b"\1", channel=f"c{k}")
        for k in range(40_000)
    ]
    live = batch_of(msgs)  # int16 indices: 40,000 names used to overflow
    assert len(live) == 40_000 and len(live.channels) == MAX_CHANNELS + 1
    parts = [live.take(slice(k, k + 1)) for k in range(0, 40_000, 97)]
    merged = FrameBatch.concat([*singles, *parts])
    assert len(merged) == len(parts) and len(merged.channels) <= MAX_CHANNELS + 1
    got = [merged.channels[c] for c in merged.channel]
    want = [p.channels[int(p.channel[0])] for p in parts]
    assert got == want  # names below the cap keep their name, the rest stay in overflow


def test_an_asc_file_with_300_channels_is_capped(tmp_path: Path) -> None:
    lines = ["date Mon Jan 1 00:00:00 2024", "base hex  timestamps absolute"]
    lines += [f"   {k / 100:.6f} {k + 1}  123             Rx   d 1 0{k % 9}" for k in range(300)]
    path = tmp_path / "many.asc"
    path.write_text("\n".join(lines) + "\n")
    batch, stats = read_capture(path)
    assert len(batch) == 300 and len(batch.channels) == MAX_CHANNELS + 1
    assert stats.overflow_frames == 300 - MAX_CHANNELS
    assert "more than 256 channel names" in stats.summary()


def test_blank_and_indented_lines_many_or_few_are_told_apart() -> None:
    frame = "(1.000000) can0 123#01"
    for repeat in (3, 200):  # below and above the per-line check's limit
        lines = [" \t ", "", "  " + frame, "\x0c\r", frame] * repeat
        parsed = parse_candump(("\n".join(lines) + "\n").encode(), first_line=5)
        assert len(parsed.batch) == 2 * repeat and parsed.blank == 3 * repeat
        assert parsed.malformed == [] and parsed.lines == 5 * repeat
    bad = parse_candump(b"\n \n(1.0) can0 1G3#01\n\n(2.0) can0 123#01\n", first_line=10)
    assert [m.line for m in bad.malformed] == [12] and bad.blank == 3
    assert np.array_equal(bad.batch.can_id, [0x123])
