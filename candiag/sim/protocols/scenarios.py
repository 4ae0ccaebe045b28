"""Named fault scenarios of the protocol simulators, from ``scenarios.toml`` (data, not code)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from candiag.config.toml import loads
from candiag.errors import InputError
from candiag.sim.faults import Fault


@cache
def _table() -> dict[str, Any]:
    text = resources.files("candiag.sim.protocols").joinpath("scenarios.toml").read_text("utf-8")
    return loads(text)


def protocol_scenario_names() -> list[str]:
    return list(_table())


def protocol_scenario_description(name: str) -> str:
    return str(_entry(name).get("description", ""))


def _entry(name: str) -> dict[str, Any]:
    table = _table()
    if name not in table:
        raise InputError(
            f"unknown protocol scenario {name!r}; choose one of {', '.join(table)} "
            "(candiag simulate --protocol NAME --list-scenarios)"
        )
    entry: dict[str, Any] = table[name]
    return entry


def protocol_scenario_faults(name: str) -> list[Fault]:
    faults = []
    for i, raw in enumerate(_entry(name).get("faults", [])):
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
                f"protocols/scenarios.toml: [{name}] faults[{i}] is invalid ({err}); "
                "each fault needs kind and numeric start/duration"
            ) from None
    return faults
