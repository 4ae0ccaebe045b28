"""The monitor's request/response liveness table (and its plain lines), on the liveness
sections the real tracker writes for simulated protocol buses (``simulate --protocol``,
then ``analyze --json``): per module requests, replies, unanswered, latency median/p99,
error replies with their meaning, and which end is silent."""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from candiag.cli import main
from candiag.sim.protocols.packs import pack_path
from candiag.tui.plain import plain_summary
from candiag.tui.view import (
    BusView,
    ScreenState,
    module_exchanges,
    render_screen,
)
from tests.bus_reports import bus_report


@cache
def _liveness(protocol: str, seconds: int, *faults: str) -> dict[str, Any]:
    """The ``liveness`` section of ``analyze --json`` on a simulated capture of ``protocol``."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        log, out = Path(tmp) / "sim.log", Path(tmp) / "report.json"
        args = ["simulate", "--protocol", protocol, "-o", str(log), "-d", str(seconds), "-q"]
        for fault in faults:
            args += ["--fault", fault]
        assert main(args) == 0
        pack = str(pack_path(protocol))
        assert main(["analyze", str(log), "--dbc", pack, "--json", str(out)]) in (0, 1, 2)
        section = json.loads(out.read_text())["liveness"]
    assert isinstance(section, dict)
    return section


def _bus(section: dict[str, Any], name: str = "can0") -> BusView:
    report = dataclasses.replace(bus_report({"state": "error_active"}), liveness=section)
    return BusView(name=name, source="stdin", report=report)


def _state(*buses: BusView) -> ScreenState:
    return ScreenState(now=1_700_000_100.0, title="test", buses=buses)


def _lines(state: ScreenState, width: int, height: int | None = None) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_screen(state))
    return console.export_text().splitlines()


def _flat(lines: list[str]) -> str:
    """The table's text with its cells' wrapping undone (one space between words)."""
    return " ".join(" ".join(lines).split())


def _row(lines: list[str], address: int) -> str:
    """The liveness table's row of a module (its address the first cell)."""
    for line in lines:
        cells = line.replace("│", " ").split()
        if cells[:1] == [str(address)] and len(cells) > 5:
            return " ".join(cells)
    return ""


@pytest.fixture(scope="module")
def infy_module_silent() -> dict[str, Any]:
    return _liveness("infy", 30, "module_silent@10:module=4")


def test_a_silent_module_is_the_silent_end_and_the_others_talk(
    infy_module_silent: dict[str, Any],
) -> None:
    rows = {r.address: r for r in module_exchanges([_bus(infy_module_silent)])}
    assert sorted(rows) == [1, 2, 3, 4]
    silent = rows[4]
    assert silent.silent == "module" and silent.unanswered_run >= 2
    assert silent.silent_text.startswith(f"module: {silent.unanswered_run} unanswered in a row")
    assert silent.requests > silent.replies and silent.unanswered > 0
    for address in (1, 2, 3):
        row = rows[address]
        assert (row.silent, row.silent_text, row.unanswered) == ("", "both talk", 0)
        assert row.requests == row.replies > 20
        assert row.median_ms is not None and row.p99_ms is not None
        assert 0 < row.median_ms <= row.p99_ms < 500


def test_compact_layout_fits_100_columns_with_every_column(
    infy_module_silent: dict[str, Any],
) -> None:
    lines = _lines(_state(_bus(infy_module_silent)), 100)
    assert all(len(line) <= 100 for line in lines)
    title = next(line for line in lines if "Requests/replies" in line)
    assert "infy_v1.13, poll 1 s" in title
    header = next(line for line in lines if "unans" in line)
    for column in ("mod", "req", "rep", "unans", "med ms", "p99 ms", "error replies", "silent"):
        assert column in header, header
    row4 = _row(lines, 4)
    assert re.search(r"4 \d+ \d+ \d+ \(\d+ now\)", row4), row4
    assert "none module: " in row4
    flat = _flat(lines)  # the silent end may wrap in its cell
    assert re.search(r"module: \d+ unanswered in a row, no longer asked", flat), flat
    assert "both talk" in _row(lines, 1)
    assert "┃" not in "\n".join(lines)


def test_boxed_layout_has_the_full_columns(infy_module_silent: dict[str, Any]) -> None:
    lines = _lines(_state(_bus(infy_module_silent)), 160)
    text = "\n".join(lines)
    assert "┃" in text  # boxed (160 columns and no height: not compact)
    for column in (
        "module",
        "requests",
        "replies",
        "unanswered",
        "median ms",
        "last ask",
        "last reply",
    ):
        assert column in text
    row1 = _row(lines, 1)
    assert re.search(r"1 (\d+) \1 0 [\d.]+ [\d.]+ [\d.]+s [\d.]+s none both talk", row1), row1


def test_the_controller_not_polling_a_module_is_the_silent_end() -> None:
    section = _liveness("infy", 30, "controller_silent@12+30:module=2")
    rows = {r.address: r for r in module_exchanges([_bus(section)])}
    assert rows[2].silent == "controller", rows[2]
    assert re.fullmatch(r"controller: not asked for 1\d\.\d s", rows[2].silent_text)
    assert [rows[a].silent for a in (1, 3, 4)] == ["", "", ""]
    lines = _lines(_state(_bus(section)), 100)
    assert sum("controller: not asked for" in line for line in lines) == 1


def test_error_replies_are_shown_with_their_meaning() -> None:
    section = _liveness("winline", 20, "rejected_requests@5+10:module=2")
    rows = {r.address: r for r in module_exchanges([_bus(section)])}
    assert re.fullmatch(r"0xf2 InvalidCommand \(\d+x\)", rows[2].errors), rows[2].errors
    assert rows[1].errors == ""
    lines = _lines(_state(_bus(section)), 100)
    assert re.search(r"0xf2 InvalidCommand \(\d+x\)", _flat(lines))


def test_two_buses_get_a_bus_column_and_plain_lines_per_module(
    infy_module_silent: dict[str, Any],
) -> None:
    huawei = _liveness("huawei", 10)
    state = _state(_bus(infy_module_silent, "can0"), _bus(huawei, "can1"))
    lines = _lines(state, 100)
    assert any(line.split()[:1] == ["bus"] and "mod" in line for line in lines)
    assert any("protocol" in line and "unans" in line for line in lines)  # two protocols
    plain = plain_summary(state)
    module4 = next(line for line in plain if line.startswith("module can0/infy_v1.13/4:"))
    assert "silent end: module (module: " in module4 and "in a row now" in module4
    assert "ms (of earlier answers)" in module4
    assert any(line.startswith("module can1/huawei") for line in plain)
    assert all("\x1b" not in line for line in plain)


def test_a_pack_with_requests_but_nothing_seen_says_so() -> None:
    section = {"protocols": {"infy_v1.13": {"poll_period_ms": 1000}}, "modules": []}
    state = _state(_bus(section))
    assert "no request or reply of a protocol pack seen yet on can0" in "\n".join(
        _lines(state, 100)
    )
    assert "modules can0: no request or reply seen yet (infy_v1.13)" in plain_summary(state)


def test_a_bus_without_request_response_packs_has_no_table() -> None:
    state = _state(_bus({}))  # the reference charger: no liveness section content
    text = "\n".join(_lines(state, 100))
    assert "Requests/replies" not in text
    assert not [line for line in plain_summary(state) if line.startswith("module")]


def test_a_silent_modules_latencies_are_dimmed_as_earlier_answers(
    infy_module_silent: dict[str, Any],
) -> None:
    from rich.table import Table
    from rich.text import Text

    from candiag.tui.view import liveness_renderable

    table = liveness_renderable([_bus(infy_module_silent)], compact=True)
    assert isinstance(table, Table)
    columns = {str(c.header): list(c.cells) for c in table.columns}
    modules = [str(cell) for cell in columns["mod"]]
    for header in ("med ms", "p99 ms"):
        styles = {m: cell.style for m, cell in zip(modules, columns[header], strict=True)}
        assert all(isinstance(cell, Text) for cell in columns[header])
        assert styles["4"] == "dim" and styles["1"] == "", styles
