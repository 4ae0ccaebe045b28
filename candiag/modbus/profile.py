"""Meter profiles: what to read from one meter model, loaded from TOML data files.

Owns the profile schema (``config/meters/*.toml``, documented in ``docs/modbus.md``),
its validation, the planning of coalesced block reads and the conversion of raw
registers to values in base units.  A meter model is a data file, never code, so a
user adds a meter by adding a file.  Validation rejects anything that would make the
poller write (function codes other than 1-4 raise :class:`SafetyError`) and anything
that cannot be decoded unambiguously (unknown type or unit, overlapping registers,
blocks over the meter's request limit) with a :class:`ProfileError` naming the file
and key path.
"""

from __future__ import annotations

import math
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from candiag.config.problems import ABSENT, KeyPath, Positions, Problems
from candiag.config.toml import read_toml
from candiag.errors import ProfileError, SafetyError, shown

READ_FUNCTION_CODES = frozenset({1, 2, 3, 4})
REGISTER_FUNCTION_CODES = frozenset({3, 4})
# The Modbus spec caps FC3/FC4 replies at 125 registers (250 data bytes).
MAX_REGISTERS_PER_REQUEST = 125

# type name -> (registers, struct format of the value, integer?)
DATA_TYPES: dict[str, tuple[int, str, bool]] = {
    "u16": (1, ">H", True),
    "i16": (1, ">h", True),
    "u32": (2, ">I", True),
    "i32": (2, ">i", True),
    "f32": (2, ">f", False),
    "f64": (4, ">d", False),
}
WORD_ORDERS = ("big", "little")  # big: high word first (ABCD); little: low word first

# profile unit -> (base unit, factor to base unit)
UNITS: dict[str, tuple[str, float]] = {
    "V": ("V", 1.0),
    "kV": ("V", 1e3),
    "mV": ("V", 1e-3),
    "A": ("A", 1.0),
    "mA": ("A", 1e-3),
    "W": ("W", 1.0),
    "kW": ("W", 1e3),
    "Hz": ("Hz", 1.0),
    "Wh": ("J", 3600.0),
    "kWh": ("J", 3.6e6),
    "MWh": ("J", 3.6e9),
    "Ω": ("Ω", 1.0),
    "ohm": ("Ω", 1.0),
    "kΩ": ("Ω", 1e3),
    "kohm": ("Ω", 1e3),
    "MΩ": ("Ω", 1e6),
    "°C": ("°C", 1.0),
}

# canonical quantity family -> the base unit its values must have
QUANTITY_BASE_UNITS: dict[str, str] = {
    "voltage": "V",
    "current": "A",
    "power": "W",
    "frequency": "Hz",
    "energy": "J",
    "insulation_resistance": "Ω",
    "temperature": "°C",
}
_CANONICAL_RE = re.compile(
    r"^(?P<family>voltage|current|power|frequency|energy|insulation_resistance|temperature)"
    r"(?:_(?P<rest>[a-z0-9_]+))?$"
)

_TOP_KEYS = {"meter", "defaults", "limits", "quantities"}
_METER_KEYS = {"model", "kind", "description"}
_DEFAULT_KEYS = {"baudrate", "parity", "stopbits", "unit_id"}
_LIMIT_KEYS = {"max_registers_per_request", "max_gap_registers"}
_QUANTITY_KEYS = {
    "register",
    "function",
    "type",
    "word_order",
    "unit",
    "scale",
    "exponent_register",
    "exponent_offset",
    "uncertain",
    "note",
}


@dataclass(frozen=True)
class QuantityDef:
    """One quantity of a profile: where it is and how to turn registers into a value."""

    name: str  # canonical name, e.g. voltage_l1
    register: int  # 0-based PDU address
    function: int  # 3 (holding) or 4 (input)
    data_type: str  # key of DATA_TYPES
    word_order: str  # big | little
    unit: str  # unit in the profile (e.g. kWh)
    base_unit: str  # unit of the converted value (e.g. J)
    factor: float  # profile unit -> base unit
    scale: float = 1.0  # raw x scale = value in the profile unit
    exponent_register: int | None = None  # value x 10^(reg + offset)
    exponent_offset: int = 0
    uncertain: bool = False  # documented open question in the profile

    @property
    def count(self) -> int:
        return DATA_TYPES[self.data_type][0]

    @property
    def span(self) -> tuple[int, int]:
        """First register and one past the last register this quantity needs."""
        start, end = self.register, self.register + self.count
        if self.exponent_register is not None:
            start = min(start, self.exponent_register)
            end = max(end, self.exponent_register + 1)
        return start, end


@dataclass(frozen=True)
class ReadBlock:
    """One read request: contiguous registers covering one or more quantities."""

    function: int
    address: int
    count: int
    quantities: tuple[str, ...]


@dataclass(frozen=True)
class MeterProfile:
    """A validated meter profile (one TOML file)."""

    name: str  # file name without extension, e.g. sdm630
    model: str
    kind: str
    source: str  # path of the file
    baudrate: int
    parity: str
    stopbits: int
    unit_id: int
    max_registers: int
    max_gap: int
    quantities: tuple[QuantityDef, ...]
    blocks: tuple[ReadBlock, ...]

    def quantity(self, name: str) -> QuantityDef:
        for q in self.quantities:
            if q.name == name:
                return q
        raise KeyError(name)


# -- loading ------------------------------------------------------------------------
def shipped_profile_dir() -> Path:
    """The meter profiles packaged with candiag (a copy of the repo's config/meters)."""
    return Path(__file__).resolve().parent.parent / "data" / "meters"


def repo_profile_dir() -> Path | None:
    """``config/meters`` of a source checkout, if candiag runs from one."""
    path = Path(__file__).resolve().parents[2] / "config" / "meters"
    return path if path.is_dir() else None


def profile_dirs() -> list[Path]:
    """Where profile names are looked up, first match wins."""
    # The daemon's own profiles (Linux); a field laptop uses names or paths.
    dirs = [Path("/etc/candiag/meters")] if os.name == "posix" else []
    repo = repo_profile_dir()
    if repo is not None:
        dirs.append(repo)
    dirs.append(shipped_profile_dir())
    return [d for d in dirs if d.is_dir()]


def shipped_profile_names() -> list[str]:
    """Names of every profile found in the profile directories, sorted."""
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.toml")})


def is_profile_path(name_or_path: str) -> bool:
    """A path (``./my_meter.toml``, ``meters/x``, ``C:\\meters\\x`` on Windows), not a name:
    pathlib splits on this platform's separators."""
    path = Path(name_or_path)
    return path.suffix == ".toml" or len(path.parts) > 1


def profile_path(name_or_path: str) -> Path | None:
    """The file of a profile named (``sdm630``) or given by path (``./my_meter.toml``);
    None when there is none."""
    candidate = Path(name_or_path)
    if is_profile_path(name_or_path):
        return candidate if _is_file(candidate) else None
    for directory in profile_dirs():
        path = directory / f"{name_or_path}.toml"
        if _is_file(path):
            return path
    return None


def find_profile(name_or_path: str) -> MeterProfile:
    """Load a profile by name (``sdm630``) or by path (``./my_meter.toml``)."""
    path = profile_path(name_or_path)
    if path is not None:
        return load_profile(path)
    if is_profile_path(name_or_path):
        raise ProfileError(f"{name_or_path}: meter profile file not found")
    known = ", ".join(shipped_profile_names()) or "none"
    raise ProfileError(
        f"unknown meter profile {name_or_path!r}; known profiles: {known} "
        "(or give the path of a .toml profile)"
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def load_profile(path: str | Path) -> MeterProfile:
    """Read and validate one profile file (cached by path and modification time)."""
    p = Path(path).resolve()
    try:
        mtime = p.stat().st_mtime_ns
    except OSError as err:
        problems = Problems(str(path))
        problems.add((), "a readable file", f"an error reading it ({err.strerror})", _HINT)
        raise problems.error(ProfileError) from err
    return _load_profile_cached(str(p), mtime)


_HINT = "give the path of a meter profile (docs/modbus.md)"


@lru_cache(maxsize=64)
def _load_profile_cached(path: str, _mtime: int) -> MeterProfile:
    problems = Problems(path)
    data = read_toml(Path(path), problems, hint=_HINT)
    if data is None:
        raise problems.error(ProfileError)
    return parse_profile(data, source=path, name=Path(path).stem, positions=problems.positions)


def parse_profile(
    data: Mapping[str, Any], *, source: str, name: str, positions: Positions | None = None
) -> MeterProfile:
    """Validate a profile mapping; every problem names ``source``, line and key path."""
    p = Problems(source, positions)
    if not p.integers_fit_64_bits(data):
        raise p.error(ProfileError)  # such numbers break every later check and message
    p.unknown_keys(data, (), _TOP_KEYS)
    meter = p.table(data.get("meter", {}), ("meter",), _METER_KEYS)
    defaults = p.table(data.get("defaults", {}), ("defaults",), _DEFAULT_KEYS)
    limits = p.table(data.get("limits", {}), ("limits",), _LIMIT_KEYS)
    model = p.string(meter, ("meter",), "model", required=True) or ""
    kind = p.string(meter, ("meter",), "kind") or "meter"
    baudrate = p.integer(defaults, ("defaults",), "baudrate", 300, 1_000_000)
    parity = p.choice(defaults, ("defaults",), "parity", ("N", "E", "O"))
    stopbits = p.integer(defaults, ("defaults",), "stopbits", 1, 2)
    unit_id = p.integer(defaults, ("defaults",), "unit_id", 1, 247)
    max_regs = p.integer(
        limits, ("limits",), "max_registers_per_request", 1, MAX_REGISTERS_PER_REQUEST
    )
    max_gap = p.integer(limits, ("limits",), "max_gap_registers", 0, MAX_REGISTERS_PER_REQUEST)
    max_regs = 32 if max_regs is None else max_regs
    quantities_raw = p.table(data.get("quantities", {}), ("quantities",))
    if not quantities_raw:
        p.add(("quantities",), "at least one [quantities.<name>] table", "none")
    quantities = [
        q
        for key, raw in quantities_raw.items()
        if (q := _parse_quantity(p, str(key), raw)) is not None
    ]
    _check_overlaps(p, quantities)
    p.raise_if_any(ProfileError)
    blocks = plan_blocks(quantities, max_regs, max_gap or 0)
    for block in blocks:
        if block.count > max_regs:
            p.add(
                ("quantities", block.quantities[0]),
                f"a quantity (with its exponent register) within {max_regs} registers",
                f"{block.count} registers",
            )
    p.raise_if_any(ProfileError)
    return MeterProfile(
        name=name,
        model=model,
        kind=kind,
        source=source,
        baudrate=9600 if baudrate is None else baudrate,
        parity=parity or "N",
        stopbits=1 if stopbits is None else stopbits,
        unit_id=1 if unit_id is None else unit_id,
        max_registers=max_regs,
        max_gap=max_gap or 0,
        quantities=tuple(quantities),
        blocks=tuple(blocks),
    )


def _parse_quantity(p: Problems, name: str, raw: Any) -> QuantityDef | None:
    path: KeyPath = ("quantities", name)
    if not isinstance(raw, Mapping):
        p.add_value(path, "a table", raw)
        return None
    p.unknown_keys(raw, path, _QUANTITY_KEYS)
    match = _CANONICAL_RE.match(name)
    if match is None:
        p.add(
            path,
            "a canonical quantity name starting with one of " + ", ".join(QUANTITY_BASE_UNITS),
            shown(name),
        )
    function = _function_code(p, raw, path)
    register = p.integer(raw, path, "register", 0, 0xFFFF, required=True)
    data_type = p.choice(raw, path, "type", tuple(DATA_TYPES), required=True)
    word_order = p.choice(raw, path, "word_order", WORD_ORDERS) or "big"
    unit = p.choice(raw, path, "unit", tuple(UNITS), required=True)
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not _finite_nonzero(scale):
        p.add_value((*path, "scale"), "a finite, non-zero number", scale)
        scale = 1.0
    exponent_register = p.integer(raw, path, "exponent_register", 0, 0xFFFF)
    exponent_offset = p.integer(raw, path, "exponent_offset", -20, 20)
    uncertain = p.boolean(raw, path, "uncertain", False)
    if "note" in raw and not isinstance(raw["note"], str):
        p.add_value((*path, "note"), "a string", raw["note"])
    if None in (function, register, data_type, unit) or match is None:
        return None
    assert function is not None and register is not None
    assert data_type is not None and unit is not None
    base_unit, factor = UNITS[unit]
    wanted = QUANTITY_BASE_UNITS[match.group("family")]
    if base_unit != wanted:
        p.add(
            (*path, "unit"), f"a unit of {match.group('family')} (base unit {wanted})", repr(unit)
        )
    if exponent_register is not None and not DATA_TYPES[data_type][2]:
        p.add((*path, "exponent_register"), "only with integer types", f"type {data_type}")
    if register + DATA_TYPES[data_type][0] > 0x10000:
        p.add((*path, "register"), "a register range ending at or below 0xFFFF", str(register))
    return QuantityDef(
        name=name,
        register=register,
        function=function,
        data_type=data_type,
        word_order=word_order,
        unit=unit,
        base_unit=base_unit,
        factor=factor,
        scale=float(scale),
        exponent_register=exponent_register,
        exponent_offset=exponent_offset or 0,
        uncertain=uncertain,
    )


def _finite_nonzero(value: float) -> bool:
    return math.isfinite(value) and value != 0


_FUNCTION_EXPECTED = "3 (holding registers) or 4 (input registers)"


def _function_code(p: Problems, table: Mapping[str, Any], path: KeyPath) -> int | None:
    where = (*path, "function")
    value = p.get(table, path, "function", _FUNCTION_EXPECTED)
    if value is ABSENT:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        p.add_value(where, _FUNCTION_EXPECTED, value)
        return None
    if value not in READ_FUNCTION_CODES:
        problem = p.problem(
            where,
            _FUNCTION_EXPECTED,
            f"function code {value}, which is not a read",
            "candiag only reads Modbus (function codes 1-4) and never writes to a meter",
        )
        raise SafetyError(str(problem))
    if value not in REGISTER_FUNCTION_CODES:
        p.add(where, "3 or 4 (quantities are registers, not coils)", str(value))
        return None
    return value


def _check_overlaps(p: Problems, quantities: Sequence[QuantityDef]) -> None:
    """Value registers must not overlap; an exponent register must not be a value register."""
    owners: dict[tuple[int, int], str] = {}
    for q in quantities:
        for reg in range(q.register, q.register + q.count):
            other = owners.get((q.function, reg))
            if other is not None:
                p.add(
                    ("quantities", q.name, "register"),
                    "registers not used by another quantity",
                    f"register {reg} (FC{q.function}) also read by quantities.{other}",
                )
                break
            owners[(q.function, reg)] = q.name
    for q in quantities:
        if q.exponent_register is None:
            continue
        other = owners.get((q.function, q.exponent_register))
        if other is not None:
            p.add(
                ("quantities", q.name, "exponent_register"),
                "a register that is not a value register",
                f"register {q.exponent_register} is the value of quantities.{other}",
            )


# -- block planning and decoding -------------------------------------------------------
def plan_blocks(
    quantities: Iterable[QuantityDef], max_registers: int, max_gap: int
) -> list[ReadBlock]:
    """Coalesce quantities into as few reads as the meter's limits allow.

    Per function code, spans sorted by address are merged while the merged block stays
    within ``max_registers`` and the unread hole between spans is at most ``max_gap``.
    """
    blocks: list[ReadBlock] = []
    by_function: dict[int, list[QuantityDef]] = {}
    for q in quantities:
        by_function.setdefault(q.function, []).append(q)
    for function in sorted(by_function):
        items = sorted(by_function[function], key=lambda q: q.span)
        start, end = items[0].span
        names = [items[0].name]
        for q in items[1:]:
            q_start, q_end = q.span
            merged_end = max(end, q_end)
            if q_start - end <= max_gap and merged_end - start <= max_registers:
                end = merged_end
                names.append(q.name)
                continue
            blocks.append(ReadBlock(function, start, end - start, tuple(names)))
            start, end, names = q_start, q_end, [q.name]
        blocks.append(ReadBlock(function, start, end - start, tuple(names)))
    return blocks


def decode_block(
    profile: MeterProfile, block: ReadBlock, registers: Sequence[int]
) -> dict[str, float]:
    """Values in base units of the quantities of ``block`` from its registers.

    NaN/inf floats (an SDM reports NaN for values it does not measure) are skipped.
    """
    values: dict[str, float] = {}
    for name in block.quantities:
        q = profile.quantity(name)
        value = register_value(q, registers, block.address)
        if math.isfinite(value):
            values[name] = value
    return values


def register_value(q: QuantityDef, registers: Sequence[int], base_address: int) -> float:
    """One quantity in base units from registers starting at ``base_address``."""
    offset = q.register - base_address
    words = list(registers[offset : offset + q.count])
    if q.word_order == "little":
        words.reverse()
    raw = struct.unpack(DATA_TYPES[q.data_type][1], struct.pack(f">{q.count}H", *words))[0]
    value = float(raw) * q.scale
    if q.exponent_register is not None:
        exponent = registers[q.exponent_register - base_address] + q.exponent_offset
        try:
            value *= 10.0**exponent
        except OverflowError:  # a nonsense exponent (garbled reply): not a value
            return math.nan
    return value * q.factor


def encode_value(q: QuantityDef, value: float, exponent: int = 0) -> list[int]:
    """Registers holding ``value`` (base units); the inverse of :func:`register_value`.

    Used by the simulated meters.  ``exponent`` is the exponent register's content.
    """
    raw = value / q.factor / q.scale
    if q.exponent_register is not None:
        raw /= 10.0 ** (exponent + q.exponent_offset)
    fmt = DATA_TYPES[q.data_type][1]
    packed = struct.pack(fmt, round(raw) if DATA_TYPES[q.data_type][2] else raw)
    words = list(struct.unpack(f">{q.count}H", packed))
    if q.word_order == "little":
        words.reverse()
    return words
