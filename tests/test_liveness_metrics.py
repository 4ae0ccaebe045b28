"""The liveness collector (candiag/metrics/liveness.py): per-module request, reply,
unanswered and error counters and the latency histogram, from a simulated bus whose last
module stops answering; the exposition passes promtool's lint."""

from __future__ import annotations

import subprocess

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from candiag.decode.dbc import load_dbc_paths
from candiag.decode.decoder import BatchDecoder
from candiag.ingest.frames import FrameBatch
from candiag.liveness import LivenessTracker
from candiag.metrics.liveness import LivenessCollector
from candiag.sim.faults import parse_fault
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path
from tests.helpers_prom import promtool


def _exposition() -> str:
    faults = (parse_fault("module_silent@3+60"), parse_fault("rejected_requests@1+1:module=1"))
    sim = ProtocolSimulator(ProtocolSimConfig("winline", faults=faults))
    batch = FrameBatch.concat(list(sim.chunks(8.0)))
    db = load_dbc_paths([pack_path("winline")])
    tracker = LivenessTracker(db)
    tracker.update(BatchDecoder(db).decode(batch))
    registry = CollectorRegistry()
    registry.register(LivenessCollector(lambda: {"can0": tracker.report()}))
    return generate_latest(registry).decode()


def test_per_module_counters_and_latency_histogram() -> None:
    text = _exposition()
    samples = {
        (s.name, s.labels.get("module"), s.labels.get("code"), s.labels.get("le")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    asked = samples[("candiag_module_requests_total", "4", None, None)]
    missed = samples[("candiag_module_unanswered_total", "4", None, None)]
    assert asked > missed > 0.5 * (asked - 3 * 4)  # silent from 3 s of 8 s, asked each second
    assert samples[("candiag_module_unanswered_total", "1", None, None)] == 0
    assert samples[("candiag_module_error_replies_total", "1", "242", None)] > 0
    count = samples[("candiag_module_reply_latency_seconds_count", "1", None, None)]
    inf = samples[("candiag_module_reply_latency_seconds_bucket", "1", None, "+Inf")]
    assert count == inf > 0
    buckets = [v for (n, m, _, le), v in samples.items()
               if n.endswith("_bucket") and m == "1"]  # fmt: skip
    assert np.all(np.diff(sorted(buckets)) >= 0)
    assert "candiag_module_last_request_age_seconds" in text


def test_promtool_accepts_the_exposition() -> None:
    result = subprocess.run(
        [promtool(), "check", "metrics"],
        input=_exposition(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
