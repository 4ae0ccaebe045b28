"""Starting the in-process simulated charger and meters for ``[simulator]`` configs.

Only ``candiag demo`` and the tests use this: the simulated charger transmits on a
python-can ``virtual`` channel (in-process only, never a real link) that the
daemon's reader of the same channel listens to; the simulated meters are real
pymodbus servers behind a pseudo-terminal, polled like a real RS-485 line.
"""

from __future__ import annotations

from typing import Any

from candiag.daemon.config import BusConfig
from candiag.errors import ConfigError


def start_meters(scenario: str) -> tuple[Any, Any]:
    """Start the demo meter line; returns (line with ``stop()``, its PortConfig)."""
    from candiag.modbus.config import PortConfig
    from candiag.modbus.sim import SCENARIOS, demo_line

    # Charger-only scenarios leave the meters healthy.
    line, devices = demo_line(scenario if scenario in SCENARIOS else "healthy")
    line.start()
    port, problems = PortConfig.from_mapping(
        {"name": "sim-meters", "port": line.port, "devices": devices}, "simulator.meters"
    )
    if port is None:
        line.stop()
        raise ConfigError(problems)
    return line, port


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
    import time

    import can

    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.runner import SimulatorRunner
    from candiag.sim.scenarios import scenario_faults

    # Meter-only scenarios leave the charger healthy.
    name = scenario if scenario in charger_scenarios() else "healthy"
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


def charger_scenarios() -> list[str]:
    from candiag.sim.scenarios import scenario_names

    return scenario_names()


def meter_scenarios() -> list[str]:
    from candiag.modbus.sim import SCENARIOS

    return list(SCENARIOS)


def all_scenarios() -> list[str]:
    """Charger scenarios, then meter-only ones (``healthy`` once)."""
    names = charger_scenarios()
    return names + [n for n in meter_scenarios() if n not in names]
