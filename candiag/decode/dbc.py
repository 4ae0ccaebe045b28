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

import dataclasses
import functools
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode import dbc_cache
from candiag.decode.dbc_catalogue import check_unique, resolve_duplicates
from candiag.decode.dbc_model import (
    EXTENDED_KEY_BIT,
    FIELD_MASKS,
    I32,
    KNOWN_ROLES,
    MAX_WARNINGS_PER_FILE,
    PACK_ROLES,
    U32,
    BoolArray,
    DbcWarning,
    LoadedFile,
    MessageDef,
    SignalDef,
    lowest_set_bit,
    warning_lines,
)
from candiag.errors import DbcError

# The DBC model's types are part of this module's interface (candiag.decode.dbc_model).
__all__ = [
    "KNOWN_ROLES",
    "PACK_ROLES",
    "ChargerDatabase",
    "DbcWarning",
    "MessageDef",
    "SignalDef",
    "expand_dbc_paths",
    "load_dbc_paths",
    "load_dbc_text",
    "load_reference_database",
    "packs_dir",
    "reference_dbc_dir",
    "warning_lines",
]


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
        clash_warnings = check_unique(messages, strict)  # also for edited messages
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
        import cantools  # lazily: see dbc_cantools.cantools_load

        from candiag.decode.dbc_cantools import CANTOOLS_LOG

        with CANTOOLS_LOG.capture():  # renamed duplicates: cantools logs "Overwriting"
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
        exact = [(self._key(m), i) for i, m in enumerate(self.messages) if not m.match_mask]
        exact.sort()
        self._exact_keys = np.array([k for k, _ in exact], np.uint32)
        self._exact_index = np.array([i for _, i in exact], np.int32)
        groups: dict[int, list[tuple[int, int]]] = {}
        for i, m in enumerate(self.messages):
            if m.match_mask:
                groups.setdefault(m.match_mask, []).append((self._key(m) & ~m.match_mask, i))
        self._masked: list[tuple[np.uint32, U32, I32]] = []
        # The most specific masks first: of two packs of one family (DPM1000's identifiers
        # are Winline's with group bits 3), the one naming more bits claims the frame.
        for mask, entries in sorted(groups.items(), key=lambda g: (bin(g[0]).count("1"), g[0])):
            entries.sort()
            self._masked.append(
                (
                    np.uint32(~mask & 0xFFFFFFFF),
                    np.array([k for k, _ in entries], np.uint32),
                    np.array([i for _, i in entries], np.int32),
                )
            )
        self._node_only = all(m.match_mask == m.node_mask for m in self.messages)
        # Per message (one extra row for "unknown"): the field masks and their shifts.
        self._fields = {
            name: (
                np.array([getattr(m, name) for m in self.messages] + [0], np.uint32),
                np.array(
                    [
                        lowest_set_bit(getattr(m, name)) if getattr(m, name) else 0
                        for m in self.messages
                    ]
                    + [0],
                    np.uint32,
                ),
            )
            for name in FIELD_MASKS
        }

    @staticmethod
    def _key(msg: MessageDef) -> int:
        return msg.frame_id | (1 << 31 if msg.is_extended else 0)

    def match(self, can_id: npt.NDArray[np.uint32], is_extended: BoolArray) -> tuple[I32, I32]:
        """Message index (-1 unknown) and node address (-1 none) of every identifier.

        Identifiers without a mask are looked up exactly first; then each distinct mask
        (the bits a message lets vary: node, group, error, serial and ignored bits) is
        tried on what is still unknown, the most specific first.  Standard and extended
        identifiers never match each other.  The caller passes data frames only
        (error-frame class bits and remote frames are not messages).
        """
        keys = np.asarray(can_id, np.uint32) | (
            np.asarray(is_extended, np.bool_).astype(np.uint32) << np.uint32(31)
        )
        message = _lookup(self._exact_keys, self._exact_index, keys)
        # Catalogues whose only varying bits are node addresses (the reference DBCs) take the
        # node from the pass that matched, as cheaply as before the packs' other fields.
        node = np.full(keys.shape, -1, np.int32) if self._node_only else None
        for inverse_mask, base_keys, base_index in self._masked:
            unknown = np.flatnonzero(message < 0)
            if not unknown.size:
                break
            sub = keys[unknown]
            found = _lookup(base_keys, base_index, sub & inverse_mask)
            hit = found >= 0
            rows = unknown[hit]
            message[rows] = found[hit]
            if node is not None:
                mask = ~inverse_mask & ~EXTENDED_KEY_BIT
                shift = np.uint32(lowest_set_bit(int(mask)))
                node[rows] = ((sub[hit] & mask) >> shift).astype(np.int32)
        if node is not None:
            return message, node
        return message, self.field_of("node_mask", message, keys)

    def field_of(
        self, mask_name: str, message: npt.NDArray[np.integer[Any]], can_id: npt.NDArray[np.uint32]
    ) -> I32:
        """The identifier field ``mask_name`` (one of :data:`FIELD_MASKS`) of every frame of
        the given message indices: ``(id & mask) >> lowest_set_bit(mask)``, -1 where the
        message has no such field or is unknown (-1)."""
        masks, shifts = self._fields[mask_name]
        row = np.where(message >= 0, message, len(self.messages))
        mask = masks[row]
        value = ((np.asarray(can_id, np.uint32) & mask) >> shifts[row]).astype(np.int32)
        value[mask == 0] = -1
        return value

    def with_controller_address(self, address: int) -> ChargerDatabase:
        """The same messages with ``address`` written into their peer bits (a bus whose
        controller uses another address than the pack's ``BO_`` identifiers,
        docs/protocols.md rule 1); messages whose peer field cannot hold it are unchanged."""
        changed = []
        for m in self.messages:
            shift = lowest_set_bit(m.peer_mask) if m.peer_mask else 0
            if m.peer_mask and address >= 0 and not (address << shift) & ~m.peer_mask:
                m = dataclasses.replace(m, frame_id=(m.frame_id & ~m.peer_mask) | address << shift)
            changed.append(m)
        return ChargerDatabase(changed, self.sources, warnings=self.warnings, strict=False)


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


# -- loading ------------------------------------------------------------------------------


def packs_dir() -> Path:
    """The shipped protocol packs (``candiag/data/packs``, docs/protocols.md)."""
    return Path(__file__).resolve().parent.parent / "data" / "packs"


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


def load_dbc_files(files: Sequence[Path], *, strict: bool = False) -> list[tuple[str, LoadedFile]]:
    """Each file loaded on its own, to be scored or merged without reading it twice
    (:func:`database_of`)."""
    return [(str(path), _load_file(path, strict)) for path in files]


def database_of(
    loaded: Sequence[tuple[str, LoadedFile]], *, strict: bool = False
) -> ChargerDatabase:
    """One :class:`ChargerDatabase` of files loaded by :func:`load_dbc_files`."""
    return _database([item for _, item in loaded], [source for source, _ in loaded], strict)


def load_dbc_text(text: str, source: str = "<string>", *, strict: bool = False) -> ChargerDatabase:
    """Load one DBC given as text (tests, generated DBCs); ``source`` names it in errors."""
    return _database([parse_dbc(Path(source), text, strict)], [source], strict)


def _database(loaded: list[LoadedFile], sources: list[str], strict: bool) -> ChargerDatabase:
    messages = [m for item in loaded for m in item.messages]
    kept, duplicate_warnings = resolve_duplicates(messages, strict)
    warnings = [w for item in loaded for w in item.problems.final_warnings()]
    warnings += _capped(duplicate_warnings)
    return ChargerDatabase(kept, sources, warnings=warnings, strict=strict)


@functools.lru_cache(maxsize=16)
def _cantools_messages_of(source_file: str) -> dict[int, Any]:
    """cantools' messages of one file, by the line of their definition."""
    path = Path(source_file)
    text = path.read_bytes().decode("cp1252", errors="replace")
    return {m.source_line: m.cantools_object for m in parse_dbc(path, text, False).messages}


def cantools_message_at(source_file: str, source_line: int) -> Any:
    """cantools' message defined at ``source_file:source_line`` (the file read again: for
    messages read from the DBC cache)."""
    return _cantools_messages_of(source_file).get(source_line)


def parse_dbc(path: Path, text: str, strict: bool) -> LoadedFile:
    """One DBC file's text read (:mod:`candiag.decode.dbc_read`, imported only here: a
    command whose files are all in the DBC cache imports neither it nor cantools)."""
    from candiag.decode.dbc_read import read_dbc_text

    return read_dbc_text(path, text, strict)


def _capped(warnings: list[DbcWarning]) -> list[DbcWarning]:
    """At most MAX_WARNINGS_PER_FILE warnings of one check, the rest counted."""
    if len(warnings) <= MAX_WARNINGS_PER_FILE:
        return warnings
    rest = len(warnings) - MAX_WARNINGS_PER_FILE
    text = f"{rest} more problems of this kind are not listed"
    return [*warnings[:MAX_WARNINGS_PER_FILE], DbcWarning(warnings[0].file, 0, None, text, "more")]


def _load_file(path: Path, strict: bool) -> LoadedFile:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DbcError(
            f"{path}: cannot read ({err.strerror}); check the path and permissions"
        ) from None
    kept = dbc_cache.cached(path, data, strict)
    if kept is not None:
        return kept
    # Bytes cp1252 leaves undefined (0x81, 0x8D, ...) are replaced, not fatal: they are
    # harmless in comments and give a syntax error with its line anywhere else.
    loaded = parse_dbc(path, data.decode("cp1252", errors="replace"), strict)
    dbc_cache.keep(path, data, strict, loaded)
    return loaded
