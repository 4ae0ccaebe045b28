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
import re
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from candiag.errors import ProfileError, SafetyError
from candiag.tomlfile import oversized_integers, toml_syntax_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

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
_PHASES = ("l1", "l2", "l3", "total")

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
    dirs = [Path("/etc/candiag/meters")]
    repo = repo_profile_dir()
    if repo is not None:
        dirs.append(repo)
    dirs.append(shipped_profile_dir())
    return [d for d in dirs if d.is_dir()]


def shipped_profile_names() -> list[str]:
    """Names of every profile found in the profile directories, sorted."""
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.toml")})


def find_profile(name_or_path: str) -> MeterProfile:
    """Load a profile by name (``sdm630``) or by path (``./my_meter.toml``)."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path:
        if not _is_file(candidate):
            raise ProfileError(f"{name_or_path}: meter profile file not found")
        return load_profile(candidate)
    for directory in profile_dirs():
        path = directory / f"{name_or_path}.toml"
        if _is_file(path):
            return load_profile(path)
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
        raise ProfileError(f"{path}: cannot read meter profile ({err.strerror})") from err
    return _load_profile_cached(str(p), mtime)


@lru_cache(maxsize=64)
def _load_profile_cached(path: str, _mtime: int) -> MeterProfile:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(toml_syntax_problem(path, err)) from err
    except UnicodeDecodeError as err:
        raise ProfileError(f"{path}: not UTF-8 text ({err}); save the profile as UTF-8") from err
    except ValueError as err:  # tomllib lets int()'s 4300-digit limit through
        raise ProfileError(f"{path}: a TOML value cannot be read ({err}); fix it") from err
    except OSError as err:
        raise ProfileError(f"{path}: cannot read meter profile ({err.strerror})") from err
    return parse_profile(data, source=path, name=Path(path).stem)


def parse_profile(data: Mapping[str, Any], *, source: str, name: str) -> MeterProfile:
    """Validate a profile mapping; every problem names ``source`` and its key path."""
    v = _ProfileValidator(source)
    for path in oversized_integers(data):
        v.problem(path, "a 64-bit integer (TOML)", "a larger one")
    v.raise_if_problems()  # such numbers break every later check and message
    v.keys(data, "", _TOP_KEYS)
    meter = v.table(data, "meter")
    v.keys(meter, "meter", _METER_KEYS)
    defaults = v.table(data, "defaults")
    v.keys(defaults, "defaults", _DEFAULT_KEYS)
    limits = v.table(data, "limits")
    v.keys(limits, "limits", _LIMIT_KEYS)
    model = v.string(meter, "meter.model", required=True)
    kind = v.string(meter, "meter.kind", required=False) or "meter"
    baudrate = v.integer(defaults, "defaults.baudrate", 300, 1_000_000, default=9600)
    parity = v.choice(defaults, "defaults.parity", ("N", "E", "O"), default="N")
    stopbits = v.integer(defaults, "defaults.stopbits", 1, 2, default=1)
    unit_id = v.integer(defaults, "defaults.unit_id", 1, 247, default=1)
    max_regs = v.integer(
        limits, "limits.max_registers_per_request", 1, MAX_REGISTERS_PER_REQUEST, default=32
    )
    max_gap = v.integer(limits, "limits.max_gap_registers", 0, MAX_REGISTERS_PER_REQUEST, default=0)
    quantities_raw = v.table(data, "quantities")
    if not quantities_raw:
        v.problem("quantities", "at least one [quantities.<name>] table", "none")
    quantities = [
        q
        for key, raw in quantities_raw.items()
        if (q := _parse_quantity(v, str(key), raw)) is not None
    ]
    _check_overlaps(v, quantities)
    v.raise_if_problems()
    blocks = plan_blocks(quantities, max_regs, max_gap)
    for block in blocks:
        if block.count > max_regs:
            v.problem(
                f"quantities.{block.quantities[0]}",
                f"a quantity (with its exponent register) within {max_regs} registers",
                f"{block.count} registers",
            )
    v.raise_if_problems()
    return MeterProfile(
        name=name,
        model=model,
        kind=kind,
        source=source,
        baudrate=baudrate,
        parity=parity,
        stopbits=stopbits,
        unit_id=unit_id,
        max_registers=max_regs,
        max_gap=max_gap,
        quantities=tuple(quantities),
        blocks=tuple(blocks),
    )


def _parse_quantity(v: _ProfileValidator, name: str, raw: Any) -> QuantityDef | None:
    path = f"quantities.{name}"
    if not isinstance(raw, Mapping):
        v.problem(path, "a table", type(raw).__name__)
        return None
    v.keys(raw, path, _QUANTITY_KEYS)
    match = _CANONICAL_RE.match(name)
    if match is None:
        v.problem(
            path,
            "a canonical quantity name starting with one of " + ", ".join(QUANTITY_BASE_UNITS),
            repr(name),
        )
    function = v.function_code(raw, f"{path}.function")
    register = v.integer(raw, f"{path}.register", 0, 0xFFFF, default=None)
    data_type = v.choice(raw, f"{path}.type", tuple(DATA_TYPES), default=None)
    word_order = v.choice(raw, f"{path}.word_order", WORD_ORDERS, default="big")
    unit = v.choice(raw, f"{path}.unit", tuple(UNITS), default=None)
    scale = v.number(raw, f"{path}.scale", default=1.0)
    exponent_register = v.integer(raw, f"{path}.exponent_register", 0, 0xFFFF, default=None)
    exponent_offset = v.integer(raw, f"{path}.exponent_offset", -20, 20, default=0)
    uncertain = v.boolean(raw, f"{path}.uncertain", default=False)
    if "note" in raw and not isinstance(raw["note"], str):
        v.problem(f"{path}.note", "a string", type(raw["note"]).__name__)
    if None in (function, register, data_type, unit) or match is None:
        return None
    assert function is not None and register is not None
    assert data_type is not None and unit is not None
    base_unit, factor = UNITS[unit]
    wanted = QUANTITY_BASE_UNITS[match.group("family")]
    if base_unit != wanted:
        v.problem(f"{path}.unit", f"a unit of {match.group('family')} (base unit {wanted})", unit)
    if exponent_register is not None and not DATA_TYPES[data_type][2]:
        v.problem(f"{path}.exponent_register", "only with integer types", f"type {data_type}")
    if register + DATA_TYPES[data_type][0] > 0x10000:
        v.problem(f"{path}.register", "a register range ending at or below 0xFFFF", register)
    return QuantityDef(
        name=name,
        register=register,
        function=function,
        data_type=data_type,
        word_order=word_order or "big",
        unit=unit,
        base_unit=base_unit,
        factor=factor,
        scale=scale,
        exponent_register=exponent_register,
        exponent_offset=exponent_offset or 0,
        uncertain=bool(uncertain),
    )


def _check_overlaps(v: _ProfileValidator, quantities: Sequence[QuantityDef]) -> None:
    """Value registers must not overlap; an exponent register must not be a value register."""
    owners: dict[tuple[int, int], str] = {}
    for q in quantities:
        for reg in range(q.register, q.register + q.count):
            other = owners.get((q.function, reg))
            if other is not None:
                v.problem(
                    f"quantities.{q.name}.register",
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
            v.problem(
                f"quantities.{q.name}.exponent_register",
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


def canonical_metric(name: str) -> tuple[str, str, str] | None:
    """(quantity, phase, direction) for the meter metrics, or None when not exported.

    ``voltage_l1`` -> ("voltage", "l1", ""), ``energy_import`` -> ("energy", "", "import"),
    ``insulation_resistance`` -> ("insulation", "", ""); per-phase energies and
    qualified names such as ``voltage_l1_earth`` have no metric (None).
    """
    match = _CANONICAL_RE.match(name)
    if match is None:
        return None
    family, rest = match.group("family"), match.group("rest") or ""
    if family == "energy":
        return ("energy", "", rest) if rest in ("import", "export") else None
    if family == "insulation_resistance":
        return ("insulation", "", "") if not rest else None
    if family in ("frequency", "temperature"):
        return (family, "", "") if not rest else None
    if rest and rest not in _PHASES:
        return None
    return family, rest, ""


# -- validation helpers -----------------------------------------------------------------
class _ProfileValidator:
    """Collects problems as ``file: key.path: expected X, found Y``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def problem(self, path: str, expected: str, found: object) -> None:
        self.problems.append(f"{path}: expected {expected}, found {found}")

    def raise_if_problems(self) -> None:
        if not self.problems:
            return
        if len(self.problems) == 1:
            raise ProfileError(f"{self.source}: {self.problems[0]}")
        listing = "\n".join(f"  - {p}" for p in self.problems)
        raise ProfileError(f"{self.source}: {len(self.problems)} problems:\n{listing}")

    def keys(self, table: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.problem(where, "one of " + ", ".join(sorted(allowed)), "an unknown key")

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            self.problem(key, "a table", type(value).__name__)
            return {}
        return value

    def string(self, table: Mapping[str, Any], path: str, *, required: bool) -> str:
        key = path.rsplit(".", 1)[-1]
        value = table.get(key)
        if value is None:
            if required:
                self.problem(path, "a string", "nothing")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.problem(path, "a non-empty string", repr(value))
            return ""
        return value

    def integer(
        self, table: Mapping[str, Any], path: str, low: int, high: int, *, default: int | None
    ) -> Any:
        key = path.rsplit(".", 1)[-1]
        if key not in table:
            if default is None and key in ("register",):
                self.problem(path, f"an integer {low}..{high}", "nothing")
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(path, f"an integer {low}..{high}", repr(value))
            return None if default is None else default
        return value

    def number(self, table: Mapping[str, Any], path: str, *, default: float) -> float:
        key = path.rsplit(".", 1)[-1]
        value = table.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value == 0
        ):
            self.problem(path, "a finite, non-zero number", repr(value))
            return default
        return float(value)

    def boolean(self, table: Mapping[str, Any], path: str, *, default: bool) -> bool:
        key = path.rsplit(".", 1)[-1]
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.problem(path, "true or false", repr(value))
            return default
        return value

    def choice(
        self, table: Mapping[str, Any], path: str, choices: Sequence[str], *, default: str | None
    ) -> Any:
        key = path.rsplit(".", 1)[-1]
        if key not in table:
            if default is None:
                self.problem(path, "one of " + ", ".join(choices), "nothing")
            return default
        value = table[key]
        if value not in choices:
            self.problem(path, "one of " + ", ".join(choices), repr(value))
            return None
        return value

    def function_code(self, table: Mapping[str, Any], path: str) -> int | None:
        value = table.get("function")
        if value is None:
            self.problem(path, "3 (holding registers) or 4 (input registers)", "nothing")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, "3 (holding registers) or 4 (input registers)", repr(value))
            return None
        if value not in READ_FUNCTION_CODES:
            raise SafetyError(
                f"{self.source}: {path}: function code {value} is not a read; candiag only "
                "reads Modbus (function codes 1-4) and never writes to a meter. Use 3 "
                "(holding registers) or 4 (input registers)."
            )
        if value not in REGISTER_FUNCTION_CODES:
            self.problem(path, "3 or 4 (quantities are registers, not coils)", value)
            return None
        return value
