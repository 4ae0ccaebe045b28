"""The real ``candiag run`` attacked with signals and bad files (issue 13 §1 items 1, 2).

* SIGHUP bursts (2 within 150 ms, 20 within 1 s): two reloads in quick succession used to
  stop the daemon with exit code 0, so ``Restart=on-failure`` never brought it back.  Now
  it keeps scraping, the last config written before the last SIGHUP is the one running,
  and SIGTERM still ends it with 0 within 5 s.
* Files that loaders did not foresee, on SIGHUP (a web config with a list for a TLS version,
  a non-ASCII bcrypt hash, bytes that are not UTF-8; diagnosis thresholds that are not
  UTF-8): one log line naming the file, the reload counted as failed, the old config goes
  on.  At start the same files are a clean error (exit 2), never a traceback.

The daemon gets its traffic from the config's ``[simulator]`` (python-can's ``virtual``
bus is in-process only).  Every child is bounded in time; see tests/adversarial/bounded.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemon_config import sim_config

from tests.adversarial.bounded import run_bounded

pytestmark = pytest.mark.slow


class RunningDaemon:
    """``candiag run --config FILE`` as a process; its log (stderr) collected on a thread."""

    def __init__(self, config: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "candiag", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.log: list[str] = []
        self._pump = threading.Thread(target=self._read, name="test-daemon-log", daemon=True)
        self._pump.start()
        self.url = self.wait_log(r"event=metrics_listening url=(\S+)").group(1) + "/metrics"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip("\n"))

    def alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"daemon exited with {code}:\n" + "\n".join(self.log[-30:])

    def wait_log(self, pattern: str, after: int = 0, timeout: float = 20.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log[after:]:
                if m := rx.search(line):
                    return m
            self.alive()
            time.sleep(0.05)
        raise AssertionError(f"no log line {pattern!r} in:\n" + "\n".join(self.log[-30:]))

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url, timeout=5) as resp:
            return str(resp.read().decode())

    def value(self, series: str) -> float | None:
        m = re.search("^" + re.escape(series) + r" (\S+)$", self.scrape(), re.M)
        return float(m.group(1)) if m else None

    def wait_value(self, series: str, ok: Callable[[float], bool], timeout: float = 15.0) -> float:
        deadline = time.monotonic() + timeout
        while True:
            self.alive()
            value = self.value(series)
            if value is not None and ok(value):
                return value
            assert time.monotonic() < deadline, f"{series} = {value}\n" + "\n".join(self.log[-20:])
            time.sleep(0.1)

    def frames(self) -> float:
        text = self.scrape()
        return sum(
            float(v)
            for v in re.findall(
                r'^candiag_can_frames_total\{bus="sim0",kind="\w+"\} (\S+)$', text, re.M
            )
        )

    def still_monitoring(self) -> None:
        """Alive, the bus up, and frames still being counted."""
        self.alive()
        self.wait_value('candiag_can_bus_up{bus="sim0"}', lambda v: v == 1)
        before = self.frames()
        deadline = time.monotonic() + 10
        while self.frames() <= before:
            self.alive()
            assert time.monotonic() < deadline, "frames no longer counted"
            time.sleep(0.2)

    def terminate(self) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(10)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._pump.join(5)


@pytest.fixture
def daemons() -> Iterator[list[RunningDaemon]]:
    started: list[RunningDaemon] = []
    yield started
    for d in started:
        d.close()


def hups(
    daemon: RunningDaemon, count: int, within_s: float, before_last: Callable[[], None]
) -> None:
    gap = within_s / max(1, count - 1)
    for i in range(count):
        if i == count - 1:
            before_last()
        daemon.proc.send_signal(signal.SIGHUP)
        if i < count - 1:
            time.sleep(gap)


def test_sighup_bursts_reload_and_never_stop_monitoring(
    tmp_path: Path, daemons: list[RunningDaemon]
) -> None:
    channel = f"atk-hup-{os.getpid()}"
    config = tmp_path / "candiag.toml"
    base = sim_config(channel)
    config.write_text(base)
    daemon = RunningDaemon(config)
    daemons.append(daemon)
    daemon.still_monitoring()

    # Two SIGHUPs 100 ms apart (systemctl reload twice): still monitoring, then reloaded.
    mark = len(daemon.log)
    hups(daemon, 2, 0.1, lambda: None)
    daemon.wait_log(r"event=reloaded ", after=mark)
    time.sleep(1.5)  # a second reload, if one was coalesced behind the first, ends here
    daemon.still_monitoring()

    # Twenty within a second; the config changes before the last one: a second bus appears.
    mark = len(daemon.log)
    second_bus = f'\n[[can.buses]]\nname = "sim1"\ninterface = "virtual"\nchannel = "{channel}-b"\n'
    hups(daemon, 20, 1.0, lambda: config.write_text(base + second_bus))
    daemon.wait_value('candiag_can_bus_up{bus="sim1"}', lambda v: v == 1, timeout=20)
    reloads = sum("event=reloaded" in line for line in daemon.log[mark:])
    assert 1 <= reloads <= 20, reloads
    daemon.still_monitoring()
    assert not any("event=stopping" in line for line in daemon.log)

    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 5, (code, seconds)
    assert any("event=stopped" in line for line in daemon.log)
    assert not any("Traceback" in line for line in daemon.log), "\n".join(daemon.log)


def _web_type(tmp: Path) -> Path:
    path = tmp / "web-type.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: [TLS12]\n"
    )
    return path


def _web_hash(tmp: Path) -> Path:
    path = tmp / "web-hash.yml"
    path.write_text('basic_auth_users:\n  alice: "$2b$12$' + "é" * 53 + '"\n', encoding="utf-8")
    return path


def _web_bytes(tmp: Path) -> Path:
    path = tmp / "web-bytes.yml"
    path.write_bytes(b"basic_auth_users:\n  al\xffice: x\n")
    return path


def _thresholds_bytes(tmp: Path) -> Path:
    path = tmp / "thresholds.toml"
    path.write_bytes(b"[bus]\n# \xff\xfe\n")
    return path


BAD_FILES: list[tuple[str, Callable[[Path], Path]]] = [
    ("web_config_file", _web_type),
    ("web_config_file", _web_hash),
    ("web_config_file", _web_bytes),
    ("thresholds_file", _thresholds_bytes),
]


def with_file(config: str, key: str, path: Path) -> str:
    if key == "web_config_file":
        return config.replace("[metrics]\n", f'[metrics]\nweb_config_file = "{path}"\n')
    return config + f'[diagnosis]\nthresholds_file = "{path}"\n'


def test_bad_files_on_reload_keep_the_old_config_running(
    tmp_path: Path, daemons: list[RunningDaemon]
) -> None:
    config = tmp_path / "candiag.toml"
    good = sim_config(f"atk-files-{os.getpid()}")
    config.write_text(good)
    daemon = RunningDaemon(config)
    daemons.append(daemon)
    daemon.still_monitoring()

    for failures, (key, write) in enumerate(BAD_FILES, start=1):
        bad = write(tmp_path)
        config.write_text(with_file(good, key, bad))
        mark = len(daemon.log)
        daemon.proc.send_signal(signal.SIGHUP)
        line = daemon.wait_log(r"event=reload_failed .*", after=mark).group(0)
        assert str(bad) in line and "keeping the running configuration" in line, line
        daemon.still_monitoring()
        assert daemon.value("candiag_config_reload_failures_total") == failures
        assert daemon.value("candiag_config_last_reload_successful") == 0

    config.write_text(good)
    mark = len(daemon.log)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log(r"event=reloaded ", after=mark)
    assert daemon.value("candiag_config_last_reload_successful") == 1
    code, seconds = daemon.terminate()
    assert code == 0 and seconds < 5, (code, seconds)
    assert not any("Traceback" in line for line in daemon.log), "\n".join(daemon.log)


@pytest.mark.parametrize("key, write", BAD_FILES, ids=[w.__name__.strip("_") for _, w in BAD_FILES])
def test_bad_files_at_start_are_a_clean_error(
    tmp_path: Path, key: str, write: Callable[[Path], Path]
) -> None:
    bad = write(tmp_path)
    config = tmp_path / "candiag.toml"
    config.write_text(with_file(sim_config(f"atk-start-{os.getpid()}"), key, bad))
    result = run_bounded(["run", "--config", str(config)], timeout_s=60)
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    # One error naming the file; several problems in it are listed under it, one a line.
    assert lines[0].startswith("candiag: error: ") and str(bad) in lines[0]
    assert all(line.startswith("  - ") for line in lines[1:]), lines
