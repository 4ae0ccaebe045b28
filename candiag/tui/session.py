"""A monitor session: the live engine, the recording, what the view shows.

The analysis is the live engine's (:class:`~candiag.live.engine.LiveEngine`: one
:class:`~candiag.live.bus.LiveBus` per bus, the diagnosis, the Modbus pollers, the
listen-only readers), the same one ``candiag run`` runs, so the monitor sees the link
state, the kernel's TEC/REC and a PCAN bus-off exactly as the daemon does.  This module
adds what a technician at the charger needs and the daemon does not: resetting the
counters (the engine's reset hook: readers kept open, active findings kept) and
recording exactly the frames being analysed to a candump log (its tap hook).  The
display's pause (``p``) is the view's: the analysis goes on.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from candiag.capture import CandumpWriter
from candiag.capture.metadata import BusMetadata, RecordingMetadata
from candiag.capture.recorder import live_bus_metadata
from candiag.config.model import BusConfig, Config
from candiag.diagnosis.engine import DiagnosisEngine, Finding, load_rulebook
from candiag.errors import RecordingError
from candiag.health.report import BusReport
from candiag.ingest.frames import FrameBatch
from candiag.live.bus import LiveBus
from candiag.live.clock import LiveClock
from candiag.live.engine import LiveEngine, default_reader_factory
from candiag.live.readers import FrameSource, ReaderFactory
from candiag.tui.view import KEY_ROLES, BusView, KeySignal, NodeKey, ScreenState

RECORD_NAME_FORMAT = "candiag-%Y%m%d-%H%M%S"
# gzip: the recording metadata rides in the header's comment, where candump readers ignore it.
RECORD_SUFFIX = ".log.gz"


def default_reader(bus: BusConfig) -> FrameSource:
    return default_reader_factory(bus)


def bus_source_text(bus: BusConfig) -> str:
    """``pcan PCAN_USBBUS1 @ 250 kbit/s``."""
    return f"{bus.interface} {bus.channel} @ {bus.bitrate / 1000:g} kbit/s"


def node_key_signals(bus: LiveBus, now: float) -> dict[NodeKey, dict[str, KeySignal]]:
    """Per node, the fresh values of its key-role signals (stale values are left out).

    A non-addressed message of a family belongs to address 0 of that family.
    Several temperature signals on one node: the hottest is shown.
    """
    out: dict[NodeKey, dict[str, KeySignal]] = {}
    families = bus.families_by_message()
    for stat in bus.fresh_signal_stats(now):
        column = KEY_ROLES.get(stat.role or "")
        family = families.get(stat.message)
        if column is None or family is None or not math.isfinite(stat.last):
            continue
        columns = out.setdefault((family, max(stat.node, 0)), {})
        previous = columns.get(column)
        if previous is None or (column == "temperature" and stat.last > previous.value):
            columns[column] = KeySignal(stat.last, stat.unit)
    return out


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
        clock: LiveClock | None = None,
        adapter_bitrates: Mapping[str, int | None] | None = None,
    ) -> None:
        self.config = config
        # Bus name -> the bitrate its adapter was really opened with, where that is not the
        # configured one (monitor --interface without --bitrate: the driver's default, None).
        self.adapter_bitrates = dict(adapter_bitrates or {})
        self.title = title
        self.clock = clock or LiveClock()
        self.engine = LiveEngine(
            config,
            DiagnosisEngine(book=load_rulebook(config.diagnosis.thresholds_file)),
            reader_factory=reader_factory,
            clock=self.clock,
        )
        self.recording: Recording | None = None
        self.meters: list[dict[str, Any]] = []
        self.reports: dict[str, BusReport] = {}
        # Called with (bus name, batch) for every drained batch (the raw view's trackers).
        self.taps: list[Callable[[str, FrameBatch], None]] = []
        self.engine.add_tap(self._feed_taps)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start simulators (demo), readers and pollers; stops what started if one fails."""
        try:
            self.engine.start()
        except BaseException:
            self.close()
            raise

    @property
    def buses(self) -> list[LiveBus]:
        return list(self.engine.buses.values())

    @property
    def diagnosed(self) -> bool:
        """Whether the diagnosis has run since the start or the last reset."""
        return self.engine.diagnosed

    def close(self) -> None:
        """Stop readers, pollers and simulators, and close the recording (idempotent)."""
        try:
            self.stop_recording()
        finally:
            self.engine.stop()

    def __enter__(self) -> MonitorSession:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop's work --------------------------------------------------------------------
    def _feed_taps(self, drained: Sequence[FrameBatch]) -> None:
        for name, batch in zip(self.engine.buses, drained, strict=True):
            for tap in self.taps:
                tap(name, batch)

    def step(self, now: float | None = None) -> tuple[list[Finding], list[Finding]]:
        """One engine step (drain, record, diagnose once a second); refresh the figures.

        Returns the findings raised and cleared by this step's diagnosis.
        """
        result = self.engine.step(now)
        self.reports = self.engine.reports(result.now)
        self.meters = self.engine.meters()
        return result.raised, result.cleared

    def reset(self, now: float | None = None) -> None:
        """Start counting afresh; readers, recording and active findings go on."""
        self.engine.reset(now)
        self.reports = {}

    # -- recording --------------------------------------------------------------------------
    def start_recording(self, directory: Path, now: float | None = None) -> Path:
        """Record every frame analysed from now on (RecordingError if it cannot be opened)."""
        if self.recording is not None:
            return self.recording.path
        now = self.clock.wall() if now is None else now
        if not directory.is_dir():
            raise RecordingError(
                f"{directory}: recording folder does not exist; create it or pass another "
                "--record-dir"
            )
        metadata = RecordingMetadata(tuple(self._bus_metadata(bus) for bus in self.config.buses))
        self.recording = Recording(free_record_path(directory, now), metadata)
        self.engine.add_tap(self._record)
        return self.recording.path

    def _record(self, drained: Sequence[FrameBatch]) -> None:
        if self.recording is None:
            return
        batch = FrameBatch.concat(list(drained)) if drained else FrameBatch.empty()
        try:
            self.recording.write(batch)
        except RecordingError:
            self._abandon_recording()
            raise

    def _abandon_recording(self) -> None:
        self.engine.remove_tap(self._record)
        recording, self.recording = self.recording, None
        if recording is not None:
            with contextlib.suppress(RecordingError):  # the first error is the one to show
                recording.close()

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
        self.engine.remove_tap(self._record)
        recording, self.recording = self.recording, None
        if recording is not None:
            recording.close()
        return recording

    # -- what the view shows -------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        return self.engine.active_findings()

    def bus_views(self, now: float) -> list[BusView]:
        return engine_bus_views(self.engine, now, self.reports)

    def screen(
        self, now: float | None = None, *, paused: bool = False, message: str = ""
    ) -> ScreenState:
        """One frame of the view (``paused``: the display's pause; the analysis goes on)."""
        now = self.clock.now() if now is None else now
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
        return sum(sum(bus.frames.values()) for bus in self.buses)


def engine_bus_views(
    engine: LiveEngine, now: float, reports: Mapping[str, BusReport] | None = None
) -> list[BusView]:
    """What the view shows of each bus of a running engine (the monitor's and the demo's)."""
    reports = reports or engine.reports(now)
    return [
        BusView(
            name=name,
            source=bus_source_text(bus.config),
            report=reports.get(name) or bus.report(now),
            key_signals=node_key_signals(bus, now),
            last_error=bus.last_error,
        )
        for name, bus in engine.buses.items()
    ]
