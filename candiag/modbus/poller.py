"""Polling the slaves of one Modbus port, and their link health.

Owns the one thread per port (``candiag-modbus-<port>``) that talks to the line:
requests are strictly sequential, with a silence of at least ``gap`` (never less
than t3.5) between two requests and ``id_switch_pause`` when the slave id changes
(mbmd had to add that pause for SDM meters, docs/meters.md §3).  Each device is
polled at its own interval; its profile's quantities are read in the coalesced
blocks planned by :mod:`candiag.modbus.profile`.

Every transaction is counted by outcome.  A device is *up* while its last poll got
an answer (data or an exception reply: it is alive, even if the profile does not
fit).  Readings of a block that failed, or of a device that stopped answering, are
withdrawn at once, and :meth:`PortPoller.snapshot` drops any reading older than
three poll intervals plus one worst-case poll, so a stale value is never exported
as fresh.  A port that disappears (USB adapter unplugged, gateway gone) is reported
and reopened with exponential backoff.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from candiag.errors import PortUnavailableError
from candiag.modbus.config import DeviceConfig, PortConfig
from candiag.modbus.link import FAILURE_REASONS, Link, Transaction, make_link, t35_seconds
from candiag.modbus.profile import MeterProfile, ReadBlock, decode_block, find_profile

log = logging.getLogger("candiag.modbus")

# Round trips at 9600 baud take 20-200 ms; the buckets resolve that range (they are the
# ``le`` bounds of candiag_modbus_request_duration_seconds).
DURATION_BUCKETS_S: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INITIAL_BACKOFF_S = 0.5


class DurationHistogram:
    """Fixed-bucket histogram of durations in seconds, bucketed as Prometheus does.

    A duration equal to a bound counts in that bound's bucket (``le``); :meth:`cumulative`
    gives the exported form, each bound with the count at or below it and ``+Inf`` last.
    """

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> tuple[tuple[float, int], ...]:
        return tuple(
            zip((*self.bounds, float("inf")), itertools.accumulate(self._counts), strict=True)
        )


@dataclass(frozen=True)
class Reading:
    """One fresh value in base units (V, A, W, Hz, J, Ω, °C)."""

    value: float
    unit: str
    timestamp: float  # unix time it was read


@dataclass(frozen=True)
class DeviceSnapshot:
    """A consistent copy of one device's state; ``readings`` holds fresh values only."""

    name: str
    port: str
    profile: str
    unit_id: int
    up: bool
    polled: bool  # polled at least once
    last_success: float | None  # unix time of the last ok transaction
    requests: int
    failures_by_reason: Mapping[str, int]  # every FAILURE_REASONS key present
    exceptions_by_code: Mapping[int, int]
    latency_buckets: tuple[tuple[float, int], ...]  # (upper bound, cumulative), +inf last
    latency_sum: float
    latency_count: int
    latency_last: float | None  # round trip of the last ok transaction
    latency_max: float
    readings: Mapping[str, Reading]
    last_error: str | None  # what went wrong last, for people
    port_error: str | None  # why the port cannot be used, while it cannot
    kind: str = "meter"  # the profile's kind: ac_meter | dc_meter | imd | meter
    path: str = ""  # what the port opens (/dev/ttyUSB0, COM3, tcp://...); ``port`` is its name

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what the diagnosis engine consumes)."""
        return {
            "name": self.name,
            "port": self.port,
            "path": self.path,
            "profile": self.profile,
            "kind": self.kind,
            "dc": self.kind == "dc_meter",
            "unit_id": self.unit_id,
            "id": self.unit_id,
            "up": self.up,
            "polled": self.polled,
            "last_success": self.last_success,
            "requests": self.requests,
            "failures": dict(self.failures_by_reason),
            "exceptions": {str(k): v for k, v in self.exceptions_by_code.items()},
            "latency": {
                "count": self.latency_count,
                "sum": self.latency_sum,
                "last": self.latency_last,
                "max": self.latency_max,
            },
            "readings": {
                k: {"value": r.value, "unit": r.unit, "timestamp": r.timestamp}
                for k, r in self.readings.items()
            },
            "last_error": self.last_error,
            "port_error": self.port_error,
        }


@dataclass
class _DeviceState:
    config: DeviceConfig
    profile: MeterProfile
    timeout: float
    retries: int
    next_due: float = 0.0
    up: bool = False
    polled: bool = False
    last_success: float | None = None
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    exceptions: Counter[int] = field(default_factory=Counter)
    latency: DurationHistogram = field(default_factory=DurationHistogram)
    latency_last: float | None = None
    latency_max: float = 0.0
    readings: dict[str, Reading] = field(default_factory=dict)
    last_error: str | None = None

    @property
    def stale_after(self) -> float:
        """Age beyond which a reading is withdrawn: 3 intervals plus one worst-case poll."""
        worst_poll = len(self.profile.blocks) * (self.retries + 1) * self.timeout
        return 3.0 * self.config.interval + worst_poll


class PortPoller:
    """Polls every device of one port from one thread; read-only by construction."""

    def __init__(
        self,
        config: PortConfig,
        *,
        link: Link | None = None,
        clock: Callable[[], float] = time.time,
        on_transaction: Callable[[DeviceConfig, Transaction], None] | None = None,
    ) -> None:
        """``on_transaction`` sees every transaction (CLI error lists, benchmarks)."""
        self.config = config
        self.clock = clock
        self.on_transaction = on_transaction
        self.link: Link = link or make_link(
            config.port,
            baudrate=config.baudrate,
            parity=config.parity,
            stopbits=config.stopbits,
        )
        self._devices = [
            _DeviceState(
                config=d,
                profile=find_profile(d.profile),
                timeout=d.timeout if d.timeout is not None else config.timeout,
                retries=d.retries if d.retries is not None else config.retries,
            )
            for d in config.devices
        ]
        self._silence = config.gap
        if config.transport == "rtu":
            self._silence = max(config.gap, t35_seconds(config.baudrate))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_end: float | None = None
        self._last_unit: int | None = None
        self._port_error: str | None = None
        self._backoff = INITIAL_BACKOFF_S

    # -- lifecycle --------------------------------------------------------------------
    @property
    def thread_name(self) -> str:
        return f"candiag-modbus-{self.config.name}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.thread_name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("event=modbus_stop_timeout port=%s", self.config.name)
            self._thread = None
        self.link.close()

    def __enter__(self) -> PortPoller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- polling ------------------------------------------------------------------------
    def poll_once(self) -> None:
        """Poll every device once, now, in the calling thread (CLI, tests, benchmarks)."""
        if self._thread is not None:
            raise RuntimeError("poll_once() while the polling thread runs")
        for device in self._devices:
            if not self._ensure_open():
                return
            self._poll_device(device)

    def _run(self) -> None:
        now = time.monotonic()
        for device in self._devices:
            device.next_due = now
        while not self._stop.is_set() and self._devices:
            if not self._ensure_open():
                self._stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, self.config.reopen_backoff_max)
                continue
            device = min(self._devices, key=lambda d: d.next_due)
            delay = device.next_due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            started = time.monotonic()
            self._poll_device(device)
            device.next_due = max(device.next_due + device.config.interval, started)

    def _ensure_open(self) -> bool:
        if self.link.is_open:
            return True
        try:
            self.link.open()
        except PortUnavailableError as err:
            self._port_down(str(err))
            return False
        if self._port_error is not None:
            log.info(
                "event=modbus_port_open port=%s link=%s", self.config.name, self.link.description
            )
        with self._lock:
            self._port_error = None
        self._backoff = INITIAL_BACKOFF_S
        return True

    def _port_down(self, message: str, *, count: bool = True) -> None:
        """The port is unusable: every device is down; ``count`` one io failure each."""
        if self._port_error != message:
            log.warning("event=modbus_port_unavailable port=%s error=%r", self.config.name, message)
        with self._lock:
            self._port_error = message
            for device in self._devices:
                if count:
                    device.requests += 1
                    device.failures["io"] += 1
                device.up = False
                device.polled = True
                device.readings.clear()
                device.last_error = message

    def _poll_device(self, device: _DeviceState) -> None:
        answered = False
        for block in device.profile.blocks:
            if self._stop.is_set():
                return  # stopping: do not spend more timeouts on this device
            tx = self._read_block(device, block)
            if tx.outcome == "ok":
                answered = True
                self._store(device, block, tx)
            else:
                answered = answered or tx.outcome == "exception"
                with self._lock:
                    for name in block.quantities:
                        device.readings.pop(name, None)
            if tx.outcome == "io":
                answered = False  # the port is gone: whatever came before is not current
                break
        with self._lock:
            if device.up and not answered:
                log.warning(
                    "event=modbus_device_down port=%s device=%s error=%r",
                    self.config.name,
                    device.config.name,
                    device.last_error,
                )
            elif answered and not device.up and device.polled:
                log.info(
                    "event=modbus_device_up port=%s device=%s", self.config.name, device.config.name
                )
            device.up = answered
            device.polled = True
            if not answered:
                device.readings.clear()

    def _read_block(self, device: _DeviceState, block: ReadBlock) -> Transaction:
        tx: Transaction | None = None
        for _attempt in range(device.retries + 1):
            self._wait_silence(device.config.unit_id)
            tx = self.link.transact(
                device.config.unit_id, block.function, block.address, block.count, device.timeout
            )
            self._last_end = time.monotonic()
            self._last_unit = device.config.unit_id
            self._record(device, tx)
            if self.on_transaction is not None:
                self.on_transaction(device.config, tx)
            if tx.outcome in ("ok", "exception", "io"):
                break
        assert tx is not None
        return tx

    def _wait_silence(self, unit_id: int) -> None:
        if self._last_end is None:
            return
        silence = self._silence
        if self._last_unit is not None and unit_id != self._last_unit:
            silence = max(silence, self.config.id_switch_pause)
        remaining = self._last_end + silence - time.monotonic()
        if remaining > 0:
            self._stop.wait(remaining)

    def _record(self, device: _DeviceState, tx: Transaction) -> None:
        with self._lock:
            device.requests += 1
            if tx.outcome != "io":
                device.latency.observe(tx.duration)
            if tx.outcome == "ok":
                device.last_success = self.clock()
                device.latency_last = tx.duration
                device.latency_max = max(device.latency_max, tx.duration)
                return
            device.failures[tx.outcome] += 1
            if tx.exception_code is not None:
                device.exceptions[tx.exception_code] += 1
            device.last_error = (
                f"{tx.outcome}: {tx.detail} (FC{tx.function} {tx.count} registers at "
                f"{tx.address}, unit id {tx.unit_id})"
            )
        if tx.outcome == "io":
            self._port_down(tx.detail, count=False)  # this failure was counted above

    def _store(self, device: _DeviceState, block: ReadBlock, tx: Transaction) -> None:
        values = decode_block(device.profile, block, tx.registers)
        now = self.clock()
        with self._lock:
            for name in block.quantities:
                if name in values:
                    unit = device.profile.quantity(name).base_unit
                    device.readings[name] = Reading(values[name], unit, now)
                else:
                    device.readings.pop(name, None)

    # -- state out ------------------------------------------------------------------------
    def snapshot(self) -> list[DeviceSnapshot]:
        """A thread-safe copy of every device's state, fresh readings only."""
        now = self.clock()
        with self._lock:
            return [self._device_snapshot(d, now) for d in self._devices]

    def _device_snapshot(self, d: _DeviceState, now: float) -> DeviceSnapshot:
        fresh = {k: r for k, r in d.readings.items() if d.up and now - r.timestamp <= d.stale_after}
        return DeviceSnapshot(
            name=d.config.name,
            port=self.config.name,
            profile=d.profile.name,
            unit_id=d.config.unit_id,
            up=d.up,
            polled=d.polled,
            last_success=d.last_success,
            requests=d.requests,
            failures_by_reason={r: d.failures[r] for r in FAILURE_REASONS},
            exceptions_by_code=dict(sorted(d.exceptions.items())),
            latency_buckets=d.latency.cumulative(),
            latency_sum=d.latency.total,
            latency_count=d.latency.count,
            latency_last=d.latency_last,
            latency_max=d.latency_max,
            readings=fresh,
            last_error=d.last_error,
            port_error=self._port_error,
            kind=d.profile.kind,
            path=self.config.port,
        )
