"""Every field command end to end in a Python without termios, tty, fcntl, pwd, grp and
resource (tests/without_posix.py), as far as Linux can stand in for Windows.

Each command either does its work (demo, monitor plain and with keys on a terminal, record
from the virtual bus, simulate -o, analyze, decode, modbus read over a gateway) or says in
one line what is unavailable (a serial port: pyserial's POSIX backend needs termios; on
Windows pyserial loads serialwin32 instead).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from without_posix import BLOCKED, WRAPPER, command

from candiag.capture import read_capture
from candiag.modbus.sim import SimulatedMeterLine

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(
    *args: str, timeout: float = 90, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def test_the_wrapper_makes_every_posix_only_module_unimportable() -> None:
    probe = WRAPPER.rsplit("sys.argv = ", 1)[0] + (
        "import importlib\n"
        "for name in sorted(BLOCKED):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "        print('imported', name)\n"
        "    except ModuleNotFoundError:\n"
        "        print('blocked', name)\n"
    )
    done = subprocess.run(
        [command()[0], "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.split("\n")[:-1] == [f"blocked {name}" for name in sorted(BLOCKED)]


def test_demo_runs_and_serves_metrics_for_five_seconds() -> None:
    child = subprocess.Popen(
        command("demo", "--duration", "5", "--listen", "127.0.0.1:0"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        first = child.stdout.readline()
        url = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", first)
        assert url, first
        time.sleep(3)
        with urllib.request.urlopen(url.group(1), timeout=5) as response:
            metrics = response.read().decode()
        _out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert 'candiag_can_bus_up{bus="sim0"} 1.0' in metrics
    # the simulated meters answer without a pty: RTU through a gateway on 127.0.0.1
    for device in ("ac_meter", "dc_meter", "imd"):
        assert f'candiag_modbus_up{{device="{device}",port="sim-meters"}} 1.0' in metrics
    assert "Traceback" not in err


def test_monitor_plain_shows_the_buses_and_meters() -> None:
    done = run("monitor", "--demo", "--plain", "--duration", "4", "--interval", "1")
    assert done.returncode == 0, done.stderr
    assert "nodes 12/12 online" in done.stdout
    assert re.search(r"meter sim-meters/dc_meter: up; .*voltage", done.stdout)
    assert "0 active finding(s)" in done.stdout


def _read_available(fd: int, out: bytearray, timeout: float) -> None:
    if select.select([fd], [], [], timeout)[0]:
        try:
            out.extend(os.read(fd, 1 << 16))
        except OSError:  # the child closed the terminal
            pass


def _wait_for(fd: int, out: bytearray, needle: bytes, deadline: float) -> None:
    while needle not in out and time.monotonic() < deadline:
        _read_available(fd, out, 0.1)
    assert needle in out, out.decode(errors="replace")[-2000:]


def test_monitor_live_view_takes_keys_on_a_terminal_without_termios(tmp_path: Path) -> None:
    """Without termios the terminal stays in line mode: a key then Enter, and the view says so."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 180, 0, 0))  # rows, columns
    out = bytearray()
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    child = subprocess.Popen(
        command("monitor", "--demo", "--record-dir", str(tmp_path)),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    try:
        _wait_for(master, out, b"power_module", deadline)
        assert b"keys take effect after Enter" in out
        os.write(master, b"w\n")
        _wait_for(master, out, "● REC".encode(), deadline)
        time.sleep(1.0)
        os.write(master, b"q\n")
        while child.poll() is None and time.monotonic() < deadline:
            _read_available(master, out, 0.1)
        code = child.wait(5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
        os.close(slave)
    text = out.decode(errors="replace")
    assert code == 0, text[-2000:]
    (log,) = tmp_path.glob("candiag-*.log.gz")
    batch, stats = read_capture(log)
    assert len(batch) > 0 and stats.malformed == 0
    assert f"recorded {len(batch)} frames to {log}" in text
    assert "Traceback" not in text


def test_record_from_the_virtual_bus(tmp_path: Path) -> None:
    out = tmp_path / "rec.log"
    done = run(
        "record", "-i", "virtual", "-c", "nowin-rec", "-o", str(out), "--duration", "3",
        env={"CANDIAG_TEST_SEND": "nowin-rec:300"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "SENT 300" in done.stderr
    assert "recorded 300 frames (0 error frames)" in done.stderr
    batch, stats = read_capture(out)
    assert len(batch) == 300 and stats.malformed == 0


def test_record_on_socketcan_names_what_is_missing() -> None:
    """No SocketCAN in this kernel: one line saying what to check, no traceback."""
    done = run("record", "-i", "socketcan", "-c", "can7", "-o", "none.log", "--duration", "1")
    assert done.returncode == 3
    assert done.stderr.startswith("candiag: error: CAN interface 'socketcan' channel 'can7'")
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nowin") / "sim.log"
    done = run("simulate", "-o", str(path), "-d", "20", "--scenario", "module_offline")
    assert done.returncode == 0, done.stderr
    assert path.stat().st_size > 0
    return path


def test_simulate_then_analyze_with_json_and_html(capture: Path, tmp_path: Path) -> None:
    report, html = tmp_path / "r.json", tmp_path / "r.html"
    done = run("analyze", str(capture), "--json", str(report), "--html", str(html))
    assert done.returncode == 0, done.stderr
    doc = json.loads(report.read_text("utf-8"))
    assert any(f["code"] == "CAN_NODE_OFFLINE" for f in doc["findings"]), doc["findings"]
    assert html.read_text("utf-8").lstrip().lower().startswith("<!doctype html")


def test_decode(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    done = run("decode", str(capture), "-o", str(out))
    assert done.returncode == 0, done.stderr
    lines = out.read_text("utf-8").splitlines()
    assert len(lines) > 100
    assert json.loads(lines[0])["signals"]


@pytest.fixture
def gateway() -> Iterator[SimulatedMeterLine]:
    with SimulatedMeterLine([("djsf1352", 2)], transport="rtu+tcp") as line:
        yield line


def test_modbus_read_against_the_simulated_meter_through_a_gateway(
    gateway: SimulatedMeterLine,
) -> None:
    done = run(
        "modbus", "read", "--port", gateway.port, "--profile", "djsf1352", "--id", "2", "--json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["device"]["up"] is True
    assert 390 < doc["readings"]["voltage"]["value"] < 410


def test_modbus_read_on_a_serial_port_says_what_is_unavailable() -> None:
    """pyserial's POSIX backend needs termios: one clear line (Windows loads serialwin32)."""
    with SimulatedMeterLine([("sdm630", 1)], baudrate=9600) as line:
        done = run("modbus", "read", "--port", line.port, "--profile", "sdm630")
    assert done.returncode == 3
    assert "serial ports are unavailable in this Python" in done.stderr
    assert "tcp://HOST:PORT" in done.stderr and "Traceback" not in done.stderr
