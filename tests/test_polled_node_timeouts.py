"""A polled module's node timeout follows its pack's poll period, not a broadcast cycle.

A module of a request/response pack speaks once per poll: a slow answer or a rejected
request is no dropout, and a silent module is "not answering" (the liveness rules) before
its node is offline, so the cause leads and the silence is folded under it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from candiag.decode.dbc import load_dbc_paths
from candiag.health.nodes import ASSUMED_POLL_MS, NodeTracker
from candiag.sim.protocols import PROTOCOL_NAMES
from candiag.sim.protocols.packs import pack_path
from tests.test_liveness_episodes import analyze, flat


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_a_polled_family_times_out_after_three_polls(protocol: str) -> None:
    db = load_dbc_paths([pack_path(protocol)])
    tracker = NodeTracker(db, [])
    for family, messages in db.families.items():
        polled = [m for m in messages if m.protocol is not None and not m.cycle_time_ms]
        if not polled:
            continue
        period_ms = max(m.protocol.poll_period_ms or ASSUMED_POLL_MS for m in polled if m.protocol)
        assert tracker.timeout_for(family) >= max(1.0, 3 * period_ms / 1000.0 - 1e-9), family


@pytest.mark.slow
@pytest.mark.parametrize(
    ("protocol", "fault", "code"),
    [
        ("winline", "slow_replies@133.3+20", "CAN_MODULE_SLOW_REPLIES"),
        ("sinexcel", "rejected_requests@133.3+4:module=2", "CAN_MODULE_REJECTS_REQUESTS"),
        ("infy", "slow_replies@133.3+20", "CAN_MODULE_SLOW_REPLIES"),
    ],
)
def test_slow_or_rejecting_modules_are_not_offline_nodes(
    protocol: str, fault: str, code: str, tmp_path: Path
) -> None:
    report = analyze(tmp_path, protocol, 200.0, fault)
    codes = [f["code"] for f in flat(report["findings"])]
    assert code in codes and "CAN_NODE_OFFLINE" not in codes, codes
    assert report["findings"][0]["code"] == code
