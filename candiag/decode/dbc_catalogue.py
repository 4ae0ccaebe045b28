"""The rules a merged catalogue of DBC messages keeps: one definition per identifier and
per name, and node-address ranges that do not claim each other's frames.

Apart from the reading of files (:mod:`candiag.decode.dbc_conventions`) because every
:class:`candiag.decode.dbc.ChargerDatabase` checks them, also one built from the DBC cache
(:mod:`candiag.decode.dbc_cache`) without cantools.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from candiag.decode.dbc_model import (
    ATTR_NODE_MASK,
    MAX_NODE_MASKS,
    DbcWarning,
    MessageDef,
    listed_error,
    lowest_set_bit,
)
from candiag.errors import DbcError

# -- two definitions of one message ----------------------------------------------------------


def resolve_duplicates(
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
        raise listed_error(
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


def check_unique(messages: Iterable[MessageDef], strict: bool) -> list[DbcWarning]:
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
            node = (frame_id & mask) >> lowest_set_bit(mask)
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
