"""The configuration model: frozen dataclasses, typed all the way down.

What :func:`candiag.config.load.load_config` returns and every part of candiag reads
(``run``, ``monitor``, ``demo``, ``analyze --config``).  The schema of each key is
documented in ``config/candiag.example.toml``; the Modbus port and device tables are
:class:`~candiag.modbus.config.PortConfig` and :class:`~candiag.modbus.config.DeviceConfig`.

Safety defaults live here: buses are listen-only, metrics bind to 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from candiag.config.listen import DEFAULT_HOST, DEFAULT_PORT
from candiag.config.problems import Positions
from candiag.health.bitrate import DEFAULT_BITRATE
from candiag.modbus.config import PortConfig

DEFAULT_PROCESSING_INTERVAL_S = 0.25
LOG_LEVELS = ("debug", "info", "warning", "error")

# Interfaces candiag opens in listen-only mode (the switches are listed in
# candiag.ingest.live.LISTEN_ONLY_KWARGS; e.g. pcan: state=BusState.PASSIVE sets
# PCAN_LISTEN_ONLY; docs/security.md).  Kept here as names so reading a config does not
# import python-can's backends; a test keeps both lists equal.  On every other interface
# listen-only is not an application setting (SocketCAN: the link's ``ListenOnly=yes`` in
# systemd/80-can0.network); candiag is then "receive only, never transmits", whatever
# ``listen_only`` says.
LISTEN_ONLY_INTERFACES = frozenset(
    {"pcan", "kvaser", "vector", "slcan", "nixnet", "seeedstudio", "cantact"}
)


@dataclass(frozen=True)
class FamilyConfig:
    """Expectations for one node family on one bus (``[[can.buses.families]]``)."""

    name: str
    mask: int | None = None  # None: the mask from the DBC (CandiagNodeMask)
    expected: tuple[int, ...] = ()  # node addresses that must be present
    timeout_s: float | None = None  # None: 3 x the family's shortest cycle time
    allowed_firmware: tuple[str, ...] = ()  # empty: any version, only mismatches flagged


@dataclass(frozen=True)
class BusConfig:
    """One CAN bus (``[[can.buses]]``)."""

    name: str
    interface: str
    channel: str
    bitrate: int = DEFAULT_BITRATE
    data_bitrate: int | None = None
    fd: bool = False
    listen_only: bool = True
    dbc: tuple[Path, ...] = ()  # empty: the reference DBCs shipped with candiag
    families: tuple[FamilyConfig, ...] = ()
    # False when the file does not set ``bitrate`` (the default is filled in): an offline
    # analysis must not present the default as the bus's known bitrate.
    bitrate_set: bool = True
    dbc_strict: bool = False  # refuse DBCs cantools' strict mode refuses (docs/dbc.md)

    @property
    def receive_only(self) -> bool:
        """True where listen-only is not an application setting (see LISTEN_ONLY_INTERFACES)."""
        return self.interface not in LISTEN_ONLY_INTERFACES


@dataclass(frozen=True)
class MetricsConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    web_config_file: Path | None = None

    @property
    def listen(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"


@dataclass(frozen=True)
class DiagnosisConfig:
    thresholds_file: Path | None = None


@dataclass(frozen=True)
class DaemonConfig:
    processing_interval_s: float = DEFAULT_PROCESSING_INTERVAL_S


@dataclass(frozen=True)
class SimulatorConfig:
    """In-process simulated charger: only for ``candiag demo`` and tests.

    The named buses must use ``interface = "virtual"``: the simulator transmits on
    that in-process channel and the daemon's readers listen to it.
    """

    buses: tuple[str, ...]
    scenario: str = "healthy"
    meters: bool = False  # also start simulated Modbus meters on pseudo-terminals


@dataclass(frozen=True)
class Config:
    """A complete, validated configuration."""

    source: str = "<defaults>"
    buses: tuple[BusConfig, ...] = ()
    modbus_ports: tuple[PortConfig, ...] = ()
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    simulator: SimulatorConfig | None = None
    # Where each key is in the file (line, column): the checks after loading
    # (candiag.config.check) place their problems with it.
    positions: Positions = field(default_factory=dict, compare=False, repr=False)

    def bus(self, name: str) -> BusConfig:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)

    @property
    def modbus_device_count(self) -> int:
        return sum(len(port.devices) for port in self.modbus_ports)

    def summary(self) -> str:
        """One line, e.g. ``2 buses, 3 Modbus devices``."""
        nb, nd = len(self.buses), self.modbus_device_count
        return f"{nb} bus{'es' if nb != 1 else ''}, {nd} Modbus device{'s' if nd != 1 else ''}"
