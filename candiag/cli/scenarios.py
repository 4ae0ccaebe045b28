"""``--list-scenarios``: every named scenario, grouped by where it is accepted.

One listing for ``simulate``, ``demo`` and ``monitor --demo`` (the names and descriptions are
data: ``candiag/sim/scenarios.toml``, ``meter_scenarios.toml`` and the protocol packs'
``scenarios.toml``), so no command shows a partial list.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

#: The --protocol names (candiag.sim.protocols.PROTOCOL_NAMES; spelt here so building the
#: parser imports no simulator; tests/test_cli_habits.py checks they agree).
PROTOCOL_CHOICES = ("infy", "beg1k075g", "uugreen", "winline", "dpm1000", "huawei", "sinexcel")


def protocol_scenario_names() -> list[str]:
    """The protocol scenarios' names, read from their data file without importing the
    protocol simulators (whose package loads cantools and numpy: the help must stay fast)."""
    from importlib import resources

    from candiag.config.toml import loads

    path = resources.files("candiag.sim").joinpath("protocols", "scenarios.toml")
    return list(loads(path.read_text("utf-8")))


def print_scenarios(*, demo: bool, out: TextIO | None = None) -> None:
    """Charger, meter and protocol scenarios, each group headed by the commands taking it."""
    from candiag.sim.protocols.engine import PROTOCOL_FAULT_KINDS
    from candiag.sim.protocols.scenarios import (
        protocol_scenario_description,
        protocol_scenario_names,
    )
    from candiag.sim.scenarios import (
        meter_scenario_description,
        meter_scenario_names,
        scenario_description,
        scenario_names,
    )

    out = out or sys.stdout
    charger = scenario_names()
    meters = [n for n in meter_scenario_names() if n not in charger]
    _group(
        out,
        "charger scenarios (candiag simulate --scenario NAME; candiag demo --scenario NAME; "
        "candiag monitor --demo --scenario NAME):",
        ((n, scenario_description(n)) for n in charger),
    )
    _group(
        out,
        "meter scenarios, the simulated Modbus meters (candiag demo --scenario NAME; "
        "candiag monitor --demo --scenario NAME; not simulate, which makes CAN traffic only):",
        ((n, meter_scenario_description(n)) for n in meters),
    )
    _group(
        out,
        f"protocol scenarios (candiag simulate --protocol {{{','.join(PROTOCOL_CHOICES)}}} "
        "--scenario NAME" + ("; not the demo):" if demo else "):"),
        ((n, protocol_scenario_description(n)) for n in protocol_scenario_names()),
    )
    print("protocol fault kinds (--fault with --protocol): " + ", ".join(PROTOCOL_FAULT_KINDS),
          file=out)  # fmt: skip


def _group(out: TextIO, title: str, rows: Iterable[tuple[str, str]]) -> None:
    print(title, file=out)
    for name, description in rows:
        print(f"  {name:28s} {description}", file=out)
    print(file=out)
