"""``candiag run`` and ``candiag demo`` as real processes: notify, /metrics, SIGHUP, SIGTERM.

The python-can ``virtual`` bus is in-process only, so the subprocess daemon gets its
traffic from the ``[simulator]`` section (simulated charger on its own virtual bus,
simulated meters on a pseudo-terminal), exactly as ``candiag demo`` does.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_config import sim_config
from external_tools import require_tool

pytestmark = pytest.mark.slow

CONFIG = sim_config("e2e", meters=True)


class Proc:
    """A candiag subprocess whose stderr is collected on a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "candiag", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.err: list[str] = []
        self.out: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.p.stderr, self.err), daemon=True),
            threading.Thread(target=self._pump, args=(self.p.stdout, self.out), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def wait_line(self, pattern: str, where: list[str], timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(where):
                if m := rx.search(line):
                    return m
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r}; stderr:\n" + "\n".join(self.err))

    def close(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        for t in self._threads:
            t.join(5)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield sock, path
    sock.close()


def received(sock: socket.socket, until: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < until:
        try:
            out.extend(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            continue
    return out


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env.update(extra)
    return env


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_run_notify_metrics_reload_and_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    promtool = require_tool("promtool")
    sock, sock_path = notify_socket
    config = tmp_path / "candiag.toml"
    config.write_text(CONFIG)
    proc = Proc(
        ["run", "--config", str(config)],
        env_with(NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="1000000"),
    )
    try:
        url = proc.wait_line(r"event=metrics_listening url=(\S+)", proc.err).group(1)
        messages = received(sock, time.monotonic() + 3.0)
        assert "READY=1" in messages
        assert any(m.startswith("STATUS=") for m in messages)
        assert messages.count("WATCHDOG=1") >= 3  # every 0.5 s from the processing loop

        deadline = time.monotonic() + 15
        while True:
            text = get(url + "/metrics")
            if (
                'candiag_modbus_up{device="ac_meter",port="sim-meters"} 1.0' in text
                and 'candiag_can_node_up{bus="sim0",family="power_module",node="8"} 1.0' in text
            ) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert 'candiag_can_bus_up{bus="sim0"} 1.0' in text
        assert 'candiag_can_node_up{bus="sim0",family="power_module",node="8"} 1.0' in text
        assert 'candiag_modbus_up{device="ac_meter",port="sim-meters"} 1.0' in text
        assert re.search(r'candiag_meter_voltage_volts\{device="ac_meter",phase="l1"\} 2\d\d', text)
        check = subprocess.run(
            [promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False
        )
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()

        # SIGHUP with a broken config: logged, old config kept, still serving.
        config.write_text(CONFIG.replace('interface = "virtual"', 'interface = "nonsense"'))
        proc.p.send_signal(signal.SIGHUP)
        proc.wait_line(r"event=reload_failed .*can\.buses\[0\]\.interface", proc.err)
        assert proc.p.poll() is None
        after_hup = received(sock, time.monotonic() + 0.5)
        assert "RELOADING=1" in after_hup and "READY=1" in after_hup
        assert 'candiag_can_bus_up{bus="sim0"} 1.0' in get(url + "/metrics")

        # SIGTERM: clean exit within 5 s, STOPPING=1 sent.
        start = time.monotonic()
        proc.p.send_signal(signal.SIGTERM)
        assert proc.p.wait(5) == 0
        assert time.monotonic() - start < 5
        assert "STOPPING=1" in received(sock, time.monotonic() + 0.5)
        proc.wait_line(r"event=stopped", proc.err, timeout=2)
        assert not any("Traceback" in line for line in proc.err), "\n".join(proc.err)
    finally:
        proc.close()


def test_demo_prints_url_and_summaries_then_stops() -> None:
    proc = Proc(
        ["demo", "--listen", "127.0.0.1:0", "--duration", "7", "--scenario", "module_offline"],
        env_with(),
    )
    try:
        url = proc.wait_line(r"metrics at (http://127\.0\.0\.1:\d+)/metrics", proc.out).group(1)
        assert "candiag_build_info" in get(url + "/metrics")
        assert proc.p.wait(20) == 0
        summaries = [line for line in proc.out if re.search(r"sim0: \d+ fps, load \d+%", line)]
        assert summaries, "\n".join(proc.out + proc.err)
        assert "meters 3/3 up" in summaries[-1]
    finally:
        proc.close()


def test_run_refuses_a_bad_config_with_key_paths(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        '[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "can0"\nbitrate = 7\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "candiag", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "can.buses[0].bitrate: expected an integer in 10000..1000000, found 7" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_on_a_terminal_shows_the_live_table() -> None:
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", "demo", "--listen", "127.0.0.1:0", "--duration", "4"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env_with(COLUMNS="160", LINES="40", TERM="xterm"),
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        os.close(master)
    screen = b"".join(chunks).decode(errors="replace")
    assert "metrics at http://127.0.0.1:" in screen
    assert "candiag demo" in screen and "sim0" in screen and "error_active" in screen
    # the full monitor view (issue 17): meters by port and device, the nodes with firmware
    assert "Modbus meters" in screen and "sim-meters" in screen and "ac_meter" in screen
    assert "Nodes" in screen and "DCDC 1.4 / PFC 2.0" in screen
