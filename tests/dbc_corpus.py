"""Frames for every message of a DBC (random, edge and multiplexer-selecting payloads) and
the decode-equals-cantools check used on tests/data/dbc/ and on the real-world corpus."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from candiag.decode.dbc import ChargerDatabase, MessageDef, SignalDef, load_dbc_paths
from candiag.decode.decoder import BatchDecoder
from candiag.errors import DbcError
from candiag.ingest.frames import FD_DLC_TO_LEN, FLAG_EXTENDED, FLAG_FD, FrameBatch
from tests.dbc_oracle import compare
from tests.realworld import dbc_dirs

DATA_DBC = Path(__file__).parent / "data" / "dbc"
EDGE_BYTES = (0x00, 0xFF, 0x55, 0xAA, 0x80, 0x01)


def corpus_dirs() -> list[Path]:
    """The real-world DBC folders (tests/realworld.py says where they come from)."""
    return dbc_dirs()


def corpus_files(dirs: list[Path]) -> list[Path]:
    return sorted(p for d in dirs for p in d.rglob("*.dbc"))


def _set_raw(payload: bytearray, sig: SignalDef, raw: int) -> None:
    n = sig.length
    raw &= (1 << n) - 1
    width = len(payload)
    if sig.byte_order == "little_endian":
        value = int.from_bytes(payload, "little")
        value &= ~(((1 << n) - 1) << sig.start)
        value |= raw << sig.start
        payload[:] = value.to_bytes(width, "little")
    else:
        first = 8 * (sig.start // 8) + 7 - sig.start % 8
        shift = 8 * width - first - n
        value = int.from_bytes(payload, "big")
        value &= ~(((1 << n) - 1) << shift)
        value |= raw << shift
        payload[:] = value.to_bytes(width, "big")


def _mux_raws(msg: MessageDef) -> list[tuple[SignalDef, int]]:
    """(multiplexer, raw value) for every multiplexer value some signal is selected by."""
    by_name = {s.name: s for s in msg.signals}
    out: list[tuple[SignalDef, int]] = []
    for sig in msg.signals:
        parent = by_name.get(sig.multiplexer_signal or "")
        if parent is None or parent.is_float:
            continue
        for mux_id in (sig.multiplexer_ids or ())[:8]:
            raw = (mux_id - parent.offset) / parent.scale if parent.scale else None
            if raw is not None and float(raw).is_integer():
                out.append((parent, int(raw)))
    return out


def payloads(msg: MessageDef, rng: np.random.Generator, randoms: int) -> list[bytes]:
    length = msg.length
    out = [bytes([b]) * length for b in EDGE_BYTES]
    out += [bytes(rng.integers(0, 256, length, dtype=np.uint8)) for _ in range(randoms)]
    for parent, raw in _mux_raws(msg):
        for base in (bytes(rng.integers(0, 256, length, dtype=np.uint8)), bytes(length)):
            buffer = bytearray(base)
            _set_raw(buffer, parent, raw)
            out.append(bytes(buffer))
    return out


def frames_for(db: ChargerDatabase, rng: np.random.Generator, randoms: int = 8) -> FrameBatch:
    """Every message with edge, random and multiplexer-selecting payloads; some frames
    longer than the message (cantools decodes their first bytes) and some shorter
    (counted as short, never decoded)."""
    rows: list[tuple[int, bool, bytes]] = []
    fd_lengths = sorted(set(FD_DLC_TO_LEN))
    for msg in db.messages:
        can_id = msg.can_id_for(1) if msg.node_mask else msg.frame_id
        for payload in payloads(msg, rng, randoms):
            rows.append((can_id, msg.is_extended, payload))
        longer = [n for n in fd_lengths if n > msg.length]
        if longer:
            extra = bytes(rng.integers(0, 256, longer[0] - msg.length, dtype=np.uint8))
            rows.append((can_id, msg.is_extended, payloads(msg, rng, 1)[-1] + extra))
        if msg.length:
            rows.append((can_id, msg.is_extended, bytes(msg.length - 1)))
    n = len(rows)
    data = np.zeros((n, 64), np.uint8)
    dlc = np.zeros(n, np.uint8)
    for i, (_, _, payload) in enumerate(rows):
        data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
        dlc[i] = len(payload)
    flags = np.array([FLAG_EXTENDED if ext else 0 for _, ext, _ in rows], np.uint8)
    flags[dlc > 8] |= FLAG_FD
    return FrameBatch(
        timestamp=np.arange(n, dtype=np.float64) * 0.001,
        can_id=np.array([r[0] for r in rows], np.uint32),
        flags=flags,
        dlc=dlc,
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


@dataclass
class CorpusReport:
    """What happened to each DBC of a corpus."""

    strict: list[str] = field(default_factory=list)
    lenient_only: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{len(self.strict)} load strict, {len(self.lenient_only)} lenient only, "
            f"{len(self.refused)} refused; {c['messages']} messages, {c['frames']} frames: "
            f"{c['cantools_frames']} decoded by cantools, {c['cantools_refused_frames']} "
            f"refused by cantools, {c['short']} short; values compared: "
            f"{c['values_vs_cantools']} with cantools, {c['values_vs_single_signal']} with "
            f"cantools decoding the signal alone"
        )


def check_dbc(path: Path, report: CorpusReport, seed: int = 0) -> None:
    """Load ``path`` strict and lenient; decode every message and compare with cantools."""
    try:
        load_dbc_paths([path], strict=True)
        report.strict.append(str(path))
    except DbcError:
        try:
            load_dbc_paths([path])
        except DbcError as err:
            report.refused[str(path)] = str(err)
            return
        report.lenient_only.append(str(path))
    db = load_dbc_paths([path])
    if not db.messages:
        return
    batch = frames_for(db, np.random.default_rng(seed))
    result = BatchDecoder(db).decode(batch)
    report.counts["messages"] += len(db.messages)
    report.counts["frames"] += len(batch)
    report.counts["short"] += sum(result.short_frames.values())
    assert not result.unknown_ids, f"{path}: frames of its own messages unknown"
    report.counts.update(compare(db, batch, result))
