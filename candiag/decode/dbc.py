"""DBC loading: the charger's message catalogue, with node-address masks, families and roles.

cantools parses the DBC text; this module owns what cantools does not do:

* merging several files (or folders of ``*.dbc``) into one catalogue while refusing two
  definitions of the same identifier;
* the candiag attribute conventions (``GenMsgCycleTime``, ``CandiagNodeMask``,
  ``CandiagNodeFamily``, ``CandiagRole``) read from the DBC, never from code;
* a vectorized identifier lookup (:meth:`ChargerDatabase.match`) that also resolves
  identifiers carrying a node address (cantools' ``frame_id_mask`` works one frame at a
  time and one mask per database);
* errors that say ``file:line: what; how to fix``.

Masked identifiers follow the convention of the reference DBCs (see
``/work/shared/reference/charger-internal-protocols.md`` section 2: "Vendor IDs embed
addresses, so lookups need masking first"): the ``BO_`` identifier has the address bits
zero and ``CandiagNodeMask`` names them; a frame matches when
``(can_id & ~mask) == frame_id`` with the same IDE, and its node address is
``(can_id & mask) >> lowest_set_bit(mask)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cantools
import numpy as np
import numpy.typing as npt
from cantools.database.errors import Error as CantoolsError
from cantools.database.errors import UnsupportedDatabaseFormatError

from candiag.errors import DbcError

I32 = npt.NDArray[np.int32]
U32 = npt.NDArray[np.uint32]
BoolArray = npt.NDArray[np.bool_]

ATTR_CYCLE_TIME = "GenMsgCycleTime"
ATTR_NODE_MASK = "CandiagNodeMask"
ATTR_NODE_FAMILY = "CandiagNodeFamily"
ATTR_ROLE = "CandiagRole"

#: Signal roles health and diagnosis understand (``alarm:<anything>`` is also accepted).
KNOWN_ROLES = frozenset(
    {
        "firmware",
        "counter",
        "output_voltage",
        "output_current",
        "temperature",
        "contactor:command",
        "contactor:feedback",
        "contactor:weld",
        "cooling:pump_command",
        "cooling:flow",
        "cooling:coolant_temperature",
        "meter:current",
        "meter:voltage",
    }
)

_EXTENDED_KEY_BIT = np.uint32(1 << 31)
_STANDARD_ID_MAX = 0x7FF
_EXTENDED_ID_MAX = 0x1FFFFFFF


@dataclass(frozen=True)
class SignalDef:
    """One signal as candiag uses it (bit layout and scaling exactly as cantools parsed it)."""

    name: str
    unit: str
    role: str | None
    is_float: bool
    start: int
    length: int
    byte_order: Literal["little_endian", "big_endian"]
    is_signed: bool
    scale: float
    offset: float
    #: True when cantools returns Python ints for this signal (integral scale and offset).
    is_integer: bool
    is_multiplexer: bool
    multiplexer_signal: str | None
    multiplexer_ids: tuple[int, ...] | None
    minimum: float | None
    maximum: float | None


@dataclass(frozen=True)
class MessageDef:
    """One message: identifier (address bits zero when masked), timing, family and signals."""

    name: str
    frame_id: int
    is_extended: bool
    length: int
    cycle_time_ms: int | None
    node_mask: int
    family: str | None
    signals: tuple[SignalDef, ...]
    source_file: str
    cantools_message: Any = field(repr=False, compare=False)
    source_line: int = 0  # line of its BO_ in source_file (0: not from a file)

    @property
    def where(self) -> str:
        """``file:line`` of the definition, for error messages."""
        return f"{self.source_file}:{self.source_line}" if self.source_line else self.source_file

    @property
    def is_multiplexed(self) -> bool:
        return any(s.is_multiplexer for s in self.signals)

    def signal(self, name: str) -> SignalDef:
        for sig in self.signals:
            if sig.name == name:
                return sig
        raise KeyError(f"message {self.name} has no signal {name!r}")

    def signals_with_role(self, role: str) -> tuple[SignalDef, ...]:
        """Signals carrying ``role``, in start-bit order (the order firmware strings use)."""
        return tuple(sorted((s for s in self.signals if s.role == role), key=lambda s: s.start))

    def node_of(self, can_id: int) -> int:
        """Node address carried by ``can_id`` (-1 when the message is not addressed)."""
        if not self.node_mask:
            return -1
        return (can_id & self.node_mask) >> _lowest_set_bit(self.node_mask)

    def can_id_for(self, node: int) -> int:
        """The on-bus identifier of this message sent by ``node`` (simulator, tests)."""
        if not self.node_mask:
            return self.frame_id
        shift = _lowest_set_bit(self.node_mask)
        if (node << shift) & ~self.node_mask:
            raise ValueError(f"node {node} does not fit mask 0x{self.node_mask:X} of {self.name}")
        return self.frame_id | (node << shift)


class ChargerDatabase:
    """The merged message catalogue with a vectorized identifier lookup."""

    def __init__(self, messages: Sequence[MessageDef], sources: Sequence[str] = ()) -> None:
        _check_unique(messages)  # also when built from edited messages (mask overrides)
        self.messages: list[MessageDef] = list(messages)
        self.sources: list[str] = list(sources)
        self._by_name = {m.name: i for i, m in enumerate(self.messages)}
        self.families: dict[str, list[MessageDef]] = {}
        for msg in self.messages:
            if msg.family:
                self.families.setdefault(msg.family, []).append(msg)
        self.cantools_db = cantools.database.can.Database(
            messages=[m.cantools_message for m in self.messages]
        )
        self._build_lookup()

    def __len__(self) -> int:
        return len(self.messages)

    def by_name(self, name: str) -> MessageDef:
        try:
            return self.messages[self._by_name[name]]
        except KeyError:
            raise KeyError(f"no message named {name!r} in the DBC files") from None

    def index_of(self, name: str) -> int:
        """Position of message ``name`` in :attr:`messages` (the ``match()`` index)."""
        return self._by_name[name]

    # -- lookup ------------------------------------------------------------------------
    def _build_lookup(self) -> None:
        exact = [(self._key(m), i) for i, m in enumerate(self.messages) if not m.node_mask]
        exact.sort()
        self._exact_keys = np.array([k for k, _ in exact], np.uint32)
        self._exact_index = np.array([i for _, i in exact], np.int32)
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, m in enumerate(self.messages):
            if m.node_mask:
                groups.setdefault(m.node_mask, []).append((self._key(m), i))
        self._masked: list[tuple[np.uint32, int, U32, I32]] = []
        for mask, entries in sorted(groups.items()):
            entries.sort()
            self._masked.append(
                (
                    np.uint32(~mask & 0xFFFFFFFF),
                    _lowest_set_bit(mask),
                    np.array([k for k, _ in entries], np.uint32),
                    np.array([i for _, i in entries], np.int32),
                )
            )

    @staticmethod
    def _key(msg: MessageDef) -> int:
        return msg.frame_id | (1 << 31 if msg.is_extended else 0)

    def match(self, can_id: npt.NDArray[np.uint32], is_extended: BoolArray) -> tuple[I32, I32]:
        """Message index (-1 unknown) and node address (-1 none) of every identifier.

        Identifiers without a mask are looked up exactly first; then each distinct mask
        is tried on what is still unknown.  Standard and extended identifiers never
        match each other.  The caller passes data frames only (error-frame class bits
        and remote frames are not messages).
        """
        keys = np.asarray(can_id, np.uint32) | (
            np.asarray(is_extended, np.bool_).astype(np.uint32) << np.uint32(31)
        )
        message = _lookup(self._exact_keys, self._exact_index, keys)
        node = np.full(keys.shape, -1, np.int32)
        for inverse_mask, shift, base_keys, base_index in self._masked:
            unknown = np.flatnonzero(message < 0)
            if not unknown.size:
                break
            sub = keys[unknown]
            found = _lookup(base_keys, base_index, sub & inverse_mask)
            hit = found >= 0
            rows = unknown[hit]
            message[rows] = found[hit]
            mask = ~inverse_mask & ~_EXTENDED_KEY_BIT
            node[rows] = ((sub[hit] & mask) >> np.uint32(shift)).astype(np.int32)
        return message, node


def _lookup(sorted_keys: U32, index: I32, keys: U32) -> I32:
    """Vectorized exact lookup of ``keys`` in ``sorted_keys`` (-1 where absent)."""
    out = np.full(keys.shape, -1, np.int32)
    if not sorted_keys.size or not keys.size:
        return out
    pos = np.searchsorted(sorted_keys, keys)
    np.minimum(pos, sorted_keys.size - 1, out=pos)
    hit = sorted_keys[pos] == keys
    out[hit] = index[pos[hit]]
    return out


def _lowest_set_bit(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


# -- loading ------------------------------------------------------------------------------


def reference_dbc_dir() -> Path:
    """The reference charger's DBC folder: packaged ``candiag/data/dbc``, else the repo's ``dbc/``."""
    packaged = Path(__file__).resolve().parent.parent / "data" / "dbc"
    if packaged.is_dir() and any(packaged.glob("*.dbc")):
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "dbc"


def load_reference_database() -> ChargerDatabase:
    """The reference charger's DBCs (what ``--dbc`` defaults to)."""
    return load_dbc_paths([reference_dbc_dir()])


def expand_dbc_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, folders as their ``*.dbc`` files (sorted); DbcError when none."""
    if not paths:
        raise DbcError("no DBC file given; pass --dbc FILE_OR_FOLDER")
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.dbc"))
            if not found:
                raise DbcError(f"{path}: folder contains no *.dbc file; point --dbc at DBC files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DbcError(f"{path}: no such DBC file or folder; check the path")
    return files


def load_dbc_paths(paths: Sequence[str | os.PathLike[str]]) -> ChargerDatabase:
    """Load DBC files and folders into one :class:`ChargerDatabase`.

    Raises :class:`~candiag.errors.DbcError` (``file:line: what; how to fix``) for a file
    that does not parse, two definitions of one identifier, a node mask overlapping its
    base identifier or another message's identifiers, or an attribute candiag cannot use.
    """
    files = expand_dbc_paths(paths)
    messages: list[MessageDef] = []
    for path in files:
        messages.extend(_load_file(path))
    return ChargerDatabase(messages, [str(p) for p in files])


def load_dbc_text(text: str, source: str = "<string>") -> ChargerDatabase:
    """Load one DBC given as text (tests, generated DBCs); ``source`` names it in errors."""
    messages = _parse_dbc(Path(source), text)
    return ChargerDatabase(messages, [source])


def _load_file(path: Path) -> list[MessageDef]:
    try:
        # Bytes cp1252 leaves undefined (0x81, 0x8D, ...) are replaced, not fatal: they are
        # harmless in comments and give a syntax error with its line anywhere else.
        text = path.read_bytes().decode("cp1252", errors="replace")
    except OSError as err:
        raise DbcError(
            f"{path}: cannot read ({err.strerror}); check the path and permissions"
        ) from None
    return _parse_dbc(path, text)


def _parse_dbc(path: Path, text: str) -> list[MessageDef]:
    try:
        db: Any = cantools.database.load_string(text, database_format="dbc", strict=True)
    except UnsupportedDatabaseFormatError as err:
        raise _parse_error(path, text, err) from None
    except CantoolsError as err:
        raise _semantic_error(path, text, err) from None
    definitions = db.dbc.attribute_definitions if db.dbc else {}
    _check_definitions(path, text, definitions)
    defaults = _attribute_defaults(db)
    return [_message_def(path, text, msg, defaults) for msg in db.messages]


def _parse_error(path: Path, text: str, err: Exception) -> DbcError:
    cause = getattr(err, "e_dbc", None) or err.__cause__ or err.__context__
    line = getattr(cause, "line", None)
    column = getattr(cause, "column", None)
    if line is None:
        return _semantic_error(path, text, cause if isinstance(cause, Exception) else err)
    source = text.splitlines()
    snippet = source[line - 1].strip() if 0 < line <= len(source) else ""
    return DbcError(
        f"{path}:{line}:{column}: invalid syntax in {snippet!r}; fix the line or remove the file"
    )


def _semantic_error(path: Path, text: str, err: Exception) -> DbcError:
    """cantools' errors after parsing (signal outside its message, overlaps) carry no line."""
    return DbcError(f"{path}:{_error_line(text, str(err))}: {err}; fix the DBC")


def _error_line(text: str, message: str) -> int:
    """Best line for a cantools semantic error: the ``BO_`` of the message it names."""
    for name in re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'|\b([A-Za-z_][A-Za-z0-9_]*)\b", message):
        word = name[0] or name[1]
        line = _line_of(text, rf"^[ \t]*(?:BO_[ \t]+\d+|SG_)[ \t]+{re.escape(word)}\b")
        if line:
            return line
    return 1


def _line_of(text: str, pattern: str) -> int:
    match = re.search(pattern, text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def _message_line(text: str, msg: Any) -> int:
    return _line_of(text, rf"^[ \t]*BO_[ \t]+\d+[ \t]+{re.escape(msg.name)}[ \t]*:") or 1


def _check_definitions(path: Path, text: str, definitions: dict[str, Any]) -> None:
    mask_def = definitions.get(ATTR_NODE_MASK)
    if mask_def is not None and mask_def.type_name not in ("HEX", "INT"):
        line = _line_of(text, rf'^[ \t]*BA_DEF_[ \t]+BO_[ \t]+"{ATTR_NODE_MASK}"') or 1
        raise DbcError(
            f"{path}:{line}: attribute {ATTR_NODE_MASK} is declared {mask_def.type_name}; "
            f'declare it as BA_DEF_ BO_ "{ATTR_NODE_MASK}" HEX 0 536870911;'
        )


def _attribute_defaults(db: Any) -> dict[str, Any]:
    if not db.dbc:
        return {}
    return {name: d.default_value for name, d in db.dbc.attribute_definitions.items()}


def _attribute(obj: Any, name: str, defaults: dict[str, Any]) -> Any:
    attrs = obj.dbc.attributes if obj.dbc is not None else {}
    if name in attrs:
        return attrs[name].value
    return defaults.get(name)


def _message_def(path: Path, text: str, msg: Any, defaults: dict[str, Any]) -> MessageDef:
    line = _message_line(text, msg)
    where = f"{path}:{line}: message {msg.name}"
    if msg.is_container:
        raise DbcError(f"{where}: container messages are not supported; remove the message")
    mask = _node_mask(where, msg, _attribute(msg, ATTR_NODE_MASK, defaults))
    cycle = _attribute(msg, ATTR_CYCLE_TIME, defaults)
    if cycle is None:
        cycle = msg.cycle_time
    try:
        cycle_ms = int(cycle) if cycle is not None else None
    except (TypeError, ValueError):
        raise DbcError(f"{where}: {ATTR_CYCLE_TIME} {cycle!r} is not an integer (ms)") from None
    family = _attribute(msg, ATTR_NODE_FAMILY, defaults)
    signals = tuple(_signal_def(where, sig, defaults) for sig in msg.signals)
    return MessageDef(
        name=msg.name,
        frame_id=int(msg.frame_id),
        is_extended=bool(msg.is_extended_frame),
        length=int(msg.length),
        cycle_time_ms=cycle_ms if cycle_ms else None,
        node_mask=mask,
        family=str(family) if family else None,
        signals=signals,
        source_file=str(path),
        cantools_message=msg,
        source_line=line,
    )


def _node_mask(where: str, msg: Any, value: Any) -> int:
    if value in (None, "", 0):
        return 0
    try:
        mask = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise DbcError(
            f"{where}: {ATTR_NODE_MASK} {value!r} is not a number; give the identifier bits "
            f"holding the node address, e.g. 255 for the low byte"
        ) from None
    id_max = _EXTENDED_ID_MAX if msg.is_extended_frame else _STANDARD_ID_MAX
    if mask < 0 or mask & ~id_max:
        raise DbcError(
            f"{where}: {ATTR_NODE_MASK} 0x{mask:X} exceeds the {id_max.bit_length()}-bit "
            f"identifier; use bits inside 0x{id_max:X}"
        )
    if mask & msg.frame_id:
        raise DbcError(
            f"{where}: {ATTR_NODE_MASK} 0x{mask:X} overlaps the BO_ identifier "
            f"0x{msg.frame_id:X} (bits 0x{mask & msg.frame_id:X}); write the BO_ identifier "
            f"with the node-address bits zero (0x{msg.frame_id & ~mask:X})"
        )
    return mask


def _signal_def(where: str, sig: Any, defaults: dict[str, Any]) -> SignalDef:
    role = _attribute(sig, ATTR_ROLE, defaults) or None
    if role is not None:
        role = str(role)
        if role not in KNOWN_ROLES and not (role.startswith("alarm:") and len(role) > 6):
            raise DbcError(
                f"{where}: signal {sig.name} has unknown {ATTR_ROLE} {role!r}; use one of "
                f"{', '.join(sorted(KNOWN_ROLES))} or alarm:<name>"
            )
    conv = sig.conversion
    is_float = bool(conv.is_float)
    scale, offset = conv.scale, conv.offset
    is_integer = not is_float and _integral(scale) and _integral(offset)
    return SignalDef(
        name=sig.name,
        unit=sig.unit or "",
        role=role,
        is_float=is_float,
        start=int(sig.start),
        length=int(sig.length),
        byte_order=sig.byte_order,
        is_signed=bool(sig.is_signed),
        scale=scale,
        offset=offset,
        is_integer=is_integer,
        is_multiplexer=bool(sig.is_multiplexer),
        multiplexer_signal=sig.multiplexer_signal,
        multiplexer_ids=tuple(sig.multiplexer_ids) if sig.multiplexer_ids is not None else None,
        minimum=sig.minimum,
        maximum=sig.maximum,
    )


def _integral(value: float) -> bool:
    return isinstance(value, int) or float(value).is_integer()


def _check_unique(messages: Iterable[MessageDef]) -> None:
    """Refuse two messages with one name, or that could claim the same frame."""
    entries = list(messages)
    seen_names: dict[str, MessageDef] = {}
    exact: dict[tuple[bool, int], MessageDef] = {}
    for msg in entries:
        other = seen_names.setdefault(msg.name, msg)
        if other is not msg:
            raise DbcError(
                f"{msg.where}: message name {msg.name} is also defined in "
                f"{other.where}; rename one of them"
            )
        if not msg.node_mask:
            first = exact.setdefault((msg.is_extended, msg.frame_id), msg)
            if first is not msg:
                raise _clash(first, msg)
    for i, a in enumerate(entries):
        if not a.node_mask:
            continue
        for j, b in enumerate(entries):
            if i == j or a.is_extended != b.is_extended or (b.node_mask and j < i):
                continue
            if not (a.frame_id ^ b.frame_id) & ~(a.node_mask | b.node_mask):
                raise _clash(*sorted((a, b), key=entries.index))


def _clash(a: MessageDef, b: MessageDef) -> DbcError:
    what = (
        "the same identifier"
        if a.frame_id == b.frame_id and a.node_mask == b.node_mask
        else f"overlapping identifiers (node masks 0x{a.node_mask:X} and 0x{b.node_mask:X})"
    )
    return DbcError(
        f"{b.where}: message {b.name} (0x{b.frame_id:X}) and {a.name} "
        f"(0x{a.frame_id:X}, {a.where}) claim {what}; remove or renumber one"
    )
