"""Named fault scenarios of the simulated charger, loaded from ``scenarios.toml`` (data, not code)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from candiag.errors import InputError
from candiag.sim.faults import Fault

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@cache
def _table() -> dict[str, Any]:
    text = resources.files("candiag.sim").joinpath("scenarios.toml").read_text("utf-8")
    return tomllib.loads(text)


def scenario_names() -> list[str]:
    """Scenario names in file order (``healthy`` first)."""
    return list(_table())


def scenario_description(name: str) -> str:
    return str(_scenario(name).get("description", ""))


def _scenario(name: str) -> dict[str, Any]:
    table = _table()
    if name not in table:
        raise InputError(
            f"unknown scenario {name!r}; choose one of {', '.join(table)} "
            "(candiag simulate --list-scenarios)"
        )
    entry: dict[str, Any] = table[name]
    return entry


def scenario_faults(name: str) -> list[Fault]:
    """The faults of scenario ``name`` (``InputError`` naming the choices if unknown)."""
    entry = _scenario(name)
    if "tour" in entry:
        return tour_faults(name)
    faults = []
    for i, raw in enumerate(_scenario(name).get("faults", [])):
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
                f"scenarios.toml: [{name}] faults[{i}] is invalid ({err}); "
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
