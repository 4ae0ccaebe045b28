"""Daemon benchmarks: processing efficiency, keeping count at 20,000 frames/s, scrape time.

* **efficiency**: frames/s through the daemon's processing path (python-can receive,
  batch building, decode, health, nodes, signals) from a pre-filled python-can
  ``virtual`` bus, divided by a bare python-can receive loop on the same pre-filled bus.
  Goal >= 0.8.
* **keeps count**: a sender thread transmits at 20,000 frames/s on a virtual bus for a
  few seconds while the daemon's reader and processing loop run; every frame sent must
  be counted (no loss, no double count).
* **scrape**: time of a full ``/metrics`` exposition (snapshot under the lock, collectors,
  text format) with 8 power modules x 30 signals on the bus.  Goal < 20 ms.

``python -m bench.bench_daemon [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence

import can
import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from candiag import __version__
from candiag.daemon.config import BusConfig, FamilyConfig
from candiag.daemon.monitor import BusMonitor
from candiag.decode.dbc import ChargerDatabase, load_dbc_text, load_reference_database
from candiag.ingest.frames import BatchBuilder, FrameBatch
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
    monitor = BusMonitor(config, db)
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
        "scrape_ms_max": 1000 * max(times),
        "series": float(series),
        "signal_lines": float(signals),
        "bytes": float(len(text)),
    }


# -- processing efficiency -------------------------------------------------------------------
def _fill(channel: str, frames: int) -> can.BusABC:
    """A virtual bus whose receive queue holds ``frames`` reference-charger frames."""
    from candiag.sim.charger import ChargerSimulator

    receiver = can.Bus(interface="virtual", channel=channel, rx_queue_size=0)
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        sim = ChargerSimulator()
        sent = 0
        for chunk in sim.chunks(duration=3600.0, chunk_seconds=10.0):
            for msg in chunk.to_messages():
                sender.send(msg)
                sent += 1
                if sent == frames:
                    return receiver
    finally:
        sender.shutdown()
    return receiver


def bare_receive(bus: can.BusABC) -> int:
    n = 0
    while bus.recv(0) is not None:
        n += 1
    return n


def daemon_path(bus: can.BusABC, monitor: BusMonitor, batch_frames: int = 4096) -> int:
    """The daemon's path: receive, build batches, process each batch in the monitor."""
    builder = BatchBuilder(default_channel="can0")
    n = 0
    while True:
        msg = bus.recv(0)
        if msg is not None:
            builder.add(msg)
        if (msg is None and len(builder)) or len(builder) >= batch_frames:
            batch = builder.build()
            n += len(batch)
            monitor.process(batch)
        if msg is None:
            return n


def bench_efficiency(frames: int, repeats: int) -> dict[str, float]:
    db = load_reference_database()
    config = BusConfig(name="can0", interface="virtual", channel="bench-eff")
    bare_rates, path_rates = [], []
    for r in range(repeats):
        bus = _fill(f"bench-bare-{r}", frames)
        try:
            start = time.perf_counter()
            got = bare_receive(bus)
            bare_rates.append(got / (time.perf_counter() - start))
        finally:
            bus.shutdown()
        bus = _fill(f"bench-path-{r}", frames)
        try:
            monitor = BusMonitor(config, db)
            monitor.set_link(True, T0)
            start = time.perf_counter()
            got = daemon_path(bus, monitor)
            path_rates.append(got / (time.perf_counter() - start))
            assert sum(monitor.frames.values()) == frames, "daemon path lost frames"
        finally:
            bus.shutdown()
    bare, path = statistics.median(bare_rates), statistics.median(path_rates)
    return {"bare_fps": bare, "daemon_fps": path, "efficiency": path / bare}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    args = parser.parse_args(argv)
    frames = 20_000 if args.quick else 200_000
    repeats = 1 if args.quick else 3
    eff = bench_efficiency(frames, repeats)
    print(
        f"daemon efficiency: {eff['daemon_fps']:,.0f} frames/s vs bare python-can receive "
        f"{eff['bare_fps']:,.0f} frames/s -> ratio {eff['efficiency']:.2f} (goal >= 0.8; "
        f"{frames:,} pre-filled frames, median of {repeats})"
    )
    scrape = bench_scrape(20 if args.quick else 200)
    print(
        f"scrape: {scrape['scrape_ms_median']:.2f} ms median, {scrape['scrape_ms_max']:.2f} ms max "
        f"(goal < 20 ms) for {scrape['series']:.0f} series, {scrape['signal_lines']:.0f} signal "
        f"lines, {scrape['bytes'] / 1024:.0f} KiB ({N_MODULES} modules x {SIGNALS_PER_MODULE} signals)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
