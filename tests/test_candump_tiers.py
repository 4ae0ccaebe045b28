"""The candump parser's fixed-layout tier gives exactly what the two tiers after it give.

``parse_candump`` first decodes lines of the chunk's own layout as 8-byte words (the
fixed-layout tier) and leaves everything else to the shape-grouped tier (column-wise
decoding of lines grouped by separator positions) and then to the per-line tier, which
together are the reader's original algorithm.  Here random mixes of line shapes, good
and malformed, are parsed both ways, and the frames, the channel of every frame and the
malformed reports must be identical.  Speed is measured in ``bench/``
(``python -m bench --only decode``), not here.
"""

from __future__ import annotations

import io
from unittest import mock

import can
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.capture import CaptureReader
from candiag.capture.formats.candump import ParsedChunk, fixed_layout, format_candump, parse_candump
from candiag.capture.formats.candump.chunk import ChunkArrays, line_bounds
from candiag.capture.formats.candump.fixed_layout import decode_fixed_layout
from candiag.capture.formats.candump.parser import decode_leftovers
from candiag.ingest.frames import ChannelTable

HEX = "0123456789ABCDEFabcdef"
NAMES = [
    "can0",
    "can1",
    "vcan0",
    "any",
    "slcan_0",
    "can-1",
    "a.b",
    "PCAN_USBBUS1x234",  # 16 characters: two name words
    "PCAN_USBBUS1x2345",  # 17: beyond the fixed-layout tier
    "c)n",
    "c#n",
    "(x",
]
KINDS = ["std", "ext", "err", "std", "ext", "remote", "fd", "suffix", "dots", "dir", "mutant"]
KINDS += ["empty", "odd_id"]


def later_tiers_parse(text: bytes) -> ParsedChunk:
    """The shape-grouped and per-line tiers alone over every line (the reference)."""
    buf = np.frombuffer(text + (b"\n" if text and not text.endswith(b"\n") else b""), np.uint8)
    nl = np.flatnonzero(buf == 10)
    starts, ends = line_bounds(buf, nl)
    out = ChunkArrays(len(nl))
    table = ChannelTable()
    rows = np.arange(len(nl))
    malformed = decode_leftovers(buf, starts, ends, rows, out, table, 1)
    # Blank lines are counted apart, not reported as malformed (issue 13 §1 item 15).
    reported = [m for m in malformed if m.reason != "empty line"]
    blank = len(malformed) - len(reported)
    return ParsedChunk(batch=out.batch(table), lines=len(nl), malformed=reported, blank=blank)


def assert_same(got: ParsedChunk, want: ParsedChunk) -> None:
    assert got.lines == want.lines
    assert got.malformed == want.malformed
    assert got.blank == want.blank
    a, b = got.batch, want.batch
    assert np.array_equal(a.timestamp, b.timestamp)
    assert np.array_equal(a.can_id, b.can_id)
    assert np.array_equal(a.flags, b.flags)
    assert np.array_equal(a.dlc, b.dlc)
    assert a.data.shape == b.data.shape
    assert np.array_equal(a.data, b.data)
    assert [a.channels[c] for c in a.channel] == [b.channels[c] for c in b.channel]
    assert sorted(a.channels) == sorted(b.channels)


def hex_text(draw: st.DrawFn, n: int, alphabet: str = HEX) -> str:
    return "".join(draw(st.lists(st.sampled_from(alphabet), min_size=n, max_size=n)))


@st.composite
def candump_lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(KINDS))
    nint, nfrac = 10, 6
    if draw(st.integers(0, 3)) == 0:
        nint, nfrac = draw(st.integers(1, 12)), draw(st.integers(1, 9))
    digits = hex_text(draw, nint + nfrac, "0123456789")
    name = draw(st.sampled_from(NAMES))
    if kind == "err":
        ident = "2" + hex_text(draw, 7, "0123456789ABCDEF")
    elif kind == "odd_id":
        ident = hex_text(draw, draw(st.integers(3, 8)), "0123456789ABCDEFf")
    elif kind == "ext" or (kind != "std" and draw(st.booleans())):
        ident = draw(st.sampled_from("01")) + hex_text(draw, 7)
    else:
        ident = draw(st.sampled_from("01234567")) + hex_text(draw, 2)
    data = hex_text(draw, 2 * draw(st.integers(0, 8)))
    body = {
        "remote": "R" + draw(st.sampled_from(["", "0", "5", "8", "9"])),
        "fd": "#" + draw(st.sampled_from("0123")) + data,
        "suffix": (data if len(data) == 16 else "00" * 8) + "_" + draw(st.sampled_from("9ACF")),
        "dots": ".".join(data[i : i + 2] for i in range(0, len(data), 2)),
    }.get(kind, data)
    line = f"({digits[:nint]}.{digits[nint:]}) {name} {ident}#{body}"
    if kind == "dir":
        line += draw(st.sampled_from([" R", " T", " X"]))
    if kind == "empty":
        line = draw(st.sampled_from(["", "   ", "x"]))
    raw = line.encode()
    if kind == "mutant" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        char = bytes([draw(st.sampled_from(list(b" #().0aZgG\t\xff\x7f\x01")))])
        op = draw(st.sampled_from(["replace", "delete", "insert"]))
        tail = raw[at + 1 :] if op != "insert" else raw[at:]
        raw = raw[:at] + (char if op != "delete" else b"") + tail
    return raw + draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))


@st.composite
def captures(draw: st.DrawFn) -> bytes:
    """A few distinct lines repeated in random order (captures repeat their layout)."""
    distinct = draw(st.lists(candump_lines(), min_size=1, max_size=30))
    repeats = draw(st.lists(st.integers(0, len(distinct) - 1), max_size=80))
    lines = distinct + [distinct[i] for i in repeats]
    order = draw(st.permutations(range(len(lines))))
    text = b"".join(lines[i] for i in order)
    if draw(st.booleans()):
        text = text.rstrip(b"\n")  # the last line may lack its newline
    return text


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(captures())
def test_fixed_layout_tier_equals_the_later_tiers(text: bytes) -> None:
    want = later_tiers_parse(text)
    assert_same(parse_candump(text), want)
    # Small blocks and the separately decoded buffer tail of big chunks, on small inputs.
    with mock.patch.object(fixed_layout, "_PAD_WHOLE_BYTES", 0):
        with mock.patch.object(fixed_layout, "_BLOCK_LINES", 7):
            assert_same(parse_candump(text), want)


def reference_like_capture(lines: int, seed: int = 7) -> bytes:
    """Standard, extended and error frames of every length, like a charger capture."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(lines):
        nbytes = int(rng.integers(0, 9))
        data = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes().hex().upper()
        choice = i % 3
        if choice == 0:
            ident = f"{int(rng.integers(0, 0x800)):03X}"
        elif choice == 1:
            ident = f"{int(rng.integers(0, 1 << 29)):08X}"
        else:
            ident = f"{0x20000000 | int(rng.integers(1, 0x200)):08X}"
        out.append(f"(17000{i:05d}.{int(rng.integers(0, 10**6)):06d}) can{i % 2} {ident}#{data}\n")
    return "".join(out).encode()


def test_fixed_layout_tier_takes_every_line_of_a_plain_capture() -> None:
    text = reference_like_capture(3000)
    buf = np.frombuffer(text, np.uint8)
    starts, ends = line_bounds(buf, np.flatnonzero(buf == 10))
    out = ChunkArrays(len(starts))
    channels = ChannelTable()
    done = decode_fixed_layout(buf, starts, ends, out, channels)
    assert done.all() and channels == ["can0", "can1"]
    assert_same(parse_candump(text), later_tiers_parse(text))


def test_plain_capture_equals_python_can_reader() -> None:
    text = reference_like_capture(2000, seed=3)
    ours = parse_candump(text).batch
    theirs = list(can.CanutilsLogReader(io.StringIO(text.decode())))
    assert len(theirs) == len(ours)
    data_rows = np.flatnonzero(~ours.is_error)
    assert len(data_rows) > 1000
    for i in data_rows.tolist():
        msg = theirs[i]
        assert ours.timestamp[i] == msg.timestamp
        assert ours.can_id[i] == msg.arbitration_id
        assert bool(ours.is_extended[i]) == msg.is_extended_id
        assert bytes(ours.data[i, : ours.dlc[i]]) == bytes(msg.data)
        assert not ours.data[i, ours.dlc[i] :].any()
        assert ours.channels[ours.channel[i]] == msg.channel
    # python-can turns error frames into data frames; we keep the class bits.
    errors = np.flatnonzero(ours.is_error)
    assert len(errors) > 500
    assert ((ours.can_id[errors] >= 1) & (ours.can_id[errors] < 0x200)).all()


def test_more_channel_names_and_layouts_than_the_fixed_layout_tier_takes() -> None:
    lines = [f"(1700000000.{i:06d}) n{i % 40:02d} 123#{i % 256:02X}\n" for i in range(400)]
    lines += [f"(1.{i:0{1 + i % 9}d}) x{'y' * (i % 7)} 1ABCDEF0#\n" for i in range(100)]
    lines += ["(1700000000.000001) can0 123#0\n", "(1700000000.000001) can0 800#00\n"]
    lines += ["(1700000000.000001) can0 3FFFFFFF#00\n", "(1700000000.000001) can0 123#"]
    text = "".join(lines).encode()
    parsed = parse_candump(text)
    assert_same(parsed, later_tiers_parse(text))
    assert len(parsed.batch) == 502 and [m.line for m in parsed.malformed] == [501, 502]
    assert parsed.batch.is_error.tolist()[-2:] == [True, False]  # 3FFFFFFF: error classes
    assert {parsed.batch.channels[c] for c in parsed.batch.channel[:400]} == {
        f"n{i:02d}" for i in range(40)
    }


def test_long_timestamps_and_names_at_the_limits() -> None:
    text = (
        b"(123456789012.123456) PCAN_USBBUS1x234 123#01\n"
        b"(12345678901234.1234) PCAN_USBBUS1x234 123#02\n"
        b"(123456789012345.1234) PCAN_USBBUS1x2345 123#03\n"
        b"(0.5) a 1FFFFFFF#FFFFFFFFFFFFFFFF\n"
        b"(0.5) a 20000004#0004000000000000\n"
    )
    parsed = parse_candump(text)
    assert_same(parsed, later_tiers_parse(text))
    assert parsed.batch.timestamp[0] == 123456789012.123456
    assert parsed.batch.timestamp[2] == 123456789012345.1234
    assert parsed.batch.can_id.tolist() == [0x123, 0x123, 0x123, 0x1FFFFFFF, 0x4]


def test_chunked_reading_equals_one_parse(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    text = (
        reference_like_capture(5000) + b"(1.0) can0 123#R\nbad line\n" + reference_like_capture(7)
    )
    path = tmp_path / "x.log"
    path.write_bytes(text)
    whole = parse_candump(text)
    reader = CaptureReader(path, chunk_lines=333, block_bytes=4096)
    batches = list(reader.batches())
    got = batches[0].concat(batches)
    assert np.array_equal(got.timestamp, whole.batch.timestamp)
    assert np.array_equal(got.data, whole.batch.data[:, : got.data.shape[1]])
    assert reader.stats.malformed == 1 and reader.stats.examples[0].line == 5002
    assert format_candump(got) == format_candump(whole.batch)


def test_many_odd_lines_among_plain_ones() -> None:
    """Hundreds of lines left to the later tiers (their compacted-buffer path)."""
    plain = reference_like_capture(6000, seed=11).splitlines(keepends=True)
    odd = [
        b"(1700000000.000001) can0 123#R\n",
        b"(1700000000.000002) can0 123##1AABB\n",
        b"(1700000000.000003) can0 123#11.22\n",
        b"(1700000000.000004) can0 12G#00\n",
        b"(1700000000.000005) can0 123#0102 T\r\n",
    ]
    lines = [odd[i // 15 % len(odd)] if i % 15 == 0 else line for i, line in enumerate(plain)]
    text = b"".join(lines)
    parsed = parse_candump(text)
    assert_same(parsed, later_tiers_parse(text))
    assert len(parsed.malformed) == 80 and parsed.batch.data.shape[1] == 8  # FD, 2 bytes
    assert int(parsed.batch.is_fd.sum()) == 80 and int(parsed.batch.is_remote.sum()) == 80


@pytest.mark.parametrize("seed", [5, 6])
def test_blocks_and_buffer_tail_of_big_chunks(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Big chunks are decoded in blocks, their last lines from a padded tail copy."""
    monkeypatch.setattr(fixed_layout, "_BLOCK_LINES", 97)
    monkeypatch.setattr(fixed_layout, "_PAD_WHOLE_BYTES", 0)
    lines = reference_like_capture(1500, seed=seed).splitlines(keepends=True)
    lines[700] = b"(1700000000.000001) can0 123#R\n"
    lines[-3] = b"(1700000000.000001) vcan0 123#01\n"
    text = b"".join(lines) + b"(1.5) x 1#"  # short last line without a newline
    parsed = parse_candump(text)
    assert_same(parsed, later_tiers_parse(text))
    assert len(parsed.batch) == 1500 and [m.line for m in parsed.malformed] == [1501]
    assert parsed.batch.channels[parsed.batch.channel[-3]] == "vcan0"


def test_fixed_layout_tier_itself_decodes_blocks_and_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only equal results: the fixed-layout tier (not a later one) decoded every line."""
    monkeypatch.setattr(fixed_layout, "_BLOCK_LINES", 97)
    monkeypatch.setattr(fixed_layout, "_PAD_WHOLE_BYTES", 0)
    text = reference_like_capture(1000, seed=9) + b"(1700000000.000001) can1 7FF#"
    buf = np.frombuffer(text + b"\n", np.uint8)
    starts, ends = line_bounds(buf, np.flatnonzero(buf == 10))
    out = ChunkArrays(len(starts))
    channels = ChannelTable()
    assert decode_fixed_layout(buf, starts, ends, out, channels).all()
    got = ParsedChunk(batch=out.batch(channels), lines=len(starts), malformed=[])
    assert_same(got, later_tiers_parse(text))
