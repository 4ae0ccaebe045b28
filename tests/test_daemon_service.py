"""The daemon in-process: simulated charger on a virtual bus, /metrics, link loss, reload."""

from __future__ import annotations

import io
import logging
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import can
import pytest
from daemon_config import sim_config

from candiag.config.load import load_config, parse_config_text
from candiag.config.model import BusConfig, Config
from candiag.daemon.logging import EventLog
from candiag.daemon.service import Daemon
from candiag.errors import BusUnavailableError
from candiag.live.readers import ReaderSource, open_reader
from tests.waiting import wait_for


def capture_log() -> tuple[EventLog, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"candiag.test.{id(stream)}")
    logger.handlers.clear()
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return EventLog(logger), stream


@pytest.fixture
def running(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """A started daemon whose loop runs on a thread; stopped and joined afterwards."""
    config: Config = (
        request.param
        if hasattr(request, "param")
        else parse_config_text(sim_config(f"svc-{time.monotonic_ns()}"))
    )
    log, _ = capture_log()
    daemon = Daemon(config, log=log)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="candiag-test-loop")
    loop.start()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        loop.join(5)
        daemon.stop()
        assert not loop.is_alive()


def scrape(daemon: Daemon) -> str:
    assert daemon.metrics_url is not None
    with urllib.request.urlopen(daemon.metrics_url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def sample(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_start!r} in scrape")


@pytest.mark.slow
def test_every_simulated_frame_is_counted_from_the_first() -> None:
    """The simulator starts once the reader listens: nothing it sends is missed, even
    when the adapter takes a while to open (a virtual bus delivers only to open buses)."""
    from candiag.ingest.live import open_listen_only_bus

    def slow_reader(bus: BusConfig) -> ReaderSource:
        def slow_open() -> can.BusABC:
            time.sleep(0.3)
            return open_listen_only_bus(bus.interface, bus.channel, None)

        return open_reader(bus, bus_factory=slow_open)

    config = parse_config_text(sim_config(f"svc-{time.monotonic_ns()}"))
    daemon = Daemon(config, log=capture_log()[0], reader_factory=slow_reader)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="candiag-test-loop")
    loop.start()
    try:
        (charger,) = daemon.engine.simulators
        time.sleep(1.0)
        charger.runner.stop()
        sent = charger.runner.frames_sent
        monitor = daemon.monitors["sim0"]
        assert sent > 0
        wait_for(lambda: sum(monitor.frames.values()) >= sent, "every sent frame counted")
        assert sum(monitor.frames.values()) == sent
    finally:
        daemon.request_stop()
        loop.join(5)
        daemon.stop()


@pytest.mark.slow
def test_simulated_charger_end_to_end(running: Daemon) -> None:
    def all_modules_up() -> bool:
        snap = running.snapshot()
        if not snap.buses or snap.buses[0].frames.get("data", 0) < 300:
            return False
        return sum(n.up for n in snap.buses[0].nodes if n.family == "power_module") == 8

    wait_for(all_modules_up, "all 8 power modules up", timeout=10, diagnose=running.status_line)
    text = scrape(running)
    assert sample(text, 'candiag_can_bus_up{bus="sim0"}') == 1
    assert sample(text, 'candiag_can_frames_total{bus="sim0",kind="data"}') > 100
    assert sample(text, 'candiag_can_bus_state{bus="sim0",state="error_active"}') == 1
    assert sample(text, 'candiag_can_node_up{bus="sim0",family="power_module",node="3"}') == 1
    assert sample(text, 'candiag_can_error_frames_total{bus="sim0",class="ack"}') == 0
    assert 0 < sample(text, 'candiag_can_bus_load_ratio{bus="sim0",window="10s"}') < 1
    volts = sample(
        text,
        'candiag_can_signal_volts{bus="sim0",message="ModuleTelemetry",node="1",'
        'role="output_voltage",signal="OutputVoltage"}',
    )
    assert volts >= 0
    assert (
        'candiag_can_node_info{bus="sim0",family="power_module",firmware="DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0",node="1"} 1.0'
        in text
    )
    assert sample(text, "candiag_loop_last_run_timestamp_seconds") > time.time() - 5
    line = running.status_line()
    assert line.startswith("sim0: ") and "fps, load " in line and " err/60s, " in line


def _flaky_factory(channel: str) -> tuple[Callable[[], can.BusABC], dict[str, object]]:
    """Opens a real virtual bus, but only while ``state['present']`` (an adapter plugged in)."""
    state: dict[str, object] = {"present": False, "opened": []}

    def factory() -> can.BusABC:
        if not state["present"]:
            raise BusUnavailableError(
                f"CAN interface 'virtual' channel {channel!r}: not plugged in"
            )
        bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
        opened = state["opened"]
        assert isinstance(opened, list)
        opened.append(bus)
        return bus

    return factory, state


def test_bus_missing_at_start_then_lost_and_reconnected() -> None:
    channel = f"flaky-{time.monotonic_ns()}"
    factory, state = _flaky_factory(channel)
    readers: list[ReaderSource] = []

    def reader_factory(bus: BusConfig) -> ReaderSource:
        reader = open_reader(bus, bus_factory=factory, backoff_min=0.05, backoff_max=0.2)
        readers.append(reader)
        return reader

    config = parse_config_text(
        f'[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "{channel}"\n'
    )
    log, stream = capture_log()
    daemon = Daemon(config, log=log, reader_factory=reader_factory, serve_metrics=False)
    daemon.start()
    sender = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    try:
        wait_for(
            lambda: "not plugged in" in stream.getvalue(),
            "the absent adapter logged",
            timeout=10,
            step=daemon.step,
        )
        snap = daemon.snapshot().buses[0]
        assert not snap.up and snap.state == "down"
        assert "event=bus_down bus=can0" in stream.getvalue()

        state["present"] = True  # adapter plugged in
        wait_for(lambda: daemon.snapshot().buses[0].up, "bus up", timeout=10, step=daemon.step)
        assert daemon.snapshot().buses[0].state == "error_active"
        assert "event=bus_up bus=can0" in stream.getvalue()

        sender.send(can.Message(arbitration_id=0x123, data=b"\x01"))
        wait_for(
            lambda: daemon.snapshot().buses[0].frames.get("data") == 1,
            "the frame counted",
            timeout=10,
            step=daemon.step,
        )

        # Lost while running: the adapter goes away, its bus really closes under the reader.
        state["present"] = False
        opened = state["opened"]
        assert isinstance(opened, list)
        opened[-1].shutdown()
        wait_for(
            lambda: not daemon.snapshot().buses[0].up, "bus down", timeout=10, step=daemon.step
        )
        assert daemon.snapshot().buses[0].state == "down"
        assert stream.getvalue().count("event=bus_down bus=can0") >= 2

        state["present"] = True
        wait_for(lambda: daemon.snapshot().buses[0].up, "bus up", timeout=10, step=daemon.step)
        assert readers[0].reader.reconnects >= 2
        # Counters survive the reconnect: nothing is reset or double counted.
        assert daemon.snapshot().buses[0].frames.get("data") == 1
    finally:
        sender.shutdown()
        daemon.stop()


def test_reload_keeps_old_config_when_new_one_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "candiag.toml"
    channel = f"reload-{time.monotonic_ns()}"
    path.write_text(f'[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "{channel}"\n')
    log, stream = capture_log()
    daemon = Daemon(load_config(path), config_path=path, log=log, serve_metrics=False)
    daemon.start()
    try:
        path.write_text('[[can.buses]]\nname = "can0"\nbitrate = "fast"\n')
        assert daemon.reload() is False
        out = stream.getvalue()
        assert "event=reload_failed" in out and "keeping the running configuration" in out
        assert "can.buses[0].bitrate" in out
        daemon.step()
        assert [b.name for b in daemon.snapshot().buses] == ["can0"]

        path.write_text(
            textwrap.dedent(
                f"""
                [[can.buses]]
                name = "can1"
                interface = "virtual"
                channel = "{channel}-b"
                """
            )
        )
        assert daemon.reload() is True
        daemon.step()
        assert [b.name for b in daemon.snapshot().buses] == ["can1"]
        assert "event=reloaded" in stream.getvalue()
    finally:
        daemon.stop()


def test_request_reload_from_the_loop(tmp_path: Path) -> None:
    """SIGHUP sets a flag; the loop reloads between iterations and keeps running."""
    path = tmp_path / "candiag.toml"
    path.write_text(
        f'[[can.buses]]\nname = "a"\ninterface = "virtual"\nchannel = "rl-{time.monotonic_ns()}"\n'
    )
    log, stream = capture_log()
    daemon = Daemon(load_config(path), config_path=path, log=log, serve_metrics=False)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="candiag-test-loop")
    loop.start()
    try:
        path.write_text("not toml at all [\n")
        daemon.request_reload()
        wait_for(lambda: "event=reload_failed" in stream.getvalue(), "reload_failed", timeout=10)
        assert loop.is_alive()
        iterations = daemon.iterations
        wait_for(lambda: daemon.iterations > iterations + 2, "the loop going on", timeout=10)
    finally:
        daemon.request_stop()
        loop.join(5)
        daemon.stop()
    assert not loop.is_alive()


def test_busy_metrics_port_is_a_clear_error_and_starts_nothing() -> None:
    import socket

    from candiag.errors import ConfigError

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        config = parse_config_text(
            sim_config(f"busy-{time.monotonic_ns()}").replace(
                'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{port}"'
            )
        )
        log, _ = capture_log()
        daemon = Daemon(config, log=log)
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            daemon.start()
        assert daemon.monitors == {}
        daemon.stop()
    finally:
        holder.close()
