"""Named scenarios of the simulated charger and meters, loaded from data files (not code).

``scenarios.toml`` holds the charger's fault scenarios, ``meter_scenarios.toml`` the
meters' (played by :mod:`candiag.modbus.sim`).  Reading the names imports neither
simulator (the faults are imported only to build them), so the config loader validates
``[simulator] scenario`` against the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from candiag.config.toml import loads
from candiag.errors import InputError

if TYPE_CHECKING:
    from candiag.sim.faults import Fault


@cache
def _read(file: str) -> dict[str, Any]:
    return loads(resources.files("candiag.sim").joinpath(file).read_text("utf-8"))


def _table() -> dict[str, Any]:
    return _read("scenarios.toml")


def scenario_names() -> list[str]:
    """The charger's scenario names in file order (``healthy`` first)."""
    return list(_table())


def meter_scenario_names() -> list[str]:
    """The meters' scenario names in file order (``healthy`` first)."""
    return list(_read("meter_scenarios.toml"))


def all_scenario_names() -> list[str]:
    """Charger scenarios, then meter-only ones (``healthy`` once)."""
    names = scenario_names()
    return names + [n for n in meter_scenario_names() if n not in names]


def scenario_description(name: str) -> str:
    return str(_scenario(name).get("description", ""))


def _scenario(name: str) -> dict[str, Any]:
    return entry_of(_table(), name, what="scenario", hint="candiag simulate --list-scenarios")


def entry_of(table: dict[str, Any], name: str, *, what: str, hint: str) -> dict[str, Any]:
    """``table[name]``, or an InputError naming the choices and the command that lists them."""
    if name not in table:
        raise InputError(f"unknown {what} {name!r}; choose one of {', '.join(table)} ({hint})")
    entry: dict[str, Any] = table[name]
    return entry


def scenario_faults(name: str) -> list[Fault]:
    """The faults of scenario ``name`` (``InputError`` naming the choices if unknown)."""
    entry = _scenario(name)
    if "tour" in entry:
        return tour_faults(name)
    return faults_of(entry, f"scenarios.toml: [{name}]")


def faults_of(entry: dict[str, Any], where: str) -> list[Fault]:
    """The ``faults`` array of a scenario entry; ``where`` names it in an InputError."""
    from candiag.sim.faults import Fault

    faults = []
    for i, raw in enumerate(entry.get("faults", [])):
        try:
            faults.append(
                Fault(
                    kind=str(raw["kind"]),
                    start=float(raw.get("start", 0.0)),
                    duration=None if raw.get("duration") is None else float(raw["duration"]),
                    params=dict(raw.get("params", {})),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(
                f"{where} faults[{i}] is invalid ({err}); "
                "each fault needs kind and numeric start/duration"
            ) from None
    return faults


@dataclass(frozen=True)
class TourStep:
    scenario: str
    start: float
    end: float


def tour_steps(name: str = "tour") -> list[TourStep]:
    """When each scenario of a tour is active (seconds from the simulation start)."""
    spec = _scenario(name)["tour"]
    step, fault_s, lead = float(spec["step_s"]), float(spec["fault_s"]), float(spec["lead_s"])
    return [
        TourStep(scenario, k * step + lead, k * step + lead + fault_s)
        for k, scenario in enumerate(spec["scenarios"])
    ]


def tour_faults(name: str = "tour") -> list[Fault]:
    """Each listed scenario's faults, shifted into its step and cut to the step's fault time."""
    from candiag.sim.faults import Fault

    out = []
    charger = _table()
    for step in tour_steps(name):
        if step.scenario not in charger:
            continue  # a meter scenario: the demo's meter line plays it
        faults = scenario_faults(step.scenario)
        first = min((f.start for f in faults), default=0.0)
        for fault in faults:
            start = step.start + fault.start - first
            end = step.end if fault.duration is None else min(step.end, start + fault.duration)
            if end > start:
                out.append(Fault(fault.kind, start, end - start, dict(fault.params)))
    return out


def meter_scenario_description(name: str) -> str:
    """A meter scenario's description (empty for an unknown name)."""
    return str(_read("meter_scenarios.toml").get(name, {}).get("description", ""))
