"""candiag's conventions on top of cantools' reading: the Candiag* attributes, bounds,
signal roles, and two definitions of one message.

From cantools' messages :func:`message_def` builds candiag's :class:`MessageDef` (node
masks and families, identifier fields of protocol packs, cycle times, signal roles), checking
what candiag relies on and keeping every deviation as a warning at its line
(docs/dbc.md).  :func:`resolve_duplicates` decides between two definitions of one message
across the loaded files.

Why one file of ~620 lines: each Candiag* convention is a small check, and they run in
one pass over a message; the rest of DBC loading is in :mod:`candiag.decode.dbc`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candiag.decode.dbc_cantools import dbc_id
from candiag.decode.dbc_layout import LayoutProblem, layout_problems
from candiag.decode.dbc_model import (
    ATTR_CYCLE_TIME,
    ATTR_NODE_FAMILY,
    ATTR_NODE_MASK,
    ATTR_ROLE,
    EXTENDED_ID_MAX,
    KNOWN_ROLES,
    MASK_ATTRIBUTES,
    PACK_ROLES,
    STANDARD_ID_MAX,
    FileProblems,
    MessageDef,
    ProtocolInfo,
    SignalDef,
    WarningKind,
)
from candiag.decode.dbc_text import (
    DbcIndex,
    MessageLine,
    identifier_problems,
    signal_bounds_problem,
)
from candiag.errors import DbcError

# -- candiag's conventions -----------------------------------------------------------------------


def mask_usable(definitions: dict[str, Any]) -> bool:
    mask_def = definitions.get(ATTR_NODE_MASK)
    return mask_def is None or mask_def.type_name in ("HEX", "INT")


def check_definitions(index: DbcIndex, definitions: dict[str, Any], problems: FileProblems) -> None:
    if mask_usable(definitions):
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


def attribute_defaults(db: Any) -> dict[str, Any]:
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
    problems: FileProblems

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


def message_def(
    path: Path,
    index: DbcIndex,
    msg: Any,
    written: MessageLine | None,
    defaults: dict[str, Any],
    mask_usable: bool,
    problems: FileProblems,
    protocol: ProtocolInfo | None = None,
) -> MessageDef:
    where = _Where(path, index, written, dbc_id(msg), msg.name, problems)
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
        cantools_object=msg,
        source_line=where.line,
        **_exchange_fields(where, msg, defaults, mask),
        protocol=protocol,
    )


def protocol_info(path: Path, db: Any, defaults: dict[str, Any]) -> ProtocolInfo | None:
    """The pack's database attributes, or None for a DBC that declares no protocol."""
    if db.dbc is None:
        return None
    name = _attribute(db, "CandiagProtocol", defaults)
    if not name:
        return None

    def number(attr: str, default: int) -> int:
        try:
            return int(_attribute(db, attr, defaults))
        except (TypeError, ValueError):
            return default

    table_name = _attribute(db, "CandiagIdErrorTable", defaults)
    table = (db.dbc.value_tables or {}).get(str(table_name), {}) if table_name else {}
    return ProtocolInfo(
        protocol=str(name),
        source_file=str(path),
        controller_address=number("CandiagControllerAddress", -1),
        poll_period_ms=number("CandiagPollPeriodMs", 0),
        module_timeout_ms=number("CandiagModuleTimeoutMs", 0),
        controller_timeout_ms=number("CandiagControllerTimeoutMs", 0),
        reply_timeout_ms=number("CandiagReplyTimeoutMs", 0),
        bitrate=number("CandiagBitrate", 0),
        id_errors=tuple((int(k), str(v)) for k, v in table.items()),
    )


_DIRECTIONS = ("request", "reply", "both", "report", "")


def _exchange_fields(
    where: _Where, msg: Any, defaults: dict[str, Any], node: int
) -> dict[str, Any]:
    """A pack message's identifier fields and exchange role (docs/protocols.md)."""
    id_max = EXTENDED_ID_MAX if msg.is_extended_frame else STANDARD_ID_MAX
    out: dict[str, Any] = {}
    for key, attr in MASK_ATTRIBUTES.items():
        value = _attribute(msg, attr, defaults)
        try:
            mask = int(value, 0) if isinstance(value, str) else int(value or 0)
        except (TypeError, ValueError):
            mask = -1
        if mask < 0 or mask & ~id_max or mask & node:
            where.add(
                where.attribute_line(attr),
                f"{attr} {value!r} is not a set of identifier bits apart from the node "
                f"address; candiag ignores it: give bits inside 0x{id_max:X}",
                "convention",
            )
            mask = 0
        out[key] = mask
    direction = str(_attribute(msg, "CandiagDirection", defaults) or "")
    if direction not in _DIRECTIONS:
        where.add(
            where.attribute_line("CandiagDirection"),
            f"CandiagDirection {direction!r} is none of request, reply, both, report; "
            f"candiag treats the message as no exchange",
            "convention",
        )
        direction = ""
    out["direction"] = direction
    out["reply"] = str(_attribute(msg, "CandiagReply", defaults) or "") or None
    broadcast = _attribute(msg, "CandiagBroadcastNode", defaults)
    out["broadcast_node"] = int(broadcast) if isinstance(broadcast, int) else -1
    return out


def _check_bounds(msg: Any, where: _Where) -> None:
    """What the text index could not see (odd formatting) is still refused in words."""
    found = identifier_problems(f"message {msg.name}", dbc_id(msg))
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
    id_max = EXTENDED_ID_MAX if msg.is_extended_frame else STANDARD_ID_MAX
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
        ok_value=_int_or_none(_attribute(sig, "CandiagOkValue", defaults))
        if role == "reply_error"
        else None,
        request_values=_int_list(_attribute(sig, "CandiagRequestValues", defaults)),
        reply_values=_int_list(_attribute(sig, "CandiagReplyValues", defaults)),
        choices=tuple((int(k), str(v)) for k, v in (sig.choices or {}).items()),
    )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _int_list(value: Any) -> tuple[int, ...]:
    """``"0,2,11"`` as integers (what is not a number is left out)."""
    out = []
    for part in str(value or "").split(","):
        with contextlib.suppress(ValueError):
            out.append(int(part.strip(), 0))
    return tuple(out)


def _integral(value: float) -> bool:
    try:
        return isinstance(value, int) or float(value).is_integer()
    except OverflowError:  # an integer too large for a float is integral
        return True
