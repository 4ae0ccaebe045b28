"""candump-style frame filters: ``can0,123:7FF,400~7F0,#000000FF,j``, applied to a FrameBatch.

The syntax is can-utils ``candump``'s (its usage text and ``candump.c``), so a technician
types what they already know; the semantics are the Linux CAN_RAW socket filters candump
sets (``net/can/af_can.c``, ``net/can/raw.c``), computed with numpy over a whole batch
(docs/filters.md has the details and the sources):

* ``<id>:<mask>`` keeps a data or remote frame when ``frame_id & mask == id & mask``;
  ``<id>~<mask>`` when they differ (an inverted filter).  ``frame_id`` carries the
  SocketCAN flag bits: ``0x80000000`` extended, ``0x40000000`` remote, so a mask with
  those bits tells standard from extended and data from remote frames
  (``123:C00007FF``: standard data frames with id 0x123 only).  An id written with
  exactly 8 hex digits is extended (``00000123:7FF`` is the extended 0x123), as candump
  decides it.  The error-frame flag is cleared from every mask, as candump does.
* ``#<errmask>`` keeps an error frame when its error-class bits and the mask share a
  bit (``#FFFFFFFF``: every error frame, ``#0``: none).
* ``j`` (or ``J``) joins the id filters of its group: a frame must match all of them
  (CAN_RAW_JOIN_FILTERS) instead of any.
* Several filters in one group are or-ed (unless ``j``); several groups (one per
  ``--filter`` option, like candump's several ``ifname,filters`` arguments) are or-ed
  too.  A group naming an interface (``can0,...``) applies to that channel only
  (``any`` to every channel); with interface-named groups only, frames of channels no
  group names are not kept, as candump does not listen there.

One deliberate difference from candump: without any ``#`` in a group, error frames are
kept (candump receives none unless asked).  candiag is a diagnostic tool and an error
frame is a finding's evidence; write ``#0`` to drop them exactly as candump would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candiag.errors import InputError
from candiag.ingest.frames import CAN_ERR_FLAG, CAN_ERR_MASK, FrameBatch

CAN_EFF_FLAG = 0x80000000
CAN_RTR_FLAG = 0x40000000
U32_MAX = 0xFFFFFFFF
ANY_INTERFACE = "any"
_HEX = re.compile(r"[0-9A-Fa-f]{1,8}")
_IFNAME = re.compile(r"[A-Za-z0-9_.:@\-]{1,32}")
SYNTAX_HELP = (
    "candump syntax: [IFACE,]FILTER[,FILTER...] with FILTER one of ID:MASK (keep when "
    "id & mask match), ID~MASK (keep when they differ), #ERRMASK (error classes), j (all "
    "filters must match); hex without 0x, e.g. can0,123:7FF or 18FF50E5:1FFFFFFF"
)

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class IdFilter:
    """One ``id:mask`` (or inverted ``id~mask``) CAN_RAW filter, flag bits included."""

    can_id: int
    mask: int
    inverted: bool = False

    def text(self) -> str:
        width = 8 if self.can_id & CAN_EFF_FLAG else 3
        return (
            f"{self.can_id & ~CAN_EFF_FLAG:0{width}X}{'~' if self.inverted else ':'}{self.mask:X}"
        )


@dataclass(frozen=True)
class FilterGroup:
    """The filters of one ``[IFACE,]...`` argument."""

    interface: str | None  # None or "any": every channel
    ids: tuple[IdFilter, ...] = ()
    error_mask: int | None = None  # None: error frames kept (see module docstring)
    join: bool = False
    source: str = ""

    def applies_to(self, channel: str) -> bool:
        return self.interface in (None, ANY_INTERFACE) or self.interface == channel


@dataclass(frozen=True)
class FrameFilter:
    """Filter groups (or-ed); :meth:`keep` is the boolean mask of a batch's kept frames."""

    groups: tuple[FilterGroup, ...]

    def text(self) -> str:
        return " ".join(g.source for g in self.groups)

    @property
    def interfaces(self) -> set[str]:
        return {g.interface for g in self.groups if g.interface not in (None, ANY_INTERFACE)}

    def check_channels(self, channels: Sequence[str], what: str) -> None:
        """An interface-named filter must name one of ``channels`` (InputError if not)."""
        missing = sorted(self.interfaces - set(channels))
        if missing and len(missing) == len(self.interfaces):
            raise InputError(
                f"--filter names {', '.join(missing)} but {what} is "
                f"{', '.join(channels) or 'no channel'}; name that channel, 'any', or leave "
                "the interface out (e.g. --filter 123:7FF)"
            )

    def keep(self, batch: FrameBatch) -> BoolArray:
        kept = np.zeros(len(batch), np.bool_)
        if not len(batch):
            return kept
        raw_id = kernel_ids(batch)
        error = batch.is_error
        channel_names = np.array(batch.channels or [""], dtype=object)
        for group in self.groups:
            applies = _channel_mask(group, batch, channel_names)
            if not applies.any():
                continue
            kept |= applies & ~error & _ids_match(group, raw_id)
            kept |= applies & error & _errors_match(group, batch.can_id)
        return kept

    def apply(self, batch: FrameBatch) -> FrameBatch:
        return batch.take(self.keep(batch)) if len(batch) else batch


def kernel_ids(batch: FrameBatch) -> npt.NDArray[np.uint32]:
    """Each frame's identifier as a CAN_RAW filter sees it: id | EFF flag | RTR flag."""
    ids = batch.can_id.astype(np.uint32)
    ids = ids | np.where(batch.is_extended, np.uint32(CAN_EFF_FLAG), np.uint32(0))
    ids = ids | np.where(batch.is_remote, np.uint32(CAN_RTR_FLAG), np.uint32(0))
    return np.asarray(ids, np.uint32)


def _channel_mask(
    group: FilterGroup, batch: FrameBatch, names: npt.NDArray[np.object_]
) -> BoolArray:
    if group.interface in (None, ANY_INTERFACE):
        return np.ones(len(batch), np.bool_)
    wanted = np.array([name == group.interface for name in names], np.bool_)
    return np.asarray(wanted[batch.channel], np.bool_)


def _ids_match(group: FilterGroup, raw_id: npt.NDArray[np.uint32]) -> BoolArray:
    if not group.ids:
        return np.ones(raw_id.shape, np.bool_)  # candump's default 0:0 filter
    filters = np.array([f.can_id for f in group.ids], np.uint32)
    masks = np.array([f.mask for f in group.ids], np.uint32)
    inverted = np.array([f.inverted for f in group.ids], np.bool_)
    equal = (raw_id[:, None] & masks) == (filters & masks)
    matched = equal != inverted  # an inverted filter matches where they differ
    return np.asarray(matched.all(axis=1) if group.join else matched.any(axis=1), np.bool_)


def _errors_match(group: FilterGroup, classes: npt.NDArray[np.uint32]) -> BoolArray:
    if group.error_mask is None:
        return np.ones(classes.shape, np.bool_)
    return np.asarray((classes & np.uint32(group.error_mask & CAN_ERR_MASK)) != 0, np.bool_)


# -- parsing --------------------------------------------------------------------------------
def parse_filters(specs: Sequence[str]) -> FrameFilter | None:
    """One group per ``--filter`` value; None when there is none."""
    groups = tuple(parse_group(spec) for spec in specs)
    return FrameFilter(groups) if groups else None


def parse_group(spec: str) -> FilterGroup:
    """``[IFACE,]FILTER[,FILTER...]`` (InputError naming the bad part and the fix)."""
    if not spec.strip():
        raise InputError(f"--filter is empty; {SYNTAX_HELP}")
    if len(spec) > 4096:
        raise InputError(f"--filter is {len(spec)} characters long; give at most 4096")
    tokens = spec.split(",")
    interface: str | None = None
    if not _is_filter_token(tokens[0]):
        interface = _interface(tokens[0], spec)
        tokens = tokens[1:]
        if not tokens:
            raise InputError(
                f"--filter {spec!r}: interface {interface!r} without any filter; add one "
                f"(e.g. {interface},123:7FF) or leave --filter out"
            )
    ids: list[IdFilter] = []
    error_mask: int | None = None
    join = False
    for position, token in enumerate(tokens, start=1 if interface is None else 2):
        where = f"--filter {spec!r}, item {position} ({token!r})"
        if token in ("j", "J"):
            join = True
        elif token.startswith("#"):
            if error_mask is not None:
                raise InputError(f"{where}: a second error mask; give one #ERRMASK per group")
            error_mask = _hex(token[1:], where, "error mask")
        elif ":" in token or "~" in token:
            ids.append(_id_filter(token, where))
        else:
            raise InputError(f"{where}: not a filter; {SYNTAX_HELP}")
    return FilterGroup(interface, tuple(ids), error_mask, join, spec)


def _is_filter_token(token: str) -> bool:
    return token in ("j", "J") or token.startswith("#") or ":" in token or "~" in token


def _interface(token: str, spec: str) -> str:
    if not token:
        raise InputError(
            f"--filter {spec!r}: empty interface name before the first comma; write "
            "IFACE,FILTER (can0,123:7FF) or the filter alone (123:7FF)"
        )
    if not _IFNAME.fullmatch(token):
        raise InputError(
            f"--filter {spec!r}: {token!r} is neither an interface name nor a filter; {SYNTAX_HELP}"
        )
    return token


def _id_filter(token: str, where: str) -> IdFilter:
    separators = [c for c in token if c in ":~"]
    if len(separators) != 1:
        raise InputError(
            f"{where}: one ':' (match) or '~' (inverted) between id and mask, found "
            f"{len(separators)}; e.g. 123:7FF or 123~7FF"
        )
    inverted = separators[0] == "~"
    id_text, mask_text = token.split(separators[0])
    can_id = _hex(id_text, where, "id")
    mask = _hex(mask_text, where, "mask")
    if len(id_text) == 8:  # candump: an 8-digit id is an extended one
        can_id |= CAN_EFF_FLAG
    return IdFilter(can_id, mask & ~CAN_ERR_FLAG & U32_MAX, inverted)


def _hex(text: str, where: str, what: str) -> int:
    if text.lower().startswith("0x"):
        raise InputError(
            f"{where}: the {what} {text!r} has a 0x prefix; candump filters are plain hex "
            f"(write {text[2:] or '0'})"
        )
    if not _HEX.fullmatch(text):
        problem = "is missing" if not text else f"{text!r} is not 1-8 hex digits"
        raise InputError(f"{where}: the {what} {problem}; {SYNTAX_HELP}")
    return int(text, 16)
