"""The daemon (``candiag run``): readers, pollers, one processing loop, /metrics, systemd.

Threads: one reader per CAN bus (:mod:`candiag.ingest.live`) and one poller per
Modbus port (:mod:`candiag.modbus.poller`) fill their own buffers; ONE processing
loop (the thread that calls :meth:`Daemon.run`) drains the readers every
``processing_interval_s`` and folds the batches into each bus's
:class:`~candiag.daemon.monitor.BusMonitor`, runs the diagnosis once a second and
pings the systemd watchdog.  The ping comes from this loop on purpose: it proves
the work advances (conventions.md §2.1), not merely that a timer fires.

A scrape takes :meth:`Daemon.snapshot` under the state lock, so it always sees
whole batches.  Link faults never end the daemon: a missing or lost interface is
``down`` and its reader reconnects with backoff.  SIGTERM/SIGINT stop within
seconds; SIGHUP reloads the config, and a bad new config keeps the old one running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from candiag import __version__
from candiag.daemon.adapters import modbus_device_snapshot
from candiag.daemon.config import BusConfig, Config, load_config
from candiag.daemon.logging import EventLog
from candiag.daemon.monitor import BusMonitor, apply_mask_overrides
from candiag.daemon.notify import Notifier
from candiag.daemon.validate import check_against_dbc
from candiag.errors import CandiagError
from candiag.ingest.frames import FrameBatch
from candiag.metrics.collectors import CandiagCollector
from candiag.metrics.snapshot import FindingSnapshot, Snapshot

DIAGNOSIS_INTERVAL_S = 1.0
STATUS_INTERVAL_S = 10.0
STOP_TIMEOUT_S = 3.0
# A reader hands batches over at least this often (candiag.daemon.readers).
READER_LATENCY_S = 0.1
# Longest wait before diagnosing a (re)started bus: a silent node is only
# "never seen" after its timeout, which defaults to 3 cycle times (1 s cycles: 3 s).
MAX_WARMUP_S = 10.0
# Longest wait for a simulated bus's reader to listen before the simulator starts sending.
SIMULATOR_WAIT_S = 2.0


class FrameSource(Protocol):
    """What the daemon needs from a bus reader (``candiag.ingest.live.BusReader``)."""

    def start(self) -> None: ...
    def stop(self, timeout: float = ...) -> None: ...
    def drain(self) -> FrameBatch: ...
    @property
    def up(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def dropped(self) -> Mapping[str, int]: ...


ReaderFactory = Callable[[BusConfig], FrameSource]


@dataclass
class _Bus:
    config: BusConfig
    monitor: BusMonitor
    reader: FrameSource
    was_up: bool | None = None


def default_reader_factory(bus: BusConfig) -> FrameSource:
    from candiag.daemon.readers import open_reader

    return open_reader(bus)


def load_dbc(bus: BusConfig) -> Any:
    """The bus's DBC files (default: the reference DBCs), as loaded."""
    from candiag.decode.dbc import load_dbc_paths, load_reference_database

    strict = bus.dbc_strict
    return (
        load_dbc_paths(list(bus.dbc), strict=strict)
        if bus.dbc
        else load_reference_database(strict=strict)
    )


def load_database(bus: BusConfig) -> Any:
    """The bus's database with the config's family mask overrides applied."""
    return apply_mask_overrides(load_dbc(bus), bus.families)


class Daemon:
    """The running daemon; :meth:`start`, then :meth:`run` until :meth:`request_stop`."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | os.PathLike[str] | None = None,
        notifier: Notifier | None = None,
        log: EventLog | None = None,
        reader_factory: ReaderFactory = default_reader_factory,
        serve_metrics: bool = True,
        on_step: Callable[[Daemon], None] | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.notifier = notifier or Notifier()
        self.log = log or EventLog()
        self.reader_factory = reader_factory
        self.serve_metrics = serve_metrics
        self.on_step = on_step
        self.registry = CollectorRegistry()
        self.registry.register(CandiagCollector(self.snapshot))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._buses: dict[str, _Bus] = {}
        self._pollers: list[Any] = []
        self._simulators: list[Any] = []
        self._server: Any = None
        self._engine: Any = None
        self._findings: tuple[FindingSnapshot, ...] = ()
        self._frozen: Snapshot | None = None  # served while a reload swaps components
        self.loop_last_run: float | None = None
        self.iterations = 0
        self._last_diagnosis = 0.0
        self._started_at: float | None = None
        self._warmup_s = 0.0
        self._last_status = 0.0
        self._last_watchdog = 0.0

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def monitors(self) -> dict[str, BusMonitor]:
        """The per-bus monitors by bus name (read them under no lock only when stopped)."""
        return {name: bus.monitor for name, bus in self._buses.items()}

    @property
    def metrics_url(self) -> str | None:
        return None if self._server is None else str(self._server.url)

    def start(self) -> None:
        """Open everything; link faults are reported, never raised (config errors are)."""
        self._engine = _diagnosis_engine(self.config)
        if self.serve_metrics:
            # First, so a busy port fails before any thread starts.
            self._server = _start_server(self.config, self.registry)
            self.log.info("metrics_listening", url=self._server.url)
        self._start_components(self.config)
        self.log.info(
            "started",
            version=__version__,
            config=self.config.source,
            buses=len(self.config.buses),
            modbus_ports=len(self._pollers),
        )
        self.notifier.ready(self.status_line())

    def _start_components(self, config: Config) -> None:
        """Start readers, simulators and pollers; publish them to scrapes in one step."""
        simulated_ports = self._start_meter_simulator(config)
        buses: dict[str, _Bus] = {}
        warmup = 0.0
        for bus_config in config.buses:
            monitor = BusMonitor(bus_config, load_database(bus_config))
            warmup = max(warmup, min(MAX_WARMUP_S, monitor.warmup_s()))
            reader = self.reader_factory(bus_config)
            reader.start()
            buses[bus_config.name] = _Bus(bus_config, monitor, reader)
            if bus_config.receive_only and not bus_config.listen_only:
                self.log.info(
                    "receive_only",
                    bus=bus_config.name,
                    interface=bus_config.interface,
                    note="interface has no listen-only mode; candiag never transmits",
                )
        self._start_charger_simulators(config, buses)
        from candiag.modbus.poller import PortPoller

        pollers = []
        for port in (*config.modbus_ports, *simulated_ports):
            poller = PortPoller(port)
            poller.start()
            pollers.append(poller)
        with self._lock:
            self._buses = buses
            self._pollers = pollers
            self._started_at = time.time()
            self._warmup_s = warmup

    def _start_meter_simulator(self, config: Config) -> list[Any]:
        """The in-process simulated meters of a ``[simulator]`` section (their port)."""
        sim = config.simulator
        if sim is None or not sim.meters:
            return []
        from candiag.daemon.simulation import start_meters

        line, port = start_meters(sim.scenario)
        self._simulators.append(line)
        return [port]

    def _start_charger_simulators(self, config: Config, buses: Mapping[str, _Bus]) -> None:
        """The in-process simulated charger, once the readers of its buses listen.

        A virtual bus delivers only to receivers that exist when a frame is sent: started
        first, the simulator's first frames were never seen.
        """
        sim = config.simulator
        if sim is None:
            return
        from candiag.daemon.simulation import start_charger

        deadline = time.monotonic() + SIMULATOR_WAIT_S
        for name in sim.buses:
            reader = buses[name].reader
            while not reader.up and time.monotonic() < deadline:
                time.sleep(0.01)
            self._simulators.append(start_charger(config.bus(name), sim.scenario))

    def _stop_components(self) -> None:
        """Withdraw readers, pollers and simulators from scrapes, then stop them (unlocked)."""
        with self._lock:
            buses, self._buses = self._buses, {}
            pollers, self._pollers = self._pollers, []
            simulators, self._simulators = self._simulators, []
        for bus in buses.values():
            bus.reader.stop(STOP_TIMEOUT_S)
        for poller in pollers:
            poller.stop(STOP_TIMEOUT_S)
        for sim in reversed(simulators):
            with contextlib.suppress(Exception):  # best effort: the sim is test/demo only
                sim.stop()

    def stop(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping")
        self._stop_components()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.log.info("stopped")

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()
        self._stop.set()  # wakes the loop; cleared again after the reload

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() and not self._reload.is_set()

    # -- the processing loop -------------------------------------------------------------
    def run(self) -> None:
        """Process until stopped (SIGTERM), reloading on request (SIGHUP)."""
        interval = self.config.daemon.processing_interval_s
        while True:
            started = time.monotonic()
            self.step()
            if self._reload.is_set():
                self._reload.clear()
                self._stop.clear()
                self.reload()
                interval = self.config.daemon.processing_interval_s
            if self._stop.is_set():
                return
            self._stop.wait(max(0.0, interval - (time.monotonic() - started)))

    def step(self, now: float | None = None) -> None:
        """One iteration: drain every reader into its monitor, diagnose, notify."""
        now = time.time() if now is None else now
        # Frames received up to `latency` before the drain have surely been handed over.
        complete_until = now - READER_LATENCY_S
        for bus in list(self._buses.values()):
            batch = bus.reader.drain()
            up = bus.reader.up
            with self._lock:
                bus.monitor.set_link(up, now, bus.reader.last_error)
                bus.monitor.observe_link(getattr(bus.reader, "link_stats", None), now)
                bus.monitor.dropped = dict(bus.reader.dropped)
                bus.monitor.process(batch)
                bus.monitor.advance(now, complete_until)
            self._log_link_change(bus, up)
        warm = self._started_at is not None and now - self._started_at >= self._warmup_s
        if warm and now - self._last_diagnosis >= DIAGNOSIS_INTERVAL_S:
            self._last_diagnosis = now
            self._diagnose(now)
        mono = time.monotonic()
        if mono - self._last_status >= STATUS_INTERVAL_S:
            self._last_status = mono
            self.notifier.status(self.status_line())
        interval = self.notifier.watchdog_interval_s
        if interval is not None and mono - self._last_watchdog >= interval:
            self._last_watchdog = mono
            self.notifier.watchdog()
        self.log.flush()
        self.loop_last_run = now
        self.iterations += 1
        if self.on_step is not None:
            self.on_step(self)

    def _log_link_change(self, bus: _Bus, up: bool) -> None:
        if not up and bus.reader.last_error is None:
            return  # still opening: nothing to report yet
        if up == bus.was_up:
            if not up:
                self.log.event(
                    logging.WARNING,
                    "bus_down",
                    repeat_key=f"bus_down:{bus.config.name}",
                    bus=bus.config.name,
                    error=bus.reader.last_error,
                )
            return
        if up:
            self.log.resolved(f"bus_down:{bus.config.name}")
            self.log.info("bus_up", bus=bus.config.name, interface=bus.config.interface)
        else:
            self.log.event(
                logging.WARNING,
                "bus_down",
                repeat_key=f"bus_down:{bus.config.name}",
                bus=bus.config.name,
                interface=bus.config.interface,
                channel=bus.config.channel,
                error=bus.reader.last_error,
            )
        bus.was_up = up

    def _diagnose(self, now: float) -> None:
        if self._engine is None:
            return
        with self._lock:
            reports = [b.monitor.report(now) for b in self._buses.values()]
        modbus = [d.as_dict() for p in self._pollers for d in p.snapshot()]
        raised, cleared = self._engine.update(now, reports, modbus)
        for f in raised:
            self.log.warning(
                "finding", code=f.code, severity=f.severity, subject=f.subject, title=f.title
            )
        for f in cleared:
            self.log.info("finding_cleared", code=f.code, subject=f.subject)
        findings = tuple(
            FindingSnapshot(f.code, f.severity, f.subject) for f in self._engine.findings()
        )
        with self._lock:
            self._findings = findings

    # -- reload --------------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-read the config file; on any problem keep running the old one."""
        if self.config_path is None:
            self.log.warning("reload_ignored", reason="no config file (started without one)")
            return False
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
            engine = _diagnosis_engine(new)
            check_against_dbc(new)  # a bad DBC is a bad config: found before anything stops
        except CandiagError as err:
            self.log.error(
                "reload_failed",
                config=str(self.config_path),
                error=str(err).replace("\n", "; "),
                action="keeping the running configuration",
            )
            # READY=1 ends the "reloading" state systemd entered on RELOADING=1.
            self.notifier.ready("reload failed, old configuration kept: " + self.status_line())
            return False
        # Scrapes while the components are swapped get the last complete picture,
        # not an exposition without any bus or meter.
        frozen = self.snapshot()
        with self._lock:
            self._frozen = frozen
        try:
            self._stop_components()
            self._start_components(new)
        finally:
            with self._lock:
                self._frozen = None
        if new.metrics != self.config.metrics and self.serve_metrics:
            if self._server is not None:
                self._server.stop()
            self._server = _start_server(new, self.registry)
            self.log.info("metrics_listening", url=self._server.url)
        self.config = new
        self._engine = engine
        self.log.info("reloaded", config=new.source, buses=len(new.buses))
        self.notifier.ready(self.status_line())
        return True

    # -- state out ----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        now = time.time()
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            pollers = list(self._pollers)
        modbus = tuple(modbus_device_snapshot(d) for p in pollers for d in p.snapshot())
        with self._lock:
            buses = tuple(b.monitor.snapshot(now) for b in self._buses.values())
            findings = self._findings
        return Snapshot(
            version=__version__,
            buses=buses,
            modbus=modbus,
            findings=findings,
            loop_last_run=self.loop_last_run,
        )

    def status_line(self) -> str:
        """One line for systemd STATUS= and summaries."""
        snap = self.snapshot()
        parts = []
        for bus in snap.buses:
            if not bus.up:
                parts.append(f"{bus.name}: down")
                continue
            errors = sum(bus.error_window.get("60s", {}).values())
            up = sum(1 for n in bus.nodes if n.up)
            parts.append(
                f"{bus.name}: {bus.frames_per_second:.0f} fps, "
                f"load {100 * bus.load_ratio.get('10s', 0.0):.0f}%, {errors} err/60s, "
                f"{up}/{len(bus.nodes)} nodes"
            )
        if snap.modbus:
            up = sum(1 for d in snap.modbus if d.up)
            parts.append(f"meters {up}/{len(snap.modbus)} up")
        if snap.findings:
            parts.append(f"{len(snap.findings)} findings")
        return "; ".join(parts) or "no buses or meters configured"


def _diagnosis_engine(config: Config) -> Any:
    from candiag.diagnosis.engine import DiagnosisEngine, load_rulebook

    return DiagnosisEngine(book=load_rulebook(config.diagnosis.thresholds_file))


def _start_server(config: Config, registry: CollectorRegistry) -> Any:
    from candiag.metrics.http import start_metrics_server
    from candiag.metrics.webconfig import load_web_config

    web = config.metrics.web_config_file
    return start_metrics_server(
        config.metrics.listen, registry, load_web_config(web) if web is not None else None
    )


@contextlib.contextmanager
def signal_handlers(daemon: Daemon) -> Iterator[None]:
    """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only); restored afterwards."""

    def on_stop(signum: int, frame: FrameType | None) -> None:
        daemon.request_stop()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        daemon.request_reload()

    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in (
            (signal.SIGTERM, on_stop),
            (signal.SIGINT, on_stop),
            (signal.SIGHUP, on_hup),
        )
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_daemon(
    config: Config,
    config_path: str | os.PathLike[str] | None,
    *,
    on_started: Callable[[Daemon], None] | None = None,
    reader_factory: ReaderFactory = default_reader_factory,
) -> int:
    """Start, process until SIGTERM, stop. Returns the exit code."""
    daemon = Daemon(config, config_path=config_path, reader_factory=reader_factory)
    with signal_handlers(daemon):
        try:
            daemon.start()
            if on_started is not None:
                on_started(daemon)
            daemon.run()
        finally:
            daemon.stop()
    return 0
