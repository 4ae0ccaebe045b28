"""Starting the in-process simulated charger and meters for ``[simulator]`` configs.

Only ``candiag demo`` and the tests use this: the simulated charger transmits on a
python-can ``virtual`` channel (in-process only, never a real link) that the
daemon's reader of the same channel listens to; the simulated meters are real
pymodbus servers behind a pseudo-terminal, polled like a real RS-485 line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from candiag.config.model import BusConfig
from candiag.errors import ConfigError


def start_meters(scenario: str) -> tuple[Any, Any]:
    """Start the demo meter line; returns (line with ``stop()``, its PortConfig)."""
    from candiag.modbus.config import PortConfig
    from candiag.modbus.sim import SCENARIOS, demo_line

    # Charger-only scenarios leave the meters healthy.
    line, devices = demo_line(scenario if scenario in SCENARIOS else "healthy")
    line.start()
    running: Any = line
    if scenario == "tour":
        running = MeterTour(line)
        running.start()
    try:
        port = PortConfig.from_mapping(
            {"name": "sim-meters", "port": line.port, "devices": devices}, "simulator.meters"
        )
    except ConfigError:
        running.stop()
        raise
    return running, port


class MeterTour:
    """Plays the tour's meter steps on a running demo meter line (a thread).

    ``meter_wrong_id``: the AC meter (id 1) stops answering at its configured id;
    ``meter_crc_noise``: every meter's replies get corrupted bytes; ``meter_reversed``:
    the DC meter's current changes sign.  Each fault is undone when its step ends.
    """

    def __init__(
        self, line: Any, clock: Callable[[], float] = time.monotonic, t0: float | None = None
    ) -> None:
        from candiag.modbus.sim import SCENARIOS
        from candiag.sim.scenarios import tour_steps

        self.line = line
        self.port = line.port
        self.steps = [s for s in tour_steps() if s.scenario in SCENARIOS]
        self._clock = clock
        self._t0 = clock() if t0 is None else t0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="candiag-sim-meter-tour")
        self.active: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.line.stop()

    def apply(self, now: float) -> None:
        """Set the faults of the step active at ``now`` (seconds since the tour began)."""
        current = next((s.scenario for s in self.steps if s.start <= now < s.end), None)
        if current == self.active:
            return
        self._set(self.active, on=False)
        self._set(current, on=True)
        self.active = current

    def _set(self, scenario: str | None, *, on: bool) -> None:
        if scenario == "meter_wrong_id":
            self.line.faults(1).silent = on
        elif scenario == "meter_crc_noise":
            for unit_id in self.line.meters:
                self.line.faults(unit_id).crc_noise = 0.3 if on else 0.0
        elif scenario == "meter_reversed":
            for meter in self.line.meters.values():
                if meter.profile.kind == "dc_meter":
                    meter.model.reversed_current = on

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.apply(self._clock() - self._t0)


class ChargerSimulation:
    """A running simulated charger: its runner thread and the virtual bus it sends on."""

    def __init__(self, runner: Any, bus: Any) -> None:
        self.runner = runner
        self.bus = bus

    def stop(self) -> None:
        try:
            self.runner.stop()
        finally:
            self.bus.shutdown()


def start_charger(bus: BusConfig, scenario: str) -> ChargerSimulation:
    """Start the simulated charger sending on ``bus``, which must be a ``virtual`` bus."""
    if bus.interface != "virtual":
        raise ConfigError(
            f"simulator: bus {bus.name!r} uses interface {bus.interface!r}; the simulator "
            'only runs on interface = "virtual"'
        )
    import can

    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.runner import SimulatorRunner
    from candiag.sim.scenarios import scenario_faults, scenario_names

    # Meter-only scenarios leave the charger healthy.
    name = scenario if scenario in scenario_names() else "healthy"
    sim = ChargerSimulator(
        SimConfig(
            start_time=time.time(),
            bitrate=bus.bitrate,
            channel=bus.channel,
            faults=tuple(scenario_faults(name)),
        )
    )
    # The simulator stamps each frame with its simulated send time: a thread
    # scheduling delay in this process must not look like a late charger frame.
    sim_bus = can.Bus(
        interface="virtual", channel=bus.channel, preserve_timestamps=True, ignore_config=True
    )
    runner = SimulatorRunner(sim_bus, sim)
    try:
        runner.start()
    except BaseException:
        sim_bus.shutdown()
        raise
    return ChargerSimulation(runner, sim_bus)
