"""Epoch-based id statistics: merging epochs equals one running IdStats; vectorized verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from candiag.health.ids import IdStats
from candiag.health.thresholds import CycleThresholds
from tests.synthetic import synthetic_batch


def batches(n: int = 6) -> list:  # type: ignore[type-arg]
    return [synthetic_batch(5000, seed=i, start=1.7e9 + 2.5 * i) for i in range(n)]


def test_merged_epochs_equal_one_running_statistic() -> None:
    whole = IdStats()
    lifetime = IdStats()
    epoch = lifetime.fresh_epoch()
    for i, batch in enumerate(batches()):
        whole.update(batch)
        epoch.update(batch)
        if i % 2 == 1:  # rotate every two batches
            lifetime.merge(epoch)
            epoch = lifetime.fresh_epoch()
    lifetime.merge(epoch)
    assert np.array_equal(whole.keys, lifetime.keys)
    for name in ("count", "n_int", "hist"):
        assert np.array_equal(getattr(whole, name), getattr(lifetime, name)), name
    for name in ("mean", "m2", "pmin", "pmax", "first", "last"):
        assert np.allclose(getattr(whole, name), getattr(lifetime, name), rtol=1e-9), name


def test_copy_is_independent() -> None:
    stats = IdStats()
    stats.update(batches(1)[0])
    clone = stats.copy()
    assert np.array_equal(clone.count, stats.count) and np.allclose(clone.mean, stats.mean)
    clone.update(batches(2)[1])
    assert clone.count.sum() > stats.count.sum()


@pytest.mark.parametrize("factor", [0.8, 0.95, 1.0, 1.3])
def test_vectorized_verdicts_equal_check_cycles(factor: float) -> None:
    stats = IdStats()
    for batch in batches(3):
        stats.update(batch)
    rows = stats.rows()
    declared = np.array([(r.period_mean or 0.0) * factor for r in rows])
    lookup = {(r.can_id, r.extended): d * 1000 for r, d in zip(rows, declared, strict=True)}
    t = CycleThresholds(mean_tolerance=0.1, p95_factor=3.0, min_intervals=5)
    verdicts = stats.cycle_verdicts(declared, t)
    expected = {
        (c.row.can_id, c.row.extended, c.row.kind): c.keeps_cycle
        for c in stats.check_cycles(lambda cid, ext: lookup.get((cid, ext)) or None, t)
    }
    judged = 0
    for row, verdict in zip(rows, verdicts.tolist(), strict=True):
        want = expected.get((row.can_id, row.extended, row.kind))
        got = None if verdict < 0 else bool(verdict)
        assert got == want, row
        judged += got is not None
    assert judged > 0
