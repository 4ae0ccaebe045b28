"""Named fault scenarios of the protocol simulators, from ``scenarios.toml`` (data, not code)."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from candiag.config.toml import loads
from candiag.sim.faults import Fault
from candiag.sim.scenarios import entry_of, faults_of


@cache
def _table() -> dict[str, Any]:
    text = resources.files("candiag.sim.protocols").joinpath("scenarios.toml").read_text("utf-8")
    return loads(text)


def protocol_scenario_names() -> list[str]:
    return list(_table())


def protocol_scenario_description(name: str) -> str:
    return str(_entry(name).get("description", ""))


def _entry(name: str) -> dict[str, Any]:
    return entry_of(
        _table(),
        name,
        what="protocol scenario",
        hint="candiag simulate --protocol NAME --list-scenarios",
    )


def protocol_scenario_faults(name: str) -> list[Fault]:
    return faults_of(_entry(name), f"protocols/scenarios.toml: [{name}]")
