"""Simulators of the power-module protocols the packs describe (``candiag simulate --protocol``).

Each plays a controller and its modules as the EVerest driver exchanges them (poll timing,
requests, answers, timeouts: docs/protocols.md), on the engine of
:mod:`candiag.sim.protocols.engine`.  Like the reference simulator, this is code that
produces frames to transmit: only ``candiag simulate`` sends them.
"""

from __future__ import annotations

import importlib

from candiag.errors import InputError
from candiag.sim.protocols.engine import Protocol

#: ``--protocol`` name -> (module, class) of its simulator.
_CLASSES = {
    "infy": ("infy", "Infy"),
    "beg1k075g": ("beg1k075g", "BEG1K075G"),
    "uugreen": ("uugreen", "UUGreen"),
    "winline": ("winline", "Winline"),
    "dpm1000": ("dpm1000", "DPM1000"),
    "huawei": ("huawei", "Huawei"),
    "sinexcel": ("sinexcel", "Sinexcel"),
}
PROTOCOL_NAMES = tuple(_CLASSES)


def protocol_class(name: str) -> type[Protocol]:
    """The simulator class of ``--protocol NAME`` (InputError naming the choices)."""
    if name not in _CLASSES:
        raise InputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOL_NAMES)}")
    module, cls = _CLASSES[name]
    found: type[Protocol] = getattr(importlib.import_module(f"candiag.sim.protocols.{module}"), cls)
    return found
