"""Every panel of the Grafana dashboard, queried as Grafana queries it, against a real
Prometheus scraping a real ``candiag run``: the simulated charger of config/demo.toml (bus
``sim0``) plus a protocol bus (``infy0``) whose config declares the Infy V1.13 pack.

The protocol bus is a real python-can ``slcan`` adapter on a pseudo-terminal: the test plays
the serial adapter and writes the frames of ``candiag simulate --protocol infy``'s simulator
(module 2 rejecting half its requests, module 3 with a twin at its address, module 4 silent
after a few seconds) as slcan lines in real time, and checks that candiag only ever sent
adapter set-up commands (listen-only ``L``), never a frame.

Per target: a range query (``"range": true``, what time-series and stat panels draw) must
come back as a ``matrix``, an instant query (tables) as a ``vector``, each non-empty unless
every metric it reads is a family the healthy simulation has no sample for (the request/
response metrics are required here: the protocol bus has them).  The module panels must
come back with one series per power module (the demo charger has eight), not one per decoded
volt signal.
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
from collections.abc import Iterator
from typing import Any

import pytest
from helpers_prom import (
    MODULE_METRICS as AGREED_MODULE_METRICS,
)
from helpers_prom import (
    REPO,
    PrometheusServer,
    free_port,
    iter_panels,
    load_dashboard,
    metric_names,
    substitute_grafana,
)

from candiag.ingest.frames import FrameBatch
from candiag.sim.faults import parse_fault
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path
from tests.test_prometheus_integration import (  # noqa: F401  (fixtures)
    SAMPLELESS_IN_SIMULATION,
    prometheus,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

MODULES = {str(n) for n in range(1, 9)}  # config/demo.toml: power_module expected 1-8
RANGE_S = 20
MODULE_METRICS = frozenset(AGREED_MODULE_METRICS)
#: Sampleless on the demo charger, but the protocol bus must give these.
SAMPLELESS = SAMPLELESS_IN_SIMULATION - MODULE_METRICS
PROTOCOL_FAULTS = (
    "rejected_requests@0+3600:module=2,ratio=0.5",
    "duplicate_address@0+3600:module=3",
    "module_silent@4+3600:module=4",
)
PROTOCOL_BUS = """
[[can.buses]]
name = "infy0"
interface = "slcan"
channel = "{tty}"
bitrate = 125000
dbc = ["{pack}"]

[[can.buses.families]]
name = "power_module"
expected = [1, 2, 3, 4]
"""


class SlcanAdapter(threading.Thread):
    """The serial side of an slcan adapter on a pseudo-terminal: records what candiag writes
    to it (set-up commands) and, once candiag opened it listen-only, writes the simulated
    Infy bus's frames as slcan lines at their own pace."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.master, self.slave = os.openpty()
        self.tty = os.ttyname(self.slave)
        self.received = b""
        self.opened = threading.Event()
        self.stopped = threading.Event()
        self.sent = 0
        self.reader = threading.Thread(target=self._read_commands, daemon=True)

    def _read_commands(self) -> None:
        import select

        while not self.stopped.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.received += os.read(self.master, 4096)
                except OSError:
                    return
                if b"L\r" in self.received:
                    self.opened.set()

    def run(self) -> None:
        self.reader.start()
        if not self.opened.wait(120):
            return
        faults = tuple(parse_fault(spec) for spec in PROTOCOL_FAULTS)
        sim = ProtocolSimulator(ProtocolSimConfig("infy", faults=faults))
        start = time.monotonic()
        for chunk in sim.chunks(3600.0, chunk_seconds=5.0):
            if not self._play(chunk, sim.config.start_time, start):
                return

    def _play(self, batch: FrameBatch, t0: float, start: float) -> bool:
        for ts, can_id, dlc, data in zip(
            batch.timestamp.tolist(), batch.can_id.tolist(), batch.dlc.tolist(),
            batch.data.tolist(), strict=True,
        ):  # fmt: skip
            if self.stopped.wait(max(0.0, start + ts - t0 - time.monotonic())):
                return False
            payload = bytes(data[:dlc]).hex().upper()
            line = f"T{can_id & 0x1FFFFFFF:08X}{dlc}{payload}\r".encode()
            try:
                os.write(self.master, line)
            except OSError:
                return False
            self.sent += 1
        return True

    def close(self) -> None:
        self.stopped.set()
        self.join(5)
        if self.reader.ident is not None:  # started
            self.reader.join(5)
        os.close(self.master)
        os.close(self.slave)


def _scrape(target: str) -> str:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


@pytest.fixture(scope="module")
def candiag_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``candiag run`` on config/demo.toml plus the Infy protocol bus on an slcan pty."""
    workdir = tmp_path_factory.mktemp("candiag-run")
    port = free_port()
    adapter = SlcanAdapter()
    adapter.start()
    config = (REPO / "config" / "demo.toml").read_text()
    assert 'listen = "127.0.0.1:9847"' in config and "[metrics]" in config
    bus = PROTOCOL_BUS.format(tty=adapter.tty, pack=pack_path("infy"))
    config = config.replace("127.0.0.1:9847", f"127.0.0.1:{port}")
    config = config.replace("[metrics]", bus.lstrip() + "\n[metrics]", 1)
    config_file = workdir / "candiag.toml"
    config_file.write_text(config)
    log_path = workdir / "candiag.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "candiag", "run", "--config", str(config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    target = f"127.0.0.1:{port}"

    def protocol_metrics() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            text = _scrape(target)
        except OSError:
            return False
        unanswered = re.search(
            r'candiag_module_unanswered_total\{[^}]*module="4"[^}]*\} (\S+)', text
        )
        return (
            "candiag_module_error_replies_total{" in text
            and unanswered is not None
            and float(unanswered.group(1)) > 0
        )

    try:
        wait_for(
            protocol_metrics,
            "module metrics of the slcan protocol bus",
            timeout=120,
            interval=0.5,
            diagnose=lambda: f"{adapter.received!r}, {adapter.sent} frames\n{log_path.read_text()}",
        )
        yield target
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
        adapter.close()
    # Rule 1: candiag set the adapter up listen-only and never sent a frame on it.
    commands = [c for c in adapter.received.decode(errors="replace").split("\r") if c]
    assert "L" in commands and not {"O"} & set(commands), commands
    assert not [c for c in commands if c[:1] in ("t", "T", "r", "R", "d", "D", "b", "B")], commands


def _panels() -> list[dict[str, Any]]:
    return [p for p in iter_panels(load_dashboard()["panels"]) if p["type"] != "row"]


def _run(server: PrometheusServer, target: dict[str, Any]) -> dict[str, Any]:
    expr = substitute_grafana(target["expr"], rate_interval="10s")
    if target.get("instant"):
        data: dict[str, Any] = server.api("query", query=expr)
        return data
    end = time.time()
    data = server.api(
        "query_range", query=expr, start=f"{end - RANGE_S:.3f}", end=f"{end:.3f}", step="1"
    )
    return data


def test_every_panel_query_returns_its_result_type(prometheus: PrometheusServer) -> None:  # noqa: F811
    rendered = []
    problems = []
    for panel in _panels():
        for target in panel["targets"]:
            data = _run(prometheus, target)
            expected = "vector" if target.get("instant") else "matrix"
            where = f"{panel['title']!r} {target['refId']}"
            rendered.append(f"{where}: {data['resultType']}, {len(data['result'])} series")
            if data["resultType"] != expected:
                problems.append(f"{where}: {data['resultType']}, expected {expected}")
            names = metric_names(target["expr"])
            may_be_empty = bool(names) and names <= SAMPLELESS
            if not data["result"] and not may_be_empty:
                problems.append(f"{where}: no data for {target['expr']}")
    assert not problems, "\n".join([*problems, "", *rendered])
    print("\n".join(rendered))  # the rendering, seen with pytest -s
    assert len(rendered) >= 30


@pytest.mark.parametrize(
    "title",
    ["Module output voltage", "Module output current", "Module temperature (hottest sensor)"],
)
def test_module_panels_have_one_series_per_module(
    prometheus: PrometheusServer,  # noqa: F811
    title: str,
) -> None:
    (panel,) = [p for p in _panels() if p["title"] == title]
    (target,) = panel["targets"]
    data = _run(prometheus, target)
    by_bus: dict[str, list[str]] = {}
    for series in data["result"]:
        by_bus.setdefault(series["metric"]["bus"], []).append(series["metric"].get("node"))
    assert sorted(by_bus["sim0"]) == sorted(MODULES), by_bus
    # The Infy bus: its answering modules' readings, one series each (temperature: none
    # in the ReadVI reply, so possibly no series).
    infy = by_bus.get("infy0", [])
    assert len(infy) == len(set(infy)) and set(infy) <= {"1", "2", "3", "4"}, by_bus
    for series in data["result"]:
        assert "Capabilit" not in series["metric"].get("message", ""), series["metric"]


def test_modules_sum_and_dc_meter_are_one_series_each(prometheus: PrometheusServer) -> None:  # noqa: F811
    """The modules' sum: one series per bus with modules; the DC meter: the one on sim0."""
    (panel,) = [
        p for p in _panels() if p["title"] == "DC output current: modules' sum and DC meter"
    ]
    summed, meter = (_run(prometheus, target)["result"] for target in panel["targets"])
    assert sorted(s["metric"]["bus"] for s in summed) == ["infy0", "sim0"], summed
    assert [s["metric"]["bus"] for s in meter] == ["sim0"], meter


def _per_module(server: PrometheusServer, title: str, ref: str = "A") -> dict[str, list[float]]:
    """The values of one panel target per infy0 module (``module`` or ``module code``)."""
    (panel,) = [p for p in _panels() if p["title"] == title]
    (target,) = [t for t in panel["targets"] if t["refId"] == ref]
    data = _run(server, target)
    assert data["resultType"] == "matrix"
    out: dict[str, list[float]] = {}
    for series in data["result"]:
        labels = series["metric"]
        assert labels["bus"] == "infy0" and labels["protocol"] == "infy_v1.13", labels
        key = labels["module"] + (f" {labels['code']}" if "code" in labels else "")
        out[key] = [float(v) for _, v in series["values"] if v != "NaN"]
    return out


def test_module_request_panels_tell_the_modules_apart(prometheus: PrometheusServer) -> None:  # noqa: F811
    """Module 4 silent, module 2 rejecting, module 3 with a twin, module 1 healthy: each panel
    of the requests-and-replies row shows its own."""
    asked = _per_module(prometheus, "Requests and replies per module", "A")
    answered = _per_module(prometheus, "Requests and replies per module", "B")
    assert set(asked) == {"1", "2", "3", "4"} and max(asked["4"]) > 0, asked
    assert all(max(answered[m]) > 0 for m in ("1", "2", "3")), answered
    unanswered = _per_module(prometheus, "Unanswered requests per module")
    assert max(unanswered["4"]) > 0, unanswered
    assert all(max(unanswered[m]) == 0 for m in ("1", "2", "3")), unanswered
    errors = _per_module(prometheus, "Error replies by code")
    assert {key.split()[0] for key in errors} == {"2"}, errors
    assert all(max(v) > 0 for v in errors.values()), errors
    second = _per_module(prometheus, "Second answers (two modules at one address)")
    assert max(second["3"]) > 0 and max(second["1"]) == 0, second
    p99 = _per_module(prometheus, "Reply latency p99 per module")
    for module in ("1", "2", "3"):
        assert p99[module] and all(0 < v < 1.0 for v in p99[module]), p99
    age = _per_module(prometheus, "Time since the controller last asked")
    assert set(age) == {"1", "2", "3", "4"} and min(age["1"]) < 2.0, age
