"""The soaked process: ``candiag run --config FILE`` exactly, plus two test-only hooks.

``candiag run`` has no way to say how many frames its in-process simulator sent,
and its scenarios are a fixed list.  This wrapper, run as its own process by
:mod:`soak.harness`, adds without touching candiag:

* a ``soak`` simulator scenario: ~92 % bus load for the whole run plus a fault
  every ``--period`` seconds (bus-off, error-frame storm, silent module, wrong
  bitrate bursts, duplicate address), so the daemon sees link faults repeatedly;
* ``--random-ids``: the load is made of random 29-bit identifiers (8 random data
  bytes) sent by a second sender on the same simulated bus, instead of the simulator's
  one-id filler: the flood that grew the daemon by 112 MB a minute (issue 13);
* after ``--quiesce-after`` seconds it stops the sender threads and prints
  ``SOAK_SENT bus=<channel> frames_sent=<n> send_errors=<n>`` for each on stdout;
  the harness then compares ``candiag_can_frames_total`` with their sum.

Everything else (config parsing, readers, processing loop, /metrics, systemd
notify/watchdog, signals) is the unchanged ``candiag run`` code path.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any

import can
import numpy as np

from candiag.health.busload import frame_bits
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch
from candiag.live import simulation
from candiag.sim import scenarios
from candiag.sim.faults import Fault

SOAK_SCENARIO = "soak"


def soak_faults(seconds: float, period: float, load: float) -> list[Fault]:
    """Overload for the whole run (``load`` 0: none) and one of five link faults every
    ``period`` seconds."""
    faults = [Fault("overload", 0.0, None, {"load": load})] if load else []
    cycle: list[list[Fault]] = [
        [
            Fault("controller", 0.0, 2.0, {"state": "passive", "tec": 136, "rec": 0}),
            Fault("bus_off", 2.0, 3.0),
        ],
        [Fault("error_frames", 0.0, 10.0, {"class": "stuff", "rate": 50.0})],
        [Fault("module_silent", 0.0, 15.0, {"module": 3})],
        [Fault("wrong_bitrate", 0.0, 10.0, {"interval": 0.5, "burst": 8})],
        [Fault("duplicate_address", 0.0, 10.0, {"module": 2})],
    ]
    start, i = 10.0, 0
    while start < seconds:
        for f in cycle[i % len(cycle)]:
            faults.append(Fault(f.kind, start + f.start, f.duration, dict(f.params)))
        start += period
        i += 1
    return faults


def install_scenario(seconds: float, period: float, load: float) -> None:
    """Make ``scenario = "soak"`` known to the simulator of this process."""
    names, faults = scenarios.scenario_names, scenarios.scenario_faults

    def scenario_names() -> list[str]:
        return [*names(), SOAK_SCENARIO]

    def scenario_faults(name: str) -> list[Fault]:
        return soak_faults(seconds, period, load) if name == SOAK_SCENARIO else faults(name)

    scenarios.scenario_names = scenario_names
    scenarios.scenario_faults = scenario_faults


class RandomIdFlood:
    """Random 29-bit extended ids, 8 random bytes each, filling ``load`` of the bitrate.

    Paced by the frames' exact bits (stuff bits included, as candiag measures load) and
    stamped when sent.  Sent through the charger simulator's own virtual bus: a second
    virtual bus on the channel would receive, and keep unread, every frame the simulator
    sends (and the simulator's bus every flood frame): a backlog of 240,000 messages after
    two minutes, which is the test rig growing, not the daemon.
    """

    def __init__(self, bus: can.BusABC, bitrate: int, load: float, seed: int = 14) -> None:
        self.bus = bus
        self.channel = str(bus.channel_info)
        self.bits_per_second = bitrate * load
        self.frames_sent = 0
        self.send_errors = 0
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-random-ids", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _frames(self, n: int) -> tuple[FrameBatch, int]:
        batch = FrameBatch(
            timestamp=np.zeros(n),
            can_id=self._rng.integers(0, 1 << 29, n, dtype=np.uint32),
            flags=np.full(n, FLAG_EXTENDED, np.uint8),
            dlc=np.full(n, 8, np.uint8),
            data=self._rng.integers(0, 256, (n, 8), dtype=np.uint8),
            channel=np.zeros(n, np.int16),
            channels=[self.channel],
        )
        return batch, int(frame_bits(batch)[0].sum())

    def _run(self) -> None:
        started, sent_bits = time.monotonic(), 0
        while not self._stop.wait(0.01):
            due = (time.monotonic() - started) * self.bits_per_second - sent_bits
            if due <= 0:
                continue
            batch, bits = self._frames(max(1, int(due // 150)))
            for can_id, data in zip(batch.can_id.tolist(), batch.data.tolist(), strict=True):
                message = can.Message(
                    timestamp=time.time(), arbitration_id=can_id, is_extended_id=True, data=data
                )
                try:
                    self.bus.send(message)
                    self.frames_sent += 1
                except can.CanError:
                    self.send_errors += 1
            sent_bits += bits


def track_simulators(random_ids_load: float | None) -> list[Any]:
    """The senders the daemon's simulator starts (once its reader listens), with a random-id
    flood beside each when ``random_ids_load`` is set (the flood's share of the bus)."""
    started: list[Any] = []
    original_start_charger = simulation.start_charger

    def start_charger(bus: Any, scenario: str) -> Any:
        sim = original_start_charger(bus, scenario)
        started.append(sim)
        if random_ids_load is not None:
            share = max(0.05, random_ids_load - sim.runner.sim.nominal_bus_load())
            flood = RandomIdFlood(sim.bus, bus.bitrate, share)
            flood.start()
            started.append(flood)
        return sim

    simulation.start_charger = start_charger
    return started


def quiesce_later(started: list[Any], after: float) -> threading.Thread:
    def run() -> None:
        threading.Event().wait(after)
        for sender in list(started):
            if isinstance(sender, RandomIdFlood):
                sender.stop()
                channel, sent, errors = sender.channel, sender.frames_sent, sender.send_errors
            else:
                sender.runner.stop()
                channel = sender.bus.channel_info
                sent, errors = sender.runner.frames_sent, sender.runner.send_errors
            print(  # noqa: T201
                f"SOAK_SENT bus={channel} frames_sent={sent} send_errors={errors}", flush=True
            )
        print("SOAK_QUIESCED", flush=True)  # noqa: T201

    thread = threading.Thread(target=run, name="soak-quiesce", daemon=True)
    thread.start()
    return thread


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seconds", type=float, required=True, help="planned run length")
    parser.add_argument("--quiesce-after", type=float, required=True)
    parser.add_argument("--period", type=float, default=60.0)
    parser.add_argument("--load", type=float, default=0.92)
    parser.add_argument(
        "--random-ids", action="store_true", help="make the load of random 29-bit identifiers"
    )
    args = parser.parse_args()
    install_scenario(args.seconds, args.period, 0.0 if args.random_ids else args.load)
    started = track_simulators(args.load if args.random_ids else None)
    quiesce_later(started, args.quiesce_after)
    from candiag.cli import main as candiag_main

    return candiag_main(["run", "--config", args.config])


if __name__ == "__main__":
    raise SystemExit(main())
