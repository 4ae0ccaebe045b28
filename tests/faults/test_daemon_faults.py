"""The daemon (``candiag run``) as a black box under faults, seen through /metrics and its log.

* reloads while Prometheus scrapes: every scrape answers 200 with a whole exposition;
  a bad config on SIGHUP is logged with its key path and the old config keeps
  counting frames; SIGTERM ends it within 5 s with exit code 0;
* a CAN adapter absent at start, plugged in, unplugged mid-stream and plugged back:
  an ``slcan`` adapter emulated on a pseudo-terminal by this test (a real
  cross-process CAN source: python-can's ``virtual`` bus is in-process only).  The
  emulated adapter also checks what the daemon sends it: only the listen-only
  open command, never a frame;
* the simulator's ``bus_off`` scenario: error-passive, bus-off, restart, in
  ``candiag_can_bus_state``, ``candiag_can_bus_off_total`` and
  ``candiag_can_bus_restarts_total``.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import tty
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_config import sim_config as sim_config_text

pytestmark = pytest.mark.slow


ERROR_CLASSES = (
    "tx_timeout", "lost_arbitration", "controller", "protocol", "transceiver", "ack",
    "bus_off", "bus_error", "restarted", "counters",
)  # fmt: skip


class Daemon:
    """``candiag run --config FILE`` as a process, its log collected on a thread."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "candiag", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        self.log: list[str] = []
        self._pump = threading.Thread(target=self._read, name="test-daemon-log")
        self._pump.start()
        self.url = self.wait_log(r"event=metrics_listening url=(\S+)").group(1) + "/metrics"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))

    def wait_log(self, pattern: str, timeout: float = 20.0, after: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log[after:]:
                if m := rx.search(line):
                    return m
            assert self.proc.poll() is None, "daemon exited:\n" + "\n".join(self.log)
            time.sleep(0.05)
        raise AssertionError(f"no log line {pattern!r} in:\n" + "\n".join(self.log))

    def scrape(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url, timeout=5) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, ""

    def value(self, series: str) -> float | None:
        return value_of(self.scrape()[1], series)

    def wait_value(
        self, series: str, condition: Callable[[float], bool], timeout: float = 15.0
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.value(series)
            if value is not None and condition(value):
                return value
            assert time.monotonic() < deadline, f"{series} = {value}; log:\n" + "\n".join(
                self.log[-20:]
            )
            time.sleep(0.1)

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._pump.join(5)


def value_of(text: str, series: str) -> float | None:
    m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def frames_total(text: str, bus: str) -> float:
    pattern = rf'^candiag_can_frames_total\{{bus="{bus}",kind="\w+"\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.close()


def sim_config(
    tmp_path: Path, channel: str, scenario: str = "healthy", meters: bool = False
) -> Path:
    config = tmp_path / "candiag.toml"
    config.write_text(sim_config_text(channel, scenario=scenario, meters=meters))
    return config


# --------------------------------------------------------------------------------------------
# Reload under scraping, bad config, SIGTERM
# --------------------------------------------------------------------------------------------
class Scraper:
    """Scrapes /metrics in a loop on a thread, keeping what a scrape must never be."""

    def __init__(self, daemon: Daemon, required: tuple[str, ...]) -> None:
        self.daemon = daemon
        self.required = required
        self.count = 0
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-scraper")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status, text = self.daemon.scrape()
            self.count += 1
            missing = [r for r in self.required if r not in text]
            if status != 200 or missing or not text.endswith("\n"):
                self.bad.append(f"HTTP {status}, missing {missing}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_scrapes_during_reloads_bad_config_and_sigterm(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    config = sim_config(tmp_path, "flt-reload", meters=True)
    daemon = Daemon(config)
    daemons.append(daemon)
    daemon.wait_value('candiag_can_bus_up{bus="sim0"}', lambda v: v == 1)
    scraper = Scraper(
        daemon,
        required=(
            'candiag_build_info{version="',
            "candiag_loop_last_run_timestamp_seconds ",
            "# TYPE candiag_can_frames_total counter",
            "# TYPE candiag_modbus_up gauge",
            "# TYPE candiag_finding_active gauge",
        ),
    )
    try:
        for _ in range(3):
            mark = len(daemon.log)
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log(r"event=reloaded ", after=mark)
            daemon.wait_value('candiag_can_bus_up{bus="sim0"}', lambda v: v == 1)

        # A bad config on SIGHUP: a clear log line, and the running config goes on.
        good = config.read_text()
        config.write_text(good.replace("processing_interval_s = 0.1", "processing_interval_s = -1"))
        mark = len(daemon.log)
        daemon.proc.send_signal(signal.SIGHUP)
        line = daemon.wait_log(r"event=reload_failed .*", after=mark).group(0)
        assert (
            "daemon.processing_interval_s" in line and "keeping the running configuration" in line
        )
        before = frames_total(daemon.scrape()[1], "sim0")
        time.sleep(1.0)
        status, text = daemon.scrape()
        assert status == 200 and frames_total(text, "sim0") > before, "old config stopped"
        assert value_of(text, 'candiag_can_bus_up{bus="sim0"}') == 1
    finally:
        scraper.stop()
    assert scraper.count > 20
    assert scraper.bad == [], scraper.bad[:5]

    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 5, (code, seconds)
    daemon.close()
    assert any("event=stopped" in line for line in daemon.log)
    assert not any("Traceback" in line for line in daemon.log), "\n".join(daemon.log)


def test_a_scrape_during_a_reload_still_has_every_bus(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(sim_config(tmp_path, "flt-reload2", meters=True))
    daemons.append(daemon)
    daemon.wait_value('candiag_modbus_up{device="ac_meter",port="sim-meters"}', lambda v: v == 1)
    scraper = Scraper(
        daemon,
        required=(
            'candiag_can_bus_up{bus="sim0"}',
            'candiag_modbus_up{device="ac_meter",port="sim-meters"}',
        ),
    )
    try:
        for _ in range(3):
            mark = len(daemon.log)
            daemon.proc.send_signal(signal.SIGHUP)
            daemon.wait_log(r"event=reloaded ", after=mark)
            time.sleep(0.3)
    finally:
        scraper.stop()
    assert scraper.count > 20
    assert scraper.bad == [], f"{len(scraper.bad)} of {scraper.count} scrapes: {scraper.bad[0]}"


# --------------------------------------------------------------------------------------------
# A CAN adapter absent, plugged, unplugged, plugged back (slcan on a pseudo-terminal)
# --------------------------------------------------------------------------------------------
class SlcanAdapter:
    """An slcan (LAWICEL) USB adapter emulated on a pty, reachable at a stable path.

    While plugged it sends power module 1's ``ModuleTelemetry`` (reference DBC, id
    0x0283F001: output voltage 400.5 V and current 50.25 A as big-endian float32)
    200 times per second as ``T...`` lines, and keeps every command the host wrote.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commands: list[str] = []
        self._fds: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self._fds = (master, slave)
        os.symlink(os.ttyname(slave), self.path)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(master,), name="test-slcan")
        self._thread.start()

    def unplug(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self._fds is not None:
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds = None

    def _run(self, master: int) -> None:
        pending = b""
        frame = b"T0283F0018" + struct.pack(">ff", 400.5, 50.25).hex().upper().encode() + b"\r"
        next_frame = time.monotonic()
        while not self._stop.is_set():
            ready, _, _ = select.select([master], [], [], 0.005)
            if ready:
                try:
                    pending += os.read(master, 4096)
                except OSError:
                    pass  # nobody has the port open
                *done, pending = pending.split(b"\r")
                self.commands.extend(c.decode(errors="replace") for c in done)
            if time.monotonic() >= next_frame:
                next_frame += 0.005
                with contextlib.suppress(OSError):
                    os.write(master, frame)


def test_adapter_absent_plugged_unplugged_and_back(tmp_path: Path, daemons: list[Daemon]) -> None:
    adapter = SlcanAdapter(tmp_path / "ttyCAN0")
    config = tmp_path / "candiag.toml"
    config.write_text(
        f'[[can.buses]]\nname = "slc"\ninterface = "slcan"\nchannel = "{adapter.path}"\n'
        'bitrate = 500000\n[metrics]\nlisten = "127.0.0.1:0"\n'
        "[daemon]\nprocessing_interval_s = 0.1\n"
    )
    up, down = 'candiag_can_bus_up{bus="slc"}', 'candiag_can_bus_state{bus="slc",state="down"}'
    volts = (
        'candiag_can_signal_volts{bus="slc",message="ModuleTelemetry",node="1",'
        'role="output_voltage",signal="OutputVoltage"}'
    )
    daemon = Daemon(config)
    daemons.append(daemon)
    try:
        # Absent at start: down, with the reason and the port in the log.
        line = daemon.wait_log(r"event=bus_down .*").group(0)
        assert "bus=slc" in line and str(adapter.path) in line
        daemon.wait_value(down, lambda v: v == 1)
        text = daemon.scrape()[1]
        assert value_of(text, up) == 0 and frames_total(text, "slc") == 0

        adapter.plug()
        daemon.wait_value(up, lambda v: v == 1, timeout=20)
        daemon.wait_log(r"event=bus_up bus=slc")
        first = daemon.wait_value(
            'candiag_can_frames_total{bus="slc",kind="data"}', lambda v: v > 50
        )
        assert daemon.value(down) == 0
        assert daemon.wait_value(volts, lambda v: True) == 400.5

        mark = len(daemon.log)
        adapter.unplug()  # mid-stream
        daemon.wait_value(up, lambda v: v == 0)
        assert daemon.value(down) == 1
        # Stale values are never exported: the voltage is withdrawn, not frozen at 400.5.
        deadline = time.monotonic() + 3
        while daemon.value(volts) is not None:
            assert time.monotonic() < deadline, "the last voltage is still exported"
            time.sleep(0.1)
        assert "bus=slc" in daemon.wait_log(r"event=bus_down .*", after=mark).group(0)
        stalled = frames_total(daemon.scrape()[1], "slc")
        assert stalled >= first

        adapter.plug()
        daemon.wait_value(up, lambda v: v == 1, timeout=30)
        daemon.wait_value(
            'candiag_can_frames_total{bus="slc",kind="data"}', lambda v: v > stalled + 50
        )
        assert daemon.value(down) == 0
        assert daemon.wait_value(volts, lambda v: True) == 400.5
        code, seconds = daemon.terminate()
        assert code == 0 and seconds < 5
    finally:
        adapter.unplug()
    # candiag only listened: bitrate set, opened listen-only ("L"), never "O" or a frame.
    assert "L" in adapter.commands
    assert not any(c == "O" or c[:1] in ("t", "T", "r", "R", "d", "D", "b", "B")
                   for c in adapter.commands), adapter.commands  # fmt: skip
    assert not any("Traceback" in line for line in daemon.log), "\n".join(daemon.log)


# --------------------------------------------------------------------------------------------
# Bus-off and restart (simulator scenario)
# --------------------------------------------------------------------------------------------
def test_bus_off_and_restart_are_exported(tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(sim_config(tmp_path, "flt-busoff", scenario="bus_off"))
    daemons.append(daemon)
    state = 'candiag_can_bus_state{{bus="sim0",state="{}"}}'
    daemon.wait_value(state.format("error_active"), lambda v: v == 1)
    text = daemon.scrape()[1]
    for cls in ERROR_CLASSES:  # every class pre-initialised
        assert value_of(text, f'candiag_can_error_frames_total{{bus="sim0",class="{cls}"}}') == 0
    # The scenario: error-passive at 10 s for 2 s, bus-off at 12 s for 3 s, then restart.
    daemon.wait_value(state.format("error_passive"), lambda v: v == 1, timeout=20)
    daemon.wait_value(state.format("bus_off"), lambda v: v == 1, timeout=10)
    assert daemon.value('candiag_can_bus_off_total{bus="sim0"}') == 1
    daemon.wait_value('candiag_can_bus_restarts_total{bus="sim0"}', lambda v: v >= 1, timeout=10)
    daemon.wait_value(state.format("error_active"), lambda v: v == 1, timeout=10)
    text = daemon.scrape()[1]
    assert value_of(text, 'candiag_can_bus_up{bus="sim0"}') == 1
    assert value_of(text, 'candiag_can_error_frames_total{bus="sim0",class="bus_off"}') == 1
    states = [value_of(text, state.format(s)) for s in
              ("error_active", "error_warning", "error_passive", "bus_off", "down")]  # fmt: skip
    assert states == [1, 0, 0, 0, 0]
    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 5
