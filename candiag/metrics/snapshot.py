"""A consistent, immutable picture of everything candiag exports, taken at scrape time.

The daemon's state owner builds a :class:`Snapshot` under its lock; the
collectors in :mod:`candiag.metrics.collectors` only turn it into metric
families.  Keeping the exported picture a plain value object means a scrape
never sees half an update, and collectors can be tested without a daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from candiag.health.busstate import BUS_STATES as BUS_STATES
from candiag.health.errorframes import ERROR_CLASSES as ERROR_CLASSES
from candiag.health.windows import WINDOWS

# The project-wide vocabularies: error classes and bus states are the health package's
# (re-exported for the collectors); the export-side ones are defined here.
WINDOWS_S: tuple[int, ...] = tuple(WINDOWS.values())
WINDOW_LABELS: tuple[str, ...] = tuple(WINDOWS)
FRAME_KINDS: tuple[str, ...] = ("data", "remote", "error")
DROP_SOURCES: tuple[str, ...] = ("socket", "interface")
MODBUS_FAILURE_REASONS: tuple[str, ...] = (
    "timeout",
    "crc",
    "exception",
    "wrong_device",
    "bad_reply",
    "io",
)
MAX_IDS_PER_BUS = 256
OVERFLOW_ID = "overflow"


@dataclass(frozen=True)
class SignalValue:
    """One fresh decoded signal value (stale ones are never put in a snapshot)."""

    message: str
    signal: str
    node: str  # "" when the message is not addressed
    unit: str
    value: float
    role: str = ""  # the signal's CandiagRole in the DBC ("output_voltage"), "" when none


@dataclass(frozen=True)
class NodeSnapshot:
    family: str
    node: str
    up: bool
    last_seen: float | None  # unix time of the last frame, None if never seen
    firmware: str | None


@dataclass(frozen=True)
class BusSnapshot:
    name: str
    up: bool
    state: str  # one of BUS_STATES
    frames: Mapping[str, int] = field(default_factory=dict)  # kind -> total
    id_frames: Mapping[str, int] = field(default_factory=dict)  # "0x0283F001" | overflow
    error_frames: Mapping[str, int] = field(default_factory=dict)  # class -> total
    bus_off_total: int = 0
    restarts_total: int = 0
    load_ratio: Mapping[str, float] = field(default_factory=dict)  # window label -> 0..1
    error_window: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # window -> class
    tx_errors: int | None = None
    rx_errors: int | None = None
    dropped: Mapping[str, int] = field(default_factory=dict)  # source -> total
    nodes: tuple[NodeSnapshot, ...] = ()
    firmware_mismatch: Mapping[str, bool] = field(default_factory=dict)  # family -> mismatch
    signals: tuple[SignalValue, ...] = ()
    frames_per_second: float = 0.0  # for STATUS= and summaries, not exported


@dataclass(frozen=True)
class MeterReading:
    """One meter value in base units; ``quantity`` picks the metric."""

    quantity: str  # voltage|current|power|frequency|energy|insulation|temperature
    value: float
    phase: str = ""  # l1|l2|l3|total|""
    direction: str = ""  # import|export (energy only)


@dataclass(frozen=True)
class HistogramSnapshot:
    buckets: tuple[tuple[float, int], ...]  # (upper bound, cumulative count), +Inf last
    total: float
    count: int


@dataclass(frozen=True)
class ModbusDeviceSnapshot:
    port: str
    device: str
    up: bool
    requests: int = 0
    failures: Mapping[str, int] = field(default_factory=dict)  # reason -> total
    exceptions: Mapping[str, int] = field(default_factory=dict)  # code -> total
    last_success: float | None = None
    duration: HistogramSnapshot | None = None
    readings: tuple[MeterReading, ...] = ()  # empty while the device is down


@dataclass(frozen=True)
class FindingSnapshot:
    code: str
    severity: str
    subject: str


@dataclass(frozen=True)
class Snapshot:
    version: str
    buses: tuple[BusSnapshot, ...] = ()
    modbus: tuple[ModbusDeviceSnapshot, ...] = ()
    findings: tuple[FindingSnapshot, ...] = ()
    loop_last_run: float | None = None
    config_reload_failures: int = 0  # SIGHUPs whose new config was refused since start
    config_last_reload_ok: bool = True  # False while the running config is not the file's
