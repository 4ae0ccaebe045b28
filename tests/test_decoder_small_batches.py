"""The decoder's per-message fast path: same values in small batches as in one big batch.

``BatchDecoder`` extracts all signals of a classic message as rows of one 2-D array and
gathers words, timestamps and nodes once per batch.  These tests pin what that must not
change: every value equals the per-signal path (``_extract`` + ``_scale``, the original
algorithm), dtypes and key order are those of the message, splitting a batch into small
ones (as ``candiag analyze`` does) gives the same arrays, and results do not share
writable memory across signals.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.decode.decoder import BatchDecoder, DecodeResult, _extract, _scale
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


def random_traffic(db: ChargerDatabase, n: int, seed: int) -> FrameBatch:
    """Frames of every reference message (random nodes and payloads), shuffled."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(db.messages), n)
    can_id = np.zeros(n, np.uint32)
    flags = np.zeros(n, np.uint8)
    dlc = np.zeros(n, np.uint8)
    for i, k in enumerate(which.tolist()):
        msg = db.messages[k]
        node = int(rng.integers(0, 8)) if msg.node_mask else 0
        low = (msg.node_mask & -msg.node_mask).bit_length() - 1 if msg.node_mask else 0
        can_id[i] = msg.frame_id | ((node << low) & msg.node_mask)
        flags[i] = FLAG_EXTENDED if msg.is_extended else 0
        dlc[i] = msg.length
    return FrameBatch(
        timestamp=np.cumsum(rng.random(n)) + 1_700_000_000.0,
        can_id=can_id,
        flags=flags,
        dlc=dlc,
        data=rng.integers(0, 256, (n, 8), dtype=np.uint8),
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def test_every_value_equals_the_per_signal_path(db: ChargerDatabase) -> None:
    batch = random_traffic(db, 4000, seed=1)
    decoder = BatchDecoder(db)
    result = decoder.decode(batch)
    assert result.decoded_frames == 4000
    plans = {p.message.name: p for p in decoder._plans}
    checked = 0
    for name, decoded in result.messages.items():
        plan = plans[name]
        assert list(decoded.signals) == [s.name for s in plan.message.signals]
        words = batch.data[decoded.index].copy().view("<u8")[:, 0].astype(np.uint64)
        windows = {("little", 0): words, ("big", 0): words.byteswap()}
        for p in plan.plans:
            want = _scale(p.signal, _extract(p, windows[p.window]))
            got = decoded.signals[p.signal.name]
            assert got.dtype == want.dtype, f"{name}.{p.signal.name}"
            assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), name
            checked += 1
        assert np.array_equal(decoded.timestamp, batch.timestamp[decoded.index])
    assert checked > 100


def concat_message(results: list[DecodeResult], name: str) -> dict[str, np.ndarray]:
    parts = [r.messages[name] for r in results if name in r.messages]
    out = {
        "timestamp": np.concatenate([m.timestamp for m in parts]),
        "node": np.concatenate([m.node for m in parts]),
    }
    for sig in parts[0].signals:
        out[sig] = np.concatenate([m.signals[sig] for m in parts])
        out["present:" + sig] = np.concatenate([m.present[sig] for m in parts])
    return out


def test_small_batches_decode_like_one_big_batch(db: ChargerDatabase) -> None:
    batch = random_traffic(db, 6000, seed=2)
    decoder = BatchDecoder(db)
    whole = decoder.decode(batch)
    cuts = np.sort(np.random.default_rng(3).choice(np.arange(1, 6000), 40, replace=False))
    bounds = [0, *cuts.tolist(), 6000]
    pieces = [decoder.decode(batch.take(slice(a, b))) for a, b in itertools.pairwise(bounds)]
    assert sum(p.decoded_frames for p in pieces) == whole.decoded_frames
    for name, decoded in whole.messages.items():
        joined = concat_message(pieces, name)
        assert np.array_equal(joined["timestamp"], decoded.timestamp)
        assert np.array_equal(joined["node"], decoded.node)
        for sig, values in decoded.signals.items():
            assert joined[sig].dtype == values.dtype
            assert np.array_equal(joined[sig], values, equal_nan=values.dtype.kind == "f")
            assert np.array_equal(joined["present:" + sig], decoded.present[sig])


def test_results_do_not_alias_between_signals(db: ChargerDatabase) -> None:
    batch = random_traffic(db, 500, seed=4)
    result = BatchDecoder(db).decode(batch)
    for decoded in result.messages.values():
        names = list(decoded.signals)
        if len(names) < 2:
            continue
        before = {k: v.copy() for k, v in decoded.signals.items()}
        first = decoded.signals[names[0]]
        first[...] = 0  # a consumer scribbling on one array
        for other in names[1:]:
            assert np.array_equal(
                decoded.signals[other], before[other], equal_nan=before[other].dtype.kind == "f"
            )
        for mask in decoded.present.values():
            assert not mask.flags.writeable
        break
    else:
        pytest.fail("no message with two signals in the reference DBCs")
