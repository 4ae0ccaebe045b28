"""``candiag monitor``: session on a live virtual adapter, keys, recording, terminal restore, CLI.

The test's sender thread is the only thing that transmits on the virtual channel;
candiag's reader only receives.  The end-to-end runs use the built-in simulated
charger (``--demo``) in a subprocess, without a terminal (plain lines) and on a
pseudo-terminal (the live view and its keys).
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import io
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest
from rich.console import Console

from candiag.capture import read_capture
from candiag.capture.metadata import BusMetadata, read_recording_metadata
from candiag.cli import main
from candiag.cli.monitor import adapter_config
from candiag.config.model import FamilyConfig
from candiag.decode.dbc import load_reference_database
from candiag.tui.app import MonitorApp
from candiag.tui.session import MonitorSession
from candiag.tui.terminal import KeyReader
from candiag.tui.view import node_rows

REPO = Path(__file__).resolve().parents[1]
MODULE = 5
VOLTS, AMPS = 400.0, 12.5
ANSI_ESCAPE = "\x1b"


@pytest.fixture(scope="module")
def module_offline_run() -> Iterator[subprocess.Popen[str]]:
    """``--demo --scenario module_offline`` for 13 s, started with this file's first slow test.

    Module 3 goes silent 10 s into the scenario; running it in the background while the
    other slow tests of this file run keeps them fast (they run together, after the unit
    tests: tests/conftest.py orders the run).
    """
    argv = ["monitor", "--demo", "--scenario", "module_offline", "--duration", "13"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


# -- a test sender: power module 5's telemetry at its 100 ms cycle time ----------------------
class TelemetrySender:
    def __init__(self, channel: str) -> None:
        message = load_reference_database().by_name("ModuleTelemetry")
        self.can_id = message.frame_id | MODULE
        self.data = message.cantools_message.encode({"OutputVoltage": VOLTS, "OutputCurrent": AMPS})
        self.bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-sender")

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.bus.send(can.Message(arbitration_id=self.can_id, data=self.data))
            self.sent += 1

    def __enter__(self) -> TelemetrySender:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.bus.shutdown()


@pytest.fixture
def channel() -> str:
    return f"candiag-monitor-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sender(channel: str) -> Iterator[TelemetrySender]:
    with TelemetrySender(channel) as s:
        yield s


def _adapter_args(channel: str) -> argparse.Namespace:
    return argparse.Namespace(
        interface="virtual",
        channel=channel,
        bitrate=125_000,
        data_bitrate=None,
        fd=False,
        dbc=None,
    )


@pytest.fixture
def session(channel: str) -> Iterator[MonitorSession]:
    config = adapter_config(_adapter_args(channel))
    # A generous timeout: a loaded test machine must not make the sender look silent.
    bus = dataclasses.replace(
        config.buses[0], families=(FamilyConfig("power_module", timeout_s=2.0),)
    )
    s = MonitorSession(dataclasses.replace(config, buses=(bus,)), title="test")
    s.start()
    try:
        yield s
    finally:
        s.close()


def _run_steps(session: MonitorSession, seconds: float, interval: float = 0.1) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(interval)
        session.step()


# -- the session on a live (virtual) adapter ----------------------------------------------------
def test_live_adapter_frames_nodes_and_key_signals(
    session: MonitorSession, sender: TelemetrySender
) -> None:
    _run_steps(session, 0.8)
    report = session.reports[session.buses[0].config.name]
    assert report.state == "error_active" and report.up is True
    assert 0 < session.total_frames() <= sender.sent
    (bus,) = session.bus_views(time.time())
    rows = node_rows(bus, time.time())
    assert [r[1:4] for r in rows] == [["power_module", str(MODULE), "online"]]
    assert rows[0][6:8] == ["400.0 V", "12.5 A"]  # decoded, fresh, from the signal roles


def test_keys_pause_reset_quit(
    session: MonitorSession, sender: TelemetrySender, tmp_path: Path
) -> None:
    app = MonitorApp(session, record_dir=tmp_path)
    _run_steps(session, 0.4)
    assert session.total_frames() > 0
    old_bus = session.buses[0]

    app.handle_key("p")
    assert app.paused and session.screen(paused=app.paused).paused
    app.handle_key("P")  # case-insensitive
    assert not app.paused

    app.handle_key("r")
    # The bus and its reader go on; its counts start afresh (tests/test_live_engine.py:
    # findings and rates across a reset).
    assert session.buses[0] is old_bus and old_bus.source is not None and old_bus.up
    assert session.total_frames() == 0 and not session.diagnosed
    assert "counters reset" in app.message

    app.handle_key("x")  # unknown keys are ignored
    assert not app.stopping
    app.handle_key("q")
    assert app.stopping


def test_w_records_a_parseable_candump_log(
    session: MonitorSession, sender: TelemetrySender, tmp_path: Path
) -> None:
    app = MonitorApp(session, record_dir=tmp_path)
    app.handle_key("w")
    path = session.recording.path if session.recording else None
    assert path is not None and path.parent == tmp_path
    assert re.fullmatch(r"candiag-\d{8}-\d{6}\.log\.gz", path.name)
    assert "recording to" in app.message
    _run_steps(session, 0.6)
    app.handle_key("w")
    assert session.recording is None
    ((recorded_path, frames),) = app.recordings
    assert recorded_path == path and frames > 0
    assert f"recorded {frames} frames" in app.message

    batch, stats = read_capture(path)
    assert stats.malformed == 0 and len(batch) == frames
    assert set(batch.can_id.tolist()) == {sender.can_id}
    assert batch.is_extended.all()
    assert bytes(batch.data[0, :8]) == sender.data
    assert (batch.timestamp[1:] >= batch.timestamp[:-1]).all()
    # The bus's bitrate, interface and channel ride in the gzip header (docs/bitrate.md).
    reading = read_recording_metadata(path)
    assert reading.source == "gzip comment" and reading.problem == ""
    assert reading.metadata is not None
    assert reading.metadata.buses == (
        BusMetadata(channel=session.buses[0].config.channel, interface="virtual", bitrate=125_000),
    )

    app.handle_key("w")  # a second recording never overwrites the first
    assert session.recording is not None and session.recording.path != path
    app.handle_key("w")


def test_recording_never_claims_a_bitrate_the_adapter_was_not_opened_with(
    channel: str, tmp_path: Path
) -> None:
    # monitor --interface without --bitrate: the load basis is the default, but the adapter
    # runs at its driver's default, which the recording must not claim to know.
    config = adapter_config(_adapter_args(channel))
    session = MonitorSession(config, title="test", adapter_bitrates={channel: None})
    session.start()
    try:
        path = session.start_recording(tmp_path)
        session.stop_recording()
    finally:
        session.close()
    metadata = read_recording_metadata(path).metadata
    assert metadata is not None and metadata.bitrate_for(channel) is None
    assert metadata.buses[0].interface == "virtual" and metadata.buses[0].channel == channel


def test_recording_into_a_missing_folder_is_reported(
    session: MonitorSession, tmp_path: Path
) -> None:
    app = MonitorApp(session, record_dir=tmp_path / "missing")
    app.handle_key("w")
    assert session.recording is None
    assert app.message.startswith("cannot record:") and "missing" in app.message


@pytest.mark.slow
@pytest.mark.usefixtures("module_offline_run")
def test_cli_live_virtual_adapter_plain(
    channel: str, sender: TelemetrySender, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["monitor", "-i", "virtual", "-c", channel, "--duration", "1.2", "--interval", "0.5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert ANSI_ESCAPE not in out
    lines = [line for line in out.splitlines() if f"bus {channel}: " in line]
    assert len(lines) >= 2  # periodic lines plus the last summary
    assert re.search(r"nodes [01]/1 online \(power_module [01]/1\)", lines[-1])
    assert any("nodes 1/1 online" in line for line in lines)
    fps = [float(m.group(1)) for line in lines if (m := re.search(r"; (\d+) fps;", line))]
    assert max(fps) > 0


@pytest.mark.slow
@pytest.mark.usefixtures("module_offline_run")
def test_cli_config_with_bus_and_meters(
    channel: str, sender: TelemetrySender, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from candiag.modbus.sim import demo_line

    line, _devices = demo_line("healthy")  # sdm630 id 1, djsf1352 id 2, isocha425hv id 3
    line.start()
    try:
        config = tmp_path / "candiag.toml"
        config.write_text(
            f"""
[[can.buses]]
name = "can0"
interface = "virtual"
channel = "{channel}"

[[can.buses.families]]
name = "power_module"
expected = [5, 6]
timeout_s = 2.0

[[modbus.ports]]
port = "{line.port}"
name = "rs485"
timeout = 0.2
retries = 0

[[modbus.ports.devices]]
profile = "djsf1352"
unit_id = 2
name = "dc_meter"
interval = 0.5

[[modbus.ports.devices]]
profile = "sdm120"
unit_id = 9
name = "ghost"
interval = 0.5
""",
            encoding="utf-8",
        )
        argv = ["monitor", "--config", str(config), "--duration", "2.5", "--interval", "1"]
        assert main(argv) == 0
    finally:
        line.stop()
    out = capsys.readouterr().out
    last = out.splitlines()[-12:]
    bus = next(x for x in last if " bus can0: " in x)
    assert "nodes 1/2 online (power_module 1/2)" in bus
    assert "not online: power_module 6 offline" in bus  # expected but never seen
    dc = next(x for x in last if "meter rs485/dc_meter: " in x)
    assert re.search(r"dc_meter: up; .*failures 0; voltage \d+\.\d V", dc)
    ghost = next(x for x in last if "meter rs485/ghost: " in x)
    assert re.search(r"ghost: down; last success never; failures timeout [1-9]", ghost)


# -- CLI argument errors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["monitor", "-i", "virtual"], 2, "--interface needs --channel"),
        (["monitor", "--demo", "--channel", "x"], 2, "--channel only applies to --interface"),
        (["monitor", "--config", "x.toml", "--scenario", "bus_off"], 2, "--scenario only applies"),
        (["monitor", "--demo", "--scenario", "nope"], 2, "unknown scenario 'nope'"),
        (["monitor", "--demo", "--duration", "0"], 2, "--duration must be a positive"),
        (["monitor", "-i", "no_such_if", "-c", "x"], 3, "unknown python-can interface"),
        # the adapter opened up front is closed again (the fixture checks no bus leaks)
        (["monitor", "-i", "virtual", "-c", "x", "--dbc", "/nonexistent.dbc"], 2, "no such DBC"),
    ],
)
def test_cli_errors(
    argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    assert message in capsys.readouterr().err


# -- the terminal ---------------------------------------------------------------------------------
def test_key_reader_cbreak_then_restored_also_after_an_error() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with KeyReader(slave) as keys:
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & termios.ICANON and not lflag & termios.ECHO
            assert lflag & termios.ISIG  # Ctrl-C still interrupts
            assert keys.read(0.01) == ""
            os.write(master, b"pw")
            assert keys.read(1.0) == "pw"  # no Enter needed
        assert termios.tcgetattr(slave) == before
        with pytest.raises(RuntimeError), KeyReader(slave):
            raise RuntimeError("boom")
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_key_reader_stops_reading_once_the_terminal_is_gone() -> None:
    master, slave = os.openpty()
    try:
        keys = KeyReader(slave)
        os.close(master)
        assert keys.read(0.1) == ""
        assert keys.eof
        started = time.monotonic()
        assert keys.read(0.05) == ""  # waits instead of spinning on a dead terminal
        assert time.monotonic() - started >= 0.04
    finally:
        os.close(slave)


def test_run_live_pause_draws_one_paused_frame_then_stops_drawing(
    session: MonitorSession, sender: TelemetrySender, tmp_path: Path
) -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        os.write(master, b"p")  # read during the first wait, after the first frame
        screen = io.StringIO()
        console = Console(file=screen, force_terminal=True, width=160, height=60)
        app = MonitorApp(session, record_dir=tmp_path, duration=1.0)
        assert app.run_live(console, slave) == 0
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
    frames = screen.getvalue().split("candiag monitor")[1:]
    paused = [i for i, frame in enumerate(frames) if "PAUSED" in frame]
    assert paused == [1]  # the first frame, then exactly one saying PAUSED, then none
    last_summary = screen.getvalue().split("\x1b[?1049l")[-1]  # after leaving the screen
    assert "(power_module 1/1)" in last_summary and "\x1b[" not in last_summary


# -- end to end, in a subprocess -------------------------------------------------------------------
def _candiag(
    *args: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "candiag", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("module_offline_run")
def test_demo_without_terminal_prints_plain_lines() -> None:
    proc = _candiag("monitor", "--demo", "--duration", "3", "--interval", "1", timeout=40)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert ANSI_ESCAPE not in out
    bus_lines = [line for line in out.splitlines() if " bus sim0: " in line]
    assert len(bus_lines) >= 2
    # all 8 simulated power modules and the other nodes are known on the bus
    assert all(re.search(r"power_module \d/8\b", line) for line in bus_lines)
    assert re.search(r"nodes \d+/12 online", bus_lines[-1])
    assert re.search(r"meter sim-meters/dc_meter: up; .*voltage \d+\.\d V", out)
    assert "active finding(s)" in out


_OFFLINE_3 = "CAN_NODE_OFFLINE [sim0/power_module/3]"


@pytest.mark.slow
def test_demo_module_offline_shows_the_finding_with_its_fix(
    module_offline_run: subprocess.Popen[str],
) -> None:
    stdout, stderr = module_offline_run.communicate(timeout=60)
    assert module_offline_run.returncode == 0, stderr
    lines = stdout.splitlines()
    raised = [i for i, line in enumerate(lines) if _OFFLINE_3 in line and " + CRITICAL " in line]
    assert raised, stdout
    assert "stopped transmitting" in lines[raised[0]] and "; fix: Check" in lines[raised[0]]
    # raised while running (before the last summary), and still active at the end
    assert raised[0] < lines.index(next(x for x in lines if "active finding(s)" in x))
    assert any(_OFFLINE_3 in line and " active: CRITICAL " in line for line in lines)
    assert re.search(r"not online: .*power_module 3 offline", stdout)


def _read_available(fd: int, out: bytearray, timeout: float) -> None:
    ready, _, _ = select.select([fd], [], [], timeout)
    if ready:
        try:
            out.extend(os.read(fd, 1 << 16))
        except OSError:  # the child closed the terminal
            pass


class PtyMonitor:
    """``candiag monitor --demo`` on a pseudo-terminal (stdin and stdout are a tty)."""

    def __init__(self, record_dir: Path) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 180, 0, 0))
        self.before = termios.tcgetattr(self.slave)
        self.out = bytearray()
        self.deadline = time.monotonic() + 40
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "candiag", "monitor", "--demo", "--record-dir", str(record_dir)],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )

    def wait_for(self, needle: bytes) -> None:
        while needle not in self.out and time.monotonic() < self.deadline:
            _read_available(self.master, self.out, 0.1)
        assert needle in self.out, self.out.decode(errors="replace")[-2000:]

    def read_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            _read_available(self.master, self.out, 0.1)

    def wait_exit(self) -> int:
        while self.proc.poll() is None and time.monotonic() < self.deadline:
            _read_available(self.master, self.out, 0.1)
        code = self.proc.wait(5)
        _read_available(self.master, self.out, 0.2)
        return code

    def close(self) -> tuple[str, list[Any]]:
        """Kill if still running; returns (everything shown, terminal attributes now)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        attrs = termios.tcgetattr(self.slave)
        os.close(self.master)
        os.close(self.slave)
        return self.out.decode(errors="replace"), attrs


def _assert_terminal_clean(pty: PtyMonitor, text: str, attrs: list[Any]) -> None:
    assert attrs == pty.before  # cbreak undone
    assert "\x1b[?1049h" in text and text.rindex("\x1b[?1049l") > text.rindex("\x1b[?1049h")
    assert text.rindex("\x1b[?25h") > text.rindex("\x1b[?25l")  # cursor shown again


@pytest.mark.slow
def test_live_view_on_a_terminal_keys_and_restore(tmp_path: Path) -> None:
    pty = PtyMonitor(tmp_path)
    try:
        pty.wait_for(b"power_module")
        os.write(pty.master, b"w")
        pty.read_for(1.5)
        os.write(pty.master, b"q")
        assert pty.wait_exit() == 0
    finally:
        text, attrs = pty.close()
    _assert_terminal_clean(pty, text, attrs)
    assert "● REC" in text
    (log,) = tmp_path.glob("candiag-*.log.gz")
    batch, stats = read_capture(log)
    assert len(batch) > 0 and stats.malformed == 0
    metadata = read_recording_metadata(log).metadata
    assert metadata is not None and metadata.bitrate == 125_000  # the demo's simulated bus
    assert f"recorded {len(batch)} frames to {log}" in text


@pytest.mark.slow
def test_live_view_ctrl_c_leaves_the_terminal_clean(tmp_path: Path) -> None:
    pty = PtyMonitor(tmp_path)
    try:
        pty.wait_for(b"Nodes")
        pty.proc.send_signal(signal.SIGINT)
        assert pty.wait_exit() == 0
    finally:
        text, attrs = pty.close()
    _assert_terminal_clean(pty, text, attrs)
    assert "active finding(s)" in text.split("\x1b[?1049l")[-1]
