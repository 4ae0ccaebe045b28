"""The raw view's per-id tracker (candiag/tui/idtracker.py) against hand-computed values,
the raw view model (names and decoded values of the last frames) and its rendering."""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console

from candiag.decode.dbc import load_reference_database
from candiag.ingest.filters import parse_filters
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FrameBatch
from candiag.tui.idtracker import IdTracker
from candiag.tui.rawview import RawViews
from candiag.tui.view import RawBusView, ScreenState, firmware_versions, raw_table, render_screen


def frames(rows: list[tuple[float, int, bool, bytes]], error: set[int] | None = None) -> FrameBatch:
    """(timestamp, id, extended, payload) rows; indices in ``error`` are error frames."""
    n = len(rows)
    width = 8 if all(len(r[3]) <= 8 for r in rows) else 64
    data = np.zeros((n, width), np.uint8)
    for i, r in enumerate(rows):
        data[i, : len(r[3])] = list(r[3])
    flags = [FLAG_EXTENDED if r[2] else 0 for r in rows]
    for i in error or set():
        flags[i] = FLAG_ERROR
    return FrameBatch(
        timestamp=np.array([r[0] for r in rows]),
        can_id=np.array([r[1] for r in rows], np.uint32),
        flags=np.array(flags, np.uint8),
        dlc=np.array([len(r[3]) for r in rows], np.uint8),
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def test_counts_periods_last_bytes_and_changes_by_hand() -> None:
    t = IdTracker()
    t.feed(
        frames(
            [
                (10.0, 0x100, False, b"\x01\x02"),
                (10.1, 0x200, True, b"\xaa"),
                (10.2, 0x100, False, b"\x01\x03"),  # byte 1 changes at 10.2
                (10.5, 0x100, False, b"\x01\x03"),
            ]
        )
    )
    # the second batch continues the same ids: 0x100 byte 0 changes at 11.0
    t.feed(frames([(11.0, 0x100, False, b"\x09\x03"), (11.1, 0x200, True, b"\xaa")]))
    rows = {r.id_text: r for r in t.snapshot(now=11.5, hold=1.0)}
    std, ext = rows["0x100"], rows["0x00000200"]
    assert (std.count, ext.count) == (4, 2)
    assert std.first_ts == 10.0 and std.last_ts == 11.0
    assert math.isclose(std.last_interval, 0.5)  # 11.0 - 10.5
    assert math.isclose(std.mean_period, (11.0 - 10.0) / 3)
    assert math.isclose(ext.mean_period, 1.0) and math.isclose(ext.last_interval, 1.0)
    assert std.data == b"\x09\x03" and std.dlc == 2
    # within 1 s of 11.5: byte 0 (changed at 11.0); byte 1 changed at 10.2, too long ago
    assert std.changed == (True, False)
    assert ext.changed == (False,)  # never changed (its first frame changes nothing)
    assert [r.id_text for r in t.snapshot(11.5)] == ["0x100", "0x00000200"]  # std first


def test_change_within_one_batch_and_dlc_change() -> None:
    t = IdTracker()
    t.feed(frames([(1.0, 0x1, False, b"\x00\x00\x00"), (2.0, 0x1, False, b"\x00\x00\x00\x00")]))
    (row,) = t.snapshot(now=2.5, hold=1.0)
    # a longer frame: the new byte 3 counts as changed (it appeared), bytes 0-2 did not
    assert row.changed == (False, False, False, True)
    (later,) = t.snapshot(now=3.5, hold=1.0)
    assert later.changed == (False, False, False, False)


def test_error_frames_counted_not_tracked_and_cap() -> None:
    t = IdTracker(max_ids=2)
    t.feed(
        frames(
            [
                (1.0, 0x40, False, bytes(8)),
                (1.1, 0x1, False, b"\x01"),
                (1.2, 0x2, False, b""),
                (1.3, 0x3, False, b"\x03"),
                (1.4, 0x3, False, b"\x03"),
            ],
            error={0},
        )
    )
    assert t.error_frames == 1 and len(t) == 2 and t.untracked == 2
    assert [r.can_id for r in t.snapshot(2.0)] == [0x1, 0x2]
    t.reset()
    assert len(t) == 0 and t.snapshot(2.0) == []


def test_fd_frames_widen_the_table() -> None:
    t = IdTracker()
    t.feed(frames([(1.0, 0x5, False, b"\x01")]))
    t.feed(frames([(2.0, 0x6, False, bytes(range(12)))]))
    rows = {r.can_id: r for r in t.snapshot(2.0)}
    assert rows[0x6].data == bytes(range(12)) and rows[0x5].data == b"\x01"


def test_stale_after_three_periods() -> None:
    t = IdTracker()
    t.feed(frames([(1.0, 0x7, False, b""), (1.1, 0x7, False, b""), (1.2, 0x7, False, b"")]))
    (row,) = t.snapshot(1.5)
    assert not row.stale(1.5) and row.stale(2.3)  # max(3 x 0.1 s, 1 s)


def test_raw_views_decode_names_values_and_filter() -> None:
    db = load_reference_database()
    telemetry = db.by_name("ModuleTelemetry")
    payload = telemetry.cantools_message.encode({"OutputVoltage": 767.8, "OutputCurrent": 40.0})
    views = RawViews(parse_filters(["can0,0283F000:1FFFFF00"]))
    views.add_bus("sim0", db)
    rows = [
        (1.0, telemetry.frame_id | 3, True, payload),
        (1.1, telemetry.frame_id | 3, True, payload),
        (1.1, 0x7F0, False, b"\x00"),
    ]
    views.feed("sim0", frames(rows))
    (bus,) = views.views(now=1.2)
    assert bus.filtered_out == 1
    (row,) = bus.rows
    assert row.id_text == "0x0283F003" and row.name == "ModuleTelemetry" and row.node == 3
    assert "OutputVoltage 767.8 V" in row.values and "OutputCurrent 40.0 A" in row.values
    assert math.isclose(row.period_s, 0.1)
    text = _text(raw_table(bus, 1.2))
    assert "ModuleTelemetry #3" in text and "100 ms" in text and "1 frames filtered out" in text
    views.reset()
    assert views.views(1.3)[0].rows == []


def test_changed_bytes_are_highlighted() -> None:
    views = RawViews()
    views.add_bus("b", load_reference_database())
    views.feed("b", frames([(1.0, 0x7F1, False, b"\x01\x02"), (1.1, 0x7F1, False, b"\x01\x05")]))
    (bus,) = views.views(1.2)
    console = Console(record=True, width=160, color_system="truecolor", force_terminal=True)
    console.print(raw_table(bus, 1.2))
    styled = console.export_text(styles=True, clear=False)
    plain = console.export_text()
    assert "01 05" in plain
    # byte 1 (05) is drawn on yellow, byte 0 (01) is not
    assert "\x1b[1;30;43m05" in styled and "\x1b[1;30;43m01" not in styled


def test_render_raw_mode_and_filter_in_header() -> None:
    bus = RawBusView(name="sim0", rows=[])
    state = ScreenState(now=0.0, title="t", buses=[], mode="raw", raw=[bus], filter_text="123:7FF")
    text = _text(render_screen(state))
    assert "RAW filter 123:7FF" in text and "Raw ids (0 ids)" in text


def test_firmware_versions_from_role_signal_names() -> None:
    assert firmware_versions("DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0") == (
        "DCDC 1.4 / PFC 2.0"
    )
    # other protocols' firmware roles (packs in candiag/data/packs)
    assert firmware_versions("IMC_VersionMinor=3 IMC_VersionMajor=1 VIFC_VersionMajor=2") == (
        "IMC 1.3 / VIFC 2"
    )
    assert (
        firmware_versions("SWVersionMajorHW=4 SWVersionMinor=1 SWVersionRevision=7") == "SW 4.1.7"
    )
    assert firmware_versions("DCDCVersion=258 PFCVersion=17") == "DCDC 258 / PFC 17"
    assert firmware_versions("HWVersion=2.0 Serial=77") == "HW 2 / Serial 77"
    assert firmware_versions("") == ""


def _text(renderable: object) -> str:
    console = Console(record=True, width=160, height=60, color_system=None)
    console.print(renderable)
    return console.export_text()
