"""The daemon (``candiag run``): the live engine as a systemd service with /metrics.

The work is the live engine's (:class:`~candiag.live.engine.LiveEngine`: one reader per
CAN bus, one poller per Modbus port, one :class:`~candiag.live.bus.LiveBus` per bus, the
diagnosis once a second), the same one ``candiag monitor`` and ``candiag demo`` run.
This module adds what makes it a service: ONE processing loop (the thread that calls
:meth:`Daemon.run`) steps the engine every ``processing_interval_s``, logs link changes
and findings, and pings the systemd watchdog.  The ping comes from this loop on purpose:
it proves the work advances (docs/standards.md §2), not merely that a timer fires.

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

Time: everything live runs on :class:`~candiag.live.clock.LiveClock` (monotonic, on the
wall clock's scale), so a step of the wall clock changes no window, timeout or finding;
exported timestamps are wall-clock times.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry

from candiag import __version__
from candiag.config.check import loading
from candiag.config.model import Config
from candiag.daemon.logging import EventLog
from candiag.daemon.notify import Notifier
from candiag.daemon.prepared import PreparedConfig, prepare, prepare_config
from candiag.errors import CandiagError, one_line
from candiag.live.bus import LiveBus
from candiag.live.clock import LiveClock
from candiag.live.engine import LiveEngine, default_reader_factory
from candiag.live.readers import ReaderFactory
from candiag.metrics.collectors import CandiagCollector
from candiag.metrics.liveness import LivenessCollector
from candiag.metrics.snapshot import Snapshot

__all__ = [
    "Daemon",
    "PreparedConfig",
    "default_reader_factory",
    "prepare",
    "prepare_config",
    "run_daemon",
    "signal_handlers",
]

STATUS_INTERVAL_S = 10.0
# How often the loop's wait looks at the flags a signal handler sets (stop latency).
SIGNAL_POLL_S = 0.05
# Longest reason quoted from an exception in a log line or error message.
MAX_REASON_CHARS = 500


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
        self.registry.register(LivenessCollector(self.liveness_reports))  # candiag/liveness
        self._prepared = prepared
        # Plain flags: signal handlers set them (see _wait).
        self._stop_requested = False
        self._reload_requested = False
        self.engine: LiveEngine | None = None
        self._server: Any = None
        self.loop_last_run: float | None = None  # live time (exported as wall time)
        self.iterations = 0
        self.reloads = 0
        self.reload_failures = 0
        self.last_reload_ok = True
        self._last_status = 0.0
        self._last_watchdog = 0.0
        self._was_up: dict[str, bool] = {}
        self._clock_steps: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def monitors(self) -> dict[str, LiveBus]:
        """The live buses by bus name (read them under no lock only when stopped)."""
        return {} if self.engine is None else dict(self.engine.buses)

    @property
    def metrics_url(self) -> str | None:
        return None if self._server is None else str(self._server.url)

    def start(self) -> None:
        """Open everything; link faults are reported, never raised (config errors are)."""
        prepared = self._prepared or prepare(self.config)
        self._prepared = prepared
        if self.serve_metrics:
            # First, so a busy port fails before any thread starts.
            self._server = _start_server(prepared, self.registry)
            self.log.info("metrics_listening", url=self._server.url)
        self._start_engine(prepared)
        self.log.info(
            "started",
            version=__version__,
            config=self.config.source,
            buses=len(self.config.buses),
            modbus_ports=len(self.engine.pollers) if self.engine else 0,
        )
        self.notifier.ready(self.status_line())

    def _start_engine(self, prepared: PreparedConfig) -> None:
        """A live engine for ``prepared``, started, then published to scrapes in one step."""
        engine = LiveEngine(
            prepared.config,
            prepared.engine,
            databases=prepared.databases,
            reader_factory=self.reader_factory,
            clock=self.clock,
        )
        engine.start()
        for bus in prepared.config.buses:
            if bus.receive_only and not bus.listen_only:
                self.log.info(
                    "receive_only",
                    bus=bus.name,
                    interface=bus.interface,
                    note="interface has no listen-only mode; candiag never transmits",
                )
        self.engine = engine
        self._was_up = {}
        self._clock_steps = {}

    def _stop_engine(self) -> None:
        """Withdraw the engine from scrapes, then stop its parts."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.stop()

    def stop(self) -> None:
        self.notifier.stopping()
        self.log.info("stopping")
        self._stop_engine()
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
        """One iteration: step the engine, log what changed, notify systemd.

        ``now``: live time (:class:`LiveClock`), by default the daemon clock's.
        """
        now = self.clock.now() if now is None else now
        engine = self.engine
        if engine is not None:
            result = engine.step(now)
            for bus in list(engine.buses.values()):
                self._log_link_change(bus)
                self._log_clock_step(bus)
            for f in result.raised:
                self.log.warning(
                    "finding", code=f.code, severity=f.severity, subject=f.subject, title=f.title
                )
            for f in result.cleared:
                self.log.info("finding_cleared", code=f.code, subject=f.subject)
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

    def _log_clock_step(self, bus: LiveBus) -> None:
        times = bus.frame_times
        name = bus.name
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

    def _log_link_change(self, bus: LiveBus) -> None:
        up, error, name = bus.up, bus.last_error, bus.name
        if not up and error is None:
            return  # still opening: nothing to report yet
        if up == self._was_up.get(name):
            if not up:
                self.log.event(
                    logging.WARNING,
                    "bus_down",
                    repeat_key=f"bus_down:{name}",
                    bus=name,
                    error=error,
                )
            return
        if up:
            self.log.resolved(f"bus_down:{name}")
            self.log.info("bus_up", bus=name, interface=bus.config.interface)
        else:
            self.log.event(
                logging.WARNING,
                "bus_down",
                repeat_key=f"bus_down:{name}",
                bus=name,
                interface=bus.config.interface,
                channel=bus.config.channel,
                error=error,
            )
        self._was_up[name] = up

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
        # Scrapes while the engines are swapped get the old one's last complete picture
        # (paused: it stays through its stop), not an exposition without any bus or meter.
        previous = self.engine
        assert previous is not None, "reload before start"
        previous.pause()
        previous.stop()
        try:
            self._start_engine(new)
        except Exception:
            with _restoring("the buses, pollers and simulators"):
                self._start_engine(old)
            if server_changed:
                with _restoring("the metrics endpoint"):
                    self._swap_server(old, new)
            raise
        finally:
            assert self.engine is not None
            # Until its first diagnosis the new engine exports the findings last known.
            self.engine.findings = previous.findings

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
    def liveness_reports(self) -> dict[str, dict[str, Any]]:
        """Each bus's request/response liveness report (candiag/liveness), for the metrics."""
        engine = self.engine
        if engine is None:
            return {}
        now = self.clock.now()
        with engine.lock:
            return {
                name: b.pipeline.liveness.report(now)
                for name, b in engine.buses.items()
                if b.pipeline.liveness.active
            }

    def snapshot(self) -> Snapshot:
        engine = self.engine
        to_wall = self.clock.wall_offset()
        last_run = self.loop_last_run
        return Snapshot(
            version=__version__,
            buses=engine.bus_snapshots() if engine else (),
            modbus=engine.modbus_snapshots() if engine else (),
            findings=engine.findings if engine else (),
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
    """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only); restored afterwards.

    ``candiag demo`` runs this on Windows too: there Ctrl-Break (SIGBREAK) also stops and
    there is no SIGHUP (and no reload)."""
    from candiag.stopsignals import stop_signals

    def on_stop(signum: int, frame: FrameType | None) -> None:
        daemon.request_stop()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        daemon.request_reload()

    handlers: list[tuple[signal.Signals, Callable[[int, FrameType | None], None]]] = [
        (sig, on_stop) for sig in stop_signals()
    ]
    hangup = getattr(signal, "SIGHUP", None)  # POSIX only
    if hangup is not None:
        handlers.append((hangup, on_hup))
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers}
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
