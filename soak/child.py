"""The soaked process: ``candiag run --config FILE`` exactly, plus two test-only hooks.

``candiag run`` has no way to say how many frames its in-process simulator sent,
and its scenarios are a fixed list.  This wrapper, run as its own process by
:mod:`soak.harness`, adds without touching candiag:

* a ``soak`` simulator scenario: ~92 % bus load for the whole run plus a fault
  every ``--period`` seconds (bus-off, error-frame storm, silent module, wrong
  bitrate bursts, duplicate address), so the daemon sees link faults repeatedly;
* after ``--quiesce-after`` seconds it stops the simulator's sender threads and
  prints ``SOAK_SENT bus=<channel> frames_sent=<n> send_errors=<n>`` on stdout;
  the harness then compares ``candiag_can_frames_total`` with that count.

Everything else (config parsing, readers, processing loop, /metrics, systemd
notify/watchdog, signals) is the unchanged ``candiag run`` code path.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any

from candiag.daemon import simulation
from candiag.sim import scenarios
from candiag.sim.faults import Fault

SOAK_SCENARIO = "soak"


def soak_faults(seconds: float, period: float, load: float) -> list[Fault]:
    """Overload for the whole run and one of five link faults every ``period`` seconds."""
    faults = [Fault("overload", 0.0, None, {"load": load})]
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


def track_simulators() -> list[Any]:
    """The ChargerSimulation objects the daemon starts (it starts them once its reader listens)."""
    started: list[Any] = []
    original_start_charger = simulation.start_charger

    def start_charger(bus: Any, scenario: str) -> Any:
        sim = original_start_charger(bus, scenario)
        started.append(sim)
        return sim

    simulation.start_charger = start_charger
    return started


def quiesce_later(started: list[Any], after: float) -> threading.Thread:
    def run() -> None:
        threading.Event().wait(after)
        for sim in list(started):
            sim.runner.stop()
            print(  # noqa: T201
                f"SOAK_SENT bus={sim.bus.channel_info} frames_sent={sim.runner.frames_sent} "
                f"send_errors={sim.runner.send_errors}",
                flush=True,
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
    args = parser.parse_args()
    install_scenario(args.seconds, args.period, args.load)
    started = track_simulators()
    quiesce_later(started, args.quiesce_after)
    from candiag.cli import main as candiag_main

    return candiag_main(["run", "--config", args.config])


if __name__ == "__main__":
    raise SystemExit(main())
