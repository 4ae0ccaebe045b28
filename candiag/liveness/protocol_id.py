"""Which protocol pack a bus speaks (``candiag probe``): every shipped pack (and any DBC given)
scored against a sample of traffic.

A pack is judged on evidence that other traffic rarely shows all at once (docs/probe.md):

* **explained**: the share of data frames its identifiers resolve, after learning the
  controller's address from the traffic (the pack's ``BO_`` ids carry one default;
  docs/protocols.md rule 1);
* **structure**: frames of the declared length, and multiplexed payloads whose selector is a
  declared value (a Winline read request is b0 0x10, DPM1000's 0x01);
* **plausibility**: decoded values inside their declared ranges, error bytes that are
  declared codes;
* **exchange**: requests answered by the module they name (:mod:`candiag.liveness`) and
  more than one frame per address;
* **poll period**: the controller's request interval per module against
  ``CandiagPollPeriodMs`` (reported; a gate only when far off).

The confidence is the product of the shares (each 0..1), so one failing piece of evidence
sinks it; a pack is claimed at :data:`MIN_CONFIDENCE` or more.  Work is vectorized over the
sample: one match, one decode and a pairing pass per candidate.
"""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from candiag.decode.dbc import ChargerDatabase, load_dbc_paths, packs_dir
from candiag.decode.decoder import DIRECTION_REQUEST, BatchDecoder, DecodeResult
from candiag.decode.identify import _in_range_share
from candiag.ingest.frames import FrameBatch, format_can_id
from candiag.liveness.tracker import LivenessTracker

#: A pack is claimed at this confidence or more.
MIN_CONFIDENCE = 0.5
#: Frames of the pack a claim needs at the least.
MIN_FRAMES = 20
#: Unexplained identifiers listed (top by count).
TOP_UNEXPLAINED = 10


@dataclass
class PackScore:
    """How well one pack describes the sample (shares are 0..1; None: nothing to judge)."""

    name: str
    protocol: str
    source: str
    frames: int
    explained: float
    length_ok: float
    mux_ok: float | None
    in_range: float | None
    error_codes_ok: float | None
    answered: float | None
    poll_period_ms: int | None  # declared
    measured_poll_ms: float | None
    controller_address: int | None
    modules_answering: list[int] = field(default_factory=list)
    modules_silent: list[int] = field(default_factory=list)
    confidence: float = 0.0
    reason: str = ""
    database: ChargerDatabase | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {
            "pack": self.name,
            "protocol": self.protocol,
            "file": self.source,
            "confidence": round(self.confidence, 4),
            "frames": self.frames,
            "explained": r(self.explained),
            "length_ok": r(self.length_ok),
            "multiplexer_ok": r(self.mux_ok),
            "in_range": r(self.in_range),
            "error_codes_ok": r(self.error_codes_ok),
            "requests_answered": r(self.answered),
            "poll_period_ms": self.poll_period_ms,
            "measured_poll_period_ms": None
            if self.measured_poll_ms is None
            else round(self.measured_poll_ms, 1),
            "controller_address": self.controller_address,
            "modules_answering": self.modules_answering,
            "modules_asked_but_silent": self.modules_silent,
            "reason": self.reason,
        }


@dataclass
class Identification:
    """The verdict over all candidates: the best pack (None: no pack matches)."""

    best: PackScore | None
    scores: list[PackScore]
    frames: int
    unexplained: list[tuple[str, int]]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": None if self.best is None else self.best.protocol,
            "pack": None if self.best is None else self.best.name,
            "confidence": 0.0 if self.best is None else round(self.best.confidence, 4),
            "frames": self.frames,
            "best": None if self.best is None else self.best.to_json(),
            "candidates": [s.to_json() for s in self.scores],
            "unexplained_ids": [{"id": i, "frames": n} for i, n in self.unexplained],
        }


def pack_files(extra: list[str] | None = None) -> list[Path]:
    """The shipped packs (``candiag/data/packs``) and any DBC files given."""

    files = sorted(packs_dir().glob("*.dbc"))
    return files + [Path(p) for p in extra or []]


def identify(sample: FrameBatch, files: list[Path] | None = None) -> Identification:
    """Score every candidate DBC on ``sample`` and pick the best one claimed."""
    data = sample.take(sample.is_data) if len(sample) else sample
    scores = [score_pack(_load(str(f)), data, f) for f in files or pack_files()]
    scores.sort(key=lambda s: -s.confidence)
    best = scores[0] if scores and scores[0].confidence >= MIN_CONFIDENCE else None
    if best is not None and best.database is not None:
        message, _ = best.database.match(data.can_id, data.is_extended)
        rest = data.take(message < 0)
    else:
        rest = data
    return Identification(best, scores, len(data), _top_ids(rest))


@functools.lru_cache(maxsize=32)
def _load(path: str) -> ChargerDatabase:
    """A candidate loaded once per process (the packs do not change while candiag runs)."""
    return load_dbc_paths([path])


def _top_ids(batch: FrameBatch) -> list[tuple[str, int]]:
    if not len(batch):
        return []
    keys = batch.can_id.astype(np.int64) | (batch.is_extended.astype(np.int64) << 31)
    ids, counts = np.unique(keys, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:TOP_UNEXPLAINED]
    return [
        (format_can_id(int(ids[i]) & 0x1FFFFFFF, bool(ids[i] >> 31)), int(counts[i]))
        for i in order.tolist()
    ]


def learn_controller(db: ChargerDatabase, data: FrameBatch) -> int | None:
    """The controller address the traffic shows in the pack's peer fields (None: none)."""
    votes: collections.Counter[int] = collections.Counter()
    ids = data.can_id.astype(np.int64)
    for m in db.messages:
        if not m.peer_mask:
            continue
        loose = m.match_mask | m.peer_mask
        hit = ((ids & ~loose) == (m.frame_id & ~loose)) & (data.is_extended == m.is_extended)
        if not hit.any():
            continue
        shift = (m.peer_mask & -m.peer_mask).bit_length() - 1
        values, counts = np.unique((ids[hit] & m.peer_mask) >> shift, return_counts=True)
        votes.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    return votes.most_common(1)[0][0] if votes else None


def score_pack(db: ChargerDatabase, data: FrameBatch, path: Path) -> PackScore:
    """One candidate's evidence and confidence (see the module docstring)."""
    protocol = next((m.protocol.protocol for m in db.messages if m.protocol), path.stem)
    default = next(
        (m.protocol.controller_address for m in db.messages if m.protocol is not None), -1
    )
    controller = learn_controller(db, data) if len(data) else None
    if controller is not None and controller != default:
        moved = db.with_controller_address(controller)
        if _explained(moved, data) > _explained(db, data):
            db = moved
        else:
            controller = default if default >= 0 else None
    elif controller is None and default >= 0:
        controller = default
    n = len(data)
    message, _ = db.match(data.can_id, data.is_extended) if n else (np.zeros(0, np.int32),) * 2
    hit = message >= 0
    frames = int(np.count_nonzero(hit))
    score = PackScore(
        name=path.name,
        protocol=protocol,
        source=str(path),
        frames=frames,
        explained=frames / n if n else 0.0,
        length_ok=0.0,
        mux_ok=None,
        in_range=None,
        error_codes_ok=None,
        answered=None,
        poll_period_ms=next(
            (m.protocol.poll_period_ms or None for m in db.messages if m.protocol), None
        ),
        measured_poll_ms=None,
        controller_address=controller if any(m.peer_mask for m in db.messages) else None,
        database=db,
    )
    if frames < MIN_FRAMES:
        score.reason = f"{frames} frames with its identifiers (at least {MIN_FRAMES} needed)"
        return score
    lengths = np.array([m.length for m in db.messages], np.int64)
    score.length_ok = float(np.mean(data.dlc[hit] == lengths[message[hit]]))
    known = data.take(hit)
    result = BatchDecoder(db).decode(known)
    score.mux_ok = _mux_share(result)
    score.in_range = _in_range_share(db, known)
    score.error_codes_ok = _error_code_share(result)
    _exchange_evidence(db, result, score)
    score.confidence, score.reason = _confidence(score)
    return score


def _explained(db: ChargerDatabase, data: FrameBatch) -> int:
    message, _ = db.match(data.can_id, data.is_extended)
    return int(np.count_nonzero(message >= 0))


def _mux_share(result: DecodeResult) -> float | None:
    """Share of multiplexed frames whose top multiplexer holds a declared selector value."""
    ok = total = 0
    for decoded in result.messages.values():
        msg = decoded.message
        tops = [s for s in msg.signals if s.is_multiplexer and s.multiplexer_signal is None]
        for top in tops:
            values = {
                i for s in msg.signals if s.multiplexer_signal == top.name
                for i in (s.multiplexer_ids or ())
            }  # fmt: skip
            if not values:
                continue
            got = np.asarray(decoded.signals[top.name]).astype(np.int64)
            ok += int(np.count_nonzero(np.isin(got, sorted(values))))
            total += int(got.size)
    return ok / total if total else None


def _error_code_share(result: DecodeResult) -> float | None:
    """Share of reply error fields holding their success value or a declared code."""
    ok = total = 0
    for decoded in result.messages.values():
        for sig in decoded.message.signals:
            if sig.role != "reply_error" or sig.ok_value is None:
                continue
            rows = np.asarray(decoded.present[sig.name])
            values = np.asarray(decoded.signals[sig.name]).astype(np.int64)[rows]
            allowed = {sig.ok_value, *(v for v, _ in sig.choices)}
            ok += int(np.count_nonzero(np.isin(values, sorted(allowed))))
            total += int(values.size)
    return ok / total if total else None


def _exchange_evidence(db: ChargerDatabase, result: DecodeResult, score: PackScore) -> None:
    tracker = LivenessTracker(db)
    if not tracker.active:
        return
    asks = sum(
        int(np.count_nonzero(d.exchange.direction == DIRECTION_REQUEST))
        for d in result.messages.values()
        if d.exchange is not None
    )
    if not asks:
        # A polled protocol's modules speak when asked: answers without one request are
        # another bus's frames that happen to fit (the reference charger's Infy-style ids).
        score.answered = 0.0
        return
    tracker.update(result)  # the requests of the sample's last reply window stay unjudged
    modules = list(tracker.modules.values())
    requests = sum(m.requests for m in modules)
    answered = sum(m.answered for m in modules)
    score.answered = answered / requests if requests else None
    # Silent: asked, and the last requests went unanswered (or it never answered at all).
    silent = {m.address for m in modules if m.requests and (not m.replies or m.unanswered_run >= 2)}
    score.modules_silent = sorted(silent)
    score.modules_answering = sorted(
        m.address for m in modules if m.replies and m.address not in silent
    )
    score.measured_poll_ms = _poll_interval_ms(result)


def _poll_interval_ms(result: DecodeResult) -> float | None:
    """The controller's fastest poll: the least mean interval of the requests to one module
    for one command (groups of at least three requests)."""
    means: list[float] = []
    for d in result.messages.values():
        if d.message.direction not in ("request", "both") or d.exchange is None:
            continue
        asks = d.exchange.direction == DIRECTION_REQUEST
        if np.count_nonzero(asks) < 3:
            continue
        keys = np.stack([d.node[asks].astype(np.int64), d.exchange.command[asks]], axis=1)
        groups, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inverse = np.asarray(inverse).reshape(-1)
        first = np.full(len(groups), np.inf)
        last = np.full(len(groups), -np.inf)
        np.minimum.at(first, inverse, d.timestamp[asks])
        np.maximum.at(last, inverse, d.timestamp[asks])
        ok = counts >= 3
        means += ((last[ok] - first[ok]) / (counts[ok] - 1)).tolist()
    return float(np.min(means)) * 1000 if means else None


def _poll_agreement(declared: int | None, measured: float | None) -> float:
    """1 within half to twice the declared poll period, less the further off (1: unknown)."""
    if not declared or measured is None or measured <= 0:
        return 1.0
    ratio = measured / declared
    return float(min(1.0, 2 * min(ratio, 1 / ratio)))


def _confidence(s: PackScore) -> tuple[float, str]:
    parts = {
        # Half the bus or more for a polled protocol (the rest: meters, IMD, ...); a pack
        # without exchanges (a shunt's broadcasts) has only its ids and must explain the bus.
        "explained": min(1.0, s.explained / (0.5 if s.answered is not None else 0.9)),
        "length": s.length_ok,
        "multiplexer": 1.0 if s.mux_ok is None else s.mux_ok,
        "ranges": 1.0 if s.in_range is None else s.in_range,
        "error codes": 1.0 if s.error_codes_ok is None else s.error_codes_ok,
        "answers": 1.0 if s.answered is None else s.answered,
        "poll period": _poll_agreement(s.poll_period_ms, s.measured_poll_ms),
    }
    confidence = float(np.prod(list(parts.values())))
    weakest = min(parts, key=lambda k: parts[k])
    words = ", ".join(f"{k} {v:.0%}" for k, v in parts.items())
    if confidence >= MIN_CONFIDENCE:
        return confidence, f"claimed ({words})"
    return confidence, f"not claimed: weakest evidence {weakest} ({words})"
