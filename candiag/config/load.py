"""Loading ``candiag.toml``: TOML in, a validated :class:`~candiag.config.model.Config` out.

Owns the schema of the file (documented key by key in ``config/candiag.example.toml``).
Every problem of the file is collected (:mod:`candiag.config.problems`), each with its
line, key path, what was expected and what was found, and raised as one
:class:`~candiag.errors.ConfigError`, so one ``candiag check-config`` run shows everything
to fix.  What needs other files (the DBCs, the thresholds, the web config) is checked by
:mod:`candiag.config.check`.
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from candiag.config.listen import DEFAULT_HOST, DEFAULT_PORT, split_listen
from candiag.config.model import (
    DEFAULT_PROCESSING_INTERVAL_S,
    LISTEN_ONLY_INTERFACES,
    LOG_LEVELS,
    BusConfig,
    Config,
    DaemonConfig,
    DiagnosisConfig,
    FamilyConfig,
    LogConfig,
    MetricsConfig,
    SimulatorConfig,
)
from candiag.config.problems import (
    ABSENT,
    KeyPath,
    Positions,
    Problems,
    described,
    did_you_mean,
    one_of,
    quoted,
)
from candiag.config.toml import parse_toml, read_toml
from candiag.errors import one_line, shown
from candiag.health.bitrate import DEFAULT_BITRATE
from candiag.modbus.config import PortConfig, parse_port

CONFIG_HINT = "pass the path of a candiag TOML config (see config/candiag.example.toml)"
# 29-bit identifier space: the largest meaningful node mask.
MAX_MASK = 0x1FFFFFFF
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,32}$")
_NAME_EXPECTED = "1-32 characters of letters, digits, '_', '.', ':' or '-'"
# At most 10 digits a side: addresses are 29-bit, and int() refuses 4300+ digit strings.
_RANGE_RE = re.compile(r"^\s*(\d{1,10})\s*-\s*(\d{1,10})\s*$")
_SECTIONS = {"can", "modbus", "metrics", "log", "diagnosis", "daemon", "simulator"}
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
_FAMILY_KEYS = {"name", "mask", "expected", "timeout_s", "allowed_firmware"}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; :class:`ConfigError` lists every problem."""
    p = Path(path)
    problems = Problems(str(p))
    data = read_toml(p, problems, hint=CONFIG_HINT)
    problems.raise_if_any()
    assert data is not None
    return _config(data, problems, p.parent)


def parse_config_text(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate TOML text (paths resolve against ``base_dir``, default: the current folder)."""
    problems = Problems(source)
    data = parse_toml(text, problems)
    problems.raise_if_any()
    assert data is not None
    return _config(data, problems, base_dir or Path.cwd())


def parse_config(
    data: Mapping[str, Any],
    source: str = "<mapping>",
    base_dir: Path | None = None,
    positions: Positions | None = None,
) -> Config:
    """Validate an already parsed TOML document (paths resolve against ``base_dir``)."""
    problems = Problems(source, positions)
    if not problems.integers_fit_64_bits(data):
        problems.raise_if_any()  # refused first: such numbers break every later check
    return _config(data, problems, base_dir or Path.cwd())


def _config(data: Mapping[str, Any], problems: Problems, base_dir: Path) -> Config:
    v = _Reader(problems, base_dir)
    root = problems.table(data, (), _SECTIONS)
    can = problems.table(root.get("can", {}), ("can",), {"buses"})
    buses_raw = problems.array_of_tables(can.get("buses", []), ("can", "buses"))
    buses = tuple(
        b for i, raw in enumerate(buses_raw) if (b := _bus(v, raw, ("can", "buses", i))) is not None
    )
    _check_bus_uniqueness(problems, buses)
    config = Config(
        source=problems.file,
        buses=buses,
        modbus_ports=_modbus(problems, root.get("modbus", {})),
        metrics=_metrics(v, root.get("metrics", {})),
        log=_log(problems, root.get("log", {})),
        diagnosis=_diagnosis(v, root.get("diagnosis", {})),
        daemon=_daemon(problems, root.get("daemon", {})),
        simulator=_simulator(problems, root.get("simulator", ABSENT), buses),
        positions=problems.positions,
    )
    problems.raise_if_any()
    return config


# -- sections ---------------------------------------------------------------------------
def _bus(v: _Reader, raw: Mapping[str, Any], path: KeyPath) -> BusConfig | None:
    p = v.problems
    p.unknown_keys(raw, path, _BUS_KEYS)
    before = len(p)
    name = v.name(raw, path)
    interfaces = _valid_interfaces()
    interface = p.choice(
        raw,
        path,
        "interface",
        interfaces,
        required=True,
        expected=f"a python-can interface ({', '.join(interfaces)})",
    )
    channel = v.channel(raw, path)
    bitrate = p.integer(raw, path, "bitrate", 10_000, 1_000_000)
    fd = p.boolean(raw, path, "fd", False)
    data_bitrate = p.integer(raw, path, "data_bitrate", 125_000, 12_000_000)
    if data_bitrate is not None and not fd:
        p.add((*path, "data_bitrate"), "data_bitrate only with fd = true", str(data_bitrate))
    listen_only = p.boolean(raw, path, "listen_only", True)
    if not listen_only and interface in LISTEN_ONLY_INTERFACES:
        p.add(
            (*path, "listen_only"),
            f"true (candiag never transmits; interface {interface!r} supports listen-only, "
            "so it is always opened listen-only)",
            "false",
        )
    dbc = tuple(v.paths(raw, path, "dbc", suffix=".dbc"))
    dbc_strict = p.boolean(raw, path, "dbc_strict", False)
    families_raw = p.array_of_tables(raw.get("families", []), (*path, "families"))
    families = tuple(
        f
        for j, fraw in enumerate(families_raw)
        if (f := _family(v, fraw, (*path, "families", j))) is not None
    )
    seen: set[str] = set()
    for j, fam in enumerate(families):
        if fam.name in seen:
            p.add((*path, "families", j, "name"), "each family once per bus", repr(fam.name))
        seen.add(fam.name)
    if len(p) != before or name is None or interface is None or channel is None:
        return None
    return BusConfig(
        name=name,
        interface=interface,
        channel=channel,
        bitrate=DEFAULT_BITRATE if bitrate is None else bitrate,
        data_bitrate=data_bitrate,
        fd=fd,
        listen_only=listen_only,
        dbc=dbc,
        families=families,
        bitrate_set="bitrate" in raw,
        dbc_strict=dbc_strict,
    )


def _family(v: _Reader, raw: Mapping[str, Any], path: KeyPath) -> FamilyConfig | None:
    p = v.problems
    p.unknown_keys(raw, path, _FAMILY_KEYS)
    before = len(p)
    name = v.name(raw, path)
    mask = p.integer(raw, path, "mask", 1, MAX_MASK)
    expected = v.addresses(raw, path, "expected")
    timeout_s = p.number(raw, path, "timeout_s", 0.01, 86_400.0, meaning="seconds")
    firmware = tuple(p.strings(raw, path, "allowed_firmware"))
    if len(p) != before or name is None:
        return None
    return FamilyConfig(
        name=name, mask=mask, expected=expected, timeout_s=timeout_s, allowed_firmware=firmware
    )


def _check_bus_uniqueness(p: Problems, buses: Sequence[BusConfig]) -> None:
    names: dict[str, int] = {}
    links: dict[tuple[str, str], int] = {}
    for i, bus in enumerate(buses):
        if bus.name in names:
            p.add(
                ("can", "buses", i, "name"),
                f"a name not already used (can.buses[{names[bus.name]}] has it)",
                repr(bus.name),
            )
        names.setdefault(bus.name, i)
        link = (bus.interface, bus.channel)
        if link in links:
            p.add(
                ("can", "buses", i, "channel"),
                f"a channel not opened twice (can.buses[{links[link]}] opens it)",
                f"{bus.interface} {bus.channel!r}",
            )
        links.setdefault(link, i)


def _modbus(p: Problems, raw: object) -> tuple[PortConfig, ...]:
    t = p.table(raw, ("modbus",), {"ports"})
    ports_raw = p.array_of_tables(t.get("ports", []), ("modbus", "ports"))
    return tuple(
        port
        for i, port_raw in enumerate(ports_raw)
        if (port := parse_port(p, port_raw, ("modbus", "ports", i))) is not None
    )


def _metrics(v: _Reader, raw: object) -> MetricsConfig:
    p = v.problems
    path: KeyPath = ("metrics",)
    t = p.table(raw, path, {"listen", "web_config_file"})
    host, port = DEFAULT_HOST, DEFAULT_PORT
    listen = p.string(t, path, "listen")
    if listen is not None:
        try:
            host, port = split_listen(listen)
        except ValueError as err:
            p.add(
                (*path, "listen"),
                "HOST:PORT, e.g. 127.0.0.1:9847 or [::1]:9847",
                f"{shown(listen)} ({err})",
            )
    web = next(iter(v.paths(t, path, "web_config_file", single=True)), None)
    return MetricsConfig(host=host, port=port, web_config_file=web)


def _log(p: Problems, raw: object) -> LogConfig:
    t = p.table(raw, ("log",), {"level"})
    level = t.get("level", "info")
    if isinstance(level, str) and level.lower() in LOG_LEVELS:
        return LogConfig(level=level.lower())
    found = shown(level) if isinstance(level, str) else described(level)
    p.add(("log", "level"), one_of(LOG_LEVELS), found, did_you_mean(str(level).lower(), LOG_LEVELS))
    return LogConfig()


def _diagnosis(v: _Reader, raw: object) -> DiagnosisConfig:
    t = v.problems.table(raw, ("diagnosis",), {"thresholds_file"})
    thresholds = next(iter(v.paths(t, ("diagnosis",), "thresholds_file", single=True)), None)
    return DiagnosisConfig(thresholds_file=thresholds)


def _daemon(p: Problems, raw: object) -> DaemonConfig:
    t = p.table(raw, ("daemon",), {"processing_interval_s"})
    interval = p.number(t, ("daemon",), "processing_interval_s", 0.01, 10.0, meaning="seconds")
    return DaemonConfig(processing_interval_s=interval or DEFAULT_PROCESSING_INTERVAL_S)


def _simulator(p: Problems, raw: object, buses: Sequence[BusConfig]) -> SimulatorConfig | None:
    if raw is ABSENT:
        return None
    path: KeyPath = ("simulator",)
    t = p.table(raw, path, {"buses", "scenario", "meters"})
    names = tuple(p.strings(t, path, "buses"))
    by_name = {b.name: b for b in buses}
    for i, name in enumerate(names):
        bus = by_name.get(name)
        if bus is None:
            p.add((*path, "buses", i), "the name of a configured [[can.buses]]", repr(name))
        elif bus.interface != "virtual":
            p.add(
                (*path, "buses", i),
                'a bus with interface = "virtual" (the simulator transmits; never on real links)',
                f"{name!r} with interface {bus.interface!r}",
            )
    from candiag.sim.scenarios import all_scenario_names

    scenario = p.choice(t, path, "scenario", all_scenario_names()) or "healthy"
    meters = p.boolean(t, path, "meters", False)
    return SimulatorConfig(buses=names, scenario=scenario, meters=meters)


def _valid_interfaces() -> tuple[str, ...]:
    from can.interfaces import VALID_INTERFACES

    return tuple(sorted(VALID_INTERFACES))


# -- readers only this file needs ----------------------------------------------------------
class _Reader:
    """Names, channels, node addresses and file paths (relative to the config's folder)."""

    def __init__(self, problems: Problems, base_dir: Path) -> None:
        self.problems = problems
        self.base_dir = base_dir

    def name(self, t: Mapping[str, Any], path: KeyPath) -> str | None:
        value = self.problems.string(t, path, "name", required=True, expected=_NAME_EXPECTED)
        if value is not None and not _NAME_RE.match(value):
            self.problems.add((*path, "name"), _NAME_EXPECTED, shown(value))
            return None
        return value

    def channel(self, t: Mapping[str, Any], path: KeyPath) -> str | None:
        expected = "a string or integer (e.g. can0, PCAN_USBBUS1)"
        value = self.problems.get(t, path, "channel", expected)
        if value is ABSENT:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            self.problems.add_value((*path, "channel"), expected, value)
            return None
        return str(value)

    def addresses(self, t: Mapping[str, Any], path: KeyPath, key: str) -> tuple[int, ...]:
        """Node addresses: integers and ``"lo-hi"`` ranges, e.g. ``[1, 2, "4-8"]``."""
        value = t.get(key, ABSENT)
        if value is ABSENT:
            return ()
        items = value if isinstance(value, list) else [value]
        out: list[int] = []
        expected = f'a node address 0..{MAX_MASK} or a range "lo-hi"'
        for i, item in enumerate(items):
            where = (*path, key, i) if isinstance(value, list) else (*path, key)
            if isinstance(item, int) and not isinstance(item, bool):
                if 0 <= item <= MAX_MASK:
                    out.append(item)
                else:
                    self.problems.add(where, expected, str(item))
            elif isinstance(item, str) and (m := _RANGE_RE.match(item)):
                lo, hi = int(m.group(1)), int(m.group(2))
                if lo > hi or hi > MAX_MASK or hi - lo > 4096:
                    self.problems.add(
                        where, f"{expected} with lo <= hi and at most 4096 addresses", repr(item)
                    )
                else:
                    out.extend(range(lo, hi + 1))
            else:
                self.problems.add(where, expected, described(item))
        dupes = sorted(a for a, n in collections.Counter(out).items() if n > 1)  # linear
        if dupes:
            self.problems.add((*path, key), "each address once", f"duplicates {dupes}")
        return tuple(sorted(set(out)))

    def paths(
        self,
        t: Mapping[str, Any],
        path: KeyPath,
        key: str,
        *,
        suffix: str | None = None,
        single: bool = False,
    ) -> list[Path]:
        """Existing files (or folders of ``*suffix`` files), relative to the config file."""
        value = t.get(key, ABSENT)
        if value is ABSENT:
            return []
        if single and (not isinstance(value, str) or not value):
            self.problems.add_value((*path, key), "a file path", value)
            return []
        items = value if isinstance(value, list) else [value]
        out: list[Path] = []
        for i, item in enumerate(items):
            where = (*path, key, i) if isinstance(value, list) else (*path, key)
            found = self._path(item, where, suffix=suffix, single=single)
            if found is not None:
                out.append(found)
        return out

    def _path(
        self, item: object, where: KeyPath, *, suffix: str | None, single: bool
    ) -> Path | None:
        p = self.problems
        if not isinstance(item, str) or not item:
            p.add_value(where, "a file or folder path", item)
            return None
        try:
            resolved = Path(item).expanduser()
            resolved = resolved if resolved.is_absolute() else self.base_dir / resolved
            exists = resolved.exists()
        except (OSError, RuntimeError, ValueError) as err:  # too long; "~nosuchuser"; NUL
            p.add(where, "a usable file path", f"{quoted(item)} ({one_line(str(err), 120)})")
            return None
        if not exists:
            p.add(
                where,
                "an existing file (relative paths start at the config file's folder)",
                f"{quoted(item)}, which does not exist ({quoted(str(resolved))[1:-1]})",
            )
            return None
        if resolved.is_dir() and (single or (suffix and not any(resolved.glob(f"*{suffix}")))):
            what = "a file, not a folder" if single else f"a folder containing *{suffix} files"
            p.add(where, what, str(resolved))
            return None
        return resolved
