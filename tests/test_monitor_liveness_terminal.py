"""``candiag monitor`` on a live protocol bus, read back through a terminal emulator (pyte).

The bus is what ``candump -L can0 | candiag monitor -`` gives on a real charger: candump lines
arriving in real time on standard input, here a capture of ``candiag simulate --protocol
infy`` (module 4 falls silent after a few seconds) written line by line at its own pace with
wall-clock timestamps.  The monitor runs on a pseudo-terminal of 100x30 (compact, scrolled
with keys from the terminal) and 160x50 (boxed), and with ``--plain``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from candiag.sim.protocols.packs import pack_path
from tests.test_liveview_terminal import Terminal as ScreenTerminal

pyte = pytest.importorskip("pyte")

SILENT_AFTER_S = 6
LINE = re.compile(rb"^\((\d+\.\d+)\) (\S+ .*)$")


def _capture(tmp: Path, seconds: int) -> Path:
    log = tmp / "infy.log"
    done = subprocess.run(
        [sys.executable, "-m", "candiag", "simulate", "--protocol", "infy", "-o", str(log),
         "-d", str(seconds), "-q", "--fault", f"module_silent@{SILENT_AFTER_S}:module=4"],
        capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return log


class Pacer(threading.Thread):
    """Writes a capture's candump lines into ``sink`` at their own pace, stamped with wall time
    (as candump does live); stops early when told."""

    def __init__(self, log: Path, sink: IO[bytes]) -> None:
        super().__init__(daemon=True)
        self.lines = [m.groups() for m in map(LINE.match, log.read_bytes().splitlines()) if m]
        self.sink = sink
        self.stopped = threading.Event()

    def run(self) -> None:
        t0, start = float(self.lines[0][0]), time.time()
        try:
            for ts, rest in self.lines:
                due = start + float(ts) - t0
                if self.stopped.wait(max(0.0, due - time.time())):
                    return
                self.sink.write(b"(%.6f) %s\n" % (due, rest))
                self.sink.flush()
        except (BrokenPipeError, ValueError, OSError):
            return  # the monitor quit first

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


class Terminal(ScreenTerminal):
    """``candiag monitor -`` on a pty of ``columns`` x ``lines`` (its controlling terminal, so
    the keys come from it while the data comes on stdin), emulated by pyte."""

    def __init__(self, columns: int, lines: int, log: Path, *args: str) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.screen = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.screen)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"

        def controlling_terminal() -> None:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "candiag", "monitor", "-", "--dbc",
             str(pack_path("infy")), *args],
            stdin=subprocess.PIPE, stdout=slave, stderr=slave, env=env,
            preexec_fn=controlling_terminal,  # the pty as controlling terminal: keys via /dev/tty
        )  # fmt: skip
        os.close(slave)
        assert self.proc.stdin is not None
        self.pacer = Pacer(log, self.proc.stdin)
        self.pacer.start()

    def close(self) -> None:
        self.pacer.stop()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        os.close(self.master)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _capture(tmp_path_factory.mktemp("infy"), 60)


@pytest.fixture
def terminal(capture: Path) -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def open_terminal(columns: int, lines: int, *args: str) -> Terminal:
        term = Terminal(columns, lines, capture, *args)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


def _module_row(text: str, address: int) -> str:
    """The liveness table's row of a module: its address, then four counts."""
    pattern = re.compile(rf"^\s*│?\s*{address}\s+│?\s*\d+\s+│?\s*\d+\s+│?\s*\d+")
    return next((line for line in text.splitlines() if pattern.match(line)), "")


def _module_silent(text: str) -> bool:
    return "module: " in _module_row(text, 4) and "both talk" in _module_row(text, 1)


@pytest.mark.slow
def test_monitor_100x30_shows_the_liveness_table_compact_and_names_the_silent_module(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal(100, 30)
    term.wait_until("the bus", lambda t: "CAN buses" in t and "error_active" in t, timeout=60)
    # The table is below the findings: scroll down until it is on the screen.
    for _ in range(12):
        if "Requests/replies" in term.text:
            break
        term.press("\x1b[6~", settle=0.5)  # PgDn
    term.wait_until(
        "the liveness table", lambda t: "Requests/replies" in t and "unans" in t, timeout=60
    )
    assert "infy_v1.13, poll 1 s" in term.text
    term.wait_until("module 4 silent, 1 talking", _module_silent, timeout=60)
    text = term.text
    row4 = _module_row(text, 4)
    assert re.search(r"4\s+\d+\s+\d+\s+\d+ \(\d+ now\)", row4), row4
    row1 = _module_row(text, 1)
    assert re.search(r"1\s+(\d+)\s+\1\s+0\s+[\d.]+\s+[\d.]+\s+none\s+both talk", row1), row1
    assert "│" not in text and "┏" not in text  # compact: no boxes
    assert all(len(row) <= 100 for row in term.rows)
    term.press("q", settle=0.2)
    assert term.proc.wait(20) == 0


@pytest.mark.slow
def test_monitor_160x50_shows_the_liveness_table_boxed(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal(160, 50)
    term.wait_until("module 4 silent, 1 talking", _module_silent, timeout=60)
    text = term.text
    assert "┏" in text and "│" in text
    for header in ("module", "requests", "replies", "unanswered", "median ms", "p99 ms"):
        assert header in text, header
    assert "last ask" in text and "last reply" in text and "silent end" in text
    # the finding agrees with the table (once the diagnosis has warmed up)
    term.wait_until("the finding", lambda t: "CAN_MODULE_NOT_ANSWERING" in t, timeout=40)
    assert "module: " in _module_row(term.text, 4)
    term.press("q", settle=0.2)
    assert term.proc.wait(20) == 0


@pytest.mark.slow
def test_monitor_plain_prints_a_line_per_module(capture: Path, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", "monitor", "-", "--dbc", str(pack_path("infy")),
         "--plain", "--interval", "1", "-d", str(SILENT_AFTER_S + 8)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdin is not None
    pacer = Pacer(capture, proc.stdin)
    pacer.start()
    assert proc.stdout is not None
    try:  # not communicate(): it would close stdin under the pacer
        out = proc.stdout.read()
        assert proc.wait(90) == 0
    finally:
        pacer.stop()
        with contextlib.suppress(BrokenPipeError):  # the monitor ended first (-d)
            proc.stdin.close()
        proc.stdout.close()
    text = out.decode()
    lines = text.splitlines()
    modules = [line for line in lines if " module can0/infy_v1.13/" in line]
    assert modules, text
    last4 = [line for line in modules if "/infy_v1.13/4:" in line][-1]
    assert "silent end: module (module: " in last4 and "in a row now" in last4, last4
    last1 = [line for line in modules if "/infy_v1.13/1:" in line][-1]
    assert re.search(r"requests (\d+); replies \1; unanswered 0; latency median [\d.]+ ms", last1)
    assert "silent end: none (both talk)" in last1
