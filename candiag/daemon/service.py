"""The daemon (``candiag run``): readers, pollers, one processing loop, /metrics, systemd.

Threads: one reader per CAN bus (:mod:`candiag.ingest.live`) and one poller per
Modbus port (:mod:`candiag.modbus.poller`) fill their own buffers; ONE processing
loop (the thread that calls :meth:`Daemon.run`) drains the readers every
``processing_interval_s`` and folds the batches into each bus's
:class:`~candiag.daemon.monitor.BusMonitor`, runs the diagnosis once a second and
pings the systemd watchdog.  The ping comes from this loop on purpose: it proves
the work advances (docs/standards.md §2), not merely that a timer fires.

A scrape takes :meth:`Daemon.snapshot` under the state lock, so it always sees
whole batches.  Link faults never end the daemon: a missing or lost interface is
``down`` and its reader reconnects with backoff.

Signals: SIGTERM/SIGINT stop within seconds; SIGHUP reloads.  Only a stop ends the loop:
a SIGHUP during a reload asks for exactly one more reload after it (any number of them
coalesce), so ``systemctl reload`` twice in quick succession never stops monitoring.
The handlers only set flags (taking a lock in a signal handler can deadlock the thread
it interrupts); the loop's wait looks at them every ``SIGNAL_POLL_S``.

Reloads: the new config and every file it names (DBCs, thresholds, meter profiles, the
metrics web config) are loaded and checked before anything running is touched
(:func:`prepare_config`); whatever goes wrong, the problem is logged as one line naming
the file, counted (``candiag_config_reload_failures_total``) and the old configuration
keeps running.  The same loader at start turns a bad file into a clean error exit.

Time: everything live runs on :class:`~candiag.daemon.clock.LiveClock` (monotonic, on the
wall clock's scale), so a step of the wall clock changes no window, timeout or finding;
exported timestamps are wall-clock times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from candiag import __version__
from candiag.config.check import bus_database, check_config, load_and_check, loading
from candiag.config.model import BusConfig, Config
from candiag.daemon.adapters import modbus_device_snapshot
from candiag.daemon.clock import LiveClock
from candiag.daemon.logging import EventLog
from candiag.daemon.monitor import BusMonitor
from candiag.daemon.notify import Notifier
from candiag.diagnosis.timeline import bus_timeline
from candiag.errors import CandiagError, one_line
from candiag.ingest.frames import FrameBatch
from candiag.metrics.collectors import CandiagCollector
from candiag.metrics.snapshot import FindingSnapshot, Snapshot

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase
    from candiag.metrics.webconfig import WebConfig

T = TypeVar("T")

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
# How often the loop's wait looks at the flags a signal handler sets (stop latency).
SIGNAL_POLL_S = 0.05
# Longest reason quoted from an exception in a log line or error message.
MAX_REASON_CHARS = 500


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


# -- loading a configuration and every file it names -------------------------------------
@dataclass(frozen=True)
class PreparedConfig:
    """A config with every file it names loaded and checked: all a (re)start needs."""

    config: Config
    databases: Mapping[str, ChargerDatabase]
    engine: Any  # candiag.diagnosis.engine.DiagnosisEngine
    web: WebConfig | None


def prepare(config: Config) -> PreparedConfig:
    """Load and check every file ``config`` names, as ``check-config`` does
    (:func:`candiag.config.check.check_config`)."""
    from candiag.diagnosis.engine import DiagnosisEngine

    checked = check_config(config)
    return PreparedConfig(
        config, checked.databases, DiagnosisEngine(book=checked.rulebook), checked.web
    )


def prepare_config(path: str | os.PathLike[str]) -> PreparedConfig:
    """Read the config file (meter profiles included) and :func:`prepare` it.

    Raises :class:`ConfigError` (or another :class:`CandiagError`) naming the file and
    what is wrong, whatever the loaders raised.
    """
    from candiag.diagnosis.engine import DiagnosisEngine

    checked = load_and_check(path)
    return PreparedConfig(
        checked.config, checked.databases, DiagnosisEngine(book=checked.rulebook), checked.web
    )


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
        prepared: PreparedConfig | None = None,
        clock: LiveClock | None = None,
    ) -> None:
        self.config = config
        self.config_path = Path(config_path) if config_path is not None else None
        self.notifier = notifier or Notifier()
        self.log = log or EventLog()
        self.reader_factory = reader_factory
        self.serve_metrics = serve_metrics
        self.on_step = on_step
        self.clock = clock or LiveClock()
        self.registry = CollectorRegistry()
        self.registry.register(CandiagCollector(self.snapshot))
        self._prepared = prepared
        self._lock = threading.Lock()
        # Plain flags: signal handlers set them (see _wait).
        self._stop_requested = False
        self._reload_requested = False
        self._buses: dict[str, _Bus] = {}
        self._pollers: list[Any] = []
        self._simulators: list[Any] = []
        self._server: Any = None
        self._engine: Any = None
        self._findings: tuple[FindingSnapshot, ...] = ()
        self._frozen: Snapshot | None = None  # served while a reload swaps components
        self.loop_last_run: float | None = None  # live time (exported as wall time)
        self.iterations = 0
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload_ok = True
        self._last_diagnosis = 0.0
        self._started_at: float | None = None
        self._warmup_s = 0.0
        self._last_status = 0.0
        self._last_watchdog = 0.0
        self._clock_steps: dict[str, int] = {}

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
        prepared = self._prepared or prepare(self.config)
        self._prepared = prepared
        self._engine = prepared.engine
        if self.serve_metrics:
            # First, so a busy port fails before any thread starts.
            self._server = _start_server(prepared, self.registry)
            self.log.info("metrics_listening", url=self._server.url)
        self._start_components(prepared)
        self.log.info(
            "started",
            version=__version__,
            config=self.config.source,
            buses=len(self.config.buses),
            modbus_ports=len(self._pollers),
        )
        self.notifier.ready(self.status_line())

    def _start_components(self, prepared: PreparedConfig) -> None:
        """Start readers, simulators and pollers; publish them to scrapes in one step.

        If anything fails, what was started is stopped again before the error propagates.
        """
        config = prepared.config
        buses: dict[str, _Bus] = {}
        pollers: list[Any] = []
        simulators: list[Any] = []
        try:
            simulated_ports = self._start_meter_simulator(config, simulators)
            warmup = 0.0
            for bus_config in config.buses:
                db = prepared.databases.get(bus_config.name)
                if db is None:
                    db = bus_database(bus_config)
                monitor = BusMonitor(bus_config, db, clock=self.clock)
                warmup = max(warmup, min(MAX_WARMUP_S, monitor.warmup_s()))
                reader = self.reader_factory(bus_config)
                buses[bus_config.name] = _Bus(bus_config, monitor, reader)
                reader.start()
                if bus_config.receive_only and not bus_config.listen_only:
                    self.log.info(
                        "receive_only",
                        bus=bus_config.name,
                        interface=bus_config.interface,
                        note="interface has no listen-only mode; candiag never transmits",
                    )
            self._start_charger_simulators(config, buses, simulators)
            from candiag.modbus.poller import PortPoller

            for port in (*config.modbus_ports, *simulated_ports):
                # Live clock: a reading's freshness must not follow a step of the wall clock.
                poller = PortPoller(port, clock=self.clock.now)
                pollers.append(poller)
                poller.start()
        except BaseException:
            _stop_parts(buses.values(), pollers, simulators)
            raise
        with self._lock:
            self._buses = buses
            self._pollers = pollers
            self._simulators = simulators
            self._started_at = self.clock.now()
            self._warmup_s = warmup
        self._clock_steps = {}

    def _start_meter_simulator(self, config: Config, simulators: list[Any]) -> list[Any]:
        """The in-process simulated meters of a ``[simulator]`` section (their port)."""
        sim = config.simulator
        if sim is None or not sim.meters:
            return []
        from candiag.daemon.simulation import start_meters

        line, port = start_meters(sim.scenario)
        simulators.append(line)
        return [port]

    def _start_charger_simulators(
        self, config: Config, buses: Mapping[str, _Bus], simulators: list[Any]
    ) -> None:
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
            simulators.append(start_charger(config.bus(name), sim.scenario))

    def _stop_components(self) -> None:
        """Withdraw readers, pollers and simulators from scrapes, then stop them (unlocked)."""
        with self._lock:
            buses, self._buses = self._buses, {}
            pollers, self._pollers = self._pollers, []
            simulators, self._simulators = self._simulators, []
        _stop_parts(buses.values(), pollers, simulators)

    def stop(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping")
        self._stop_components()
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.log.info("stopped")

    def request_stop(self) -> None:
        """End :meth:`run` (SIGTERM, SIGINT; safe from a signal handler and any thread)."""
        self._stop_requested = True

    def request_reload(self) -> None:
        """Reload once the current step or reload is done (SIGHUP; requests coalesce)."""
        self._reload_requested = True

    @property
    def stopping(self) -> bool:
        return self._stop_requested

    # -- the processing loop -------------------------------------------------------------
    def run(self) -> None:
        """Process until stopped (SIGTERM), reloading on request (SIGHUP)."""
        while not self._stop_requested:
            started = time.monotonic()
            self.step()
            if self._stop_requested:
                break
            if self._reload_requested:
                # Cleared first: a SIGHUP during this reload asks for exactly one more.
                self._reload_requested = False
                self.reload()
                continue
            self._wait(started + self.config.daemon.processing_interval_s)

    def _wait(self, deadline: float) -> None:
        """Sleep until ``deadline`` (monotonic) or a stop/reload request.

        Polls plain flags: a handler that set a threading.Event would take the Event's lock,
        and deadlock when the signal interrupted this thread while it held that lock.
        """
        while not (self._stop_requested or self._reload_requested):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, SIGNAL_POLL_S))

    def step(self, now: float | None = None) -> None:
        """One iteration: drain every reader into its monitor, diagnose, notify.

        ``now``: live time (:class:`LiveClock`), by default the daemon clock's.
        """
        now = self.clock.now() if now is None else now
        # Frames received up to `latency` before the drain have surely been handed over.
        complete_until = now - READER_LATENCY_S
        for bus in list(self._buses.values()):
            batch = bus.reader.drain()
            up = bus.reader.up
            with self._lock:
                bus.monitor.set_link(up, now, bus.reader.last_error)
                bus.monitor.observe_link(getattr(bus.reader, "link_stats", None), now)
                bus.monitor.dropped = dict(bus.reader.dropped)
                bus.monitor.process(batch, now)
                bus.monitor.advance(now, complete_until)
            self._log_link_change(bus, up)
            self._log_clock_step(bus)
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

    def _log_clock_step(self, bus: _Bus) -> None:
        times = bus.monitor.frame_times
        name = bus.config.name
        if times.steps == self._clock_steps.get(name, 0):
            return
        self._clock_steps[name] = times.steps
        self.log.event(
            logging.WARNING if abs(times.last_step_s) >= 60 else logging.INFO,
            "frame_clock_step",
            repeat_key=f"frame_clock_step:{name}",
            bus=name,
            seconds=round(times.last_step_s, 3),
            note="frame timestamps re-anchored to their arrival; live windows unaffected",
        )

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
            timelines = [bus_timeline(b.monitor.pipeline, now) for b in self._buses.values()]
        modbus = [d.as_dict() for p in self._pollers for d in p.snapshot()]
        raised, cleared = self._engine.update(now, reports, modbus, timelines)
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
        """Re-read the config file; on any problem keep running the old one.

        Everything the new config names is loaded and checked first; only then are the
        metrics endpoint (when its address or web config changed) and the buses, pollers
        and simulators swapped.  Should starting the new ones fail, the old ones are
        started again.
        """
        if self.config_path is None:
            self.log.warning("reload_ignored", reason="no config file (started without one)")
            return False
        self.notifier.reloading()
        try:
            prepared = prepare_config(self.config_path)
        except CandiagError as err:
            return self._reload_failed(err, getattr(err, "path", None))
        old = self._prepared
        assert old is not None, "reload before start"
        try:
            self._apply(prepared, old)
        except _RestoreFailed:
            raise  # neither config runs: end with an error, so systemd restarts the service
        except CandiagError as err:
            return self._reload_failed(err, getattr(err, "path", None))
        except Exception as err:  # applying: a failure must leave the old config running
            reason = one_line(f"{type(err).__name__}: {err}")
            return self._reload_failed(reason, None)
        self.config = prepared.config
        self._prepared = prepared
        self._engine = prepared.engine
        self.reloads += 1
        self.last_reload_ok = True
        self.log.info("reloaded", config=prepared.config.source, buses=len(prepared.config.buses))
        self.notifier.ready(self.status_line())
        return True

    def _apply(self, new: PreparedConfig, old: PreparedConfig) -> None:
        """Swap the running parts to ``new``; on failure the ``old`` ones run again."""
        server_changed = self.serve_metrics and (
            new.config.metrics.listen != old.config.metrics.listen
            or new.web is not None
            or old.web is not None  # same path, new content (a renewed certificate)
        )
        if server_changed:
            self._swap_server(new, old)
        # Scrapes while the components are swapped get the last complete picture,
        # not an exposition without any bus or meter.
        frozen = self.snapshot()
        with self._lock:
            self._frozen = frozen
        try:
            self._stop_components()
            try:
                self._start_components(new)
            except Exception:
                with _restoring("the buses, pollers and simulators"):
                    self._start_components(old)
                if server_changed:
                    with _restoring("the metrics endpoint"):
                        self._swap_server(old, new)
                raise
        finally:
            with self._lock:
                self._frozen = None

    def _swap_server(self, new: PreparedConfig, old: PreparedConfig) -> None:
        """The metrics endpoint of ``new``; the one of ``old`` keeps serving if it cannot start."""
        previous = self._server
        if new.config.metrics.listen != old.config.metrics.listen or previous is None:
            self._server = _start_server(new, self.registry)  # raises: the old one serves on
            if previous is not None:
                previous.stop()
        else:  # the same address: the old listener must go first
            previous.stop()
            try:
                self._server = _start_server(new, self.registry)
            except Exception:
                with _restoring("the metrics endpoint"):
                    self._server = _start_server(old, self.registry)
                raise
        self.log.info("metrics_listening", url=self._server.url)

    def _reload_failed(self, err: CandiagError | str, file: str | None) -> bool:
        self.reload_failures += 1
        self.last_reload_ok = False
        self.log.error(
            "reload_failed",
            config=str(self.config_path),
            file=file if file and file != str(self.config_path) else None,
            error=one_line(str(err), 4 * MAX_REASON_CHARS),
            action="keeping the running configuration",
        )
        # READY=1 ends the "reloading" state systemd entered on RELOADING=1.
        self.notifier.ready("reload failed, old configuration kept: " + self.status_line())
        return False

    # -- state out ----------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        now = self.clock.now()
        to_wall = self.clock.wall_offset()
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            pollers = list(self._pollers)
        modbus = tuple(
            _wall_modbus(modbus_device_snapshot(d), to_wall) for p in pollers for d in p.snapshot()
        )
        with self._lock:
            buses = tuple(b.monitor.snapshot(now) for b in self._buses.values())
            findings = self._findings
        last_run = self.loop_last_run
        return Snapshot(
            version=__version__,
            buses=buses,
            modbus=modbus,
            findings=findings,
            loop_last_run=None if last_run is None else last_run - to_wall,
            config_reload_failures=self.reload_failures,
            config_last_reload_ok=self.last_reload_ok,
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


class _RestoreFailed(RuntimeError):
    """A reload failed and the old configuration could not be started again either."""


@contextlib.contextmanager
def _restoring(what: str) -> Iterator[None]:
    try:
        yield
    except Exception as err:
        raise _RestoreFailed(
            f"reload failed and {what} of the old configuration did not start again: {err}"
        ) from err


def _stop_parts(buses: Iterable[_Bus], pollers: Iterable[Any], simulators: list[Any]) -> None:
    """Stop readers, pollers, then simulators (newest first)."""
    for bus in buses:
        bus.reader.stop(STOP_TIMEOUT_S)
    for poller in pollers:
        poller.stop(STOP_TIMEOUT_S)
    for sim in reversed(simulators):
        with contextlib.suppress(Exception):  # best effort: the sim is test/demo only
            sim.stop()


def _wall_modbus(dev: Any, live_minus_wall: float) -> Any:
    """A Modbus device snapshot with its live-clock times as wall-clock times."""
    if dev.last_success is None or not live_minus_wall:
        return dev
    return dataclasses.replace(dev, last_success=dev.last_success - live_minus_wall)


def _start_server(prepared: PreparedConfig, registry: CollectorRegistry) -> Any:
    from candiag.metrics.http import start_metrics_server

    web = prepared.config.metrics.web_config_file
    return loading(
        web or prepared.config.source,
        "the metrics endpoint",
        lambda: start_metrics_server(prepared.config.metrics.listen, registry, prepared.web),
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
    prepared: PreparedConfig | None = None,
) -> int:
    """Start, process until SIGTERM, stop. Returns the exit code."""
    daemon = Daemon(
        config, config_path=config_path, reader_factory=reader_factory, prepared=prepared
    )
    with signal_handlers(daemon):
        try:
            daemon.start()
            if on_started is not None:
                on_started(daemon)
            daemon.run()
        finally:
            daemon.stop()
    return 0
