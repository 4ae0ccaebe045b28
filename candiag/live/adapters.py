"""Adapters from other packages' state objects to the metrics snapshot and reports.

The Modbus poller and the CAN bus readers each keep their own state types; the
daemon turns them into :mod:`candiag.metrics.snapshot` values here, so the
collectors stay independent of how the state was produced.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from candiag.metrics.snapshot import HistogramSnapshot, MeterReading, ModbusDeviceSnapshot

if TYPE_CHECKING:
    from candiag.modbus.poller import DeviceSnapshot

# Canonical profile quantity names (candiag.modbus.profile): family[_rest].
_QUANTITY_RE = re.compile(
    r"^(?P<family>voltage|current|power|frequency|energy|insulation_resistance|temperature)"
    r"(?:_(?P<rest>[a-z0-9_]+))?$"
)
_PHASES = ("l1", "l2", "l3", "total")
_PHASED = {"voltage", "current", "power", "frequency"}


def meter_reading(name: str, value: float) -> MeterReading | None:
    """A profile quantity as a metric reading, or None when no agreed metric fits it.

    ``voltage_l1`` -> voltage{phase=l1}; ``power`` -> power{phase=""};
    ``energy_import`` -> energy{direction=import}; per-phase energy and
    line-to-earth voltages have no agreed series and are not exported.
    """
    m = _QUANTITY_RE.match(name)
    if m is None:
        return None
    family, rest = m.group("family"), m.group("rest") or ""
    if family in _PHASED:
        if rest and rest not in _PHASES:
            return None
        return MeterReading(family, value, phase=rest)
    if family == "energy":
        if rest not in ("import", "export"):
            return None
        return MeterReading("energy", value, direction=rest)
    if rest:
        return None
    return MeterReading("insulation" if family == "insulation_resistance" else family, value)


def modbus_device_snapshot(dev: DeviceSnapshot) -> ModbusDeviceSnapshot:
    readings = tuple(
        r
        for name, reading in sorted(dev.readings.items())
        if (r := meter_reading(name, reading.value)) is not None
    )
    return ModbusDeviceSnapshot(
        port=dev.port,
        device=dev.name,
        up=dev.up,
        requests=dev.requests,
        failures=dict(dev.failures_by_reason),
        exceptions={str(code): n for code, n in dev.exceptions_by_code.items()},
        last_success=dev.last_success,
        duration=HistogramSnapshot(
            buckets=tuple(dev.latency_buckets),
            total=dev.latency_sum,
            count=dev.latency_count,
        ),
        readings=readings if dev.up else (),
    )
