"""The candiag configuration file: TOML in, validated frozen dataclasses out.

Owns the schema of ``candiag.toml`` (documented key by key in
``config/candiag.example.toml``) and its validation.  Validation collects *every*
problem, each naming its key path (``can.buses[1].bitrate``), what was expected
and what was found, and raises one :class:`~candiag.errors.ConfigError` listing
them all, so one ``candiag check-config`` run shows everything to fix.

We validate by hand instead of using a schema library: the checks are few,
the messages must name key paths the way the example file does, and the project
keeps its dependency list short.

Safety defaults live here: buses are listen-only, metrics bind to 127.0.0.1.
The Modbus section is validated by :mod:`candiag.modbus.config` (owned by the
Modbus code) when that module is importable; the structure around it (ports
are tables, devices are tables) is checked here either way.
"""

from __future__ import annotations

import collections
import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candiag.errors import ConfigError
from candiag.health.bitrate import DEFAULT_BITRATE
from candiag.tomlfile import oversized_integers, toml_syntax_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_LISTEN = "127.0.0.1:9847"
DEFAULT_PROCESSING_INTERVAL_S = 0.25
LOG_LEVELS = ("debug", "info", "warning", "error")

# Interfaces candiag opens in listen-only mode (the switches are listed in
# candiag.ingest.live.LISTEN_ONLY_KWARGS; e.g. pcan: state=BusState.PASSIVE sets
# PCAN_LISTEN_ONLY, docs/can-errors.md §4.2).  Kept here as names so validating a config
# does not import python-can's backends; a test keeps both lists equal.  On every
# other interface listen-only is not an application setting (SocketCAN: the link's
# `ListenOnly=` in systemd-networkd, docs/standards.md §3); candiag is then
# "receive only, never transmits", whatever `listen_only` says.
LISTEN_ONLY_INTERFACES = frozenset(
    {"pcan", "kvaser", "vector", "slcan", "nixnet", "seeedstudio", "cantact"}
)

# 29-bit identifier space: the largest meaningful node mask.
MAX_MASK = 0x1FFFFFFF
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
# At most 10 digits a side: addresses are 29-bit, and int() refuses 4300+ digit strings.
_RANGE_RE = re.compile(r"^\s*(\d{1,10})\s*-\s*(\d{1,10})\s*$")
_LISTEN_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>\d+)$")


# -- the configuration model ----------------------------------------------------------
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
    host: str = "127.0.0.1"
    port: int = 9847
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
    modbus_ports: tuple[Any, ...] = ()  # candiag.modbus.config.PortConfig when available
    modbus_raw: tuple[Mapping[str, Any], ...] = ()  # the raw [[modbus.ports]] tables
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    simulator: SimulatorConfig | None = None

    def bus(self, name: str) -> BusConfig:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)

    @property
    def modbus_device_count(self) -> int:
        return sum(len(_as_list(raw.get("devices"))) for raw in self.modbus_raw)

    def summary(self) -> str:
        """One line, e.g. ``2 buses, 3 Modbus devices``."""
        nb, nd = len(self.buses), self.modbus_device_count
        return f"{nb} bus{'es' if nb != 1 else ''}, {nd} Modbus device{'s' if nd != 1 else ''}"


# -- loading ----------------------------------------------------------------------------
def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; :class:`ConfigError` lists every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: file not found; pass the path of a candiag TOML config "
            "(see config/candiag.example.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: cannot read the file ({err}); check its permissions") from None
    return parse_config_text(text, source=str(p), base_dir=p.parent)


def parse_config_text(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_syntax_problem(source, err)) from None
    except ValueError as err:  # tomllib lets int()'s 4300-digit limit through
        raise ConfigError(
            f"{source}: TOML value cannot be read ({err}); TOML integers are 64-bit, fix the value"
        ) from None
    return parse_config(data, source=source, base_dir=base_dir or Path.cwd())


def parse_config(
    data: Mapping[str, Any], source: str = "<mapping>", base_dir: Path | None = None
) -> Config:
    """Validate an already parsed TOML document (paths resolve against ``base_dir``)."""
    v = _Validator(base_dir or Path.cwd())
    oversized = list(oversized_integers(data))
    if oversized:  # refused first: such numbers break every later check and message
        raise ConfigError(
            [f"{path}: expected a 64-bit integer (TOML), found a larger one" for path in oversized],
            path=source,
        )
    root = v.table(
        data, "", {"can", "modbus", "metrics", "log", "diagnosis", "daemon", "simulator"}
    )
    can = v.table(root.get("can", {}), "can", {"buses"})
    buses = tuple(
        b
        for i, raw in enumerate(v.array_of_tables(can.get("buses", []), "can.buses"))
        if (b := _bus(v, raw, f"can.buses[{i}]")) is not None
    )
    _check_bus_uniqueness(v, buses)
    modbus_raw, modbus_ports = _modbus(v, root.get("modbus", {}))
    config = Config(
        source=source,
        buses=buses,
        modbus_ports=modbus_ports,
        modbus_raw=modbus_raw,
        metrics=_metrics(v, root.get("metrics", {})),
        log=_log(v, root.get("log", {})),
        diagnosis=_diagnosis(v, root.get("diagnosis", {})),
        daemon=_daemon(v, root.get("daemon", {})),
        simulator=_simulator(v, root.get("simulator"), buses),
    )
    if v.problems:
        raise ConfigError(v.problems, path=source)
    return config


# -- sections ---------------------------------------------------------------------------
_BUS_KEYS = {
    "name",
    "interface",
    "channel",
    "bitrate",
    "data_bitrate",
    "fd",
    "listen_only",
    "dbc",
    "dbc_strict",
    "families",
}


def _bus(v: _Validator, raw: Mapping[str, Any], path: str) -> BusConfig | None:
    t = v.table(raw, path, _BUS_KEYS)
    before = len(v.problems)
    name = v.name(t, "name", path)
    interface = v.string(t, "interface", path, required=True)
    if interface is not None and interface not in _valid_interfaces():
        v.problem(
            f"{path}.interface",
            f"a python-can interface ({', '.join(sorted(_valid_interfaces()))})",
            repr(interface),
        )
    channel = v.string_or_int(t, "channel", path, required=True)
    bitrate = v.integer(t, "bitrate", path, 10_000, 1_000_000, DEFAULT_BITRATE)
    fd = v.boolean(t, "fd", path, False)
    data_bitrate = v.optional_integer(t, "data_bitrate", path, 125_000, 12_000_000)
    if data_bitrate is not None and not fd:
        v.problem(f"{path}.data_bitrate", "data_bitrate only with fd = true", str(data_bitrate))
    listen_only = v.boolean(t, "listen_only", path, True)
    if not listen_only and interface in LISTEN_ONLY_INTERFACES:
        v.problem(
            f"{path}.listen_only",
            f"true (candiag never transmits; interface {interface!r} supports listen-only, "
            "so it is always opened listen-only)",
            "false",
        )
    dbc = tuple(v.paths(t, "dbc", path, suffix=".dbc"))
    dbc_strict = v.boolean(t, "dbc_strict", path, False)
    families_raw = v.array_of_tables(t.get("families", []), f"{path}.families")
    families = tuple(
        f
        for j, fraw in enumerate(families_raw)
        if (f := _family(v, fraw, f"{path}.families[{j}]")) is not None
    )
    seen: set[str] = set()
    for j, fam in enumerate(families):
        if fam.name in seen:
            v.problem(f"{path}.families[{j}].name", "each family once per bus", repr(fam.name))
        seen.add(fam.name)
    if len(v.problems) != before or name is None or interface is None or channel is None:
        return None
    return BusConfig(
        name=name,
        interface=interface,
        channel=channel,
        bitrate=bitrate,
        data_bitrate=data_bitrate,
        fd=fd,
        listen_only=listen_only,
        dbc=dbc,
        families=families,
        bitrate_set="bitrate" in t,
        dbc_strict=dbc_strict,
    )


def _family(v: _Validator, raw: Mapping[str, Any], path: str) -> FamilyConfig | None:
    t = v.table(raw, path, {"name", "mask", "expected", "timeout_s", "allowed_firmware"})
    before = len(v.problems)
    name = v.name(t, "name", path)
    mask = v.optional_integer(t, "mask", path, 1, MAX_MASK)
    expected = v.addresses(t, "expected", path)
    timeout_s = v.optional_number(t, "timeout_s", path, 0.01, 86_400.0)
    firmware = tuple(v.strings(t, "allowed_firmware", path))
    if len(v.problems) != before or name is None:
        return None
    return FamilyConfig(
        name=name,
        mask=mask,
        expected=expected,
        timeout_s=timeout_s,
        allowed_firmware=firmware,
    )


def _check_bus_uniqueness(v: _Validator, buses: Sequence[BusConfig]) -> None:
    names: dict[str, int] = {}
    links: dict[tuple[str, str], int] = {}
    for i, bus in enumerate(buses):
        if bus.name in names:
            v.problem(
                f"can.buses[{i}].name",
                f"a name not already used (can.buses[{names[bus.name]}] has it)",
                repr(bus.name),
            )
        names.setdefault(bus.name, i)
        link = (bus.interface, bus.channel)
        if link in links:
            v.problem(
                f"can.buses[{i}].channel",
                f"a channel not opened twice (can.buses[{links[link]}] opens it)",
                f"{bus.interface} {bus.channel!r}",
            )
        links.setdefault(link, i)


def _modbus(v: _Validator, raw: Any) -> tuple[tuple[Mapping[str, Any], ...], tuple[Any, ...]]:
    t = v.table(raw, "modbus", {"ports"})
    ports_raw = v.array_of_tables(t.get("ports", []), "modbus.ports")
    for i, port in enumerate(ports_raw):
        v.array_of_tables(port.get("devices", []), f"modbus.ports[{i}].devices")
    from_mapping = _modbus_port_parser()
    if from_mapping is None:
        return tuple(ports_raw), ()
    ports: list[Any] = []
    for i, port in enumerate(ports_raw):
        obj, problems = from_mapping(port, f"modbus.ports[{i}]")
        v.problems.extend(problems)
        if obj is not None:
            ports.append(obj)
    return tuple(ports_raw), tuple(ports)


def _modbus_port_parser() -> Callable[[Mapping[str, Any], str], tuple[Any, list[str]]] | None:
    """The Modbus port validator from :mod:`candiag.modbus.config`, if it exists."""
    try:
        modbus_config = importlib.import_module("candiag.modbus.config")
    except ImportError:
        return None
    parser = getattr(modbus_config, "PortConfig", None)
    fn = getattr(parser, "from_mapping", None) or getattr(modbus_config, "from_mapping", None)
    return fn if callable(fn) else None


def _metrics(v: _Validator, raw: Any) -> MetricsConfig:
    t = v.table(raw, "metrics", {"listen", "web_config_file"})
    listen = v.string(t, "listen", "metrics", default=DEFAULT_LISTEN) or DEFAULT_LISTEN
    host, port = "127.0.0.1", 9847
    try:
        host, port = parse_listen(listen)
    except ValueError as err:
        v.problem(
            "metrics.listen", "HOST:PORT, e.g. 127.0.0.1:9847 or [::1]:9847", f"{listen!r} ({err})"
        )
    web = next(iter(v.paths(t, "web_config_file", "metrics", single=True)), None)
    return MetricsConfig(host=host, port=port, web_config_file=web)


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9847"`` / ``"[::1]:9847"`` -> (host, port); port 0 picks a free port."""
    m = _LISTEN_RE.match(listen.strip())
    if m is None:
        raise ValueError("not HOST:PORT")
    host = m.group("v6") or m.group("host")
    if not host:
        raise ValueError("empty host; use 127.0.0.1 (or 0.0.0.0 to expose all interfaces)")
    digits = m.group("port").lstrip("0") or "0"
    if len(digits) > 5 or int(digits) > 65535:  # (int() refuses 4300+ digits)
        raise ValueError("port above 65535")
    port = int(digits)
    return host, port


def _log(v: _Validator, raw: Any) -> LogConfig:
    t = v.table(raw, "log", {"level"})
    level = v.string(t, "level", "log", default="info") or "info"
    if level.lower() not in LOG_LEVELS:
        v.problem("log.level", f"one of {', '.join(LOG_LEVELS)}", repr(level))
        level = "info"
    return LogConfig(level=level.lower())


def _diagnosis(v: _Validator, raw: Any) -> DiagnosisConfig:
    t = v.table(raw, "diagnosis", {"thresholds_file"})
    thresholds = next(iter(v.paths(t, "thresholds_file", "diagnosis", single=True)), None)
    return DiagnosisConfig(thresholds_file=thresholds)


def _daemon(v: _Validator, raw: Any) -> DaemonConfig:
    t = v.table(raw, "daemon", {"processing_interval_s"})
    interval = v.optional_number(t, "processing_interval_s", "daemon", 0.01, 10.0)
    return DaemonConfig(processing_interval_s=interval or DEFAULT_PROCESSING_INTERVAL_S)


def _simulator(v: _Validator, raw: Any, buses: Sequence[BusConfig]) -> SimulatorConfig | None:
    if raw is None:
        return None
    t = v.table(raw, "simulator", {"buses", "scenario", "meters"})
    names = tuple(v.strings(t, "buses", "simulator"))
    by_name = {b.name: b for b in buses}
    for i, name in enumerate(names):
        bus = by_name.get(name)
        if bus is None:
            v.problem(f"simulator.buses[{i}]", "the name of a configured [[can.buses]]", repr(name))
        elif bus.interface != "virtual":
            v.problem(
                f"simulator.buses[{i}]",
                'a bus with interface = "virtual" (the simulator transmits; never on real links)',
                f"{name!r} with interface {bus.interface!r}",
            )
    scenario = v.string(t, "scenario", "simulator", default="healthy") or "healthy"
    from candiag.daemon.simulation import all_scenarios

    if scenario not in (names_known := all_scenarios()):
        v.problem("simulator.scenario", f"one of {', '.join(names_known)}", repr(scenario))
    meters = v.boolean(t, "meters", "simulator", False)
    return SimulatorConfig(buses=names, scenario=scenario, meters=meters)


# -- the validator ----------------------------------------------------------------------
def _valid_interfaces() -> frozenset[str]:
    from can.interfaces import VALID_INTERFACES

    return frozenset(VALID_INTERFACES)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


# Longest text of a value or key quoted in a problem.
_MAX_FOUND = 200


class _Validator:
    """Collects problems as ``key.path: expected X, found Y``."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, path: str, expected: str, found: str) -> None:
        if len(found) > _MAX_FOUND:  # a value from the file is never copied whole
            found = found[: _MAX_FOUND - 60] + "…" + found[-59:]  # (the end may be a reason)
        self.problems.append(f"{path}: expected {expected}, found {found}")

    def table(self, raw: Any, path: str, known: set[str]) -> Mapping[str, Any]:
        if not isinstance(raw, Mapping):
            self.problem(path or "<top level>", "a table", f"{_type_name(raw)} {raw!r}")
            return {}
        for key in raw:
            if key not in known:
                shown_key = key if len(key) <= _MAX_FOUND else key[: _MAX_FOUND - 1] + "…"
                where = f"{path}.{shown_key}" if path else shown_key
                hint = _closest(key, known)
                self.problems.append(
                    f"{where}: unknown key"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; known keys here: {', '.join(sorted(known))}"
                )
        return raw

    def array_of_tables(self, raw: Any, path: str) -> list[Mapping[str, Any]]:
        if not isinstance(raw, list):
            self.problem(path, f"an array of tables ([[{path}]])", f"{_type_name(raw)} {raw!r}")
            return []
        out: list[Mapping[str, Any]] = []
        for i, item in enumerate(raw):
            if isinstance(item, Mapping):
                out.append(item)
            else:
                self.problem(f"{path}[{i}]", "a table", f"{_type_name(item)} {item!r}")
        return out

    def _get(self, t: Mapping[str, Any], key: str, path: str, required: bool) -> Any:
        if key not in t:
            if required:
                self.problems.append(f"{path}.{key}: missing; this key is required")
            return None
        return t[key]

    def string(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        default: str | None = None,
    ) -> str | None:
        value = self._get(t, key, path, required)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{path}.{key}", "a non-empty string", f"{_type_name(value)} {value!r}")
            return default
        return value

    def string_or_int(
        self, t: Mapping[str, Any], key: str, path: str, required: bool
    ) -> str | None:
        value = self._get(t, key, path, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            self.problem(f"{path}.{key}", "a string or integer", f"{_type_name(value)} {value!r}")
            return None
        return str(value)

    def name(self, t: Mapping[str, Any], key: str, path: str) -> str | None:
        value = self.string(t, key, path, required=True)
        if value is not None and not _NAME_RE.match(value):
            self.problem(
                f"{path}.{key}",
                "1-32 characters of letters, digits, '_', '.', ':' or '-'",
                repr(value),
            )
            return None
        return value

    def boolean(self, t: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = self._get(t, key, path, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(f"{path}.{key}", "true or false", f"{_type_name(value)} {value!r}")
            return default
        return value

    def optional_integer(
        self, t: Mapping[str, Any], key: str, path: str, lo: int, hi: int
    ) -> int | None:
        value = self._get(t, key, path, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(
                f"{path}.{key}", f"an integer in {lo}..{hi}", f"{_type_name(value)} {value!r}"
            )
            return None
        if not lo <= value <= hi:
            self.problem(f"{path}.{key}", f"an integer in {lo}..{hi}", str(value))
            return None
        return value

    def integer(
        self, t: Mapping[str, Any], key: str, path: str, lo: int, hi: int, default: int
    ) -> int:
        value = self.optional_integer(t, key, path, lo, hi)
        return default if value is None else value

    def optional_number(
        self, t: Mapping[str, Any], key: str, path: str, lo: float, hi: float
    ) -> float | None:
        value = self._get(t, key, path, False)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(
                f"{path}.{key}", f"a number in {lo:g}..{hi:g}", f"{_type_name(value)} {value!r}"
            )
            return None
        if not lo <= value <= hi:
            self.problem(f"{path}.{key}", f"a number in {lo:g}..{hi:g}", f"{value:g}")
            return None
        return float(value)

    def strings(self, t: Mapping[str, Any], key: str, path: str) -> list[str]:
        value = self._get(t, key, path, False)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.problem(f"{path}.{key}", "an array of strings", f"{_type_name(value)} {value!r}")
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item.strip():
                out.append(item)
            else:
                self.problem(
                    f"{path}.{key}[{i}]", "a non-empty string", f"{_type_name(item)} {item!r}"
                )
        return out

    def addresses(self, t: Mapping[str, Any], key: str, path: str) -> tuple[int, ...]:
        """Node addresses: integers and ``"lo-hi"`` ranges, e.g. ``[1, 2, "4-8"]``."""
        value = self._get(t, key, path, False)
        if value is None:
            return ()
        if not isinstance(value, list):
            value = [value]
        out: list[int] = []
        for i, item in enumerate(value):
            where = f"{path}.{key}[{i}]"
            expected = 'a node address 0..536870911 or a range "lo-hi"'
            if isinstance(item, int) and not isinstance(item, bool):
                if 0 <= item <= MAX_MASK:
                    out.append(item)
                else:
                    self.problem(where, expected, str(item))
            elif isinstance(item, str) and (m := _RANGE_RE.match(item)):
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi or hi > MAX_MASK or hi - lo > 4096:
                    self.problem(
                        where, f"{expected} with lo <= hi and at most 4096 addresses", repr(item)
                    )
                else:
                    out.extend(range(lo, hi + 1))
            else:
                self.problem(where, expected, f"{_type_name(item)} {item!r}")
        dupes = sorted(a for a, n in collections.Counter(out).items() if n > 1)  # linear
        if dupes:
            self.problem(f"{path}.{key}", "each address once", f"duplicates {dupes}")
        return tuple(sorted(set(out)))

    def paths(
        self,
        t: Mapping[str, Any],
        key: str,
        path: str,
        *,
        suffix: str | None = None,
        single: bool = False,
    ) -> list[Path]:
        """Existing files (or folders of ``*suffix`` files), relative to the config file."""
        value = self._get(t, key, path, False)
        if value is None:
            return []
        if single:
            if not isinstance(value, str) or not value:
                self.problem(f"{path}.{key}", "a file path", f"{_type_name(value)} {value!r}")
                return []
            items: list[Any] = [value]
        else:
            items = value if isinstance(value, list) else [value]
        out: list[Path] = []
        for i, item in enumerate(items):
            where = (
                f"{path}.{key}" if single or not isinstance(value, list) else f"{path}.{key}[{i}]"
            )
            if not isinstance(item, str) or not item:
                self.problem(where, "a file or folder path", f"{_type_name(item)} {item!r}")
                continue
            try:
                p = Path(item).expanduser()
                p = p if p.is_absolute() else self.base_dir / p
                exists = p.exists()
            except (OSError, RuntimeError) as err:  # name too long; "~user" with no such user
                self.problem(where, "a usable file path", f"{item!r} ({err})")
                continue
            if not exists:
                self.problem(
                    where,
                    "an existing file (relative paths start at the config file's folder)",
                    f"{item!r} -> {p} which does not exist",
                )
            elif p.is_dir() and (single or (suffix and not any(p.glob(f"*{suffix}")))):
                what = "a file, not a folder" if single else f"a folder containing *{suffix} files"
                self.problem(where, what, str(p))
            else:
                out.append(p)
        return out


def _closest(key: str, known: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
    return match[0] if match else None
