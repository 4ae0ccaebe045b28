"""candump-style filters (candiag/ingest/filters.py): the parser, hostile syntax, the CAN_RAW
semantics over a FrameBatch, and ``record``/``decode`` end to end with ``--filter``."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import can
import numpy as np
import pytest
from can.interfaces import virtual

from candiag.capture import read_capture
from candiag.cli import main
from candiag.errors import InputError
from candiag.ingest.filters import (
    CAN_EFF_FLAG,
    FrameFilter,
    IdFilter,
    kernel_ids,
    parse_filters,
    parse_group,
)
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_REMOTE, FrameBatch

REPO = Path(__file__).resolve().parents[1]


def batch(rows: list[tuple[int, int, str]]) -> FrameBatch:
    """(can_id, flags, channel) rows, 8 zero bytes each."""
    channels = sorted({c for _, _, c in rows})
    n = len(rows)
    return FrameBatch(
        timestamp=np.arange(n, dtype=np.float64),
        can_id=np.array([r[0] for r in rows], np.uint32),
        flags=np.array([r[1] for r in rows], np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=np.zeros((n, 8), np.uint8),
        channel=np.array([channels.index(r[2]) for r in rows], np.int16),
        channels=channels,
    )


def kept(specs: list[str], rows: list[tuple[int, int, str]]) -> list[int]:
    frame_filter = parse_filters(specs)
    assert frame_filter is not None
    return np.flatnonzero(frame_filter.keep(batch(rows))).tolist()


STD, EXT, RTR, ERR = 0, int(FLAG_EXTENDED), int(FLAG_REMOTE), int(FLAG_ERROR)


# -- parsing ----------------------------------------------------------------------------------
def test_parse_candump_usage_examples() -> None:
    group = parse_group("can0,123:7FF,400:700,#000000FF")
    assert group.interface == "can0" and group.error_mask == 0xFF and not group.join
    assert group.ids == (IdFilter(0x123, 0x7FF), IdFilter(0x400, 0x700))
    inverted = parse_group("can2,400~7F0")
    assert inverted.ids == (IdFilter(0x400, 0x7F0, inverted=True),)
    # 8 hex digits: an extended id (candump.c checks the ':' at index 8); the ERR flag
    # is cleared from the mask (DFFFFFFF -> DFFFFFFF & ~0x20000000).
    extended = parse_group("vcan2,12345678:DFFFFFFF")
    assert extended.ids == (IdFilter(0x12345678 | CAN_EFF_FLAG, 0xDFFFFFFF),)
    assert parse_group("any,0~0,#FFFFFFFF").ids == (IdFilter(0, 0, inverted=True),)
    assert parse_group("123:7FF").interface is None
    assert parse_group("can0,123:7FF,124:7FF,j").join
    assert parse_group("can0,123:7FF,J").join
    assert parse_group("can0,#0").error_mask == 0
    assert parse_filters([]) is None


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "--filter is empty"),
        ("   ", "--filter is empty"),
        ("can0", "without any filter"),
        ("can0,", "item 2 ('')"),
        (",123:7FF", "empty interface name"),
        ("can0,123", "not a filter"),
        ("can0,0x123:7FF", "0x prefix"),
        ("can0,123:0x7FF", "0x prefix"),
        ("can0,123:", "the mask is missing"),
        (":7FF", "the id is missing"),
        ("can0,123:7FF:1", "found 2"),
        ("can0,123~7FF:1", "found 2"),
        ("can0,123456789:7FF", "not 1-8 hex digits"),
        ("can0,12G:7FF", "not 1-8 hex digits"),
        ("can0,-1:7FF", "not 1-8 hex digits"),
        ("can0, 123:7FF", "not 1-8 hex digits"),
        ("can0,123:7FF,#FF,#1", "a second error mask"),
        ("can0,#", "the error mask is missing"),
        ("can0,#-1", "not 1-8 hex digits"),
        ("can 0,123:7FF", "neither an interface name nor a filter"),
        ("[red]x[/],1:1", "neither an interface name nor a filter"),
        ("can0,123:7FF," + "1" * 5000, "at most 4096"),
        ("can0,123:7FF,,124:7FF", "item 3 ('')"),
        ("can0,123:7FFzz", "not 1-8 hex digits"),
        ("can0,k", "not a filter"),
    ],
)
def test_bad_syntax_says_where_and_how(spec: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        parse_filters([spec])
    message = str(info.value)
    assert says in message, message
    assert message.startswith("--filter")


# -- semantics (hand-computed against the CAN_RAW rules) ---------------------------------------
def test_id_and_mask_match_standard_extended_and_remote_alike() -> None:
    rows = [(0x123, STD, "can0"), (0x123, EXT, "can0"), (0x123, RTR, "can0"), (0x124, STD, "can0")]
    # 123:7FF: the mask has no flag bits, so EFF and RTR frames with id 0x123 match too.
    assert kept(["can0,123:7FF"], rows) == [0, 1, 2]
    # C00007FF: EFF and RTR bits in the mask: standard data frames only.
    assert kept(["can0,123:C00007FF"], rows) == [0]
    # 8 digits: the extended 0x123 only (with the EFF bit in the mask).
    assert kept(["can0,00000123:9FFFFFFF"], rows) == [1]
    # 7F0 mask: 0x120..0x12F
    assert kept(["120:7F0"], rows) == [0, 1, 2, 3]


def test_inverted_join_and_groups() -> None:
    rows = [(0x100, STD, "can0"), (0x123, STD, "can0"), (0x200, STD, "can0"), (0x7FF, STD, "can0")]
    assert kept(["123~7FF"], rows) == [0, 2, 3]
    # or: matches either filter; join: both (not 0x123 and in 0x100-0x1FF)
    assert kept(["123~7FF,100:700"], rows) == [0, 1, 2, 3]
    assert kept(["123~7FF,100:700,j"], rows) == [0]
    # two groups are or-ed, as candump's two arguments on one interface
    assert kept(["100:7FF", "200:7FF"], rows) == [0, 2]
    # 0~0 never matches: no data frame (candump's "error frames only" example)
    assert kept(["any,0~0"], rows) == []


def test_error_mask_and_default_error_frames() -> None:
    rows = [(0x123, STD, "can0"), (0x040, ERR, "can0"), (0x004, ERR, "can0"), (0x040, STD, "can0")]
    # Without '#', error frames are kept (candiag's documented difference from candump)
    assert kept(["123:7FF"], rows) == [0, 1, 2]
    assert kept(["123:7FF,#0"], rows) == [0]
    assert kept(["123:7FF,#40"], rows) == [0, 1]  # class 0x040 (no ACK) only
    assert kept(["any,0~0,#FFFFFFFF"], rows) == [1, 2]
    # an error frame's class bits are never read as an identifier: 040:7FF keeps the data
    # frame 0x040, the error frame with class 0x040 only through the error rule
    assert kept(["040:7FF,#4"], rows) == [2, 3]


def test_channels_named_by_groups() -> None:
    rows = [(0x123, STD, "can0"), (0x123, STD, "can1"), (0x200, STD, "can1")]
    assert kept(["can0,123:7FF"], rows) == [0]  # can1 is not listened to
    assert kept(["can0,123:7FF", "can1,200:7FF"], rows) == [0, 2]
    assert kept(["any,123:7FF"], rows) == [0, 1]
    assert kept(["123:7FF"], rows) == [0, 1]
    frame_filter = parse_filters(["vcan9,1:1"])
    assert frame_filter is not None
    with pytest.raises(InputError, match="names vcan9 but the recorded channel is can0"):
        frame_filter.check_channels(["can0"], "the recorded channel")


def test_kernel_ids_carry_flags() -> None:
    ids = kernel_ids(batch([(0x123, EXT, "c"), (0x1, RTR, "c"), (0x2, STD, "c")]))
    assert ids.tolist() == [0x80000123, 0x40000001, 0x2]


def test_empty_batch() -> None:
    frame_filter = FrameFilter((parse_group("1:1"),))
    assert len(frame_filter.apply(FrameBatch.empty())) == 0


# -- record and decode end to end ---------------------------------------------------------------
def _send(channel: str, stop: threading.Event) -> None:
    while not virtual.channels.get(channel):
        if stop.wait(0.01):
            return
    bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    try:
        while not stop.wait(0.01):
            bus.send(can.Message(arbitration_id=0x123, data=b"\x01", is_extended_id=False))
            bus.send(can.Message(arbitration_id=0x124, data=b"\x02", is_extended_id=False))
            bus.send(can.Message(arbitration_id=0x123, data=b"\x03", is_extended_id=True))
            bus.send(can.Message(arbitration_id=0x40, is_error_frame=True, data=bytes(8), dlc=8))
    finally:
        bus.shutdown()


def test_record_and_decode_with_a_filter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    channel = f"filter-rec-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "filtered.log"
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(channel, stop), name="test-filter-sender")
    sender.start()
    try:
        argv = ["record", "-i", "virtual", "-c", channel, "-o", str(out), "--duration", "0.6"]
        assert main([*argv, "--filter", f"{channel},123:C00007FF,#0"]) == 0
    finally:
        stop.set()
        sender.join(5)
    err = capsys.readouterr().err
    assert "frames left out by the filter" in err, err
    back, stats = read_capture(out)
    assert stats.malformed == 0 and len(back) > 5
    # only standard data frames with id 0x123: no 0x124, no extended 0x123, no error frame
    assert set(back.can_id.tolist()) == {0x123}
    assert not back.is_extended.any() and not back.is_error.any()

    # decode the recording with another filter (an inverted one) through the real CLI
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "decode", str(out), "--filter", "123~7FF"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # every frame was 0x123: the inverted filter keeps none
    assert f"{len(back)} filtered out" in done.stderr
    assert f"filter 123~7FF: {len(back)} of {len(back)} frames left out" in done.stderr


def test_record_refuses_a_filter_for_another_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.log"
    argv = ["record", "-i", "virtual", "-c", "rec-x", "-o", str(out), "--filter", "can9,1:7FF"]
    assert main(argv) != 0
    assert "names can9 but the recorded channel is rec-x" in capsys.readouterr().err
    assert not out.exists()


def test_decode_warns_of_a_channel_the_capture_has_not(tmp_path: Path) -> None:
    log = tmp_path / "two.log"
    # 0x200 is the reference DBC's ContactorCommand (2 bytes)
    log.write_text("(1.0) can0 200#1404\n(1.1) can1 200#1404\n(1.2) can1 201#01\n")
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "decode", str(log), "--filter", "can1,200:7FF",
         "--filter", "vcan7,1:1"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and '"channel": "can1"' in lines[0]
    assert (
        "filter names vcan7, a channel this capture does not have (its channels: can0, can1)"
        in done.stderr
    )
