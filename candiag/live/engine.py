"""The one live loop: sources -> one :class:`LiveBus` per bus -> diagnosis -> snapshot.

:class:`LiveEngine` is what ``candiag run`` (the daemon), ``candiag monitor`` and
``candiag demo`` run alike, as python-can's single ``Notifier`` serves a logger, a viewer
and a bridge: the front-ends differ in what they do with the result (export it, show it,
log it), never in how it is made.  One :meth:`LiveEngine.step`:

1. each bus polls its source (:meth:`LiveBus.poll`): the link first (up or down with the
   reason, so a PCAN bus-off by exception counts as a bus-off; the kernel's netlink view
   with its controller state and TEC/REC), then the frames, then time moves on;
2. the recording taps see the batches exactly as drained (:meth:`add_tap`);
3. once a second after the warm-up, every bus's report and the Modbus devices go through
   the :class:`~candiag.diagnosis.engine.DiagnosisEngine`.

Hooks: :meth:`reset` (count afresh; sources stay open, active findings stay until the
diagnosis clears them), :meth:`pause` / :meth:`resume` (the views keep the picture of the
pause, even through :meth:`stop`: the daemon serves it while a reload swaps engines),
:meth:`add_tap` / :meth:`remove_tap` (recording).  State shared with other threads (a
scrape) is read under :attr:`lock`; only the thread calling :meth:`step` changes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from candiag.config.check import bus_database
from candiag.config.model import BusConfig, Config
from candiag.diagnosis.timeline import bus_timeline
from candiag.health.report import BusReport
from candiag.ingest.frames import FrameBatch
from candiag.live.adapters import modbus_device_snapshot
from candiag.live.bus import LiveBus
from candiag.live.clock import LiveClock
from candiag.live.readers import FrameSource, ReaderFactory
from candiag.metrics.snapshot import BusSnapshot, FindingSnapshot, ModbusDeviceSnapshot

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase
    from candiag.diagnosis.engine import DiagnosisEngine, Finding
    from candiag.modbus.poller import PortPoller

DIAGNOSIS_INTERVAL_S = 1.0
STOP_TIMEOUT_S = 3.0
# A reader hands batches over at least this often (candiag.live.readers).
READER_LATENCY_S = 0.1
# Longest wait before diagnosing a (re)started bus: a silent node is only
# "never seen" after its timeout, which defaults to 3 cycle times (1 s cycles: 3 s).
MAX_WARMUP_S = 10.0
# Longest wait for a simulated bus's reader to listen before the simulator starts sending.
SIMULATOR_WAIT_S = 2.0

# A recording tap: the step's drained batches (source timestamps), one per bus.
Tap = Callable[[Sequence[FrameBatch]], None]


def default_reader_factory(bus: BusConfig) -> FrameSource:
    from candiag.live.readers import open_reader

    return open_reader(bus)


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`LiveEngine.step` did."""

    now: float
    raised: list[Finding] = field(default_factory=list)
    cleared: list[Finding] = field(default_factory=list)
    diagnosed: bool = False  # whether this step ran the diagnosis


class LiveEngine:
    """Every live source of one configuration, analysed; :meth:`start`, :meth:`step`, :meth:`stop`."""

    def __init__(
        self,
        config: Config,
        diagnosis: DiagnosisEngine,
        *,
        databases: Mapping[str, ChargerDatabase] | None = None,
        reader_factory: ReaderFactory = default_reader_factory,
        clock: LiveClock | None = None,
    ) -> None:
        """``databases``: the buses' DBCs by bus name, already loaded (else loaded at start)."""
        self.config = config
        self.diagnosis = diagnosis
        self.databases = dict(databases or {})
        self.reader_factory = reader_factory
        self.clock = clock or LiveClock()
        self.lock = threading.Lock()
        self.buses: dict[str, LiveBus] = {}
        self.pollers: list[PortPoller] = []
        self.simulators: list[Any] = []
        self.findings: tuple[FindingSnapshot, ...] = ()
        self.started_at: float | None = None
        self.warm_at = math.inf
        self.diagnosed = False
        self._last_diagnosis = -math.inf
        self._taps: list[Tap] = []
        self._paused: _Views | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start simulated meters, readers, the simulated charger, pollers; publish them.

        If anything fails, what was started is stopped again before the error propagates.
        """
        from candiag.modbus.poller import PortPoller

        buses: dict[str, LiveBus] = {}
        pollers: list[PortPoller] = []
        simulators: list[Any] = []
        try:
            simulated_ports = self._start_meter_simulator(simulators)
            for bus_config in self.config.buses:
                db = self.databases.get(bus_config.name) or bus_database(bus_config)
                source = self.reader_factory(bus_config)
                buses[bus_config.name] = LiveBus(bus_config, db, source=source, clock=self.clock)
                source.start()
            self._start_charger_simulators(buses, simulators)
            for port in (*self.config.modbus_ports, *simulated_ports):
                # Live clock: a reading's freshness must not follow a step of the wall clock.
                poller = PortPoller(port, clock=self.clock.now)
                pollers.append(poller)
                poller.start()
        except BaseException:
            _stop_parts(buses.values(), pollers, simulators)
            raise
        with self.lock:
            self.buses = buses
            self.pollers = pollers
            self.simulators = simulators
        self._restart_warmup(self.clock.now())

    def _start_meter_simulator(self, simulators: list[Any]) -> list[Any]:
        """The in-process simulated meters of a ``[simulator]`` section (their port)."""
        sim = self.config.simulator
        if sim is None or not sim.meters:
            return []
        from candiag.live.simulation import start_meters

        line, port = start_meters(sim.scenario)
        simulators.append(line)
        return [port]

    def _start_charger_simulators(
        self, buses: Mapping[str, LiveBus], simulators: list[Any]
    ) -> None:
        """The in-process simulated charger, once the readers of its buses listen.

        A virtual bus delivers only to receivers that exist when a frame is sent: started
        first, the simulator's first frames were never seen.
        """
        sim = self.config.simulator
        if sim is None:
            return
        from candiag.live.simulation import start_charger

        deadline = time.monotonic() + SIMULATOR_WAIT_S
        for name in sim.buses:
            source = buses[name].source
            while source is not None and not source.up and time.monotonic() < deadline:
                time.sleep(0.01)
            simulators.append(start_charger(self.config.bus(name), sim.scenario))

    def stop(self) -> None:
        """Withdraw the parts from views, then stop them (idempotent)."""
        with self.lock:
            buses, self.buses = self.buses, {}
            pollers, self.pollers = self.pollers, []
            simulators, self.simulators = self.simulators, []
        _stop_parts(buses.values(), pollers, simulators)

    def __enter__(self) -> LiveEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop's work ----------------------------------------------------------------
    def step(self, now: float | None = None) -> StepResult:
        """Poll every bus, hand the batches to the taps, diagnose once a second when warm.

        ``now``: live time (:class:`LiveClock`), by default the engine clock's.  A tap's
        error propagates (after the buses were polled; the diagnosis waits a step).
        """
        now = self.clock.now() if now is None else now
        # Frames received up to `latency` before the drain have surely been handed over.
        complete_until = now - READER_LATENCY_S
        drained = []
        for bus in list(self.buses.values()):
            with self.lock:
                drained.append(bus.poll(now, complete_until))
        for tap in list(self._taps):
            tap(drained)
        if now >= self.warm_at and now - self._last_diagnosis >= DIAGNOSIS_INTERVAL_S:
            self._last_diagnosis = now
            raised, cleared = self._diagnose(now)
            return StepResult(now, raised, cleared, diagnosed=True)
        return StepResult(now)

    def _diagnose(self, now: float) -> tuple[list[Finding], list[Finding]]:
        with self.lock:
            reports = [bus.report(now) for bus in self.buses.values()]
            # The interval rules over each bus's timeline, as analyze runs them (live parity).
            timelines = [bus_timeline(bus.pipeline, now) for bus in self.buses.values()]
        raised, cleared = self.diagnosis.update(now, reports, self.meters(), timelines)
        findings = tuple(
            FindingSnapshot(f.code, f.severity, f.subject) for f in self.diagnosis.findings()
        )
        with self.lock:
            self.findings = findings
            self.diagnosed = True
        return raised, cleared

    # -- hooks --------------------------------------------------------------------------
    def reset(self, now: float | None = None) -> None:
        """Count afresh from ``now``: every bus starts a new count with its source kept open.

        The diagnosis is kept: active findings stay shown through the warm-up, then are
        judged on the new counts and clear with the usual hysteresis if they no longer hold.
        """
        now = self.clock.now() if now is None else now
        with self.lock:
            for bus in self.buses.values():
                bus.reset(now)
            self._paused = None
        self._restart_warmup(now)

    def _restart_warmup(self, now: float) -> None:
        self.started_at = now
        warmup = max((bus.warmup_s() for bus in self.buses.values()), default=0.0)
        self.warm_at = now + min(MAX_WARMUP_S, warmup)
        self._last_diagnosis = -math.inf
        self.diagnosed = False

    def pause(self, now: float | None = None) -> None:
        """Keep the views' picture of ``now`` until :meth:`resume`; the analysis goes on."""
        if self._paused is None:
            now = self.clock.now() if now is None else now
            self._paused = _Views(
                self.reports(now), self.bus_snapshots(now), self.modbus_snapshots(), self.meters()
            )

    def resume(self) -> None:
        self._paused = None

    @property
    def paused(self) -> bool:
        return self._paused is not None

    def add_tap(self, tap: Tap) -> None:
        """Call ``tap`` with every step's drained batches (e.g. a recording)."""
        self._taps.append(tap)

    def remove_tap(self, tap: Tap) -> None:
        with contextlib.suppress(ValueError):
            self._taps.remove(tap)

    # -- views --------------------------------------------------------------------------
    def reports(self, now: float | None = None) -> dict[str, BusReport]:
        """Every bus's report by bus name (frozen while paused): what diagnosis reads."""
        now = self.clock.now() if now is None else now
        with self.lock:  # the pause is read under the lock: see bus_snapshots
            if self._paused is not None:
                return self._paused.reports
            return {name: bus.report(now) for name, bus in self.buses.items()}

    def bus_snapshots(self, now: float | None = None) -> tuple[BusSnapshot, ...]:
        """Every bus's exported picture (metrics), from the same figures as its report."""
        now = self.clock.now() if now is None else now
        with self.lock:
            # Read under the lock with the buses: a scrape that saw "not paused" just before
            # a reload paused and stopped the engine then found no bus at all (a flake of
            # tests/faults/test_daemon_faults.py); stop() empties the buses under this lock,
            # after pause() kept the picture.
            if self._paused is not None:
                return self._paused.buses
            return tuple(bus.snapshot(now) for bus in self.buses.values())

    def meters(self) -> list[dict[str, Any]]:
        """Every Modbus device's state (live times), as the diagnosis and the view read it."""
        with self.lock:  # the pause is read under the lock: see bus_snapshots
            if self._paused is not None:
                return self._paused.meters
            pollers = list(self.pollers)
        return [d.as_dict() for p in pollers for d in p.snapshot()]

    def modbus_snapshots(self) -> tuple[ModbusDeviceSnapshot, ...]:
        """Every Modbus device's exported picture, times as wall-clock times."""
        with self.lock:  # the pause is read under the lock: see bus_snapshots
            if self._paused is not None:
                return self._paused.modbus
            pollers = list(self.pollers)
        to_wall = self.clock.wall_offset()
        return tuple(
            _wall_modbus(modbus_device_snapshot(d), to_wall) for p in pollers for d in p.snapshot()
        )

    def active_findings(self) -> list[Finding]:
        return self.diagnosis.findings()


@dataclass(frozen=True)
class _Views:
    """What the views show while the engine is paused."""

    reports: dict[str, BusReport]
    buses: tuple[BusSnapshot, ...]
    modbus: tuple[ModbusDeviceSnapshot, ...]
    meters: list[dict[str, Any]]


def _stop_parts(buses: Any, pollers: Sequence[PortPoller], simulators: Sequence[Any]) -> None:
    """Stop sources, pollers, then simulators (newest first)."""
    for bus in buses:
        if bus.source is not None:
            bus.source.stop(STOP_TIMEOUT_S)
    for poller in pollers:
        poller.stop(STOP_TIMEOUT_S)
    for sim in reversed(simulators):
        with contextlib.suppress(Exception):  # best effort: the sim is test/demo only
            sim.stop()


def _wall_modbus(dev: ModbusDeviceSnapshot, live_minus_wall: float) -> ModbusDeviceSnapshot:
    """A Modbus device snapshot with its live-clock times as wall-clock times."""
    if dev.last_success is None or not live_minus_wall:
        return dev
    return dataclasses.replace(dev, last_success=dev.last_success - live_minus_wall)
