"""Per-module request/response statistics, streaming over decoded batches.

:class:`LivenessTracker` takes each batch's :class:`~candiag.decode.decoder.DecodeResult`
(the pack messages resolved with their node, direction, command and error), pairs requests
with replies (:mod:`candiag.liveness.pairing`) and keeps, per module (protocol, address):
requests and replies seen, answered and unanswered requests, the latencies of the last
:data:`LATENCY_KEPT` answers (median, p99, a Prometheus histogram), error replies by code
with the pack's meaning, second answers to one request, serial values and the
duplicate-address bit, and the run of unanswered requests that is going on now.

A request is judged once its reply window has passed (the pack's ``CandiagReplyTimeoutMs``,
else :data:`DEFAULT_REPLY_WINDOW_S`); until then it and its answers are carried to the next
batch, so splitting a capture into batches changes nothing.  Work per batch is a few sorts of
its exchange frames plus a loop over the modules present, never over frames.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode.dbc import ChargerDatabase, MessageDef
from candiag.decode.decoder import (
    DIRECTION_REPLY,
    DIRECTION_REPORT,
    DIRECTION_REQUEST,
    DecodeResult,
)
from candiag.liveness.exchanges import EventLog, ModuleExchanges
from candiag.liveness.pairing import Replies, Requests, pair

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: Reply window when the pack declares none: the drivers poll at most once a second per
#: register and the modules answer within milliseconds (docs/protocols.md).
DEFAULT_REPLY_WINDOW_S = 0.5
#: Latencies kept per module for the median and p99.
LATENCY_KEPT = 4096
#: Recent events (errors, second answers, latencies, serials) kept for the rules, seconds.
RECENT_S = 30.0
#: The window the recent figures of a report (and so the findings) cover, seconds.
RECENT_WINDOW_S = 10.0
#: Latency histogram bucket upper bounds, seconds (Prometheus ``le``).
LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@dataclass
class ModuleLiveness:
    """What one module's exchanges showed (see the module docstring)."""

    protocol: str
    address: int
    requests: int = 0
    replies: int = 0
    answered: int = 0
    unanswered: int = 0
    second_answers: int = 0
    errors: Counter[int] = field(default_factory=Counter)
    error_meanings: dict[int, str] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0
    first_request: float | None = None
    last_request: float | None = None
    last_reply: float | None = None
    #: Unanswered requests since the last answered one, and when that run began.
    unanswered_run: int = 0
    unanswered_since: float | None = None
    duplicate_bit_at: float | None = None  # last reply with the duplicate-address bit set
    # The record the interval rules read (candiag/liveness/exchanges.py): live the last hour.
    keep_history: bool = False
    asked_log: EventLog = field(init=False)
    late_log: EventLog = field(init=False)
    error_log: EventLog = field(init=False)
    serial_log: EventLog = field(init=False)
    dup_log: EventLog = field(init=False)
    last_serial: int | None = None
    _latencies: F64 = field(default_factory=lambda: np.zeros(0))
    _recent: dict[str, tuple[F64, F64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        keep = self.keep_history
        self.asked_log = EventLog("latency", "second", keep_history=keep)
        self.late_log = EventLog(keep_history=keep)
        self.error_log = EventLog("code", keep_history=keep)
        self.serial_log = EventLog("serial", keep_history=keep)
        self.dup_log = EventLog(keep_history=keep)

    def record_asked(self, t: F64, latency: F64, second: I64) -> None:
        """Judged requests: their time, first answer's latency (NaN: none), further answers."""
        self.asked_log.add(t, latency=latency, second=second)

    def exchanges(self, poll_period_s: float | None, window_s: float) -> ModuleExchanges:
        """The frozen record of :mod:`candiag.liveness.exchanges` for a bus timeline."""
        asked_t, asked = self.asked_log.arrays()
        late_t, _ = self.late_log.arrays()
        error_t, errors = self.error_log.arrays()
        serial_t, serials = self.serial_log.arrays()
        dup_t, _ = self.dup_log.arrays()
        return ModuleExchanges(
            protocol=self.protocol,
            address=self.address,
            poll_period_s=poll_period_s,
            reply_window_s=window_s,
            first_asked=self.first_request,
            last_asked=self.last_request,
            asked_t=asked_t,
            latency_s=np.asarray(asked["latency"], np.float64),
            second=np.asarray(asked["second"], np.int64),
            late_t=late_t,
            error_t=error_t,
            error_code=np.asarray(errors["code"], np.int64),
            error_meanings=dict(self.error_meanings),
            serial_t=serial_t,
            serial=np.asarray(serials["serial"], np.int64),
            dup_t=dup_t,
        )

    def _keep(self, kind: str, t: F64, value: F64, now: float) -> None:
        old_t, old_v = self._recent.get(kind, (np.zeros(0), np.zeros(0)))
        t, value = np.concatenate([old_t, t]), np.concatenate([old_v, value])
        keep = t >= now - RECENT_S
        self._recent[kind] = (t[keep], value[keep])

    def recent(self, kind: str, now: float, seconds: float) -> F64:
        """Values of ``kind`` (latency, error, second, serial) of the last ``seconds``."""
        t, value = self._recent.get(kind, (np.zeros(0), np.zeros(0)))
        return value[t >= now - seconds]

    def latency_ms(self) -> dict[str, float | None]:
        lat = self._latencies
        if not lat.size:
            return {"median": None, "p99": None, "samples": 0}
        return {
            "median": round(float(np.median(lat)) * 1000, 3),
            "p99": round(float(np.quantile(lat, 0.99)) * 1000, 3),
            "samples": int(lat.size),
        }

    def _recent_json(self, now: float) -> dict[str, Any]:
        """The last :data:`RECENT_WINDOW_S` seconds: what the findings judge."""
        w = RECENT_WINDOW_S
        errors = self.recent("error", now, w).astype(np.int64)
        codes, counts = np.unique(errors, return_counts=True)
        latency = self.recent("latency", now, w)
        return {
            "window_s": w,
            "errors": {
                str(c): {"count": int(n), "meaning": self.error_meanings.get(c, "unknown code")}
                for c, n in zip(codes.tolist(), counts.tolist(), strict=True)
            },
            "second_answers": int(self.recent("second", now, w).sum()),
            "serials": sorted({int(v) for v in self.recent("serial", now, w)}),
            "duplicate_address_bit": self.duplicate_bit_at is not None
            and self.duplicate_bit_at >= now - w,
            "answered": int(latency.size),
            "latency_median_ms": round(float(np.median(latency)) * 1000, 3)
            if latency.size
            else None,
        }

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "address": self.address,
            "requests": self.requests,
            "replies": self.replies,
            "answered": self.answered,
            "unanswered": self.unanswered,
            "unanswered_run": self.unanswered_run,
            "unanswered_since": self.unanswered_since,
            "second_answers": self.second_answers,
            "errors": {
                str(code): {"count": n, "meaning": self.error_meanings.get(code, "unknown code")}
                for code, n in sorted(self.errors.items())
            },
            "latency_ms": self.latency_ms(),
            "latency_buckets_s": list(LATENCY_BUCKETS_S),
            "latency_bucket_counts": list(self.latency_buckets),
            "latency_sum_s": self.latency_sum_s,
            "last_request_age_s": None if self.last_request is None else now - self.last_request,
            "last_reply_age_s": None if self.last_reply is None else now - self.last_reply,
            "recent_serials": sorted({int(v) for v in self.recent("serial", now, RECENT_S)}),
            "recent": self._recent_json(now),
            "duplicate_address_bit_age_s": None
            if self.duplicate_bit_at is None
            else now - self.duplicate_bit_at,
        }


@dataclass
class _Carry:
    """Requests not judged yet and replies attached to them, carried to the next batch."""

    requests: Requests
    reply_rows: dict[str, F64]


def _empty_requests() -> Requests:
    z = np.zeros(0, np.int64)
    return Requests(np.zeros(0), z, z.copy(), z.copy())


class LivenessTracker:
    """Request/response liveness of one bus's pack messages (see the module docstring)."""

    def __init__(self, db: ChargerDatabase, *, keep_history: bool = False) -> None:
        self.db = db
        # Offline: every exchange kept for the interval rules; live: the last hour.
        self.keep_history = keep_history
        self.exchanges = [m for m in db.messages if m.direction in ("request", "reply", "both")]
        self.active = any(m.direction in ("request", "both") for m in self.exchanges)
        windows = [
            m.protocol.reply_timeout_ms / 1000.0
            for m in self.exchanges
            if m.protocol is not None and m.protocol.reply_timeout_ms
        ]
        self.window_s = max(windows) if windows else DEFAULT_REPLY_WINDOW_S
        self.modules: dict[tuple[str, int], ModuleLiveness] = {}
        self.unsolicited_replies = 0
        self.last_time: float | None = None
        self.last_request: float | None = None
        self._protocol_of = [_protocol_name(m) for m in db.messages]
        self._carry_q = _empty_requests()
        self._carry_r: dict[str, Any] = _empty_replies()
        self._broadcast_kinds: set[tuple[int, int]] = set()  # (reply message, command)

    # -- ingest ---------------------------------------------------------------------
    def update(self, result: DecodeResult) -> None:
        """Fold one decoded batch in (requests judged once their reply window passed)."""
        if not self.active:
            return
        q, r = self._events(result)
        q = _concat_requests(self._carry_q, q)
        r = _concat_replies(self._carry_r, r)
        if not len(q) and not r["t"].size:
            return
        latest = max(float(q.t.max()) if len(q) else -np.inf, float(r["t"].max(initial=-np.inf)))
        self.last_time = latest if self.last_time is None else max(self.last_time, latest)
        self._judge(q, r, cut=self.last_time - self.window_s)

    def advance(self, now: float) -> None:
        """Live bus: judge the waiting requests whose reply window ended before ``now``
        (a bus gone quiet delivers no batch that would)."""
        if self.last_time is None or not len(self._carry_q):
            return
        q, r = self._carry_q, self._carry_r
        self._judge(q, r, cut=now - self.window_s)

    def flush(self) -> None:
        """Judge every request still waiting (the end of a capture)."""
        if self.last_time is None:
            return
        q, r = self._carry_q, self._carry_r
        self._carry_q, self._carry_r = _empty_requests(), _empty_replies()
        self._judge(q, r, cut=np.inf)

    def _events(self, result: DecodeResult) -> tuple[Requests, dict[str, Any]]:
        qs: list[tuple[F64, I64, I64, I64]] = []
        rs: list[dict[str, Any]] = []
        for decoded in result.messages.values():
            msg, ex = decoded.message, decoded.exchange
            if ex is None or msg.direction not in ("request", "reply", "both"):
                continue
            index = self.db.index_of(msg.name)
            node = decoded.node.astype(np.int64)
            ask = ex.direction == DIRECTION_REQUEST
            if ask.any() and msg.reply:
                reply = self.db.index_of(msg.reply) if msg.reply in self.db._by_name else -1
                if reply >= 0:
                    target = np.where(node == msg.broadcast_node, -1, node)[ask]
                    qs.append(
                        (
                            decoded.timestamp[ask],
                            np.full(int(ask.sum()), reply, np.int64),
                            target,
                            ex.command[ask],
                        )
                    )
            ans = (ex.direction == DIRECTION_REPLY) | (ex.direction == DIRECTION_REPORT)
            if ans.any():
                rs.append(
                    {
                        "t": decoded.timestamp[ans],
                        "message": np.full(int(ans.sum()), index, np.int64),
                        "node": node[ans],
                        "command": ex.command[ans],
                        "error": ex.error[ans],
                        "serial": ex.serial[ans].astype(np.int64),
                        "dup": _duplicate_bit(decoded.message, decoded.signals, decoded.present)[
                            ans
                        ],
                    }
                )
        q = (
            Requests(*(np.concatenate(parts) for parts in zip(*qs, strict=True)))
            if qs
            else _empty_requests()
        )
        r = {k: np.concatenate([x[k] for x in rs]) for k in rs[0]} if rs else _empty_replies()
        return q, r

    def _judge(self, q: Requests, r: dict[str, Any], cut: float) -> None:
        order = np.argsort(r["t"], kind="stable")
        r = {k: v[order] for k, v in r.items()}
        q_order = np.argsort(q.t, kind="stable")
        q = Requests(q.t[q_order], q.reply[q_order], q.node[q_order], q.command[q_order])
        replies = Replies(r["t"], r["message"], r["node"], r["command"])
        p = pair(q, replies, self.window_s)
        judged = q.t <= cut
        # Replies of requests judged now, and replies nobody asked for that are old enough.
        of_judged = (
            (p.answers >= 0) & judged[np.maximum(p.answers, 0)]
            if len(q)
            else np.zeros(len(replies), np.bool_)
        )
        settled = of_judged | ((p.answers < 0) & (r["t"] <= cut + self.window_s))
        if len(q):
            self.last_request = (
                float(q.t.max())
                if self.last_request is None
                else max(self.last_request, float(q.t.max()))
            )
        self._fold_replies(r, settled, p.answers)
        self._fold_requests(q, judged, p.first_reply, p.second_answers, r["t"])
        self._fold_broadcasts(q, judged, p.answers, r)
        keep_q = ~judged
        self._carry_q = Requests(q.t[keep_q], q.reply[keep_q], q.node[keep_q], q.command[keep_q])
        self._carry_r = {k: v[~settled] for k, v in r.items()}
        # Request times of this batch count for "last asked" at once, judged or not.
        for node in np.unique(q.node[q.node >= 0]).tolist():
            rows = q.node == node
            for proto in {self._protocol_of[i] for i in np.unique(q.reply[rows]).tolist()}:
                mod = self._module(proto, int(node))
                t = float(q.t[rows].max())
                mod.last_request = t if mod.last_request is None else max(mod.last_request, t)
                if mod.first_request is None:
                    mod.first_request = float(q.t[rows].min())

    def _fold_replies(
        self, r: dict[str, Any], settled: npt.NDArray[np.bool_], answers: I64
    ) -> None:
        rows = np.flatnonzero(settled)
        if not rows.size:
            return
        self.unsolicited_replies += int(np.count_nonzero(answers[rows] < 0))
        keys = np.stack([r["message"][rows], r["node"][rows]], axis=1)
        groups, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        now = float(r["t"][rows].max())
        for g, (message, node) in enumerate(groups.tolist()):
            if node < 0:
                continue
            sel = rows[inverse == g]
            msg = self.db.messages[message]
            mod = self._module(self._protocol_of[message], node)
            t = r["t"][sel]
            mod.replies += int(sel.size)
            mod.last_reply = (
                float(t.max()) if mod.last_reply is None else max(mod.last_reply, float(t.max()))
            )
            late = answers[sel] < 0
            if late.any():
                mod.late_log.add(t[late])
            errors = r["error"][sel]
            bad = errors != 0
            if bad.any():
                mod.error_log.add(t[bad], code=errors[bad].astype(np.int64))
                codes, counts = np.unique(errors[bad], return_counts=True)
                mod.errors.update(dict(zip(codes.tolist(), counts.tolist(), strict=True)))
                for code in codes.tolist():
                    mod.error_meanings.setdefault(code, _error_meaning(msg, code))
                mod._keep("error", t[bad], errors[bad].astype(np.float64), now)
            serial = r["serial"][sel]
            if (serial >= 0).any():
                mod._keep("serial", t[serial >= 0], serial[serial >= 0].astype(np.float64), now)
                _record_serial_changes(mod, t[serial >= 0], serial[serial >= 0])
            dup = r["dup"][sel]
            if dup.any():
                mod.duplicate_bit_at = float(t[dup].max())
                mod.dup_log.add(t[dup])

    def _fold_requests(
        self, q: Requests, judged: npt.NDArray[np.bool_], first: I64, second: I64, reply_t: F64
    ) -> None:
        rows = np.flatnonzero(judged & (q.node >= 0))
        if not rows.size:
            return
        keys = np.stack([q.reply[rows], q.node[rows]], axis=1)
        groups, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = np.asarray(inverse).reshape(-1)
        now = float(q.t[rows].max())
        by_module: dict[tuple[str, int], list[npt.NDArray[np.int64]]] = {}
        for g, (message, node) in enumerate(groups.tolist()):
            by_module.setdefault((self._protocol_of[message], node), []).append(rows[inverse == g])
        for (proto, node), parts in by_module.items():
            sel = np.sort(np.concatenate(parts), kind="stable")
            mod = self._module(proto, node)
            got = first[sel] >= 0
            mod.requests += int(sel.size)
            mod.answered += int(np.count_nonzero(got))
            mod.unanswered += int(np.count_nonzero(~got))
            dup = second[sel]
            latencies = np.full(sel.size, np.nan)
            latencies[got] = reply_t[first[sel][got]] - q.t[sel][got]
            mod.record_asked(q.t[sel], latencies, dup.astype(np.int64))
            mod.second_answers += int(dup.sum())
            if dup.any():
                mod._keep("second", q.t[sel][dup > 0], dup[dup > 0].astype(np.float64), now)
            if got.any():
                latency = reply_t[first[sel][got]] - q.t[sel][got]
                mod._latencies = np.concatenate([mod._latencies, latency])[-LATENCY_KEPT:]
                counts = np.bincount(
                    np.searchsorted(LATENCY_BUCKETS_S, latency),
                    minlength=len(LATENCY_BUCKETS_S) + 1,
                )
                mod.latency_buckets = [
                    a + int(b) for a, b in zip(mod.latency_buckets, counts, strict=True)
                ]
                mod.latency_sum_s += float(latency.sum())
                mod._keep("latency", q.t[sel][got], latency, now)
                last_answered = int(np.flatnonzero(got)[-1])
                tail = sel[last_answered + 1 :]
                mod.unanswered_run = int(tail.size)
                mod.unanswered_since = float(q.t[tail[0]]) if tail.size else None
            else:
                if mod.unanswered_run == 0:
                    mod.unanswered_since = float(q.t[sel[0]])
                mod.unanswered_run += int(sel.size)

    def _fold_broadcasts(
        self, q: Requests, judged: npt.NDArray[np.bool_], answers: I64, r: dict[str, Any]
    ) -> None:
        """A broadcast asks every module of its protocol that candiag has seen answer: each
        counts it as a request of its own, answered by its own reply to it."""
        rows = np.flatnonzero(judged & (q.node < 0))
        if not rows.size:
            return
        # A broadcast kind nobody ever answered is one the protocol does not answer
        # (Sinexcel's on/off to all modules): it asks no module anything.
        answered = np.zeros(q.t.size, np.bool_)
        answered[answers[answers >= 0]] = True
        for reply, command in zip(q.reply[rows][answered[rows]].tolist(),
                                  q.command[rows][answered[rows]].tolist(), strict=True):  # fmt: skip
            self._broadcast_kinds.add((reply, command))
        kinds = [(a, b) in self._broadcast_kinds for a, b in zip(q.reply[rows].tolist(),
                                                                  q.command[rows].tolist(), strict=True)]  # fmt: skip
        rows = rows[np.array(kinds, np.bool_)]
        if not rows.size:
            return
        for proto in {self._protocol_of[i] for i in np.unique(q.reply[rows]).tolist()}:
            mine = rows[np.array([self._protocol_of[i] == proto for i in q.reply[rows].tolist()])]
            t = q.t[mine]
            for (p, node), mod in list(self.modules.items()):
                if p != proto or mod.replies == 0:
                    continue
                from_node = np.flatnonzero((r["node"] == node) & (answers >= 0))
                first = np.full(q.t.size, -1, np.int64)
                if from_node.size:
                    # Replies are in time order: the last write per request is the latest, so
                    # write them reversed to keep each request's first answer.
                    first[answers[from_node][::-1]] = from_node[::-1]
                got = first[mine] >= 0
                latencies = np.full(mine.size, np.nan)
                latencies[got] = r["t"][first[mine][got]] - t[got]
                mod.record_asked(t, latencies, np.zeros(mine.size, np.int64))
                mod.requests += int(mine.size)
                mod.answered += int(np.count_nonzero(got))
                mod.unanswered += int(np.count_nonzero(~got))
                mod.last_request = (
                    float(t.max())
                    if mod.last_request is None
                    else max(mod.last_request, float(t.max()))
                )
                if got.any():
                    latency = r["t"][first[mine][got]] - t[got]
                    mod._latencies = np.concatenate([mod._latencies, latency])[-LATENCY_KEPT:]
                    counts = np.bincount(
                        np.searchsorted(LATENCY_BUCKETS_S, latency),
                        minlength=len(LATENCY_BUCKETS_S) + 1,
                    )
                    mod.latency_buckets = [
                        a + int(b) for a, b in zip(mod.latency_buckets, counts, strict=True)
                    ]
                    mod.latency_sum_s += float(latency.sum())
                    mod._keep("latency", t[got], latency, float(t.max()))
                    tail = mine[int(np.flatnonzero(got)[-1]) + 1 :]
                    mod.unanswered_run = int(tail.size)
                    mod.unanswered_since = float(q.t[tail[0]]) if tail.size else None
                else:
                    if mod.unanswered_run == 0:
                        mod.unanswered_since = float(t[0])
                    mod.unanswered_run += int(mine.size)

    def _module(self, protocol: str, node: int) -> ModuleLiveness:
        key = (protocol, node)
        mod = self.modules.get(key)
        if mod is None:
            mod = self.modules[key] = ModuleLiveness(protocol, node, keep_history=self.keep_history)
        return mod

    # -- views ----------------------------------------------------------------------
    def poll_period_s(self, protocol: str) -> float | None:
        for m in self.exchanges:
            if _protocol_name(m) == protocol and m.protocol and m.protocol.poll_period_ms:
                return m.protocol.poll_period_ms / 1000.0
        return None

    def timeouts_ms(self, protocol: str) -> dict[str, int]:
        for m in self.exchanges:
            if _protocol_name(m) == protocol and m.protocol is not None:
                p = m.protocol
                return {
                    "module_timeout_ms": p.module_timeout_ms,
                    "controller_timeout_ms": p.controller_timeout_ms,
                    "reply_timeout_ms": p.reply_timeout_ms,
                }
        return {}

    def timeline(self) -> tuple[ModuleExchanges, ...]:
        """Every module's exchanges for the bus timeline (the interval rules' evidence)."""
        return tuple(
            mod.exchanges(self.poll_period_s(proto), self.window_s)
            for (proto, _), mod in sorted(self.modules.items(), key=lambda kv: kv[0])
        )

    def report(self, now: float | None = None) -> dict[str, Any]:
        """The JSON-shaped liveness section of a bus report (empty when no exchange)."""
        if not self.active:
            return {}
        now = self.last_time if now is None else now
        now = 0.0 if now is None else now
        protocols = sorted({_protocol_name(m) for m in self.exchanges})
        return {
            "protocols": {
                p: {"poll_period_ms": _ms(self.poll_period_s(p)), **self.timeouts_ms(p)}
                for p in protocols
            },
            "reply_window_ms": round(self.window_s * 1000),
            "now": now,
            "last_request_age_s": None if self.last_request is None else now - self.last_request,
            "unsolicited_replies": self.unsolicited_replies,
            "modules": [
                m.to_json(now) for _, m in sorted(self.modules.items(), key=lambda kv: kv[0])
            ],
        }


def _record_serial_changes(mod: ModuleLiveness, t: F64, serial: I64) -> None:
    """Serials that differ from the one before under this address (two modules answering
    at one address alternate; a healthy module's serial is recorded once)."""
    values = serial.astype(np.int64)
    before = np.concatenate([[-1 if mod.last_serial is None else mod.last_serial], values[:-1]])
    changed = values != before
    mod.last_serial = int(values[-1])
    if changed.any():
        mod.serial_log.add(t[changed], serial=values[changed])


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def _protocol_name(msg: MessageDef) -> str:
    if msg.protocol is not None:
        return msg.protocol.protocol
    return msg.source_file.rsplit("/", 1)[-1]


def _error_meaning(msg: MessageDef, code: int) -> str:
    for sig in msg.signals:
        if sig.role == "reply_error":
            for value, name in sig.choices:
                if value == code:
                    return name
    if msg.protocol is not None:
        for value, name in msg.protocol.id_errors:
            if value == code:
                return name
    return "unknown code"


def _duplicate_bit(msg: MessageDef, signals: Any, present: Any) -> npt.NDArray[np.bool_]:
    n = len(next(iter(present.values()))) if present else 0
    out = np.zeros(n, np.bool_)
    for sig in msg.signals:
        if sig.role == "alarm:duplicate_address":
            out |= np.asarray(present[sig.name]) & (np.asarray(signals[sig.name]) != 0)
    return out


def _empty_replies() -> dict[str, Any]:
    z = np.zeros(0, np.int64)
    return {
        "t": np.zeros(0),
        "message": z,
        "node": z.copy(),
        "command": z.copy(),
        "error": z.copy(),
        "serial": z.copy(),
        "dup": np.zeros(0, np.bool_),
    }


def _concat_requests(a: Requests, b: Requests) -> Requests:
    return Requests(
        np.concatenate([a.t, b.t]),
        np.concatenate([a.reply, b.reply]),
        np.concatenate([a.node, b.node]),
        np.concatenate([a.command, b.command]),
    )


def _concat_replies(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}
