"""DBC loading: the charger's message catalogue, with node-address masks, families and roles.

cantools parses the DBC text; this module owns what cantools does not do (docs/dbc.md):

* **lenient by default, strict on request.**  Files are read with cantools'
  ``strict=False``, as ``cantools decode --no-strict`` does, so vendor DBCs with
  overlapping signals, signals past the message end or two definitions of one message
  still load.  Every problem cantools' ``strict=True`` would refuse is kept as a
  :class:`DbcWarning` (``file:line``, the message, what is wrong in words) on
  :attr:`ChargerDatabase.warnings`; ``strict=True`` refuses the file listing them all;
* **the line of the definition at fault**, from one index of the text
  (:mod:`candiag.decode.dbc_text`), and bounds no CAN frame can exceed checked before
  cantools sees the text, so a hostile file costs time linear in its size;
* cantools' log lines during loading become located warnings (nothing printed raw);
* merging several files (or folders of ``*.dbc``) into one catalogue, with cantools'
  rule for two definitions of one identifier (the later one is used);
* the candiag attribute conventions (``GenMsgCycleTime``, ``CandiagNodeMask``,
  ``CandiagNodeFamily``, ``CandiagRole``) read from the DBC, never from code;
* a vectorized identifier lookup (:meth:`ChargerDatabase.match`) that also resolves
  identifiers carrying a node address (cantools' ``frame_id_mask`` works one frame at a
  time and one mask per database).

Masked identifiers follow the convention of the reference DBCs (docs/dbc.md, "candiag's
conventions"): the ``BO_`` identifier has the address bits zero and ``CandiagNodeMask``
names them; a frame matches when ``(can_id & ~mask) == frame_id`` with the same IDE, and
its node address is ``(can_id & mask) >> lowest_set_bit(mask)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import cantools
import numpy as np
import numpy.typing as npt
from cantools.database.errors import UnsupportedDatabaseFormatError

from candiag.decode.dbc_layout import LayoutProblem, layout_problems
from candiag.decode.dbc_text import (
    INDEPENDENT_SIGNALS,
    MAX_LISTED,
    DbcIndex,
    EntryLine,
    MessageLine,
    identifier_problems,
    index_dbc,
    signal_bounds_problem,
)
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
        "contactor:coil_current",
        "cooling:pump_command",
        "cooling:flow",
        "cooling:coolant_temperature",
        "meter:current",
        "meter:voltage",
    }
)
#: Roles of the protocol packs (docs/protocols.md): identity registers, the field a reply
#: must echo to answer a request, a reply's error byte, a payload direction field.
PACK_ROLES = frozenset({"serial", "command", "reply_error", "direction"})

#: Different ``CandiagNodeMask`` values one catalogue may use (the lookup does one pass each).
MAX_NODE_MASKS = 64
#: Warnings kept per file; the rest are counted in one last warning.
MAX_WARNINGS_PER_FILE = 200

_EXTENDED_KEY_BIT = np.uint32(1 << 31)
_STANDARD_ID_MAX = 0x7FF
_EXTENDED_ID_MAX = 0x1FFFFFFF

WarningKind = Literal[
    "signal_past_end",
    "signal_overlap",
    "signal_float_length",
    "signal_unselectable",
    "duplicate_signal",
    "duplicate_id",
    "duplicate_name",
    "masked_id_overlap",
    "unused_value_table",
    "unused_value_type",
    "undefined_attribute",
    "convention",
    "cantools",
    "more",
]


@dataclass(frozen=True)
class DbcWarning:
    """One problem of a DBC that candiag loads anyway (cantools' ``strict=True`` would not,
    or a candiag convention it ignores), located at the definition at fault."""

    file: str
    line: int  # 1-based; 0 when it concerns the file as a whole
    message: str | None  # the message concerned, if any
    text: str  # what is wrong and what candiag does about it, in words
    kind: WarningKind = "convention"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape (``analyze --json``, check-config): file, line, message, kind, text."""
        return {
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "kind": self.kind,
            "text": self.text,
        }


def warning_lines(warnings: Sequence[DbcWarning], limit: int = 10, indent: str = "  ") -> list[str]:
    """The warnings as text lines for a terminal: a head line, then one per warning."""
    if not warnings:
        return []
    lines = [
        f"{indent}DBC warnings: {len(warnings)} (loaded as cantools --no-strict loads it; "
        f"--strict refuses the file)"
    ]
    lines += [f"{indent}  {w}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"{indent}  ... and {len(warnings) - limit} more")
    return lines


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
    """One message: identifier (address bits zero when masked), timing, family and signals.

    ``signals`` holds what can be decoded: a signal past the message end (or an IEEE
    float of a length no float has) is left out, with a warning on the database.
    """

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
    """The merged message catalogue with a vectorized identifier lookup.

    ``warnings`` lists what the DBC files got wrong but candiag still loads (see
    :class:`DbcWarning`).  Two messages that could claim the same frame are refused,
    except a message whose exact identifier lies inside another's node-address range:
    the exact identifier wins (as in cantools, which knows no node masks), with a
    warning, or an error when ``strict``.
    """

    def __init__(
        self,
        messages: Sequence[MessageDef],
        sources: Sequence[str] = (),
        *,
        warnings: Sequence[DbcWarning] = (),
        strict: bool = False,
    ) -> None:
        clash_warnings = _check_unique(messages, strict)  # also for edited messages
        self.messages: list[MessageDef] = list(messages)
        self.sources: list[str] = list(sources)
        # Rebuilt from edited messages (mask overrides), the same clash is not listed twice.
        self.warnings: tuple[DbcWarning, ...] = tuple(
            dict.fromkeys((*warnings, *_capped(clash_warnings)))
        )
        self.strict = strict
        self._by_name = {m.name: i for i, m in enumerate(self.messages)}
        self.families: dict[str, list[MessageDef]] = {}
        for msg in self.messages:
            if msg.family:
                self.families.setdefault(msg.family, []).append(msg)
        self._build_lookup()

    def __len__(self) -> int:
        return len(self.messages)

    @cached_property
    def cantools_db(self) -> Any:
        """The messages as one cantools database (built when first asked for)."""
        with _CANTOOLS_LOG.capture():  # renamed duplicates: cantools logs "Overwriting"
            return cantools.database.can.Database(
                messages=[m.cantools_message for m in self.messages], strict=False
            )

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


# -- cantools' log lines ---------------------------------------------------------------------


class _CantoolsLog(logging.Filter):
    """Holds back cantools' log records in the thread that loads a DBC, to be reported."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        records: list[logging.LogRecord] | None = getattr(self._local, "records", None)
        if records is None:
            return True  # another thread, or not loading: cantools logs as usual
        records.append(record)
        return False

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[logging.LogRecord]]:
        self._install()
        previous = getattr(self._local, "records", None)
        records: list[logging.LogRecord] = []
        self._local.records = records
        try:
            yield records
        finally:
            self._local.records = previous

    def _install(self) -> None:
        # A logger's filters see only its own records, so every cantools logger gets one.
        with self._lock:
            names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("cantools")]
            for name in ("cantools", *names):
                logger = logging.getLogger(name)
                if self not in logger.filters:
                    logger.addFilter(self)


_CANTOOLS_LOG = _CantoolsLog()


# -- loading ------------------------------------------------------------------------------


def reference_dbc_dir() -> Path:
    """The reference charger's DBC folder: packaged ``candiag/data/dbc``, else the repo's ``dbc/``."""
    packaged = Path(__file__).resolve().parent.parent / "data" / "dbc"
    if packaged.is_dir() and any(packaged.glob("*.dbc")):
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "dbc"


def load_reference_database(*, strict: bool = False) -> ChargerDatabase:
    """The reference charger's DBCs (what ``--dbc`` defaults to)."""
    return load_dbc_paths([reference_dbc_dir()], strict=strict)


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


def load_dbc_paths(
    paths: Sequence[str | os.PathLike[str]], *, strict: bool = False
) -> ChargerDatabase:
    """Load DBC files and folders into one :class:`ChargerDatabase`.

    Lenient (default): loads what ``cantools decode --no-strict`` loads and lists every
    problem as a warning.  ``strict``: refuses what cantools' ``strict=True`` refuses,
    two definitions of one identifier or name, and candiag conventions it cannot use.
    Both raise :class:`~candiag.errors.DbcError` (``file:line: what; how to fix``) for a
    file that does not parse or holds what no CAN frame can (docs/dbc.md).
    """
    files = expand_dbc_paths(paths)
    loaded = [_load_file(path, strict) for path in files]
    return _database(loaded, [str(p) for p in files], strict)


def load_dbc_text(text: str, source: str = "<string>", *, strict: bool = False) -> ChargerDatabase:
    """Load one DBC given as text (tests, generated DBCs); ``source`` names it in errors."""
    return _database([_parse_dbc(Path(source), text, strict)], [source], strict)


@dataclass
class _Loaded:
    """One file's messages and what was found wrong in it."""

    messages: list[MessageDef]
    problems: _Problems


class _Problems:
    """Warnings of one file; in strict mode those strict loading refuses become errors."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path = str(path)
        self.strict = strict
        self.warnings: list[DbcWarning] = []
        self.errors: list[DbcWarning] = []
        self.dropped = 0

    def add(
        self,
        line: int,
        message: str | None,
        text: str,
        kind: WarningKind,
        *,
        strict_refuses: bool = True,
        path: str | None = None,
    ) -> None:
        warning = DbcWarning(path or self.path, line, message, text, kind)
        target = self.errors if self.strict and strict_refuses else self.warnings
        if len(target) >= MAX_WARNINGS_PER_FILE:
            self.dropped += 1
            return
        target.append(warning)

    def final_warnings(self) -> list[DbcWarning]:
        """The warnings in line order, then the count of those not kept."""
        self.warnings.sort(key=lambda w: w.line)
        if self.dropped:
            more = DbcWarning(
                self.path,
                0,
                None,
                f"{self.dropped} more problems in this file are not listed",
                "more",
            )
            return [*self.warnings, more]
        return list(self.warnings)

    def raise_errors(self, hint: str = "") -> None:
        if not self.errors:
            return
        raise _listed_error(
            self.path,
            [str(e) for e in self.errors],
            self.dropped,
            hint or "strict loading refuses them; without --strict they are warnings",
        )


def _listed_error(path: str, problems: Sequence[str], more: int, why: str) -> DbcError:
    if len(problems) == 1 and not more:
        return DbcError(problems[0])
    shown = list(problems[:MAX_LISTED])
    hidden = len(problems) - len(shown) + more
    lines = [f"{path}: {len(problems) + more} problems ({why}):"]
    lines += [f"  {p}" for p in shown]
    if hidden:
        lines.append(f"  ... and {hidden} more")
    return DbcError("\n".join(lines))


def _database(loaded: list[_Loaded], sources: list[str], strict: bool) -> ChargerDatabase:
    messages = [m for item in loaded for m in item.messages]
    kept, duplicate_warnings = _resolve_duplicates(messages, strict)
    warnings = [w for item in loaded for w in item.problems.final_warnings()]
    warnings += _capped(duplicate_warnings)
    return ChargerDatabase(kept, sources, warnings=warnings, strict=strict)


def _capped(warnings: list[DbcWarning]) -> list[DbcWarning]:
    """At most MAX_WARNINGS_PER_FILE warnings of one check, the rest counted."""
    if len(warnings) <= MAX_WARNINGS_PER_FILE:
        return warnings
    rest = len(warnings) - MAX_WARNINGS_PER_FILE
    text = f"{rest} more problems of this kind are not listed"
    return [*warnings[:MAX_WARNINGS_PER_FILE], DbcWarning(warnings[0].file, 0, None, text, "more")]


def _load_file(path: Path, strict: bool) -> _Loaded:
    try:
        # Bytes cp1252 leaves undefined (0x81, 0x8D, ...) are replaced, not fatal: they are
        # harmless in comments and give a syntax error with its line anywhere else.
        text = path.read_bytes().decode("cp1252", errors="replace")
    except OSError as err:
        raise DbcError(
            f"{path}: cannot read ({err.strerror}); check the path and permissions"
        ) from None
    return _parse_dbc(path, text, strict)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a DBC is read: cantools and candiag create
    objects by the hundred thousand and free none, and each full collection walks them
    all again, which made loading grow faster than the file (bench/bench_dbc.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_dbc(path: Path, text: str, strict: bool) -> _Loaded:
    with _gc_paused():
        return _parse_dbc_text(path, text, strict)


def _parse_dbc_text(path: Path, text: str, strict: bool) -> _Loaded:
    index = index_dbc(text, str(path))
    if index.problems:
        raise _listed_error(
            str(path),
            [f"{path}:{line}: {words}" for line, words in index.problems],
            0,
            "no CAN frame can carry these; fix the DBC",
        )
    problems = _Problems(path, strict)
    db, records = _cantools_load(path, text, index, problems)
    problems.raise_errors("cantools refuses them; fix the DBC")
    lines = _message_lines(index, db.messages)
    definitions = db.dbc.attribute_definitions if db.dbc else {}
    _check_definitions(index, definitions, problems)
    mask_usable = _mask_usable(definitions)
    defaults = _attribute_defaults(db)
    messages = [
        _message_def(path, index, msg, line, defaults, mask_usable, problems)
        for msg, line in zip(db.messages, lines, strict=True)
    ]
    _report_log(records, messages, problems)
    problems.raise_errors()
    return _Loaded(messages, problems)


# -- cantools and what it refuses even leniently ------------------------------------------------

_UNUSED_RE = re.compile(r"^[ \t]*(VAL_|SIG_VALTYPE_) (\d+) (\w+)[ \t]*$", re.M)


def _cantools_load(
    path: Path, text: str, index: DbcIndex, problems: _Problems
) -> tuple[Any, list[logging.LogRecord]]:
    """cantools' database of ``text`` (lenient), and the log lines it wrote meanwhile.

    cantools refuses even leniently a ``VAL_``/``SIG_VALTYPE_`` for a signal that does not
    exist and a ``BA_`` of an attribute no ``BA_DEF_`` defines.  Both only add names or
    types to nothing, so candiag reports each at its line and reads the file without them
    (strict mode refuses them).
    """
    blanked: set[int] = set()
    for _attempt in range(4):  # undefined attributes, unused VAL_, unused SIG_VALTYPE_
        try:
            with _CANTOOLS_LOG.capture() as records:
                db = cantools.database.load_string(text, database_format="dbc", strict=False)
            return db, records
        except UnsupportedDatabaseFormatError as err:
            repairs = _repairs(path, index, err, problems)
            if repairs is None or not repairs - blanked:
                raise _cantools_error(path, text, index, err) from None
        except (RecursionError, MemoryError) as err:
            raise _cantools_error(path, text, index, err) from None
        blanked |= repairs
        problems.raise_errors("cantools refuses them; fix the DBC")
        text = _blank(text, index, repairs)
    raise _cantools_error(path, text, index, RuntimeError("repeated refusals"))


def _repairs(
    path: Path, index: DbcIndex, err: UnsupportedDatabaseFormatError, problems: _Problems
) -> set[int] | None:
    """Statements (entry positions in ``index.entries``) to leave out, reported; None: none."""
    cause = _cause(err)
    if isinstance(cause, KeyError):
        return _undefined_attributes(index, problems) or None
    message = str(cause)
    if not message.startswith(("unused VAL_ entries", "unused SIG_VALTYPE_ entries")):
        return None
    positions: dict[tuple[str, int | None, str], list[int]] = {}
    for pos, entry in enumerate(index.entries):
        positions.setdefault((entry.keyword, entry.dbc_id, entry.name), []).append(pos)
    found: set[int] = set()
    for keyword, raw_id, name in _UNUSED_RE.findall(message):
        for pos in positions.get((keyword, int(raw_id), name), []):
            if pos not in found:
                found.add(pos)
                _report_unused(index, index.entries[pos], problems)
    return found or None


def _report_unused(index: DbcIndex, entry: EntryLine, problems: _Problems) -> None:
    assert entry.dbc_id is not None
    owners = index.messages_with_id(entry.dbc_id)
    if owners and owners[0].name == INDEPENDENT_SIGNALS:
        where = (
            f"signal {entry.name} belongs to {INDEPENDENT_SIGNALS} (signals assigned to no "
            f"message, line {owners[0].line}), which cantools and candiag skip"
        )
        name: str | None = None
    elif owners:
        msg = owners[0]
        where = (
            f"message {msg.name} (BO_ {entry.dbc_id}, line {msg.line}) has no signal {entry.name}"
        )
        name = msg.name
    else:
        where = f"no BO_ has identifier {entry.dbc_id}"
        name = None
    if entry.keyword == "VAL_":
        text = (
            f"VAL_ names values of signal {entry.name} of message {entry.dbc_id}, but {where}; "
            f"candiag ignores these value names: fix the identifier or signal name"
        )
        kind: WarningKind = "unused_value_table"
    else:
        text = (
            f"SIG_VALTYPE_ declares signal {entry.name} of message {entry.dbc_id} a float, but "
            f"{where}; candiag ignores it: fix the identifier or signal name"
        )
        kind = "unused_value_type"
    problems.add(entry.line, name, text, kind)


def _undefined_attributes(index: DbcIndex, problems: _Problems) -> set[int]:
    found: set[int] = set()
    for pos, entry in enumerate(index.entries):
        if entry.keyword == "BA_" and entry.name not in index.attribute_definitions:
            found.add(pos)
            problems.add(
                entry.line,
                None,
                f"attribute '{entry.name}' is set here but never defined with BA_DEF_; "
                f"candiag ignores this setting: add BA_DEF_ for '{entry.name}' or remove the line",
                "undefined_attribute",
            )
    return found


def _blank(text: str, index: DbcIndex, entries: set[int]) -> str:
    """``text`` with those statements replaced by spaces (lines and offsets unchanged)."""
    spans = sorted(index.entries[i].span for i in entries)
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(re.sub(r"[^\n]", " ", text[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _cause(err: BaseException) -> BaseException:
    return getattr(err, "e_dbc", None) or err.__cause__ or err.__context__ or err


def _cantools_error(path: Path, text: str, index: DbcIndex, err: BaseException) -> DbcError:
    """cantools' refusal in words, at the line of the definition it concerns."""
    cause = _cause(err)
    line = getattr(cause, "line", None)
    column = getattr(cause, "column", None)
    if isinstance(line, int):
        source = text.split("\n")
        snippet = source[line - 1].strip() if 0 < line <= len(source) else ""
        where = f"{path}:{line}:{column}" if isinstance(column, int) else f"{path}:{line}"
        hint = _syntax_hint(source, line, column if isinstance(column, int) else 0)
        return DbcError(
            f"{where}: invalid syntax in {snippet!r}: {hint}; fix the line or remove the file"
        )
    if isinstance(cause, KeyError) and cause.args:
        key = str(cause.args[0])
        words = f"'{key}' is used but never defined (no BA_DEF_ or definition of that name)"
        found = _line_quoting(text, key)
    elif isinstance(cause, RecursionError):
        words = (
            "signals are multiplexed too deeply for cantools to read (it follows nested "
            "multiplexers recursively, about a thousand levels at most)"
        )
        found = 0
    else:
        words = str(cause).strip() or f"{type(cause).__name__} while reading"
        found = _line_naming(index, words)
    where = f"{path}:{found}" if found else str(path)
    return DbcError(f"{where}: cantools cannot read the DBC: {words}; fix the DBC")


_SEMICOLON_KEYWORDS = frozenset(
    {"BA_", "BA_DEF_", "BA_DEF_DEF_", "BA_REL_", "BA_DEF_REL_", "CM_", "VAL_", "VAL_TABLE_"}
    | {"SIG_VALTYPE_", "SG_MUL_VAL_", "BO_TX_BU_", "SIG_GROUP_", "EV_", "ENVVAR_DATA_"}
)


def _syntax_hint(lines: list[str], line: int, column: int) -> str:
    """What is probably wrong where cantools' parser stopped (1-based line and column)."""
    rest = lines[line - 1][column - 1 :] if 0 < line <= len(lines) and column > 0 else ""
    if re.match(r"\.\d", rest):
        return "a number must start with a digit (0.25, not .25)"
    name = re.match(r"\d+[A-Za-z_][A-Za-z0-9_]*", rest)
    if name:
        return f"the name {name.group()!r} starts with a digit, which DBC names may not"
    statement = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    if statement.startswith("CM_ SG_") and rest.startswith('"'):
        return 'a comment on a signal is written CM_ SG_ <identifier> <signal> "text";'
    if statement.startswith("CM_") and rest[:1].isdigit():
        return 'a comment on a message is written CM_ BO_ <identifier> "text";'
    previous = line - 2
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    if previous >= 0 and column <= len(lines[line - 1]) - len(lines[line - 1].lstrip()) + 1:
        statement = lines[previous].strip()
        keyword = statement.split(None, 1)[0] if statement else ""
        if keyword in _SEMICOLON_KEYWORDS and not statement.endswith(";"):
            return f"the {keyword} statement on line {previous + 1} does not end with ';'"
    return "cantools expected a different word, number or sign at this column"


def _line_quoting(text: str, name: str) -> int:
    """Line of the first ``"name"`` in the text (once, on an error path)."""
    at = text.find(f'"{name}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 0


def _line_naming(index: DbcIndex, words: str) -> int:
    """Line of the first message named (quoted or as a word) in a cantools error text."""
    names = {m.name: m.line for m in reversed(index.messages)}
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", words):
        if word in names:
            return names[word]
    return 0


def _message_lines(index: DbcIndex, messages: Sequence[Any]) -> list[MessageLine | None]:
    """The ``BO_`` line of each cantools message (cantools keeps the file's order)."""
    written = [m for m in index.messages if m.name != INDEPENDENT_SIGNALS]
    if len(written) == len(messages) and all(
        w.dbc_id == _dbc_id(m) for w, m in zip(written, messages, strict=True)
    ):
        return list(written)
    # The index missed a definition cantools read (odd formatting): match by identifier.
    by_id: dict[int, list[MessageLine]] = {}
    for w in reversed(written):
        if w.dbc_id is not None:
            by_id.setdefault(w.dbc_id, []).append(w)
    found: list[MessageLine | None] = []
    for m in messages:
        candidates = by_id.get(_dbc_id(m))
        found.append(candidates.pop() if candidates else None)
    return found


def _dbc_id(msg: Any) -> int:
    return int(msg.frame_id) | (0x80000000 if msg.is_extended_frame else 0)


def _report_log(
    records: list[logging.LogRecord], messages: list[MessageDef], problems: _Problems
) -> None:
    """cantools' log lines as located warnings (duplicates are reported on their own)."""
    lines = {m.cantools_message.name: m.source_line for m in reversed(messages)}
    for record in records:
        text = record.getMessage()
        if text.startswith("Overwriting message"):
            continue  # two definitions of one name or identifier: see _resolve_duplicates
        quoted = re.findall(r"'([^']*)'", text)
        line = next((lines[q] for q in quoted if q in lines), 0)
        problems.add(
            line,
            next((q for q in quoted if q in lines), None),
            f"cantools reports: {text}",
            "cantools",
            strict_refuses=False,
        )


# -- candiag's conventions -----------------------------------------------------------------------


def _mask_usable(definitions: dict[str, Any]) -> bool:
    mask_def = definitions.get(ATTR_NODE_MASK)
    return mask_def is None or mask_def.type_name in ("HEX", "INT")


def _check_definitions(index: DbcIndex, definitions: dict[str, Any], problems: _Problems) -> None:
    if _mask_usable(definitions):
        return
    line = index.attribute_definitions.get(ATTR_NODE_MASK, (0, ""))[0]
    problems.add(
        line,
        None,
        f"attribute {ATTR_NODE_MASK} is declared {definitions[ATTR_NODE_MASK].type_name}; "
        f"candiag ignores it (messages are matched by their exact identifier): declare it "
        f'as BA_DEF_ BO_ "{ATTR_NODE_MASK}" HEX 0 536870911;',
        "convention",
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


@dataclass
class _Where:
    """Where one message is written, for its problems."""

    path: Path
    index: DbcIndex
    written: MessageLine | None
    dbc_id: int
    name: str
    problems: _Problems

    @property
    def line(self) -> int:
        return self.written.line if self.written else 0

    def signal_line(self, signal: str) -> int:
        return self.written.signal_line(signal) if self.written else 0

    def attribute_line(self, attr: str, signal: str = "") -> int:
        kind = "SG_" if signal else "BO_"
        return self.index.attribute_line(attr, kind, self.dbc_id, signal) or (
            self.signal_line(signal) if signal else self.line
        )

    def add(self, line: int, text: str, kind: WarningKind, *, strict_refuses: bool = True) -> None:
        self.problems.add(
            line, self.name, f"message {self.name}: {text}", kind, strict_refuses=strict_refuses
        )


def _message_def(
    path: Path,
    index: DbcIndex,
    msg: Any,
    written: MessageLine | None,
    defaults: dict[str, Any],
    mask_usable: bool,
    problems: _Problems,
) -> MessageDef:
    where = _Where(path, index, written, _dbc_id(msg), msg.name, problems)
    if msg.is_container:
        raise DbcError(
            f"{path}:{where.line}: message {msg.name}: container messages are not supported; "
            f"remove the message"
        )
    _check_bounds(msg, where)
    raw_mask = _attribute(msg, ATTR_NODE_MASK, defaults) if mask_usable else None
    mask = _node_mask(where, msg, raw_mask)
    cycle = _attribute(msg, ATTR_CYCLE_TIME, defaults)
    if cycle is None:
        cycle = msg.cycle_time
    try:
        cycle_ms = int(cycle) if cycle is not None else None
    except (TypeError, ValueError):
        where.add(
            where.attribute_line(ATTR_CYCLE_TIME),
            f"{ATTR_CYCLE_TIME} {cycle!r} is not an integer (ms); candiag treats the "
            f"message as not cyclic: give the cycle time in milliseconds",
            "convention",
        )
        cycle_ms = None
    family = _attribute(msg, ATTR_NODE_FAMILY, defaults)
    decodable = _decodable_signals(msg, where)
    signals = _unique_signal_names(
        [_signal_def(where, sig, defaults) for sig in msg.signals if sig.name in decodable],
        where,
    )
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
        source_line=where.line,
    )


def _check_bounds(msg: Any, where: _Where) -> None:
    """What the text index could not see (odd formatting) is still refused in words."""
    found = identifier_problems(f"message {msg.name}", _dbc_id(msg))
    if not 0 <= int(msg.length) <= 64:
        found.append(
            f"message {msg.name} is {msg.length} bytes long; a CAN FD frame has at most 64"
        )
    for sig in msg.signals:
        problem = signal_bounds_problem(
            sig.name, msg.name, int(sig.start), int(sig.length), sig.byte_order == "big_endian"
        )
        if problem:
            found.append(problem)
    if found:
        raise DbcError(f"{where.path}:{where.line}: {found[0]}")


_LAYOUT_KINDS: dict[str, WarningKind] = {
    "past_end": "signal_past_end",
    "overlap": "signal_overlap",
    "overlap_count": "signal_overlap",
    "bad_float": "signal_float_length",
}


def _decodable_signals(msg: Any, where: _Where) -> set[str]:
    """Names of the signals candiag decodes; every layout problem reported at its line."""
    found: list[LayoutProblem] = layout_problems(msg)
    names = [s.name for s in msg.signals]
    undecodable = {p.signal for p in found if p.kind in ("past_end", "bad_float")}
    in_tree = _tree_names(msg.signal_tree)
    for sig in msg.signals:
        if sig.name not in in_tree:  # cantools never decodes it
            undecodable.add(sig.name)
            parent = sig.multiplexer_signal or "?"
            where.add(
                where.signal_line(sig.name),
                f"signal {sig.name} is multiplexed by {parent}, which is not marked as a "
                f"multiplexer (M) in its SG_ line (line {where.signal_line(parent)}); cantools "
                f"never decodes the signal and neither does candiag: mark {parent} with M",
                "signal_unselectable",
                strict_refuses=False,
            )
    for problem in found:
        where.problems.add(
            where.signal_line(problem.signal) if problem.signal else where.line,
            msg.name,
            problem.text,
            _LAYOUT_KINDS[problem.kind],
            strict_refuses=problem.strict_refuses,
        )
    # A signal whose multiplexer is not decoded is never selected.
    changed = True
    while changed:
        changed = False
        for sig in msg.signals:
            parent = sig.multiplexer_signal
            if sig.name not in undecodable and parent is not None and parent in undecodable:
                undecodable.add(sig.name)
                changed = True
                where.add(
                    where.signal_line(sig.name),
                    f"signal {sig.name} is selected by multiplexer {parent}, which candiag "
                    f"cannot decode; it is not decoded either",
                    "signal_unselectable",
                    strict_refuses=False,
                )
    return {n for n in names if n not in undecodable}


def _tree_names(tree: list[Any]) -> set[str]:
    """Every signal name in a cantools signal tree (what cantools decodes)."""
    names: set[str] = set()
    stack = list(tree)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for mux, children in node.items():
                names.add(mux)
                for child in children.values():
                    stack.extend(child)
        else:
            names.add(node)
    return names


def _unique_signal_names(signals: list[SignalDef], where: _Where) -> tuple[SignalDef, ...]:
    """Two signals of one name: the later is called ``name#2`` (both decode)."""
    seen: set[str] = {s.name for s in signals}
    next_number: dict[str, int] = {}
    out: list[SignalDef] = []
    for sig in signals:
        if sig.name not in next_number:
            next_number[sig.name] = 2
            out.append(sig)
            continue
        k = next_number[sig.name]
        while f"{sig.name}#{k}" in seen:
            k += 1
        next_number[sig.name] = k + 1
        new = f"{sig.name}#{k}"
        seen.add(new)
        where.add(
            where.signal_line(sig.name),
            f"signal name {sig.name} is used by more than one signal (start bit {sig.start}: "
            f"candiag calls this one {new}); rename one",
            "duplicate_signal",
            strict_refuses=False,
        )
        out.append(dataclasses.replace(sig, name=new))
    return tuple(out)


def _node_mask(where: _Where, msg: Any, value: Any) -> int:
    if value in (None, "", 0):
        return 0
    line = where.attribute_line(ATTR_NODE_MASK)
    ignored = "candiag ignores the mask (the message is matched by its exact identifier)"
    try:
        mask = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        where.add(
            line,
            f"{ATTR_NODE_MASK} {value!r} is not a number; {ignored}: give the identifier bits "
            f"holding the node address, e.g. 255 for the low byte",
            "convention",
        )
        return 0
    id_max = _EXTENDED_ID_MAX if msg.is_extended_frame else _STANDARD_ID_MAX
    if mask < 0 or mask & ~id_max:
        where.add(
            line,
            f"{ATTR_NODE_MASK} 0x{mask:X} exceeds the {id_max.bit_length()}-bit "
            f"identifier; {ignored}: use bits inside 0x{id_max:X}",
            "convention",
        )
        return 0
    if mask & msg.frame_id:
        where.add(
            line,
            f"{ATTR_NODE_MASK} 0x{mask:X} overlaps the BO_ identifier "
            f"0x{msg.frame_id:X} (bits 0x{mask & msg.frame_id:X}); {ignored}: write the BO_ "
            f"identifier with the node-address bits zero (0x{msg.frame_id & ~mask:X})",
            "convention",
        )
        return 0
    return mask


def _signal_def(where: _Where, sig: Any, defaults: dict[str, Any]) -> SignalDef:
    role = _attribute(sig, ATTR_ROLE, defaults) or None
    if role is not None:
        role = str(role)
        known = KNOWN_ROLES | PACK_ROLES
        if role not in known and not (role.startswith("alarm:") and len(role) > 6):
            where.add(
                where.attribute_line(ATTR_ROLE, sig.name),
                f"signal {sig.name} has unknown {ATTR_ROLE} {role!r}, which candiag ignores; "
                f"use one of {', '.join(sorted(known))} or alarm:<name>",
                "convention",
            )
            role = None
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
    try:
        return isinstance(value, int) or float(value).is_integer()
    except OverflowError:  # an integer too large for a float is integral
        return True


# -- two definitions of one message ----------------------------------------------------------


def _resolve_duplicates(
    messages: list[MessageDef], strict: bool
) -> tuple[list[MessageDef], list[DbcWarning]]:
    """cantools' rule: of two messages with one identifier, the later is used; of two with
    one name, cantools finds the later by name and both by identifier, so candiag keeps
    both and calls the earlier ``name@0xID``.  ``strict`` refuses both cases."""
    last: dict[tuple[bool, int], int] = {}
    for i, msg in enumerate(messages):
        last[(msg.is_extended, msg.frame_id)] = i
    errors: list[str] = []
    warnings: list[DbcWarning] = []
    kept: list[MessageDef] = []
    for msg in messages:
        winner = messages[last[(msg.is_extended, msg.frame_id)]]
        if winner is msg:
            kept.append(msg)
            continue
        if strict:
            errors.append(str(_clash(msg, winner)))
            continue
        warnings.append(
            DbcWarning(
                winner.source_file,
                winner.source_line,
                winner.name,
                f"message {winner.name} has identifier {_format_id(winner)}, already used by "
                f"message {msg.name} at {msg.where}; cantools and candiag decode "
                f"{_format_id(winner)} with this later definition and ignore {msg.name}: "
                f"remove or renumber one",
                "duplicate_id",
            )
        )
    kept, name_warnings = _rename_duplicate_names(kept, strict, errors)
    if errors:
        raise _listed_error(
            "DBC files",
            errors,
            0,
            "strict loading refuses them; without --strict cantools' rule picks one",
        )
    return kept, warnings + name_warnings


def _rename_duplicate_names(
    messages: list[MessageDef], strict: bool, errors: list[str]
) -> tuple[list[MessageDef], list[DbcWarning]]:
    last: dict[str, int] = {}
    for i, msg in enumerate(messages):
        last[msg.name] = i
    names = set(last)
    out: list[MessageDef] = []
    warnings: list[DbcWarning] = []
    for msg in messages:
        winner = messages[last[msg.name]]
        if winner is msg:
            out.append(msg)
            continue
        if strict:
            errors.append(
                f"{winner.where}: message name {winner.name} is also defined in "
                f"{msg.where}; rename one of them"
            )
            continue
        new = f"{msg.name}@{_format_id(msg)}"
        k = 2
        while new in names:
            new = f"{msg.name}@{_format_id(msg)}#{k}"
            k += 1
        names.add(new)
        warnings.append(
            DbcWarning(
                winner.source_file,
                winner.source_line,
                winner.name,
                f"message name {winner.name} ({_format_id(winner)}) is also used by the "
                f"message at {msg.where} ({_format_id(msg)}); both decode by identifier, and "
                f"candiag calls the earlier one {new}: rename one",
                "duplicate_name",
            )
        )
        out.append(dataclasses.replace(msg, name=new))
    return out, warnings


def _format_id(msg: MessageDef) -> str:
    return f"0x{msg.frame_id:08X}" if msg.is_extended else f"0x{msg.frame_id:03X}"


def _check_unique(messages: Iterable[MessageDef], strict: bool) -> list[DbcWarning]:
    """Refuse two messages with one name, or that could claim the same frame; an exact
    identifier inside a node-address range is a warning (exact wins), unless ``strict``."""
    entries = list(messages)
    seen_names: dict[str, MessageDef] = {}
    exact: dict[tuple[bool, int], MessageDef] = {}
    masks: dict[int, list[MessageDef]] = {}
    for msg in entries:
        other = seen_names.setdefault(msg.name, msg)
        if other is not msg:
            raise DbcError(
                f"{msg.where}: message name {msg.name} is also defined in "
                f"{other.where}; rename one of them"
            )
        if msg.node_mask:
            masks.setdefault(msg.node_mask, []).append(msg)
            continue
        first = exact.setdefault((msg.is_extended, msg.frame_id), msg)
        if first is not msg:
            raise _clash(first, msg)
    if len(masks) > MAX_NODE_MASKS:
        raise DbcError(
            f"{entries[0].where}: the DBC files use {len(masks)} different {ATTR_NODE_MASK} "
            f"values; candiag supports at most {MAX_NODE_MASKS} (one lookup pass each): "
            f"use one mask per node family"
        )
    order = {id(m): i for i, m in enumerate(entries)}
    mask_list = sorted(masks)
    for a, mask_a in enumerate(mask_list):
        for mask_b in mask_list[a:]:
            combined = mask_a | mask_b
            groups: dict[tuple[bool, int], MessageDef] = {}
            members = masks[mask_a] if mask_a == mask_b else masks[mask_a] + masks[mask_b]
            for msg in sorted(members, key=lambda m: order[id(m)]):
                key = (msg.is_extended, msg.frame_id & ~combined)
                first = groups.setdefault(key, msg)
                if first is not msg and (mask_a == mask_b or first.node_mask != msg.node_mask):
                    raise _clash(first, msg)
    warnings: list[DbcWarning] = []
    for mask, members in masks.items():
        bases = {(m.is_extended, m.frame_id): m for m in members}
        for (ext, frame_id), msg in exact.items():
            owner = bases.get((ext, frame_id & ~mask))
            if owner is None:
                continue
            if strict:
                raise _clash(*sorted((owner, msg), key=lambda m: order[id(m)]))
            node = (frame_id & mask) >> _lowest_set_bit(mask)
            warnings.append(
                DbcWarning(
                    msg.source_file,
                    msg.source_line,
                    msg.name,
                    f"message {msg.name} ({_format_id(msg)}) lies inside the node-address "
                    f"range of message {owner.name} ({_format_id(owner)}, {ATTR_NODE_MASK} "
                    f"0x{mask:X}, {owner.where}); frames {_format_id(msg)} decode as "
                    f"{msg.name} (exact identifiers first, as cantools does), so node {node} "
                    f"of {owner.name} is not seen: renumber one or narrow the mask",
                    "masked_id_overlap",
                )
            )
    return warnings


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
