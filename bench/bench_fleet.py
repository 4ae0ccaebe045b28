"""Fleet sizes: series per charger, samples/s per 1,000 chargers, remote-write bandwidth.

* **series per charger**: sample lines of one real scrape of ``candiag run`` on the
  simulated reference charger (8 power modules plus contactor, DC meter, cooling and IMD on
  one bus; with and without its 3 simulated Modbus devices), by family, once the series
  count has been stable for 3 scrapes; and what the shipped agent sends of it
  (config/prometheus/fleet/prometheus-agent.yml drops ``candiag_can_id_frames_total``) plus
  the 5 series Prometheus adds per target (``up``, ``scrape_*``).
* **growth with modules**: the same, from the daemon run in this process with a simulated
  charger of N power modules (``SimConfig.modules``; ``candiag run``'s simulator has 8).
* **remote write**: simulated chargers (``candiag run``, with meters) scraped by one
  Prometheus agent built from the shipped agent config at its shipped 30 s scrape interval
  (``--quick``: 2 s), writing through a byte-counting TCP proxy to a central Prometheus with
  the remote-write receiver.  Over the measuring window: samples sent per second and per
  charger, the agent's ``prometheus_remote_storage_bytes_total`` (snappy-compressed request
  bodies) and the bytes the proxy forwarded (HTTP requests, no TLS).

Needs Debian's ``prometheus`` binary (``apt-get install prometheus``); without it only the
series counts run.  ``python -m bench.bench_fleet [--quick] [--chargers N] [--intervals K]``.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The fleet harness of the end-to-end test (tests/helpers_fleet.py): the numbers are
# measured on the same processes and configs the test proves.
sys.path.insert(0, str(REPO / "tests"))

from helpers_fleet import (  # noqa: E402
    AGENT_CONFIG,
    Charger,
    ChargerDaemon,
    agent_server,
    central_server,
    seconds,
)
from helpers_prom import PrometheusServer, load_yaml  # noqa: E402

PER_TARGET_SERIES = 5  # up, scrape_duration_seconds, scrape_samples_scraped,
# scrape_samples_post_metric_relabeling, scrape_series_added
_FAMILY = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)")


# -- series per charger ----------------------------------------------------------------------
def series_by_family(text: str) -> Counter[str]:
    """Sample lines of a text exposition, by metric name."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if line and not line.startswith("#") and (match := _FAMILY.match(line)):
            counts[match.group(1)] += 1
    return counts


def agent_drops() -> re.Pattern[str]:
    """The metric names the shipped agent drops before remote write."""
    (remote,) = load_yaml(AGENT_CONFIG)["remote_write"]
    regexes = [
        rule["regex"]
        for rule in remote.get("write_relabel_configs", [])
        if rule.get("action") == "drop" and rule.get("source_labels") == ["__name__"]
    ]
    return re.compile("|".join(f"(?:{r})" for r in regexes) or "(?!)")


def sent_series(counts: Counter[str]) -> int:
    """Series the shipped agent sends for one charger with this exposition."""
    dropped = agent_drops()
    kept = sum(n for name, n in counts.items() if not dropped.fullmatch(name))
    return kept + PER_TARGET_SERIES


def stable_scrape(scrape: object, settle_s: float, timeout_s: float = 60.0) -> str:
    """A scrape once the series count has not changed for 3 scrapes 1 s apart."""
    deadline = time.monotonic() + timeout_s
    start = time.monotonic()
    history: list[int] = []
    text = ""
    while time.monotonic() < deadline:
        text = scrape()  # type: ignore[operator]
        history.append(sum(series_by_family(text).values()))
        if time.monotonic() - start >= settle_s and len(set(history[-3:])) == 1:
            return text
        time.sleep(1.0)
    raise RuntimeError(f"series count never settled: {history}")


def daemon_series(workdir: Path, meters: bool, settle_s: float) -> Counter[str]:
    """Series of ``candiag run`` on the simulated reference charger."""
    daemon = ChargerDaemon(Charger(f"S-{int(meters)}", "bench", meters=meters), workdir)
    daemon.spawn()
    try:
        daemon.wait_listening()
        return series_by_family(stable_scrape(daemon.metrics_text, settle_s))
    finally:
        daemon.stop()


def in_process_series(modules: int, settle_s: float) -> Counter[str]:
    """Series of the daemon (run in this process) watching a simulated charger of
    ``modules`` power modules."""
    import can

    from candiag.config.load import parse_config_text
    from candiag.daemon.service import Daemon
    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.runner import SimulatorRunner

    channel = f"bench-fleet-{modules}-{time.monotonic_ns()}"
    config = parse_config_text(
        f'[[can.buses]]\nname = "sim0"\ninterface = "virtual"\nchannel = "{channel}"\n'
        f'[[can.buses.families]]\nname = "power_module"\nexpected = ["1-{modules}"]\n'
        '[metrics]\nlisten = "127.0.0.1:0"\n[daemon]\nprocessing_interval_s = 0.1\n'
    )
    daemon = Daemon(config)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="candiag-bench-fleet-loop")
    loop.start()
    sim_bus = can.Bus(
        interface="virtual", channel=channel, preserve_timestamps=True, ignore_config=True
    )
    simulator = ChargerSimulator(
        SimConfig(
            modules=modules,
            start_time=time.time(),
            bitrate=config.bus("sim0").bitrate,
            channel=channel,
        )
    )
    runner = SimulatorRunner(sim_bus, simulator)
    try:
        while not daemon.monitors["sim0"].up:
            time.sleep(0.01)
        runner.start()
        url = f"{daemon.metrics_url}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())

        return series_by_family(stable_scrape(scrape, settle_s))
    finally:
        runner.stop()
        sim_bus.shutdown()
        daemon.request_stop()
        loop.join(10)
        daemon.stop()


def module_growth(counts: dict[int, Counter[str]]) -> tuple[float, float]:
    """(series per added module, series of a charger without modules), least squares."""
    xs = sorted(counts)
    ys = [sum(counts[x].values()) for x in xs]
    slope, intercept = statistics.linear_regression(xs, ys)
    return slope, intercept


# -- remote write ----------------------------------------------------------------------------
class CountingProxy:
    """A TCP proxy on 127.0.0.1 that counts the bytes its clients send upstream."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.sent = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="bench-proxy-accept")

    def start(self) -> None:
        self._accept.start()

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for src, dst, counted in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(
                    target=self._pump, args=(src, dst, counted), name="bench-proxy-pump"
                )
                t.start()
                self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        src.settimeout(0.2)
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if counted:
                    with self._lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._accept.join(5)
        self._listener.close()
        for t in self._threads:
            t.join(5)


@dataclass
class WriteFigures:
    chargers: int
    interval_s: float
    window_s: float
    samples_per_s: float  # sent, all chargers
    bytes_per_s: float  # compressed request bodies (prometheus_remote_storage_bytes_total)
    wire_bytes_per_s: float  # what the proxy forwarded: HTTP requests
    requests: float


def _agent_counters(agent: PrometheusServer) -> dict[str, float]:
    get = agent.own_metric
    return {
        "samples": get("prometheus_remote_storage_samples_total")
        - get("prometheus_remote_storage_samples_retried_total"),
        "bytes": get("prometheus_remote_storage_bytes_total"),
        "requests": get("prometheus_remote_storage_sent_batch_duration_seconds_count"),
    }


def remote_write(workdir: Path, chargers: int, time_scale: float, intervals: int) -> WriteFigures:
    fleet = [Charger(f"CH-{i:04d}", "bench", meters=True) for i in range(1, chargers + 1)]
    daemons = [ChargerDaemon(c, workdir) for c in fleet]
    (workdir / "central").mkdir()
    (workdir / "agent").mkdir()
    central = central_server(workdir / "central", time_scale)
    central.start()
    proxy = CountingProxy(central.port)
    proxy.start()
    agent = agent_server("bench", daemons, central, workdir / "agent", time_scale)
    (remote,) = agent.config["remote_write"]
    remote["url"] = f"http://127.0.0.1:{proxy.port}/api/v1/write"
    interval_s = seconds(agent.config["global"]["scrape_interval"])
    try:
        for daemon in daemons:
            daemon.spawn()
        for daemon in daemons:
            daemon.wait_listening()
        agent.start()
        # Warm-up: every target scraped, series created, the first batches sent.
        time.sleep(2 * interval_s + seconds(remote["queue_config"]["batch_send_deadline"]))
        before, wire_before, t0 = _agent_counters(agent), proxy.sent, time.monotonic()
        time.sleep(intervals * interval_s)
        after, wire_after, t1 = _agent_counters(agent), proxy.sent, time.monotonic()
        window = t1 - t0
        return WriteFigures(
            chargers=chargers,
            interval_s=interval_s,
            window_s=window,
            samples_per_s=(after["samples"] - before["samples"]) / window,
            bytes_per_s=(after["bytes"] - before["bytes"]) / window,
            wire_bytes_per_s=(wire_after - wire_before) / window,
            requests=after["requests"] - before["requests"],
        )
    finally:
        for daemon in daemons:
            daemon.stop()
        agent.stop()
        proxy.stop()
        central.stop()


# -- report ----------------------------------------------------------------------------------
def _top(counts: Counter[str], n: int = 4) -> str:
    return ", ".join(f"{name} {k}" for name, k in counts.most_common(n))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s scrapes, fewer sizes")
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)  # from python -m bench
    parser.add_argument("--chargers", type=int, default=4, help="chargers behind the agent")
    parser.add_argument("--intervals", type=int, help="scrape intervals measured (default 6)")
    args = parser.parse_args(argv)
    logging.getLogger("candiag").setLevel(logging.WARNING)  # the in-process daemon's log
    settle_s = 4.0 if args.quick else 8.0
    shipped_interval = seconds(load_yaml(AGENT_CONFIG)["global"]["scrape_interval"])

    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        workdir = Path(tmp)
        plain = daemon_series(workdir, meters=False, settle_s=settle_s)
        metered = daemon_series(workdir, meters=True, settle_s=settle_s)
        for label, counts in (("without meters", plain), ("with 3 Modbus devices", metered)):
            print(
                f"candiag run, simulated charger, 8 modules, {label}: "
                f"{sum(counts.values())} series exposed ({_top(counts)}); "
                f"{sent_series(counts)} sent by the shipped agent (incl. "
                f"{PER_TARGET_SERIES} per target)"
            )
        meters_delta = sum(metered.values()) - sum(plain.values())
        print(f"  3 Modbus devices (AC meter, DC meter, IMD) add {meters_delta} series")

        sizes = (1, 8) if args.quick else (1, 8, 16, 32)
        grown = {n: in_process_series(n, settle_s) for n in sizes}
        slope, intercept = module_growth(grown)
        print(
            "daemon in process, N power modules: "
            + ", ".join(f"N={n}: {sum(c.values())}" for n, c in grown.items())
            + f" series -> {slope:.1f} series per module + {intercept:.0f}"
        )
        per_module = Counter({k: v for k, v in (grown[sizes[-1]] - grown[sizes[0]]).items() if v})
        print(f"  grows with modules: {_top(per_module, 6)} (from N={sizes[0]} to {sizes[-1]})")

        per_charger = sent_series(metered)
        per_1000 = 1000 * per_charger / shipped_interval
        print(
            f"samples/s per 1,000 chargers at the shipped {shipped_interval:.0f} s interval: "
            f"{per_1000:,.0f} ({per_charger} series sent per charger with meters)"
        )

        if shutil.which("prometheus") is None:
            print("remote write: skipped (no prometheus binary; apt-get install prometheus)")
            return 0
        time_scale = shipped_interval / 2.0 if args.quick else 1.0
        intervals = args.intervals or (5 if args.quick else 6)
        (workdir / "rw").mkdir()
        rw = remote_write(workdir / "rw", args.chargers, time_scale, intervals)
    per_charger_samples = rw.samples_per_s / rw.chargers
    print(
        f"remote write, {rw.chargers} charger(s) with meters behind one agent, scrape every "
        f"{rw.interval_s:g} s, {rw.window_s:.0f} s measured ({rw.requests:.0f} requests): "
        f"{per_charger_samples:.1f} samples/s per charger "
        f"({1000 * per_charger_samples * rw.interval_s / shipped_interval:,.0f} per 1,000 "
        f"chargers at {shipped_interval:.0f} s)"
    )
    bytes_per_sample = rw.bytes_per_s / rw.samples_per_s
    wire_per_sample = rw.wire_bytes_per_s / rw.samples_per_s
    scale = rw.interval_s / shipped_interval  # bytes follow samples
    print(
        f"  compressed payload {bytes_per_sample:.2f} B/sample, HTTP on the wire "
        f"{wire_per_sample:.2f} B/sample -> per charger at {shipped_interval:.0f} s: "
        f"{rw.bytes_per_s / rw.chargers * scale:,.0f} B/s payload, "
        f"{rw.wire_bytes_per_s / rw.chargers * scale:,.0f} B/s on the wire "
        f"({rw.wire_bytes_per_s / rw.chargers * scale * 86400 / 1e6:.1f} MB/day)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
