"""The ``[[modbus.ports]]`` and ``[[modbus.ports.devices]]`` tables: validated dataclasses.

Owns the schema of a Modbus port and its devices (documented key by key in
``docs/modbus.md``).  :meth:`PortConfig.from_mapping` never raises on bad input: it
returns ``(config or None, problems)`` where each problem names the key path, what
was expected and what was found, so the daemon's config loader can list every
problem of a file at once.  Profiles are resolved here, so a device naming an
unknown or invalid profile, or one asking for a write, is a config problem too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from candiag.errors import ProfileError, SafetyError
from candiag.modbus.profile import MeterProfile, find_profile

TRANSPORTS = ("rtu", "rtu+tcp", "tcp")
PARITIES = ("N", "E", "O")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,48}$")

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

    def meter_profile(self) -> MeterProfile:
        return find_profile(self.profile)

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any], key_path: str
    ) -> tuple[DeviceConfig | None, list[str]]:
        v = _Validator(key_path)
        v.unknown_keys(mapping, DEVICE_KEYS)
        profile = v.string(mapping, "profile", required=True)
        meter: MeterProfile | None = None
        if profile:
            try:
                meter = find_profile(profile)
            except (ProfileError, SafetyError) as err:
                v.problem("profile", "a valid meter profile", str(err))
        if "id" in mapping and "unit_id" in mapping:
            v.problem("id", "either unit_id or id (the same setting)", "both")
        id_key = "id" if "id" in mapping else "unit_id"
        default_id = meter.unit_id if meter is not None else 1
        unit_id = v.integer(mapping, id_key, 1, 247, default=default_id)
        stem = Path(profile).stem if profile else "meter"
        name = v.string(mapping, "name", required=False) or f"{stem}-{unit_id}"
        if not _NAME_RE.match(name):
            v.problem("name", "1-48 letters, digits or _ . : -", repr(name))
        interval = v.number(mapping, "interval", 0.05, 3600.0, default=1.0)
        timeout = v.optional_number(mapping, "timeout", 0.01, 30.0)
        retries = v.optional_integer(mapping, "retries", 0, 10)
        if v.problems:
            return None, v.problems
        return cls(name, profile, unit_id, interval, timeout, retries), []


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
    def from_mapping(
        cls, mapping: Mapping[str, Any], key_path: str
    ) -> tuple[PortConfig | None, list[str]]:
        v = _Validator(key_path)
        v.unknown_keys(mapping, PORT_KEYS)
        port = v.string(mapping, "port", required=True)
        transport = _transport_of(port)
        if "transport" in mapping:
            given = mapping["transport"]
            if given not in TRANSPORTS:
                v.problem("transport", "one of " + ", ".join(TRANSPORTS), repr(given))
            elif port and given != transport:
                v.problem("transport", f"{transport!r} for port {port!r}", repr(given))
        if port and "://" in port:
            try:
                parts = urlsplit(port)
                host, port_number = parts.hostname, parts.port
            except ValueError:  # "Port out of range 0-65535", "Invalid IPv6 URL"
                host, port_number = None, None
            if transport is None or not host or port_number is None:
                v.problem(
                    "port",
                    "a tty path, tcp://HOST:PORT or rtu+tcp://HOST:PORT",
                    repr(port),
                )
        name = v.string(mapping, "name", required=False) or _default_name(port)
        if not _NAME_RE.match(name):
            v.problem("name", "1-48 letters, digits or _ . : -", repr(name))
        baudrate = v.integer(mapping, "baudrate", 300, 1_000_000, default=9600)
        parity = v.choice(mapping, "parity", PARITIES, default="N")
        stopbits = v.integer(mapping, "stopbits", 1, 2, default=1)
        timeout = v.number(mapping, "timeout", 0.01, 30.0, default=0.5)
        retries = v.integer(mapping, "retries", 0, 10, default=1)
        gap = v.number(mapping, "gap", 0.0, 10.0, default=0.05)
        pause = v.number(mapping, "id_switch_pause", 0.0, 10.0, default=0.2)
        backoff = v.number(mapping, "reopen_backoff_max", 0.1, 3600.0, default=30.0)
        devices = _devices(v, mapping.get("devices", []), key_path)
        if v.problems:
            return None, v.problems
        return (
            cls(
                name=name,
                port=port,
                transport=transport or "rtu",
                baudrate=baudrate,
                parity=parity,
                stopbits=stopbits,
                timeout=timeout,
                retries=retries,
                gap=gap,
                id_switch_pause=pause,
                reopen_backoff_max=backoff,
                devices=tuple(devices),
            ),
            [],
        )


def from_mapping(mapping: Mapping[str, Any], key_path: str) -> tuple[PortConfig | None, list[str]]:
    """Module-level alias of :meth:`PortConfig.from_mapping`."""
    return PortConfig.from_mapping(mapping, key_path)


def _devices(v: _Validator, raw: Any, key_path: str) -> list[DeviceConfig]:
    if not isinstance(raw, list):
        v.problem("devices", "an array of tables ([[modbus.ports.devices]])", type(raw).__name__)
        return []
    indexed: list[tuple[int, DeviceConfig]] = []
    for i, entry in enumerate(raw):
        path = f"{key_path}.devices[{i}]"
        if not isinstance(entry, Mapping):
            v.problems.append(f"{path}: expected a table, found {type(entry).__name__}")
            continue
        device, problems = DeviceConfig.from_mapping(entry, path)
        v.problems.extend(problems)
        if device is not None:
            indexed.append((i, device))
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    for i, device in indexed:
        if device.name in seen_names:
            v.problems.append(
                f"{key_path}.devices[{i}].name: expected a name unique on the port, found "
                f"{device.name!r} (also devices[{seen_names[device.name]}])"
            )
        if device.unit_id in seen_ids:
            v.problems.append(
                f"{key_path}.devices[{i}].unit_id: expected one device per unit id, found "
                f"{device.unit_id} twice (also devices[{seen_ids[device.unit_id]}]); two "
                "meters with one id garble each other's replies"
            )
        seen_names.setdefault(device.name, i)
        seen_ids.setdefault(device.unit_id, i)
    return [device for _, device in indexed]


def _transport_of(port: str) -> str | None:
    if "://" not in port:
        return "rtu"
    scheme = port.split("://", 1)[0]
    return scheme if scheme in ("tcp", "rtu+tcp") else None


def _default_name(port: str) -> str:
    tail = port.rstrip("/").rsplit("/", 1)[-1] or "modbus"
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", tail)[:48]


class _Validator:
    def __init__(self, key_path: str) -> None:
        self.key_path = key_path
        self.problems: list[str] = []

    def problem(self, key: str, expected: str, found: object) -> None:
        self.problems.append(f"{self.key_path}.{key}: expected {expected}, found {found}")

    def unknown_keys(self, mapping: Mapping[str, Any], allowed: set[str]) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(str(key), "one of " + ", ".join(sorted(allowed)), "an unknown key")

    def string(self, mapping: Mapping[str, Any], key: str, *, required: bool) -> str:
        value = mapping.get(key)
        if value is None:
            if required:
                self.problem(key, "a string", "nothing")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(key, "a non-empty string", repr(value))
            return ""
        return value.strip()

    def integer(
        self, mapping: Mapping[str, Any], key: str, low: int, high: int, default: int
    ) -> int:
        value = mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(key, f"an integer {low}..{high}", repr(value))
            return default
        return value

    def optional_integer(
        self, mapping: Mapping[str, Any], key: str, low: int, high: int
    ) -> int | None:
        return None if key not in mapping else self.integer(mapping, key, low, high, low)

    def number(
        self, mapping: Mapping[str, Any], key: str, low: float, high: float, default: float
    ) -> float:
        value = mapping.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            self.problem(key, f"a number of seconds {low:g}..{high:g}", repr(value))
            return default
        return float(value)

    def optional_number(
        self, mapping: Mapping[str, Any], key: str, low: float, high: float
    ) -> float | None:
        return None if key not in mapping else self.number(mapping, key, low, high, low)

    def choice(
        self, mapping: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str
    ) -> str:
        value = mapping.get(key, default)
        if value not in choices:
            self.problem(key, "one of " + ", ".join(choices), repr(value))
            return default
        return str(value)
