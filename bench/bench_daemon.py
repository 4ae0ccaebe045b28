"""Daemon benchmarks: per-message path efficiency, keeping count at 20,000 frames/s, scrape time.

* **per-message path efficiency**: frames/s through the daemon's processing path with
  python-can's per-message receive (``recv`` per frame, ``BatchBuilder``, then decode,
  health, nodes, signals) from a pre-filled python-can ``virtual`` bus, divided by a bare
  python-can receive loop on the same pre-filled bus.  This is the path of every interface
  but SocketCAN (pcan, kvaser, virtual, ...), on a source with no system call per frame.
  It is not a prediction for real adapters: on real SocketCAN in the microVM the same
  per-message path reached a ratio of only about 0.06 (``bench_socketcan``), which is why
  SocketCAN, the production interface, is read in bulk (``recvmmsg``); that path is the one
  measured against the goal (>= 0.8), by ``bench_socketcan``.  Both sides are timed in
  process CPU time (all threads): on a shared, loaded machine wall time measures the
  neighbours, not candiag.
* **keeps count**: a sender thread transmits at 20,000 frames/s on a virtual bus for a
  few seconds while the daemon's reader and processing loop run; every frame sent must
  be counted (no loss, no double count).
* **scrape**: time of a full ``/metrics`` exposition (snapshot under the lock, collectors,
  text format) with 8 power modules x 30 signals on the bus.  Goal < 20 ms.

``python -m bench.bench_daemon [--quick]``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections.abc import Sequence

import can
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from candiag import __version__
from candiag.config.load import parse_config_text
from candiag.config.model import BusConfig, FamilyConfig
from candiag.daemon.service import Daemon
from candiag.decode.dbc import ChargerDatabase, load_dbc_text
from candiag.ingest.frames import FrameBatch
from candiag.ingest.live import BusReader
from candiag.live.bus import LiveBus
from candiag.live.readers import ReaderSource, open_reader
from candiag.metrics.collectors import CandiagCollector
from candiag.metrics.snapshot import Snapshot

T0 = 1_700_000_000.0
N_MODULES = 8
SIGNALS_PER_MODULE = 30


# -- a bus of 8 modules x 30 signals ---------------------------------------------------------
def wide_dbc(signals: int = SIGNALS_PER_MODULE) -> str:
    """A DBC with 4 addressed messages of 8 x 8-bit signals (30 used) per module."""
    head = 'VERSION ""\nNS_ :\nBS_:\nBU_: M\n'
    body = []
    n = 0
    for m in range(4):
        frame_id = 0x80000000 | (0x0300F000 + (m << 16))
        body.append(f"BO_ {frame_id} Wide{m}: 8 M")
        for b in range(8):
            if n == signals:
                break
            unit = ("V", "A", "degC", "%", "rpm")[n % 5]
            body.append(f' SG_ S{n:02d} : {8 * b}|8@1+ (0.5,0) [0|127.5] "{unit}" Vector__XXX')
            n += 1
        body.append("")
    attrs = [
        'BA_DEF_ BO_ "GenMsgCycleTime" INT 0 3600000;',
        'BA_DEF_ BO_ "CandiagNodeMask" HEX 0 536870911;',
        'BA_DEF_ BO_ "CandiagNodeFamily" STRING ;',
        'BA_DEF_DEF_ "GenMsgCycleTime" 0;',
        'BA_DEF_DEF_ "CandiagNodeMask" 0;',
        'BA_DEF_DEF_ "CandiagNodeFamily" "";',
    ]
    for m in range(4):
        frame_id = 0x80000000 | (0x0300F000 + (m << 16))
        attrs.append(f'BA_ "GenMsgCycleTime" BO_ {frame_id} 100;')
        attrs.append(f'BA_ "CandiagNodeMask" BO_ {frame_id} 255;')
        attrs.append(f'BA_ "CandiagNodeFamily" BO_ {frame_id} "power_module";')
    return head + "\n".join(body) + "\n" + "\n".join(attrs) + "\n"


def wide_batch(db: ChargerDatabase, t0: float, seconds: float) -> FrameBatch:
    rows_t, rows_id, rng = [], [], np.random.default_rng(1)
    for msg in db.messages:
        for node in range(1, N_MODULES + 1):
            t = t0 + np.arange(0.0, seconds, 0.1) + rng.random() * 0.1
            rows_t.append(t)
            rows_id.append(np.full(t.size, msg.can_id_for(node), np.uint32))
    ts = np.concatenate(rows_t)
    order = np.argsort(ts)
    n = ts.size
    return FrameBatch(
        timestamp=ts[order],
        can_id=np.concatenate(rows_id)[order],
        flags=np.ones(n, np.uint8),
        dlc=np.full(n, 8, np.uint8),
        data=rng.integers(0, 256, (n, 8), dtype=np.uint8),
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def bench_scrape(repeats: int) -> dict[str, float]:
    db = load_dbc_text(wide_dbc(), "bench-wide.dbc")
    config = BusConfig(
        name="can0",
        interface="virtual",
        channel="bench",
        families=(FamilyConfig("power_module", expected=tuple(range(1, N_MODULES + 1))),),
    )
    monitor = LiveBus(config, db)
    monitor.set_link(True, T0)
    now = time.time()
    monitor.process(wide_batch(db, now - 2.0, 2.0))
    lock = threading.Lock()

    def source() -> Snapshot:
        t = time.time()
        with lock:
            return Snapshot(version=__version__, buses=(monitor.snapshot(t),), loop_last_run=t)

    registry = CollectorRegistry()
    registry.register(CandiagCollector(source))
    text = generate_latest(registry)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    signals = text.count(b"candiag_can_signal_")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - start)
    return {
        "scrape_ms_median": 1000 * statistics.median(times),
        "scrape_ms_p95": 1000 * float(np.percentile(times, 95)),
        "series": float(series),
        "signal_lines": float(signals),
        "bytes": float(len(text)),
    }


# -- processing efficiency -------------------------------------------------------------------
def _sim_messages(frames: int) -> list[can.Message]:
    from candiag.sim.charger import ChargerSimulator

    out: list[can.Message] = []
    for chunk in ChargerSimulator().chunks(duration=3600.0, chunk_seconds=10.0):
        out.extend(chunk.to_messages())
        if len(out) >= frames:
            return out[:frames]
    return out


def _filled(channel: str, messages: list[can.Message]) -> can.BusABC:
    """A virtual bus whose receive queue already holds ``messages``."""
    receiver = can.Bus(interface="virtual", channel=channel, rx_queue_size=0)
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        for msg in messages:
            sender.send(msg)
    finally:
        sender.shutdown()
    return receiver


def bare_receive(bus: can.BusABC) -> int:
    """Frames received by a bare ``recv(0)`` loop (time it with ``process_time``)."""
    n = 0
    while bus.recv(0) is not None:
        n += 1
    return n


def daemon_path(channel: str, messages: list[can.Message]) -> tuple[float, int]:
    """The daemon on a pre-filled bus: its reader thread and its processing loop, as run."""
    config = parse_config_text(
        f'[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "{channel}"\n'
        "[daemon]\nprocessing_interval_s = 0.05\n"
    )
    bus = _filled(channel, messages)

    def reader_factory(bus_config: BusConfig) -> ReaderSource:
        return open_reader(bus_config, bus_factory=lambda: bus)

    daemon = Daemon(config, reader_factory=reader_factory, serve_metrics=False)
    daemon.start()  # loads the DBCs: not part of the per-frame path
    cpu = time.process_time()
    start = time.perf_counter()
    loop = threading.Thread(target=daemon.run, name="candiag-bench-loop")
    loop.start()
    try:
        monitor = daemon.monitors["can0"]
        while sum(monitor.frames.values()) < len(messages) and time.perf_counter() - start < 120:
            time.sleep(0.002)
        return time.process_time() - cpu, sum(monitor.frames.values())
    finally:
        daemon.request_stop()
        loop.join(10)
        daemon.stop()


def reader_only(channel: str, messages: list[can.Message]) -> float:
    """frames/s of the daemon's bus reader alone (receive + batch building, no processing)."""
    bus = _filled(channel, messages)
    reader = BusReader("virtual", channel, bus_factory=lambda: bus, max_batch=16_384)
    start = time.perf_counter()
    cpu = time.process_time()
    reader.start()
    n = 0
    try:
        while n < len(messages) and time.perf_counter() - start < 120:
            n += len(reader.drain())
            time.sleep(0.002)
        return n / (time.process_time() - cpu)
    finally:
        reader.stop()


def bench_efficiency(frames: int, repeats: int) -> dict[str, float]:
    messages = _sim_messages(frames)
    bare_rates, path_rates, reader_rates = [], [], []
    for r in range(repeats):
        bus = _filled(f"bench-bare-{r}", messages)
        try:
            start = time.process_time()
            got = bare_receive(bus)
            bare_rates.append(got / (time.process_time() - start))
        finally:
            bus.shutdown()
        elapsed, got = daemon_path(f"bench-path-{r}", messages)
        if got != frames:
            raise AssertionError(f"daemon path processed {got} of {frames} frames")
        path_rates.append(got / elapsed)
        reader_rates.append(reader_only(f"bench-reader-{r}", messages))
    bare, path = statistics.median(bare_rates), statistics.median(path_rates)
    reader = statistics.median(reader_rates)
    return {
        "bare_fps": bare,
        "daemon_fps": path,
        "reader_fps": reader,
        "efficiency": path / bare,
        "overhead_us": 1e6 / path - 1e6 / bare,
    }


# -- keeping count at 20,000 frames/s --------------------------------------------------------------
def bench_keeps_count(rate: int, seconds: float) -> dict[str, float]:
    """Send ``rate`` frames/s for ``seconds`` while the daemon runs; every frame must be counted."""
    channel = f"bench-rate-{time.monotonic_ns()}"
    config = parse_config_text(
        f'[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "{channel}"\n'
        "[daemon]\nprocessing_interval_s = 0.25\n"
    )
    daemon = Daemon(config, serve_metrics=False)
    daemon.start()
    loop = threading.Thread(target=daemon.run, name="candiag-bench-loop")
    loop.start()
    sender = can.Bus(interface="virtual", channel=channel)
    messages = _sim_messages(4096)
    sent = 0
    started = time.perf_counter()
    try:
        while not daemon.monitors["can0"].up and time.perf_counter() - started < 5:
            time.sleep(0.01)
        started = time.perf_counter()
        tick = 0.01
        while (elapsed := time.perf_counter() - started) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                sender.send(messages[sent % len(messages)])
                sent += 1
            time.sleep(tick)
        send_s = time.perf_counter() - started
        deadline = time.perf_counter() + 10
        monitor = daemon.monitors["can0"]
        while sum(monitor.frames.values()) < sent and time.perf_counter() < deadline:
            time.sleep(0.05)
        counted = sum(monitor.frames.values())
    finally:
        sender.shutdown()
        daemon.request_stop()
        loop.join(10)
        daemon.stop()
    return {"sent": float(sent), "counted": float(counted), "rate": sent / send_s}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    parser.add_argument("--frames", type=int, help="pre-filled frames for the efficiency run")
    args = parser.parse_args(argv)
    # The 20,000 frames/s run replays a short loop of frames, which the diagnosis rightly
    # flags (duplicate addresses); the benchmark prints figures, not findings.
    logging.getLogger("candiag").setLevel(logging.ERROR)
    frames = args.frames or (20_000 if args.quick else 200_000)
    repeats = 1 if args.quick else 3
    count = bench_keeps_count(20_000, 2.0 if args.quick else 10.0)
    print(
        f"keeps count: sent {count['sent']:,.0f} frames at {count['rate']:,.0f} frames/s, "
        f"daemon counted {count['counted']:,.0f} "
        f"({'all' if count['counted'] == count['sent'] else 'LOST FRAMES'})"
    )
    eff = bench_efficiency(frames, repeats)
    print(
        f"per-message path (pcan, kvaser, virtual, ...): daemon {eff['daemon_fps']:,.0f} "
        f"frames/s vs bare python-can receive {eff['bare_fps']:,.0f} frames/s on a pre-filled "
        f"virtual bus -> ratio {eff['efficiency']:.2f} ({frames:,} frames, median of "
        f"{repeats}; the goal >= 0.8 is measured on SocketCAN by bench_socketcan)"
    )
    print(
        f"  of which the bus reader alone (recv + batch building): {eff['reader_fps']:,.0f} "
        f"frames/s; daemon overhead {eff['overhead_us']:.1f} us/frame over bare recv"
    )
    scrape = bench_scrape(20 if args.quick else 200)
    print(
        f"scrape: {scrape['scrape_ms_median']:.2f} ms median, {scrape['scrape_ms_p95']:.2f} ms p95 "
        f"(goal < 20 ms) for {scrape['series']:.0f} series, {scrape['signal_lines']:.0f} signal "
        f"lines, {scrape['bytes'] / 1024:.0f} KiB ({N_MODULES} modules x {SIGNALS_PER_MODULE} signals)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
