"""A monitor session: the sources, one BusMonitor per bus, the diagnosis, the recording.

The analysis is the daemon's (:class:`~candiag.daemon.monitor.BusMonitor`, the
diagnosis engine, the Modbus :class:`~candiag.modbus.poller.PortPoller`, the
listen-only :class:`~candiag.ingest.live.BusReader`); this module only drives them
from the live view's loop and adds what a technician at the charger needs and the
daemon does not: resetting the counters (fresh monitors and engine, readers kept
open) and recording exactly the frames being analysed to a candump log.

The loop is not the daemon's because those two actions replace and tee its private
parts; the steps (drain, process, advance, diagnose once a second after the
warm-up) are the same and use the daemon's constants.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from candiag.capture import CandumpWriter
from candiag.capture.metadata import BusMetadata, RecordingMetadata
from candiag.capture.recorder import live_bus_metadata
from candiag.config.check import bus_database
from candiag.config.model import BusConfig, Config
from candiag.daemon.monitor import BusMonitor
from candiag.daemon.service import (
    DIAGNOSIS_INTERVAL_S,
    MAX_WARMUP_S,
    READER_LATENCY_S,
    STOP_TIMEOUT_S,
    FrameSource,
)
from candiag.decode.dbc import ChargerDatabase
from candiag.diagnosis.engine import DiagnosisEngine, Finding, load_rulebook
from candiag.diagnosis.timeline import bus_timeline
from candiag.errors import RecordingError
from candiag.ingest.frames import FrameBatch
from candiag.tui.view import KEY_ROLES, BusView, KeySignal, NodeKey, ScreenState

ReaderFactory = Callable[[BusConfig], FrameSource]
RECORD_NAME_FORMAT = "candiag-%Y%m%d-%H%M%S"
# gzip: the recording metadata rides in the header's comment, where candump readers ignore it.
RECORD_SUFFIX = ".log.gz"


def default_reader(bus: BusConfig) -> FrameSource:
    from candiag.daemon.readers import open_reader

    return open_reader(bus)


def bus_source_text(bus: BusConfig) -> str:
    """``pcan PCAN_USBBUS1 @ 250 kbit/s``."""
    return f"{bus.interface} {bus.channel} @ {bus.bitrate / 1000:g} kbit/s"


def node_key_signals(monitor: BusMonitor, now: float) -> dict[NodeKey, dict[str, KeySignal]]:
    """Per node, the fresh values of its key-role signals (stale values are left out).

    A non-addressed message of a family belongs to address 0 of that family.
    Several temperature signals on one node: the hottest is shown.
    """
    out: dict[NodeKey, dict[str, KeySignal]] = {}
    families = {m.name: m.family for m in monitor.db.messages}
    for stat in monitor.signals.fresh(monitor.as_of(now)):
        column = KEY_ROLES.get(stat.role or "")
        family = families.get(stat.message)
        if column is None or family is None or not math.isfinite(stat.last):
            continue
        columns = out.setdefault((family, max(stat.node, 0)), {})
        previous = columns.get(column)
        if previous is None or (column == "temperature" and stat.last > previous.value):
            columns[column] = KeySignal(stat.last, stat.unit)
    return out


@dataclass
class _Bus:
    config: BusConfig
    db: ChargerDatabase
    reader: FrameSource
    monitor: BusMonitor
    dropped_base: dict[str, int]


class Recording:
    """The frames the session analyses, written to one candump ``-L`` log.

    ``metadata`` (its buses' bitrates, interfaces, channels) goes into the gzip header's
    comment, so ``candiag analyze`` knows the bitrate of the recording (docs/bitrate.md).
    """

    def __init__(self, path: Path, metadata: RecordingMetadata | None = None) -> None:
        self.path = path
        self.writer = CandumpWriter(path, metadata=metadata)
        self.frames = 0

    def write(self, batch: FrameBatch) -> None:
        # Buses are drained one after the other: order the step's frames by time.
        if len(batch) > 1:
            batch = batch.take(np.argsort(batch.timestamp, kind="stable"))
        self.writer.write(batch)  # also when empty: lets the writer flush on time
        self.frames += len(batch)

    def close(self) -> None:
        self.writer.close()


def free_record_path(directory: Path, now: float) -> Path:
    """``candiag-YYYYmmdd-HHMMSS.log.gz`` in ``directory``, suffixed if that name is taken."""
    stem = time.strftime(RECORD_NAME_FORMAT, time.localtime(now))
    path = directory / f"{stem}{RECORD_SUFFIX}"
    n = 2
    while path.exists():
        path = directory / f"{stem}-{n}{RECORD_SUFFIX}"
        n += 1
    return path


class MonitorSession:
    """Everything ``candiag monitor`` analyses; call :meth:`step` at a fixed cadence."""

    def __init__(
        self,
        config: Config,
        *,
        title: str,
        reader_factory: ReaderFactory = default_reader,
        clock: Callable[[], float] = time.time,
        adapter_bitrates: Mapping[str, int | None] | None = None,
    ) -> None:
        self.config = config
        # Bus name -> the bitrate its adapter was really opened with, where that is not the
        # configured one (monitor --interface without --bitrate: the driver's default, None).
        self.adapter_bitrates = dict(adapter_bitrates or {})
        self.title = title
        self.reader_factory = reader_factory
        self.clock = clock
        self.buses: list[_Bus] = []
        self.pollers: list[Any] = []
        self.simulators: list[Any] = []
        self.engine = self._new_engine()
        self.recording: Recording | None = None
        self.started_at = clock()
        self.warm_at = self.started_at
        self._last_diagnosis = -math.inf
        self.diagnosed = False
        self.meters: list[dict[str, Any]] = []
        self.reports: dict[str, dict[str, Any]] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start simulators (demo), readers and pollers; stops what started if one fails."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        simulated_ports = self._start_simulators()
        for bus_config in self.config.buses:
            db = bus_database(bus_config)
            reader = self.reader_factory(bus_config)
            self.buses.append(_Bus(bus_config, db, reader, BusMonitor(bus_config, db), {}))
            reader.start()
        from candiag.modbus.poller import PortPoller

        for port in (*self.config.modbus_ports, *simulated_ports):
            poller = PortPoller(port)
            poller.start()
            self.pollers.append(poller)
        self._restart_clock(self.clock())

    def _start_simulators(self) -> list[Any]:
        sim = self.config.simulator
        if sim is None:
            return []
        from candiag.daemon.simulation import start_charger, start_meters

        for name in sim.buses:
            self.simulators.append(start_charger(self.config.bus(name), sim.scenario))
        if not sim.meters:
            return []
        line, port = start_meters(sim.scenario)
        self.simulators.append(line)
        return [port]

    def close(self) -> None:
        """Stop readers, pollers and simulators, and close the recording (idempotent)."""
        try:
            self.stop_recording()
        finally:
            for bus in self.buses:
                bus.reader.stop(STOP_TIMEOUT_S)
            for poller in self.pollers:
                poller.stop(STOP_TIMEOUT_S)
            for sim in reversed(self.simulators):
                with contextlib.suppress(Exception):  # best effort: demo/test only
                    sim.stop()
            self.buses.clear()
            self.pollers.clear()
            self.simulators.clear()

    def __enter__(self) -> MonitorSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop's work --------------------------------------------------------------------
    def step(self, now: float | None = None) -> tuple[list[Finding], list[Finding]]:
        """Drain every reader into its monitor (and the recording); diagnose once a second.

        Returns the findings raised and cleared by this step's diagnosis.
        """
        now = self.clock() if now is None else now
        complete_until = now - READER_LATENCY_S
        drained: list[FrameBatch] = []
        for bus in self.buses:
            batch = bus.reader.drain()
            monitor = bus.monitor
            monitor.set_link(bus.reader.up, now)
            monitor.dropped = {
                k: v - bus.dropped_base.get(k, 0) for k, v in bus.reader.dropped.items()
            }
            monitor.process(batch)
            monitor.advance(now, complete_until)
            drained.append(batch)
        self._record(drained)
        self.reports = {bus.config.name: bus.monitor.report(now) for bus in self.buses}
        self.meters = [d.as_dict() for p in self.pollers for d in p.snapshot()]
        if now >= self.warm_at and now - self._last_diagnosis >= DIAGNOSIS_INTERVAL_S:
            self._last_diagnosis = now
            self.diagnosed = True
            timelines = [bus_timeline(bus.monitor.pipeline, now) for bus in self.buses]
            raised, cleared = self.engine.update(
                now, list(self.reports.values()), self.meters, timelines
            )
            return raised, cleared
        return [], []

    def _record(self, drained: list[FrameBatch]) -> None:
        if self.recording is None:
            return
        batch = FrameBatch.concat(drained) if drained else FrameBatch.empty()
        try:
            self.recording.write(batch)
        except RecordingError:
            self._abandon_recording()
            raise

    def _abandon_recording(self) -> None:
        recording, self.recording = self.recording, None
        if recording is not None:
            with contextlib.suppress(RecordingError):  # the first error is the one to show
                recording.close()

    def reset(self, now: float | None = None) -> None:
        """Start counting afresh: new monitors and diagnosis; readers and recording go on."""
        now = self.clock() if now is None else now
        for bus in self.buses:
            bus.monitor = BusMonitor(bus.config, bus.db)
            bus.dropped_base = dict(bus.reader.dropped)
        self.engine = self._new_engine()
        self.reports = {}
        self._restart_clock(now)

    def _restart_clock(self, now: float) -> None:
        self.started_at = now
        warmup = max((bus.monitor.warmup_s() for bus in self.buses), default=0.0)
        self.warm_at = now + min(MAX_WARMUP_S, warmup)
        self._last_diagnosis = -math.inf
        self.diagnosed = False

    def _new_engine(self) -> DiagnosisEngine:
        return DiagnosisEngine(book=load_rulebook(self.config.diagnosis.thresholds_file))

    # -- recording --------------------------------------------------------------------------
    def start_recording(self, directory: Path, now: float | None = None) -> Path:
        """Record every frame analysed from now on (RecordingError if it cannot be opened)."""
        if self.recording is not None:
            return self.recording.path
        now = self.clock() if now is None else now
        if not directory.is_dir():
            raise RecordingError(
                f"{directory}: recording folder does not exist; create it or pass another "
                "--record-dir"
            )
        metadata = RecordingMetadata(tuple(self._bus_metadata(bus.config) for bus in self.buses))
        self.recording = Recording(free_record_path(directory, now), metadata)
        return self.recording.path

    def _bus_metadata(self, bus: BusConfig) -> BusMetadata:
        """What the recording can truthfully say about ``bus`` (never an assumed bitrate)."""
        sim = self.config.simulator
        if sim is not None and bus.name in sim.buses:
            # The demo's simulator spaces its frames on the wire at the configured bitrate.
            return BusMetadata(bus.channel, bus.interface, bus.bitrate, listen_only=None)
        return live_bus_metadata(
            bus.interface,
            bus.channel,
            self.adapter_bitrates.get(bus.name, bus.bitrate),
            data_bitrate=bus.data_bitrate,
            fd=bus.fd,
        )

    def stop_recording(self) -> Recording | None:
        """Close the recording; returns it (path, frames) or None if none was open."""
        recording, self.recording = self.recording, None
        if recording is not None:
            recording.close()
        return recording

    # -- what the view shows -------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        return self.engine.findings()

    def bus_views(self, now: float) -> list[BusView]:
        views = []
        for bus in self.buses:
            report = self.reports.get(bus.config.name) or bus.monitor.report(now)
            views.append(
                BusView(
                    name=bus.config.name,
                    source=bus_source_text(bus.config),
                    report=report,
                    key_signals=node_key_signals(bus.monitor, now),
                    last_error=None if bus.reader.up else bus.reader.last_error,
                )
            )
        return views

    def screen(
        self, now: float | None = None, *, paused: bool = False, message: str = ""
    ) -> ScreenState:
        now = self.clock() if now is None else now
        return ScreenState(
            now=now,
            title=self.title,
            buses=self.bus_views(now),
            meters=list(self.meters),
            findings=self.findings(),
            paused=paused,
            recording=str(self.recording.path) if self.recording else None,
            diagnosing=self.diagnosed,
            message=message,
        )

    def total_frames(self) -> int:
        return sum(sum(bus.monitor.frames.values()) for bus in self.buses)
