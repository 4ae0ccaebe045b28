"""The live view's layout without a terminal: fitting a height (scroll state, footer),
compact by size, the keys of the app (escape sequences, v, c), and the findings' pointers
to what is on the screen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from candiag.config.model import BusConfig, Config
from candiag.diagnosis.engine import Finding
from candiag.tui.app import MonitorApp
from candiag.tui.session import MonitorSession
from candiag.tui.view import (
    BusView,
    ScreenState,
    ScrollState,
    is_compact,
    render_screen,
    screen_pointer,
)
from tests.bus_reports import bus_report

NOW = 1_800_000_000.0


def _node(family: str, address: int, status: str) -> dict[str, Any]:
    return {"family": family, "address": address, "status": status, "last_seen": NOW - 0.1}


def _bus(nodes: list[dict[str, Any]]) -> BusView:
    report = bus_report({"state": "error_active", "nodes": nodes})
    return BusView(name="can0", source="", report=report)


def _finding(code: str, subject: str = "can0") -> Finding:
    return Finding(code, "critical", 90, subject, code.lower(), {}, [], "do it", None, NOW)


def _lines(state: ScreenState, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, record=True, color_system=None)
    console.print(render_screen(state), height=height)  # as a full-screen Live renders it
    return console.export_text().splitlines()


def test_pointer_names_the_nodes_missing_on_a_wrong_bitrate() -> None:
    bus = _bus([_node("power_module", 1, "online"), _node("power_module", 3, "offline")])
    pointer = screen_pointer(_finding("CAN_WRONG_BITRATE"), [bus])
    assert pointer == "on screen: not online on can0: power_module 3 (offline)"


def test_pointer_says_none_is_missing_and_what_that_means() -> None:
    bus = _bus([_node("power_module", 1, "online"), _node("imd", 0, "online")])
    pointer = screen_pointer(_finding("CAN_WRONG_BITRATE"), [bus])
    assert pointer.startswith("on screen: all 2 known nodes on can0 are online")
    assert "no DBC entry" in pointer and "--bitrate" in pointer
    assert "no node is known" in screen_pointer(_finding("CAN_WRONG_BITRATE"), [_bus([])])


def test_pointer_of_a_node_finding_and_of_others() -> None:
    bus = _bus([_node("power_module", 3, "offline")])
    offline = _finding("CAN_NODE_OFFLINE", "can0/power_module/3")
    assert screen_pointer(offline, [bus]) == "on screen: Nodes, row power_module 3"
    assert screen_pointer(_finding("CAN_LOAD_HIGH"), [bus]) == ""
    assert screen_pointer(_finding("MODBUS_CRC", "modbus/x"), [bus]) == ""


def test_pointer_is_shown_under_the_fix() -> None:
    bus = _bus([_node("power_module", 3, "offline")])
    state = ScreenState(now=NOW, title="t", buses=[bus], findings=[_finding("CAN_WRONG_BITRATE")])
    text = "\n".join(_lines(state, 100, 30))
    assert "fix: do it\n  on screen: not online on can0: power_module 3 (offline)" in text


def _many_nodes(n: int) -> ScreenState:
    nodes = [_node("power_module", i, "online") for i in range(1, n + 1)]
    return ScreenState(now=NOW, title="t", buses=[_bus(nodes)], scroll=ScrollState())


def test_a_long_body_is_cut_to_the_height_with_a_footer_and_scrolls() -> None:
    state = _many_nodes(40)
    lines = _lines(state, 100, 30)
    assert len(lines) == 30
    assert lines[0].startswith("candiag monitor") and "more below" in lines[-1]
    scroll = state.scroll
    assert scroll is not None and scroll.max_offset > 0 and scroll.page == 26
    scroll.offset = 10_000  # clamped by the renderer
    lines = _lines(state, 100, 30)
    assert scroll.offset == scroll.max_offset and "more below" not in lines[-1]
    assert lines[-2].split()[:3] == ["power_module", "40", "online"]


def test_printed_without_a_height_the_whole_body_is_shown() -> None:
    state = _many_nodes(40)
    console = Console(width=100, height=30, record=True, color_system=None)
    console.print(render_screen(state))
    lines = console.export_text().splitlines()
    assert len(lines) > 40 and not any(line.startswith("lines ") for line in lines)


def test_a_body_that_fits_has_no_footer() -> None:
    state = _many_nodes(3)
    lines = _lines(state, 160, 50)
    assert not any(line.startswith("lines ") for line in lines)
    assert state.scroll is not None and state.scroll.max_offset == 0


@pytest.mark.parametrize(
    ("width", "height", "compact"),
    [(100, 30, True), (160, 50, False), (119, 50, True), (160, 39, True)],
)
def test_compact_by_size_unless_chosen(width: int, height: int, compact: bool) -> None:
    state = ScreenState(now=NOW, title="t", buses=[])
    assert is_compact(state, width, height) is compact
    forced = ScreenState(now=NOW, title="t", buses=[], compact=not compact)
    assert is_compact(forced, width, height) is not compact


@pytest.fixture
def app(tmp_path: Any) -> Iterator[MonitorApp]:
    config = Config(source="t", buses=(BusConfig(name="b", interface="virtual", channel="c"),))
    session = MonitorSession(config, title="t")  # not started: no bus is opened
    yield MonitorApp(session, record_dir=tmp_path)


def test_keys_switch_views_toggle_compact_and_scroll(app: MonitorApp) -> None:
    assert app.raw.feed in app.session.taps  # the raw view sees every drained batch
    app.handle_keys("v")
    assert app.mode == "raw"
    app.handle_keys("V")
    assert app.mode == "health"
    scroll = app.scroll["health"]
    scroll.max_offset, scroll.page = 50, 20
    app.handle_keys("\x1b[B\x1b[Bj")  # down, down, j
    assert scroll.offset == 3
    app.handle_keys("\x1b[6~")  # PgDn
    assert scroll.offset == 23
    app.handle_keys("k\x1b[A")
    assert scroll.offset == 21
    app.handle_keys("G")
    assert scroll.offset == 50
    app.handle_keys("\x1b[5~ \x1bOH")  # PgUp, space (page down), Home
    assert scroll.offset == 0
    app.handle_keys("\x1b[1;5A")  # an unknown sequence changes nothing and does not crash
    assert scroll.offset == 0 and app.mode == "health"
    # the raw view scrolls on its own
    app.handle_keys("vG")
    assert app.scroll["raw"].offset == 0 and scroll.offset == 0
    scroll.compact_shown = True
    app.mode = "health"
    app.handle_keys("c")
    assert app.compact is False
