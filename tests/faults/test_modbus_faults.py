"""Modbus under faults: one running poller through a sequence of meter and line faults.

A real :class:`PortPoller` thread polls two simulated meters (pymodbus servers
behind a pseudo-terminal).  Faults are switched on and off while it runs:
CRC garbage, an exception reply, an answer from the wrong id, a slow meter, a
silent meter, and the USB adapter vanishing and coming back.  For each the
test asserts what an operator sees (the failure reason, ``up``, the readings,
and the exported Prometheus text) and what must hold throughout:

* readings of a failing block are withdrawn at once, never left stale, and a
  down device exports no meter value;
* counters only grow, and add up: ``requests == ok + failures`` with ``ok``
  and every non-io reason counted independently from the transactions seen;
* the other meter on the line is not disturbed by a fault of one meter (with the
  default ``id_switch_pause`` of 0.2 s, which lets a slow meter's late reply
  arrive and be flushed before the next meter is asked);
* it recovers by itself when the fault ends.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from candiag.live.adapters import modbus_device_snapshot
from candiag.metrics.collectors import CandiagCollector
from candiag.metrics.snapshot import Snapshot
from candiag.modbus.config import DeviceConfig, PortConfig
from candiag.modbus.link import Transaction
from candiag.modbus.poller import DeviceSnapshot, PortPoller
from candiag.modbus.sim import SimulatedMeterLine

pytestmark = pytest.mark.slow

PORT = "line"
COUNTED = ("requests", "latency_count")
REASONS = ("timeout", "crc", "exception", "wrong_device", "io")


class Watch:
    """A running poller plus an independent count of its transactions, and invariant checks."""

    def __init__(self, line: SimulatedMeterLine) -> None:
        config = PortConfig.from_mapping(
            {
                "name": PORT,
                "port": line.port,
                "timeout": 0.2,
                "retries": 0,
                "gap": 0.0,
                "reopen_backoff_max": 0.2,
                "devices": [
                    {"name": "ac", "profile": "sdm120", "unit_id": 1, "interval": 0.1},
                    {"name": "dc", "profile": "djsf1352", "unit_id": 2, "interval": 0.1},
                ],
            },
            "test",
        )
        self._lock = threading.Lock()
        self.seen: dict[str, Counter[str]] = {"ac": Counter(), "dc": Counter()}
        self.poller = PortPoller(config, on_transaction=self._on_transaction)
        self.registry = CollectorRegistry()
        self.registry.register(CandiagCollector(self._snapshot))
        self.last: dict[str, DeviceSnapshot] = {}

    def _on_transaction(self, device: DeviceConfig, tx: Transaction) -> None:
        with self._lock:
            self.seen[device.name][tx.outcome] += 1

    def _snapshot(self) -> Snapshot:
        return Snapshot(
            version="test",
            modbus=tuple(modbus_device_snapshot(d) for d in self.poller.snapshot()),
        )

    def check(self) -> dict[str, DeviceSnapshot]:
        """One observation: every invariant that must hold at any time."""
        snaps = {s.name: s for s in self.poller.snapshot()}
        now = time.time()
        for name, snap in snaps.items():
            before = self.last.get(name)
            if before is not None:
                for attr in COUNTED:
                    assert getattr(snap, attr) >= getattr(before, attr), f"{name}.{attr} fell"
                for reason in REASONS:
                    assert snap.failures_by_reason[reason] >= before.failures_by_reason[reason]
                for code, count in before.exceptions_by_code.items():
                    assert snap.exceptions_by_code.get(code, 0) >= count
            if not snap.up:
                assert snap.readings == {}, f"{name} is down but exports readings"
            for reading in snap.readings.values():
                assert now - reading.timestamp < 1.5, f"{name} exports a stale reading"
        self.last = snaps
        return snaps

    def metrics(self) -> str:
        return generate_latest(self.registry).decode()

    def wait(self, what: str, condition: Callable[[dict[str, DeviceSnapshot]], bool]) -> None:
        deadline = time.monotonic() + 8
        while not condition(self.check()):
            assert time.monotonic() < deadline, f"not reached in time: {what}; {self.last}"
            time.sleep(0.02)

    def failures(self, device: str, reason: str) -> int:
        return self.check()[device].failures_by_reason[reason]


@pytest.fixture
def watch() -> Iterator[tuple[Watch, SimulatedMeterLine]]:
    with SimulatedMeterLine([("sdm120", 1), ("djsf1352", 2)]) as line:
        w = Watch(line)
        w.poller.start()
        try:
            yield w, line
        finally:
            w.poller.stop()


def _meter_value_lines(text: str, device: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if line.startswith("candiag_meter_") and f'device="{device}"' in line
    ]


@pytest.mark.parametrize(
    ("fault", "value", "reason", "stays_up"),
    [
        ("bad_crc", True, "crc", False),
        ("exception_code", 2, "exception", True),  # an exception reply: alive, bad register map
        ("reply_as", 9, "wrong_device", False),
        ("delay_s", 0.35, "timeout", False),  # slower than the 0.2 s timeout
        ("silent", True, "timeout", False),
    ],
)
def test_a_meter_fault_is_reported_withdrawn_and_recovers(
    watch: tuple[Watch, SimulatedMeterLine], fault: str, value: Any, reason: str, stays_up: bool
) -> None:
    w, line = watch
    w.wait("both meters up with readings", lambda s: all(d.up and d.readings for d in s.values()))
    assert _meter_value_lines(w.metrics(), "dc")
    ac_failures = sum(w.check()["ac"].failures_by_reason.values())
    start = w.failures("dc", reason)

    setattr(line.faults(2), fault, value)
    w.wait(f"{reason} counted twice", lambda s: s["dc"].failures_by_reason[reason] >= start + 2)
    snap = w.check()["dc"]
    assert snap.readings == {}, "a failing meter must not keep its old readings"
    assert snap.up is stays_up
    assert reason in (snap.last_error or "")
    text = w.metrics()
    assert _meter_value_lines(text, "dc") == [], "no meter value of a failing device exported"
    assert f'candiag_modbus_up{{device="dc",port="{PORT}"}} {1.0 if stays_up else 0.0}' in text
    failed = f'candiag_modbus_request_failures_total{{device="dc",port="{PORT}",reason="{reason}"}}'
    assert float(text.split(failed + " ")[1].split()[0]) >= start + 2
    if reason == "exception":
        assert snap.exceptions_by_code.get(2, 0) >= 2
        assert 'code="2"' in text
    # The other meter on the line is not disturbed.
    assert w.check()["ac"].up and w.check()["ac"].readings

    line.faults(2).clear()
    w.wait("dc back with readings", lambda s: s["dc"].up and bool(s["dc"].readings))
    settled = w.failures("dc", reason)
    time.sleep(0.5)
    assert w.failures("dc", reason) == settled, "failures must stop once the fault is gone"
    assert _meter_value_lines(w.metrics(), "dc")
    assert sum(w.check()["ac"].failures_by_reason.values()) == ac_failures
    _assert_counts_add_up(w)


def test_the_port_vanishing_and_returning(watch: tuple[Watch, SimulatedMeterLine]) -> None:
    w, line = watch
    w.wait("both meters up with readings", lambda s: all(d.up and d.readings for d in s.values()))
    io_before = {name: s.failures_by_reason["io"] for name, s in w.check().items()}

    line.vanish()  # the USB adapter is unplugged
    w.wait("port down", lambda s: all(d.port_error is not None and not d.up for d in s.values()))
    w.wait("reopen failures counted", lambda s: all(
        d.failures_by_reason["io"] >= io_before[n] + 2 for n, d in s.items()
    ))  # fmt: skip
    for snap in w.check().values():
        assert snap.readings == {}
        assert "does not exist" in (snap.port_error or "") or "cannot" in (snap.port_error or "")
    text = w.metrics()
    assert _meter_value_lines(text, "ac") == [] and _meter_value_lines(text, "dc") == []
    assert f'candiag_modbus_up{{device="ac",port="{PORT}"}} 0.0' in text

    line.restore()  # plugged in again behind the same path
    w.wait("both back", lambda s: all(
        d.up and d.readings and d.port_error is None for d in s.values()
    ))  # fmt: skip
    text = w.metrics()
    assert _meter_value_lines(text, "ac") and _meter_value_lines(text, "dc")
    _assert_counts_add_up(w)


def _assert_counts_add_up(w: Watch) -> None:
    """requests == ok + failures, checked against the transactions seen independently."""
    w.poller.stop()  # a stable state to compare
    for name, snap in w.check().items():
        seen = w.seen[name]
        failures = sum(snap.failures_by_reason.values())
        assert snap.requests == seen["ok"] + failures, (name, snap, seen)
        for reason in ("timeout", "crc", "exception", "wrong_device"):
            assert snap.failures_by_reason[reason] == seen[reason], (name, reason)
        # io also counts the reopen attempts of a vanished port (no transaction then).
        assert snap.failures_by_reason["io"] >= seen["io"]
        assert snap.latency_count == sum(n for outcome, n in seen.items() if outcome != "io")
