"""Pairing requests with replies, vectorized over a batch (docs/protocols.md rule 5).

A reply answers the most recent earlier request of the same *key* that is at most the reply
window old.  Three passes, each one sort of the batch's exchange frames:

1. key (reply message, module address, command/register): a request and the reply echoing
   its register.  Two replies on one request here are two answers: an address conflict;
2. key (reply message, module address), for what pass 1 left: answers whose command differs
   from the request's (Huawei's batch query 0x000 answered with signal 0x191, Sinexcel's
   comprehensive query answered with six frames); the frames after the first belong to the
   answer unless they repeat one of its commands;
3. key (reply message), broadcast requests only: the answers of every module to a broadcast.

Frames of the same instant are ordered requests first.  A controller that asks again before
the module answered makes the first request unanswered (the reply is the second's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class Requests:
    t: F64
    reply: I64  # index of the message that answers it
    node: I64  # the module asked (-1: broadcast or group)
    command: I64  # -1: none

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class Replies:
    t: F64
    message: I64
    node: I64
    command: I64

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass
class Pairing:
    """Per reply the request it answers (-1: none), and per request what answered it."""

    answers: I64  # per reply: request index or -1
    kind: npt.NDArray[np.int8]  # per reply: 1 same command, 2 same module, 3 broadcast, 0 none
    first_reply: I64  # per request: the first reply answering it, or -1
    second_answers: I64  # per request: further answers that repeat a command (a conflict)


def _key_ids(*columns: I64) -> I64:
    """One integer per distinct row of the columns (a composite key that cannot overflow)."""
    if not columns[0].size:
        return np.zeros(0, np.int64)
    _, inverse = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    return np.asarray(inverse, np.int64).reshape(-1)


def _attach(
    q_t: F64, q_key: I64, q_rows: I64, r_t: F64, r_key: I64, r_rows: I64, window: float
) -> tuple[I64, I64]:
    """(reply rows, request rows): the replies in ``r_rows`` attached to requests of
    ``q_rows`` with their key, at most ``window`` older (pairs only).

    Per key, frames in time order form segments: a run of requests, then the run of replies
    that follows.  The replies answer the latest requests of the run in order (a controller
    that reads one register twice in a row gets two answers; one that asked again after a
    silence has its earlier request unanswered); replies beyond the run's requests are
    further answers to its last request.
    """
    nq, nr = q_rows.size, r_rows.size
    if not nq or not nr:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = _key_ids(np.concatenate([q_key[q_rows], r_key[r_rows]]))
    ts = np.concatenate([q_t[q_rows], r_t[r_rows]])
    is_reply = np.concatenate([np.zeros(nq, np.int8), np.ones(nr, np.int8)])
    rows = np.concatenate([q_rows, r_rows])
    order = np.lexsort((is_reply, ts, keys))
    k, t, reply, rows = keys[order], ts[order], is_reply[order] == 1, rows[order]
    n = order.size
    new_key = np.ones(n, np.bool_)
    new_key[1:] = k[1:] != k[:-1]
    after_reply = np.zeros(n, np.bool_)
    after_reply[1:] = reply[:-1]
    seg_start = new_key | (~reply & after_reply)
    seg = np.cumsum(seg_start) - 1
    start = np.flatnonzero(seg_start)
    asked = np.bincount(seg, weights=~reply).astype(np.int64)
    answered = np.bincount(seg, weights=reply).astype(np.int64)
    rank = np.arange(n) - start[seg] - asked[seg]  # a reply's place in its run
    skip = np.maximum(asked - answered, 0)[seg]
    target = np.where(rank < asked[seg], skip + rank, asked[seg] - 1) + start[seg]
    target = np.clip(target, 0, n - 1)
    ok = reply & (asked[seg] > 0) & (t - t[target] <= window)
    return rows[ok], rows[target[ok]]


def pair(q: Requests, r: Replies, window: float) -> Pairing:
    """Pair every reply with the request it answers (see the module docstring)."""
    answers = np.full(len(r), -1, np.int64)
    kind = np.zeros(len(r), np.int8)
    broadcast = q.node < 0
    unicast = np.flatnonzero(~broadcast)
    # Pass 1: same reply message, module and command.
    both_key = _key_ids(
        np.concatenate([q.reply, r.message]),
        np.concatenate([q.node, r.node]),
        np.concatenate([q.command, r.command]),
    )
    q_key, r_key = both_key[: len(q)], both_key[len(q) :]
    got_r, got_q = _attach(q.t, q_key, unicast, r.t, r_key, np.arange(len(r)), window)
    answers[got_r], kind[got_r] = got_q, 1
    per_request = np.bincount(got_q, minlength=len(q)) if len(q) else np.zeros(0, np.int64)
    second = np.maximum(per_request - 1, 0)
    # Pass 2: same reply message and module, for the requests and replies pass 1 left.
    both_key = _key_ids(np.concatenate([q.reply, r.message]), np.concatenate([q.node, r.node]))
    q_key, r_key = both_key[: len(q)], both_key[len(q) :]
    # Every request takes part: the first frame of Sinexcel's six-frame answer echoes the
    # query (pass 1), the other five belong to the same answer.
    open_r = np.flatnonzero(answers < 0)
    got_r, got_q = _attach(q.t, q_key, unicast, r.t, r_key, open_r, window)
    answers[got_r], kind[got_r] = got_q, 2
    if got_r.size:
        # Frames of one answer carry distinct commands; a repeated command is a second module.
        distinct = np.unique(np.stack([got_q, r.command[got_r]], axis=1), axis=0)
        repeats = np.bincount(got_q, minlength=len(q)) - np.bincount(
            distinct[:, 0], minlength=len(q)
        )
        second += repeats
    # Pass 3: broadcasts, answered by any module.
    open_r = np.flatnonzero(answers < 0)
    got_r, got_q = _attach(q.t, q.reply, np.flatnonzero(broadcast), r.t, r.message, open_r, window)
    answers[got_r], kind[got_r] = got_q, 3
    first = np.full(len(q), -1, np.int64)
    hit = np.flatnonzero(answers >= 0)
    if hit.size:
        # The earliest reply of each request: replies are in time order.
        order = hit[np.argsort(r.t[hit], kind="stable")]
        first_of = np.full(len(q), len(r), np.int64)
        np.minimum.at(first_of, answers[order], order)
        first = np.where(first_of < len(r), first_of, -1)
    return Pairing(answers=answers, kind=kind, first_reply=first, second_answers=second)
