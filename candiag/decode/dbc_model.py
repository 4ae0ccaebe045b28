"""What a DBC file becomes in candiag: messages, signals, protocol facts, and the problems
found while reading it.

The types :mod:`candiag.decode.dbc` builds (:class:`MessageDef`, :class:`SignalDef`,
:class:`ProtocolInfo`), the warnings it keeps (:class:`DbcWarning`) and the per-file collector
of problems (:class:`FileProblems`), apart from the loading so that the checks of
:mod:`candiag.decode.dbc_cantools` and :mod:`candiag.decode.dbc_conventions` can use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from candiag.errors import DbcError

I32 = npt.NDArray[np.int32]
U32 = npt.NDArray[np.uint32]
BoolArray = npt.NDArray[np.bool_]

#: Problems listed per file before the rest are only counted.
MAX_LISTED = 20

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

#: The identifier fields a protocol pack declares (MessageDef attributes), in the order of
#: docs/protocols.md: node, peer, group, error code, serial.
FIELD_MASKS = ("node_mask", "peer_mask", "group_mask", "error_mask", "serial_mask")
#: The message attributes holding them (and the bits that name nothing).
MASK_ATTRIBUTES = {
    "peer_mask": "CandiagPeerMask",
    "group_mask": "CandiagGroupMask",
    "error_mask": "CandiagErrorMask",
    "serial_mask": "CandiagSerialMask",
    "ignore_mask": "CandiagIgnoreMask",
}
#: Different ``CandiagNodeMask`` values one catalogue may use (the lookup does one pass each).
MAX_NODE_MASKS = 64
#: Warnings kept per file; the rest are counted in one last warning.
MAX_WARNINGS_PER_FILE = 200

EXTENDED_KEY_BIT = np.uint32(1 << 31)
STANDARD_ID_MAX = 0x7FF
EXTENDED_ID_MAX = 0x1FFFFFFF

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
    #: Protocol packs (docs/protocols.md): a ``reply_error`` signal's success value
    #: (``CandiagOkValue``), a ``direction`` signal's request and reply values, and the
    #: value names (``VAL_``) of the signal, e.g. the meanings of an error byte.
    ok_value: int | None = None
    request_values: tuple[int, ...] = ()
    reply_values: tuple[int, ...] = ()
    choices: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class ProtocolInfo:
    """The database attributes of a protocol pack (docs/protocols.md; 0 or -1: not known)."""

    protocol: str
    source_file: str
    controller_address: int = -1
    poll_period_ms: int = 0
    module_timeout_ms: int = 0
    controller_timeout_ms: int = 0
    reply_timeout_ms: int = 0
    bitrate: int = 0
    #: Meanings of the identifier's error field (the ``CandiagIdErrorTable`` value table).
    id_errors: tuple[tuple[int, str], ...] = ()


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
    # cantools' message, or None when read from the DBC cache: see cantools_message.
    cantools_object: Any = field(repr=False, compare=False)
    source_line: int = 0  # line of its BO_ in source_file (0: not from a file)
    #: How a protocol pack resolves the identifier (docs/protocols.md, "Resolving an
    #: identifier"): the bits of the other end's address, a group, an error code, a serial
    #: and bits that name nothing; all 0 outside the packs.
    peer_mask: int = 0
    group_mask: int = 0
    error_mask: int = 0
    serial_mask: int = 0
    ignore_mask: int = 0
    direction: str = ""  # request | reply | both | report | "" (CandiagDirection)
    reply: str | None = None  # on a request: the message answering it (CandiagReply)
    broadcast_node: int = -1  # the node value addressing every module (-1: none)
    protocol: ProtocolInfo | None = field(default=None, compare=False)

    @property
    def cantools_message(self) -> Any:
        """cantools' message of this definition; a message read from the DBC cache
        (:mod:`candiag.decode.dbc_cache`, which keeps none) has its file read again, once
        per file, when first asked (the file as it is then)."""
        if self.cantools_object is not None or not self.source_line:
            return self.cantools_object
        from candiag.decode.dbc import cantools_message_at

        return cantools_message_at(self.source_file, self.source_line)

    @property
    def match_mask(self) -> int:
        """The identifier bits that vary between frames of this message (V of the spec)."""
        return (
            self.node_mask | self.group_mask | self.error_mask | self.serial_mask | self.ignore_mask
        )

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
        return (can_id & self.node_mask) >> lowest_set_bit(self.node_mask)

    def can_id_for(self, node: int) -> int:
        """The on-bus identifier of this message sent by ``node`` (simulator, tests)."""
        if not self.node_mask:
            return self.frame_id
        shift = lowest_set_bit(self.node_mask)
        if (node << shift) & ~self.node_mask:
            raise ValueError(f"node {node} does not fit mask 0x{self.node_mask:X} of {self.name}")
        return self.frame_id | (node << shift)


@dataclass
class LoadedFile:
    """One file's messages and what was found wrong in it."""

    messages: list[MessageDef]
    problems: FileProblems


class FileProblems:
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
        raise listed_error(
            self.path,
            [str(e) for e in self.errors],
            self.dropped,
            hint or "strict loading refuses them; without --strict they are warnings",
        )


def listed_error(path: str, problems: Sequence[str], more: int, why: str) -> DbcError:
    if len(problems) == 1 and not more:
        return DbcError(problems[0])
    shown = list(problems[:MAX_LISTED])
    hidden = len(problems) - len(shown) + more
    lines = [f"{path}: {len(problems) + more} problems ({why}):"]
    lines += [f"  {p}" for p in shown]
    if hidden:
        lines.append(f"  ... and {hidden} more")
    return DbcError("\n".join(lines))


def lowest_set_bit(mask: int) -> int:
    return (mask & -mask).bit_length() - 1
