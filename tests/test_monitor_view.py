"""The monitor's render functions: rows, colours and plain lines from reports (no terminal)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rich.console import Console, RenderableType

from candiag.diagnosis.engine import Finding
from candiag.tui.plain import bus_line, finding_line, meter_line, plain_summary
from candiag.tui.view import (
    ERROR_CLASSES,
    BusView,
    KeySignal,
    ScreenState,
    bus_table,
    findings_renderable,
    fmt_age,
    fmt_errors,
    fmt_quantity,
    meters_table,
    node_rows,
    nodes_table,
    render_screen,
)
from tests.bus_reports import bus_report

NOW = 1_800_000_000.0


def _text(renderable: RenderableType, width: int = 200) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def _styles(renderable: RenderableType, width: int = 200) -> str:
    console = Console(record=True, width=width, color_system="truecolor", force_terminal=True)
    console.print(renderable)
    return console.export_text(styles=True)


def _classes(**counts: int) -> dict[str, int]:
    out = dict.fromkeys(ERROR_CLASSES, 0)
    out.update(counts)
    return out


def _node(
    family: str, address: int, status: str, last_seen: float | None, **kw: Any
) -> dict[str, Any]:
    return {
        "family": family,
        "address": address,
        "status": status,
        "online": status != "offline",
        "last_seen": last_seen,
        "firmware": kw.get("firmware"),
        "alarms": kw.get("alarms", []),
    }


def _report(state: str = "error_active", **kw: Any) -> dict[str, Any]:
    return {
        "name": "can0",
        "state": state,
        "error_frames": {"tec_last": kw.get("tec"), "rec_last": kw.get("rec")},
        "windows": {
            "10s": {
                "load_ratio": kw.get("load", 0.25),
                "frames_per_second": kw.get("fps", 160.0),
                "error_frames": kw.get("err10", _classes()),
            },
            "60s": {
                "load_ratio": 0.2,
                "frames_per_second": 150.0,
                "error_frames": kw.get("err60", _classes()),
            },
        },
        "nodes": kw.get("nodes", []),
        "dropped_recent": kw.get("dropped", 0),
    }


FW = "DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0"


def _bus(**kw: Any) -> BusView:
    signals: Mapping[tuple[str, int], Mapping[str, KeySignal]] = kw.pop("signals", {})
    last_error = kw.pop("last_error", None)
    report = bus_report(_report(**kw))
    return BusView("can0", "pcan PCAN_USBBUS1 @ 250 kbit/s", report, signals, last_error)


def _finding(code: str, severity: str, rank: int, title: str, fix: str, since: float) -> Finding:
    return Finding(code, severity, rank, "can0", title, {}, [], fix, None, since)


# -- formatters ---------------------------------------------------------------------------------
def test_formatters() -> None:
    assert fmt_age(NOW, NOW - 0.26) == "0.3 s ago"
    assert fmt_age(NOW, NOW + 1.0) == "0.0 s ago"  # a clock step back is not a negative age
    assert fmt_age(NOW, NOW - 120) == "2 min ago"
    assert fmt_age(NOW, None) == "never"
    assert fmt_quantity(25.04, "degC") == "25.0 °C"
    assert fmt_quantity(4_869_643.5, "Ω") == "4.87 MΩ"
    assert fmt_quantity(11_135.2, "W") == "11.1 kW"
    assert fmt_quantity(3.6e9, "J") == "1000.0 kWh"
    assert fmt_errors(_classes()) == "0"
    # agreed class order, zeros left out
    assert fmt_errors(_classes(ack=3, protocol=7)) == "protocol 7, ack 3"


# -- buses -------------------------------------------------------------------------------------
def test_bus_table_shows_state_load_errors_counters_and_drops() -> None:
    bus = _bus(
        state="error_passive",
        load=0.4321,
        fps=812.0,
        err10=_classes(protocol=4),
        err60=_classes(protocol=9, ack=2),
        tec=136,
        rec=5,
        dropped=17,
    )
    text = _text(bus_table([bus]))
    row = next(line for line in text.splitlines() if "can0" in line)
    for cell in (
        "error_passive",
        "43.2 %",
        "812",
        "protocol 4",
        "protocol 9, ack 2",
        "136/5",
        "17",
    ):
        assert cell in row, (cell, row)
    assert "pcan PCAN_USBBUS1 @ 250 kbit/s" in text


def test_bus_table_unknown_counters_and_down_reason() -> None:
    bus = _bus(state="down", last_error="CAN interface 'pcan': driver not available")
    text = _text(bus_table([bus]))
    assert "?/?" in text  # TEC/REC never reported: unknown, not zero
    assert "driver not available" in text
    assert "\x1b[1;31mdown" in _styles(bus_table([bus]))


# -- nodes -------------------------------------------------------------------------------------
def _nodes_bus() -> BusView:
    return _bus(
        nodes=[
            _node("power_module", 1, "online", NOW - 0.04, firmware=FW),
            _node("power_module", 2, "intermittent", NOW - 0.1, firmware=FW),
            _node("power_module", 3, "offline", NOW - 12.0, firmware=FW),
            _node("power_module", 4, "duplicate", NOW - 0.02, alarms=["duplicate_address"]),
            _node("imd", 0, "offline", None),
        ],
        signals={
            ("power_module", 1): {
                "voltage": KeySignal(401.26, "V"),
                "current": KeySignal(12.5, "A"),
                "temperature": KeySignal(41.0, "degC"),
            }
        },
    )


def test_node_rows_status_last_seen_firmware_and_key_signals() -> None:
    rows = node_rows(_nodes_bus(), NOW)
    assert [r[1:4] for r in rows] == [
        ["power_module", "1", "online"],
        ["power_module", "2", "intermittent"],
        ["power_module", "3", "offline"],
        ["power_module", "4", "duplicate"],
        ["imd", "0", "offline"],
    ]
    first = rows[0]
    assert first[4] == "0.0 s ago"
    assert first[5] == "DCDC 1.4 / PFC 2.0"  # the firmware signals as versions (issue 17)
    assert first[6:9] == ["401.3 V", "12.5 A", "41.0 °C"]
    assert rows[2][4] == "12.0 s ago"
    assert rows[2][6:9] == ["", "", ""]  # no fresh values: nothing shown, never a stale one
    assert rows[3][-1] == "duplicate_address"
    assert rows[4][4] == "never"


def test_nodes_table_colours_status() -> None:
    table = nodes_table([_nodes_bus()], NOW)
    text = _text(table)
    assert "401.3 V" in text
    styled = _styles(table)
    offline = next(line for line in styled.splitlines() if "12.0 s ago" in line)
    online = next(line for line in styled.splitlines() if " 1 " in line and "online" in line)
    assert "\x1b[1;31moffline" in offline  # bold red
    assert "\x1b[32monline" in online  # green


def test_nodes_table_names_the_bus_only_with_several_buses() -> None:
    one = _text(nodes_table([_nodes_bus()], NOW))
    other = BusView("can1", "", bus_report(_report(nodes=[_node("cooling", 0, "online", NOW)])))
    two = _text(nodes_table([_nodes_bus(), other], NOW))
    assert "can0" not in one
    assert re.search(r"can1 .*cooling", two)


# -- meters -------------------------------------------------------------------------------------
METER_UP = {
    "name": "ac_meter",
    "port": "rs485",
    "up": True,
    "last_success": NOW - 0.4,
    "requests": 120,
    "failures": {"timeout": 2, "crc": 1, "exception": 0, "wrong_device": 0, "io": 0},
    "readings": {
        "voltage_l1": {"value": 230.4, "unit": "V"},
        "power_total": {"value": 11135.2, "unit": "W"},
        "energy_import": {"value": 4.4442e9, "unit": "J"},
    },
    "last_error": None,
    "port_error": None,
}
METER_DOWN = {
    "name": "imd",
    "port": "rs485",
    "up": False,
    "last_success": None,
    "requests": 30,
    "failures": {"timeout": 30, "crc": 0},
    "readings": {"insulation_resistance": {"value": 5e6, "unit": "Ω"}},
    "last_error": "no answer from id 3 within 0.2 s",
    "port_error": None,
}


def test_meters_table_up_down_failures_and_readings() -> None:
    text = _text(meters_table([METER_UP, METER_DOWN], NOW), width=220)
    up = next(line for line in text.splitlines() if "ac_meter" in line)
    for cell in ("up", "0.4 s ago", "120", "timeout 2, crc 1", "voltage_l1 230.4 V"):
        assert cell in up, (cell, up)
    assert "power_total 11.1 kW" in text and "energy_import 1234.5 kWh" in text
    down = next(line for line in text.splitlines() if "imd" in line)
    assert "down" in down and "never" in down and "timeout 30" in down
    assert "5.00 MΩ" not in text  # a down device shows no readings
    assert "no answer from id 3" in text


def test_meter_line_plain() -> None:
    line = meter_line(METER_UP, NOW)
    assert line.startswith(
        "meter rs485/ac_meter: up; last success 0.4 s ago; failures timeout 2, crc 1"
    )
    assert "down; " in meter_line(METER_DOWN, NOW) and "error: no answer" in meter_line(
        METER_DOWN, NOW
    )


# -- findings -----------------------------------------------------------------------------------
def test_findings_most_severe_first_with_fix_and_colour() -> None:
    findings = [
        _finding(
            "CAN_LOAD_HIGH", "warning", 10, "Bus load on can0 is high (81 %)", "Lower it", NOW - 5
        ),
        _finding("CAN_CYCLE_VIOLATION", "info", 1, "0x123 late", "Check the sender", NOW - 3),
        _finding(
            "CAN_NODE_OFFLINE",
            "critical",
            60,
            "power_module 3 stopped transmitting",
            "Check the module's supply and LEDs",
            NOW - 2,
        ),
    ]
    panel = findings_renderable(findings, NOW, diagnosing=True)
    text = _text(panel)
    positions = [
        text.index(code) for code in ("CAN_NODE_OFFLINE", "CAN_LOAD_HIGH", "CAN_CYCLE_VIOLATION")
    ]
    assert positions == sorted(positions)
    assert "Findings (3)" in text
    assert "fix: Check the module's supply and LEDs" in text
    assert "CRITICAL" in text and "since 2.0 s ago" in text
    styled = _styles(panel)
    assert "\x1b[1;31mCRITICAL" in styled
    assert "\x1b[33mWARNING" in styled


def test_findings_empty_and_warming_up() -> None:
    assert "no findings" in _text(findings_renderable([], NOW, diagnosing=True))
    assert "warm-up" in _text(findings_renderable([], NOW, diagnosing=False))


def test_finding_lines() -> None:
    f = _finding("CAN_BUS_OFF", "critical", 80, "Bus-off on can0", "Check termination", NOW)
    assert finding_line(f, raised=True) == (
        "+ CRITICAL CAN_BUS_OFF [can0] Bus-off on can0; fix: Check termination"
    )
    assert finding_line(f, raised=False) == "- cleared CAN_BUS_OFF [can0] Bus-off on can0"


# -- whole screen and plain lines ---------------------------------------------------------------
def test_render_screen_has_every_section_and_flags() -> None:
    state = ScreenState(
        now=NOW,
        title="pcan PCAN_USBBUS1 (listen-only)",
        buses=[_nodes_bus()],
        meters=[METER_UP],
        findings=[_finding("CAN_BUS_OFF", "critical", 80, "Bus-off on can0", "Fix it", NOW)],
        paused=True,
        recording="./candiag-20270115-093000.log",
        message="recording to ./candiag-20270115-093000.log; w stops",
    )
    text = _text(render_screen(state), width=220)
    for part in (
        "candiag monitor",
        "PAUSED",
        "REC ./candiag-20270115-093000.log",
        "p pause  r reset  w record  q quit",
        "CAN buses",
        "Nodes",
        "Modbus meters",
        "Findings (1)",
    ):
        assert part in text, part
    # findings right under the buses, so a small terminal cuts tables, not findings
    order = [text.index(t) for t in ("CAN buses", "Findings (1)", "Nodes", "Modbus meters")]
    assert order == sorted(order)


def test_render_screen_without_nodes_or_meters_skips_those_tables() -> None:
    state = ScreenState(now=NOW, title="t", buses=[_bus()])
    text = _text(render_screen(state))
    assert "CAN buses" in text and "Nodes" not in text and "Modbus meters" not in text
    assert "PAUSED" not in text and "● REC" not in text


def test_bus_line_plain_summary() -> None:
    line = bus_line(_nodes_bus())
    assert line.startswith("bus can0: error_active; load 25.0%; 160 fps; errors 10s: 0")
    assert "nodes 1/5 online (imd 0/1, power_module 1/4)" in line
    assert "not online: power_module 2 intermittent, power_module 3 offline" in line
    assert "\x1b" not in line
    lines = plain_summary(ScreenState(now=NOW, title="t", buses=[_nodes_bus()], meters=[METER_UP]))
    assert len(lines) == 2 and lines[1].startswith("meter rs485/ac_meter")
