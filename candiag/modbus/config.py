"""The ``[[modbus.ports]]`` and ``[[modbus.ports.devices]]`` tables: validated dataclasses.

Owns the schema of a Modbus port and its devices (documented key by key in
``docs/modbus.md``).  :func:`parse_port` never raises on bad input: it adds each problem
(key path, what was expected, what was found) to the caller's
:class:`~candiag.config.problems.Problems`, so the config loader lists every problem of a
file at once.  Profiles are resolved here, so a device naming an unknown or invalid
profile, or one asking for a write, is a config problem too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from candiag.config.problems import KeyPath, Problems, did_you_mean, one_of, quoted
from candiag.errors import ConfigError, SafetyError, shown
from candiag.modbus.profile import (
    MeterProfile,
    is_profile_path,
    load_profile,
    profile_path,
    shipped_profile_names,
)

T = TypeVar("T")
TRANSPORTS = ("rtu", "rtu+tcp", "tcp")
PARITIES = ("N", "E", "O")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,48}$")
_NAME_EXPECTED = "1-48 letters, digits or _ . : -"

PORT_KEYS = {
    "name",
    "port",
    "transport",
    "baudrate",
    "parity",
    "stopbits",
    "timeout",
    "retries",
    "gap",
    "id_switch_pause",
    "reopen_backoff_max",
    "devices",
}
DEVICE_KEYS = {"name", "profile", "unit_id", "id", "interval", "timeout", "retries"}


@dataclass(frozen=True)
class DeviceConfig:
    """One slave on a port (``[[modbus.ports.devices]]``)."""

    name: str
    profile: str  # profile name (config/meters/<name>.toml) or path
    unit_id: int
    interval: float = 1.0  # seconds between two polls of this device
    timeout: float | None = None  # None: the port's timeout
    retries: int | None = None  # None: the port's retries


@dataclass(frozen=True)
class PortConfig:
    """One serial line or gateway (``[[modbus.ports]]``) and the slaves on it."""

    name: str
    port: str  # tty path, tcp://host:port or rtu+tcp://host:port
    transport: str = "rtu"  # rtu | rtu+tcp | tcp
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    timeout: float = 0.5  # seconds to wait for a reply (mbmd 300 ms, SerialCommHub 500 ms)
    retries: int = 1  # immediate retries of a failed request
    gap: float = 0.05  # silence between two requests (never less than t3.5)
    id_switch_pause: float = 0.2  # extra pause when the slave id changes (mbmd: 200 ms)
    reopen_backoff_max: float = 30.0  # longest wait between two attempts to reopen the port
    devices: tuple[DeviceConfig, ...] = field(default_factory=tuple)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], source: str = "<table>") -> PortConfig:
        """A port from a table built in code (the CLI's options, the simulated meters);
        :class:`ConfigError` listing every problem, ``source`` as their file."""
        problems = Problems(source)
        port = parse_port(problems, mapping, ())
        problems.raise_if_any()
        if port is None:  # pragma: no cover - None comes with a problem
            raise ConfigError("the port cannot be used", path=source)
        return port


def parse_port(problems: Problems, raw: object, path: KeyPath) -> PortConfig | None:
    """One ``[[modbus.ports]]`` table at ``path``; None when it has problems (all added)."""
    before = len(problems)
    t = problems.table(raw, path, PORT_KEYS)
    port = problems.string(
        t,
        path,
        "port",
        required=True,
        expected="a tty path, tcp://HOST:PORT or rtu+tcp://HOST:PORT",
    )
    port = port.strip() if port else port
    transport = _transport_of(port or "")
    if "transport" in t:
        given = t["transport"]
        if given not in TRANSPORTS:
            problems.add_value((*path, "transport"), one_of(TRANSPORTS), given)
        elif port and given != transport:
            problems.add(
                (*path, "transport"), f"{transport!r} for port {quoted(port)}", repr(given)
            )
    if port and "://" in port and not _url_ok(port, transport):
        problems.add(
            (*path, "port"), "a tty path, tcp://HOST:PORT or rtu+tcp://HOST:PORT", quoted(port)
        )
    name = _name(problems, t, path, _default_name(port or ""))
    baudrate = problems.integer(t, path, "baudrate", 300, 1_000_000)
    parity = problems.choice(t, path, "parity", PARITIES)
    stopbits = problems.integer(t, path, "stopbits", 1, 2)
    timeout = problems.number(t, path, "timeout", 0.01, 30.0, meaning="seconds")
    retries = problems.integer(t, path, "retries", 0, 10)
    gap = problems.number(t, path, "gap", 0.0, 10.0, meaning="seconds")
    pause = problems.number(t, path, "id_switch_pause", 0.0, 10.0, meaning="seconds")
    backoff = problems.number(t, path, "reopen_backoff_max", 0.1, 3600.0, meaning="seconds")
    devices = _devices(problems, t.get("devices", []), (*path, "devices"))
    if len(problems) != before or not port:
        return None
    return PortConfig(
        name=name,
        port=port,
        transport=transport or "rtu",
        baudrate=_or(baudrate, 9600),
        parity=parity or "N",
        stopbits=_or(stopbits, 1),
        timeout=_or(timeout, 0.5),
        retries=_or(retries, 1),
        gap=_or(gap, 0.05),
        id_switch_pause=_or(pause, 0.2),
        reopen_backoff_max=_or(backoff, 30.0),
        devices=tuple(devices),
    )


def parse_device(problems: Problems, raw: Mapping[str, Any], path: KeyPath) -> DeviceConfig | None:
    """One ``[[modbus.ports.devices]]`` table; None when it has problems (all added)."""
    before = len(problems)
    problems.unknown_keys(raw, path, DEVICE_KEYS)
    profile = problems.string(
        raw,
        path,
        "profile",
        required=True,
        expected="a meter profile name or the path of a .toml profile",
    )
    profile = profile.strip() if profile else profile
    meter = _meter(problems, profile, (*path, "profile")) if profile else None
    if "id" in raw and "unit_id" in raw:
        problems.add((*path, "id"), "either unit_id or id (the same setting)", "both")
    id_key = "id" if "id" in raw else "unit_id"
    unit_id = problems.integer(raw, path, id_key, 1, 247)
    if unit_id is None:
        unit_id = meter.unit_id if meter is not None else 1
    stem = Path(profile).stem if profile else "meter"
    name = _name(problems, raw, path, f"{stem}-{unit_id}")
    interval = problems.number(raw, path, "interval", 0.05, 3600.0, meaning="seconds")
    timeout = problems.number(raw, path, "timeout", 0.01, 30.0, meaning="seconds")
    retries = problems.integer(raw, path, "retries", 0, 10)
    if len(problems) != before or not profile:
        return None
    return DeviceConfig(name, profile, unit_id, _or(interval, 1.0), timeout, retries)


def _meter(problems: Problems, profile: str, path: KeyPath) -> MeterProfile | None:
    """The profile a device names, loaded; its problems added (below the device's own)."""
    where = profile_path(profile)
    if where is None:
        if is_profile_path(profile):
            problems.add(
                path,
                "the path of a meter profile (.toml)",
                f"{quoted(profile)}, which does not exist",
            )
        else:
            names = shipped_profile_names()
            problems.add(
                path,
                f"a meter profile name ({', '.join(names) or 'none found'}) or the path of a .toml profile",
                quoted(profile),
                did_you_mean(profile, names),
            )
        return None
    try:
        return load_profile(where)
    except ConfigError as err:  # ProfileError: the profile's own problems, in its file
        count = len(err.problems)
        what = "a problem" if count == 1 else f"{count} problems"
        problems.add(path, "a valid meter profile", f"{quoted(profile)} with {what} (listed next)")
        problems.extend(err.problems)
    except SafetyError as err:
        problems.add(
            path,
            "a meter profile that only reads",
            f"{quoted(profile)}, which asks for a write (next)",
        )
        problems.extend([str(err)])
    return None


def _name(problems: Problems, t: Mapping[str, Any], path: KeyPath, default: str) -> str:
    name = problems.string(t, path, "name", expected=_NAME_EXPECTED)
    if name is None:
        return default
    name = name.strip()
    if not _NAME_RE.match(name):
        problems.add((*path, "name"), _NAME_EXPECTED, shown(name))
    return name


def _devices(problems: Problems, raw: Any, path: KeyPath) -> list[DeviceConfig]:
    if not isinstance(raw, list):
        problems.add_value(path, "an array of tables ([[modbus.ports.devices]])", raw)
        return []
    indexed: list[tuple[int, DeviceConfig]] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            problems.add_value((*path, i), "a table", entry)
            continue
        device = parse_device(problems, entry, (*path, i))
        if device is not None:
            indexed.append((i, device))
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    for i, device in indexed:
        if device.name in seen_names:
            problems.add(
                (*path, i, "name"),
                "a name unique on the port",
                f"{device.name!r} (also devices[{seen_names[device.name]}])",
            )
        if device.unit_id in seen_ids:
            problems.add(
                (*path, i, "unit_id"),
                "one device per unit id",
                f"{device.unit_id} twice (also devices[{seen_ids[device.unit_id]}])",
                "two meters with one id garble each other's replies",
            )
        seen_names.setdefault(device.name, i)
        seen_ids.setdefault(device.unit_id, i)
    return [device for _, device in indexed]


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def _url_ok(port: str, transport: str | None) -> bool:
    try:
        parts = urlsplit(port)
        host, port_number = parts.hostname, parts.port
    except ValueError:  # "Port out of range 0-65535", "Invalid IPv6 URL"
        return False
    return transport is not None and bool(host) and port_number is not None


def _transport_of(port: str) -> str | None:
    if "://" not in port:
        return "rtu"
    scheme = port.split("://", 1)[0]
    return scheme if scheme in ("tcp", "rtu+tcp") else None


def _default_name(port: str) -> str:
    tail = port.rstrip("/").rsplit("/", 1)[-1] or "modbus"
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", tail)[:48]
