"""SocketCAN benchmark: the daemon's path vs a bare python-can receive loop on real SocketCAN.

Goal (issue 5, section 8): frames per second the daemon processes from a pre-filled source,
divided by a bare python-can receive loop on the same source, in one run: at least 0.8.

The source is the production one: a python-can ``socketcan`` bus on ``vcan0`` (Linux
kernel SocketCAN), whose socket receive buffer is raised (``SO_RCVBUFFORCE``) and pre-filled
by a raw ``AF_CAN`` socket with N frames of the simulated reference charger.  Each repeat
opens the sockets it needs, then writes the N frames once, so every socket holds the same
frames (vcan hands one skb to each); a count short of N fails the run (nothing may be
dropped while pre-filling).  Timed in process CPU time (all threads), median of 3 repeats:

* **bare**: ``bus.recv(0)`` until the queue is empty (python-can's receive, nothing else);
* **daemon**: the :class:`~candiag.daemon.service.Daemon` with its reader thread (the bulk
  ``recvmmsg`` path, :mod:`candiag.ingest.socketcan_bulk`) and its processing loop
  (``processing_interval_s = 0.05``), counted until every frame is processed (the same as
  ``bench_daemon.daemon_path``);
* **reader alone**: the bulk reader without processing;
* **daemon, per-message receive**: the same daemon with its reader on python-can's ``recv``
  and ``BatchBuilder`` (the path before the bulk receiver, still used for pcan, virtual,
  ...), for comparison, on fewer frames and once: in the emulated VM it is slow, because
  frames then trickle in at python-can's rate over many processing cycles, and each cycle
  has a fixed cost (decode set-up, health windows, nodes, diagnosis) that dominates.

This host kernel has no ``AF_CAN``, so the benchmark boots the microVM of ``make
test-socketcan`` (``hil/vm/run.sh`` with ``CANDIAG_VM_COMMAND``) and runs itself there;
with ``CANDIAG_SOCKETCAN=1`` on a kernel with ``vcan0`` it measures in place.  When no VM
can run it prints why and skips.  The VM emulates its CPUs (qemu TCG, no KVM): absolute
rates are far below a real controller's; the ratio is what counts.

``python -m bench.bench_socketcan [--quick] [--frames N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import can
import numpy as np

REPO = Path(__file__).resolve().parent.parent
CHANNEL = "vcan0"
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 512 << 20  # the kernel doubles it; a CAN frame's skb takes ~1 KiB of it
PER_MESSAGE_FRAMES = 20_000  # the slow comparison run
STALL_S = 20.0  # no progress for this long: frames are missing, stop waiting
VM_SKIP = 77  # hil/vm/run.sh's exit status in command mode when no VM can run
CAN_EFF_FLAG, CAN_RTR_FLAG, CAN_ERR_FLAG = 0x80000000, 0x40000000, 0x20000000


def in_place_reason() -> str | None:
    """Why this process cannot measure here (``None``: it can)."""
    if os.environ.get("CANDIAG_SOCKETCAN") != "1":
        return "CANDIAG_SOCKETCAN=1 is not set"
    try:
        socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW).close()
    except (OSError, AttributeError) as err:
        return f"no AF_CAN ({err})"
    if not Path(f"/sys/class/net/{CHANNEL}").exists():
        return f"no {CHANNEL}"
    return None


# -- traffic -----------------------------------------------------------------------------------
def wire_frames(n: int) -> list[bytes]:
    """``n`` frames of the simulated reference charger as ``struct can_frame`` bytes."""
    from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FLAG_REMOTE
    from candiag.sim.charger import ChargerSimulator

    out: list[bytes] = []
    for batch in ChargerSimulator().chunks(duration=3600.0, chunk_seconds=10.0):
        rows = np.zeros(len(batch), np.dtype([("id", "=u4"), ("len", "u1"), ("pad", "u1", 3)]))
        raw_id = batch.can_id.astype(np.uint32)
        raw_id |= np.where(batch.flags & FLAG_EXTENDED, np.uint32(CAN_EFF_FLAG), np.uint32(0))
        raw_id |= np.where(batch.flags & FLAG_REMOTE, np.uint32(CAN_RTR_FLAG), np.uint32(0))
        raw_id |= np.where(batch.flags & FLAG_ERROR, np.uint32(CAN_ERR_FLAG), np.uint32(0))
        rows["id"], rows["len"] = raw_id, batch.dlc
        data = np.zeros((len(batch), 8), np.uint8)
        width = min(8, batch.data.shape[1])
        data[:, :width] = batch.data[:, :width]
        blob = np.concatenate([rows.view(np.uint8).reshape(-1, 8), data], axis=1).tobytes()
        out.extend(blob[i : i + 16] for i in range(0, len(blob), 16))
        if len(out) >= n:
            return out[:n]
    return out


def prefill(frames: list[bytes]) -> None:
    """Write ``frames`` to vcan0 from a raw socket (every bound socket gets each one)."""
    with socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW) as raw:
        raw.bind((CHANNEL,))
        send = raw.send
        for frame in frames:
            while True:
                try:
                    send(frame)
                    break
                except OSError as err:  # the sender's own buffer: wait for the echo
                    if err.errno != errno.ENOBUFS:
                        raise
                    time.sleep(0.0005)


def open_bus() -> can.BusABC:
    """A bus as the daemon opens it (listen-only opener), with room for the whole fill."""
    from candiag.ingest.live import open_listen_only_bus

    bus = open_listen_only_bus("socketcan", CHANNEL, None)
    bus.socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
    return bus


# -- the measured paths ------------------------------------------------------------------------
def bare_receive(bus: can.BusABC) -> int:
    """Frames received by a bare ``recv(0)`` loop (time it with ``process_time``)."""
    recv = bus.recv
    n = 0
    while recv(0) is not None:
        n += 1
    return n


def daemon_path(bus: can.BusABC, frames: int, bulk: bool) -> tuple[float, int]:
    """The daemon on a pre-filled bus: its reader thread and processing loop, as run.

    Returns (process CPU seconds, frames processed)."""
    from candiag.config.load import parse_config_text
    from candiag.config.model import BusConfig
    from candiag.daemon.service import Daemon
    from candiag.ingest.live import BusReader
    from candiag.live.readers import (
        BATCH_INTERVAL_S,
        MAX_BATCH,
        LinkStatsPoller,
        ReaderSource,
        open_reader,
    )

    config = parse_config_text(
        f'[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "{CHANNEL}"\n'
        "[daemon]\nprocessing_interval_s = 0.05\n"
    )

    def reader_factory(bus_config: BusConfig) -> ReaderSource:
        if bulk:
            return open_reader(bus_config, bus_factory=lambda: bus)
        reader = BusReader(  # open_reader's reader, on python-can's recv
            bus_config.interface,
            bus_config.channel,
            batch_interval=BATCH_INTERVAL_S,
            max_batch=MAX_BATCH,
            bus_factory=lambda: bus,
            bulk_factory=None,
        )
        return ReaderSource(reader, LinkStatsPoller(bus_config.channel))

    daemon = Daemon(config, reader_factory=reader_factory, serve_metrics=False)
    daemon.start()  # loads the DBCs: not part of the per-frame path
    cpu = time.process_time()
    loop = threading.Thread(target=daemon.run, name="candiag-bench-loop")
    loop.start()
    try:
        monitor = daemon.monitors["can0"]
        last, progress = -1, time.perf_counter()
        while (done := sum(monitor.frames.values())) < frames:
            now = time.perf_counter()
            if done != last:
                last, progress = done, now
            elif now - progress > STALL_S:
                break  # frames missing: the caller reports the count
            time.sleep(0.002)
        return time.process_time() - cpu, done
    finally:
        daemon.request_stop()
        loop.join(30)
        daemon.stop()


def reader_alone(bus: can.BusABC, frames: int) -> tuple[float, int]:
    """The daemon's bus reader alone (bulk receive and parsing, no processing)."""
    from candiag.ingest.live import BusReader
    from candiag.live.readers import MAX_BATCH

    reader = BusReader("socketcan", CHANNEL, bus_factory=lambda: bus, max_batch=MAX_BATCH)
    cpu = time.process_time()
    reader.start()
    n, progress = 0, time.perf_counter()
    try:
        while n < frames:
            got = len(reader.drain())
            n += got
            if got:
                progress = time.perf_counter()
            elif time.perf_counter() - progress > STALL_S:
                break
            time.sleep(0.002)
        return time.process_time() - cpu, n
    finally:
        reader.stop(5)


def measure(frames: int, repeats: int, per_message_frames: int) -> dict[str, float]:
    """Median frames/s of each path (run in a kernel with vcan0)."""
    wire = wire_frames(frames)
    if len(wire) != frames:
        raise AssertionError(f"the simulator gave {len(wire)} of {frames} frames")

    def bare(bus: can.BusABC) -> tuple[float, int]:
        cpu = time.process_time()
        got = bare_receive(bus)
        return time.process_time() - cpu, got

    paths: dict[str, Callable[[can.BusABC], tuple[float, int]]] = {
        "bare": bare,
        "daemon": lambda bus: daemon_path(bus, frames, bulk=True),
        "reader": lambda bus: reader_alone(bus, frames),
    }
    rates: dict[str, list[float]] = {name: [] for name in paths}
    fill_s: list[float] = []
    for _ in range(repeats):
        # One socket per path, all bound before the frames are written: identical fills.
        buses = {name: open_bus() for name in paths}
        try:
            started = time.perf_counter()
            prefill(wire)
            fill_s.append(time.perf_counter() - started)
            for name, timed in paths.items():
                rates[name].append(_rate(name, timed, buses.pop(name), frames))
        finally:
            for bus in buses.values():
                bus.shutdown()
    out = {name: statistics.median(values) for name, values in rates.items()}
    out["fill_s"] = statistics.median(fill_s)
    # The per-message comparison is slow (see the module docstring): fewer frames, one run.
    bus = open_bus()
    prefill(wire[:per_message_frames])
    out["per_message"] = _rate(
        "per_message",
        lambda bus: daemon_path(bus, per_message_frames, bulk=False),
        bus,
        per_message_frames,
    )
    return out


def _rate(
    name: str, timed: Callable[[can.BusABC], tuple[float, int]], bus: can.BusABC, frames: int
) -> float:
    try:
        cpu, got = timed(bus)
    finally:
        bus.shutdown()
    if got != frames:
        raise AssertionError(f"{name}: {got} of {frames} frames (dropped while pre-filling?)")
    return got / cpu


def report(
    figures: dict[str, float], frames: int, repeats: int, per_message_frames: int, where: str
) -> None:
    bare, daemon, per_message = figures["bare"], figures["daemon"], figures["per_message"]
    ratio = daemon / bare
    print(
        f"SocketCAN efficiency ({where}): daemon {daemon:,.0f} frames/s vs bare python-can "
        f"recv(0) {bare:,.0f} frames/s on a pre-filled {CHANNEL} -> ratio {ratio:.2f} "
        f"(goal >= 0.8: {'met' if ratio >= 0.8 else 'NOT MET'}; {frames:,} frames, "
        f"process CPU time, median of {repeats})"
    )
    print(
        f"  bulk reader alone (recvmmsg + parsing, no processing): {figures['reader']:,.0f} "
        f"frames/s; pre-filling {frames:,} frames took {figures['fill_s']:.1f} s"
    )
    print(
        f"  the daemon with python-can's per-message receive instead (the path before the bulk "
        f"receiver): {per_message:,.0f} frames/s -> ratio {per_message / bare:.2f} "
        f"({per_message_frames:,} frames, one run)"
    )


# -- running it in the microVM -----------------------------------------------------------------
def run_in_vm(frames: int, repeats: int) -> int:
    python = os.environ.get("CANDIAG_VENV", str(REPO / ".venv")) + "/bin/python"
    command = f"{python} -m bench.bench_socketcan --frames {frames} --repeats {repeats} --in-vm"
    env = dict(os.environ, CANDIAG_VM_COMMAND=command)
    env.setdefault("CANDIAG_VM_TIMEOUT", "900")
    print(f"booting the microVM (hil/vm/run.sh, qemu TCG) to measure on {CHANNEL} ...", flush=True)
    done = subprocess.run(
        ["bash", str(REPO / "hil/vm/run.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == VM_SKIP:
        reason = done.stderr.strip().splitlines()[-1:] or ["no reason given"]
        print(f"SocketCAN efficiency: SKIPPED ({reason[0]})")
        return 0
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
    return done.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    parser.add_argument("--frames", type=int, help="pre-filled frames per run")
    parser.add_argument("--repeats", type=int, help="repeats (median); default 3, 1 quick")
    parser.add_argument("--in-vm", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)  # other benchmarks' options are not ours
    logging.getLogger("candiag").setLevel(logging.ERROR)
    frames = args.frames or (20_000 if args.quick else 100_000)
    repeats = args.repeats or (1 if args.quick else 3)
    per_message = min(frames, PER_MESSAGE_FRAMES)
    reason = in_place_reason()
    if reason is None:
        figures = measure(frames, repeats, per_message)
        where = "microVM, qemu TCG" if args.in_vm else "this kernel"
        report(figures, frames, repeats, per_message, where)
        return 0
    if args.in_vm:
        print(f"SocketCAN efficiency: cannot measure in the VM: {reason}", file=sys.stderr)
        return 1
    return run_in_vm(frames, repeats)


if __name__ == "__main__":
    raise SystemExit(main())
