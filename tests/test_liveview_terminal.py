"""The live view as a technician's terminal shows it: ``monitor --demo`` and ``demo`` on a real
pseudo-terminal of 100x30 and 160x50, read back through a terminal emulator (pyte), with keys.

Each test runs the real CLI in a subprocess whose stdin/stdout/stderr are the pty's slave
(the window size set with TIOCSWINSZ, as a terminal emulator does); everything it writes is
fed to a ``pyte.Screen`` of the same size, so the assertions read the characters a
technician sees at each position, after rich's cursor movements and the alternate screen.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pyte = pytest.importorskip("pyte")

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = "DCDC 1.4 / PFC 2.0"


class Terminal:
    """A pty of ``columns`` x ``lines`` running ``candiag ARGS``, emulated by pyte."""

    def __init__(self, columns: int, lines: int, *args: str, cwd: Path = REPO) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        self.columns, self.lines = columns, lines
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "candiag", *args],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.stream.feed(os.read(self.master, 1 << 16))
                except OSError:
                    return

    @property
    def rows(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    @property
    def text(self) -> str:
        return "\n".join(self.rows)

    def wait_until(self, what: str, ok: Callable[[str], bool], timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while not ok(self.text) and time.monotonic() < deadline:
            self.pump(0.2)
        assert ok(self.text), f"{what}; the screen shows:\n{self.text}"

    def press(self, keys: str, settle: float = 0.8) -> None:
        os.write(self.master, keys.encode())
        self.pump(settle)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_terminal(columns: int, lines: int, *args: str) -> Terminal:
        term = Terminal(columns, lines, *args, cwd=tmp_path)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


def _charging(text: str) -> bool:
    """Every power module's row is on screen with its firmware (sent once a second)."""
    return all(FIRMWARE in _row(text, f"power_module   {address}") for address in range(1, 9))


def _meter_row(text: str, device: str) -> str:
    """The compact meters table's row of ``device`` (``dc_meter   up   0.3s ...``)."""
    pattern = re.compile(rf"\s*{device}\s+(up|down)\b")
    return next((line for line in text.splitlines() if pattern.match(line)), "")


def _row(text: str, start: str) -> str:
    """The row starting with ``start``, its box characters (full layout) made spaces."""
    for line in text.splitlines():
        cells = " ".join(line.replace("│", " ").split())
        if cells.startswith(" ".join(start.split())):
            return line
    return ""


@pytest.mark.slow
def test_monitor_at_100x30_compact_scrolls_and_switches_to_the_raw_view(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal(100, 30, "monitor", "--demo")
    term.wait_until("the nodes with their firmware", _charging)
    text = term.text
    # the header, the buses, the findings and the nodes' firmware as versions, uncut
    assert term.rows[0].startswith("candiag monitor  demo: simulated charger")
    assert "CAN buses" in text and "Findings (" in text
    assert "error_active" in _row(text, "sim0")
    module = _row(text, "power_module   1")
    assert FIRMWARE in module and re.search(r"\d+\.\d V", module), module
    # compact: no box drawing, and the body does not fit: a footer says what is below
    assert "┏" not in text and "│" not in text
    footer = term.rows[-1]
    assert re.match(r"lines 1-\d+ of \d+, \d+ more below", footer), footer
    assert not _meter_row(text, "imd")  # the Modbus IMD is below the fold

    term.press("G")  # End: the meters at the bottom come into view
    text = term.text
    for device in ("ac_meter", "dc_meter", "imd"):
        assert _meter_row(text, device), f"{device} not shown after End:\n{text}"
    assert "more below" not in term.rows[-1]
    assert "candiag monitor" in term.rows[0]  # the header stays

    term.press("\x1b[H")  # Home (an escape sequence) goes back to the top
    assert "CAN buses" in term.text and "more below" in term.rows[-1]
    term.press("j")
    assert re.match(r"lines 2-", term.rows[-1]), term.rows[-1]

    term.press("v")  # the raw per-id view
    term.wait_until("the raw view", lambda t: "Raw ids" in t and "ModuleTelemetry" in t)
    text = term.text
    assert "RAW" in term.rows[0]
    telemetry = _row(text, "0x0283F001")
    assert "ModuleTelemetry #1" in telemetry and "100 ms" in telemetry, telemetry
    assert re.search(r"(?:[0-9A-F]{2} ){7}[0-9A-F]{2}", telemetry), telemetry
    assert all(len(row) <= 100 for row in term.rows)

    term.press("v")
    assert "Nodes" in term.text or "CAN buses" in term.text
    term.press("q", settle=0.2)
    assert term.proc.wait(20) == 0


@pytest.mark.slow
def test_monitor_at_160x50_shows_everything_without_scrolling(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal(160, 50, "monitor", "--demo")
    term.wait_until(
        "nodes and all three meters", lambda t: _charging(t) and "imd" in t and "ac_meter" in t
    )
    term.wait_until("the meters' readings", lambda t: "power_total" in t and "insulation" in t)
    text = term.text
    # the full layout: boxed tables, the source of the bus, no scroll footer
    assert "┏" in text and "virtual candiag-demo @ 125 kbit/s" in text
    assert not any(row.startswith("lines ") for row in term.rows)
    for family in ("contactor", "cooling", "dc_meter", "imd"):
        assert family in text
    assert sum(1 for row in term.rows if "power_module" in row) == 8
    for device in ("ac_meter", "dc_meter", "imd"):
        assert any(f"│ {device}" in row for row in term.rows), device
    assert "last success" in text and "temperature" in text  # full column headers
    term.press("c")  # compact on demand
    assert "┏" not in term.text and "seen" in term.text
    term.press("q", settle=0.2)
    assert term.proc.wait(20) == 0


@pytest.mark.slow
def test_demo_shows_the_full_monitor_view_at_100x30(terminal: Callable[..., Terminal]) -> None:
    """``make demo`` (``candiag demo``): the same view as ``monitor --demo``, not a summary."""
    term = terminal(100, 30, "demo", "--listen", "127.0.0.1:0")
    term.wait_until("the nodes with their firmware", _charging)
    text = term.text
    assert "CAN buses" in text and "Findings (" in text and "Nodes" in text
    assert term.rows[0].startswith("candiag demo  simulated charger, scenario healthy")
    # only the keys the demo has (no raw view, no recording there)
    assert term.rows[1].startswith("↑↓ PgUp PgDn scroll  c compact  q quit")
    assert "metrics at http://127.0.0.1:" in term.rows[1]
    assert FIRMWARE in _row(text, "power_module   8")
    term.press("G")
    text = term.text
    assert _meter_row(text, "ac_meter") and _meter_row(text, "dc_meter")
    term.press("q", settle=0.2)
    assert term.proc.wait(20) == 0
