"""A reference implementation, for the tests, of the identifier resolution docs/protocols.md
specifies ("Resolving an identifier"): which pack message a frame is, its node, peer,
group, error code and direction.  Written from the spec, independently of any candiag
decoder code, so tests of the packs and the simulators check the spec too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cantools

MASKS = (
    "CandiagNodeMask",
    "CandiagPeerMask",
    "CandiagGroupMask",
    "CandiagErrorMask",
    "CandiagSerialMask",
    "CandiagIgnoreMask",
)


def attr(obj: Any, name: str, default: Any = None) -> Any:
    attrs = obj.dbc.attributes if obj.dbc is not None else {}
    return attrs[name].value if name in attrs else default


def field(can_id: int, mask: int) -> int:
    if not mask:
        return -1
    return (can_id & mask) >> ((mask & -mask).bit_length() - 1)


@dataclass(frozen=True)
class Resolved:
    message: Any
    node: int
    peer: int
    group: int
    error: int
    serial: int
    direction: str  # request | reply | report | "" (not an exchange)


class PackResolver:
    """Frames of one pack resolved by the masks (the controller address as in the BO_ ids)."""

    def __init__(self, path: Path) -> None:
        self.db: Any = cantools.database.load_file(str(path), strict=True)
        self.entries = []
        for msg in self.db.messages:
            masks = {m: int(attr(msg, m, 0) or 0) for m in MASKS}
            variable = (
                masks["CandiagNodeMask"]
                | masks["CandiagGroupMask"]
                | masks["CandiagErrorMask"]
                | masks["CandiagSerialMask"]
                | masks["CandiagIgnoreMask"]
            )
            self.entries.append((msg, masks, variable))

    def candidates(self, can_id: int, extended: bool = True) -> list[Any]:
        return [
            (msg, masks)
            for msg, masks, variable in self.entries
            if bool(msg.is_extended_frame) == extended
            and (can_id & ~variable) == (msg.frame_id & ~variable)
        ]

    def resolve(self, can_id: int, payload: bytes, extended: bool = True) -> Resolved | None:
        found = self.candidates(can_id, extended)
        if not found:
            return None
        assert len(found) == 1, f"{can_id:08X} matches {[m.name for m, _ in found]}"
        msg, masks = found[0]
        direction = str(attr(msg, "CandiagDirection", "") or "")
        if direction == "both":
            direction = self._payload_direction(msg, payload)
        return Resolved(
            message=msg,
            node=field(can_id, masks["CandiagNodeMask"]),
            peer=field(can_id, masks["CandiagPeerMask"]),
            group=field(can_id, masks["CandiagGroupMask"]),
            error=max(field(can_id, masks["CandiagErrorMask"]), 0),
            serial=field(can_id, masks["CandiagSerialMask"]),
            direction=direction,
        )

    @staticmethod
    def _payload_direction(msg: Any, payload: bytes) -> str:
        sig = next(s for s in msg.signals if attr(s, "CandiagRole") == "direction")
        value = msg.decode(payload, decode_choices=False)[sig.name]
        requests = {int(v) for v in str(attr(sig, "CandiagRequestValues")).split(",")}
        replies = {int(v) for v in str(attr(sig, "CandiagReplyValues")).split(",")}
        if value in requests:
            return "request"
        if value in replies:
            return "reply"
        return ""
