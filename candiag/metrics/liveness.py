"""Prometheus metrics of request/response liveness (candiag/liveness), per module.

A collector of its own beside :class:`candiag.metrics.collectors.CandiagCollector`: it reads
each bus's liveness report (:meth:`candiag.liveness.tracker.LivenessTracker.report`) once per
scrape and yields, per bus, protocol and module address:

* ``candiag_module_requests_total``: the controller's requests to the module (judged ones);
* ``candiag_module_replies_total``: the module's replies;
* ``candiag_module_unanswered_total``: requests without an answer within the reply window;
* ``candiag_module_error_replies_total{code}``: replies carrying an error code;
* ``candiag_module_second_answers_total``: further answers to one request (address conflict);
* ``candiag_module_reply_latency_seconds``: histogram of the answers' latency;
* ``candiag_module_last_request_age_seconds``: seconds since the controller last asked it.

Buses without a protocol pack's exchanges export nothing here (no empty module series).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: bus name -> that bus's liveness report (empty or absent: no exchanges on it).
LivenessSource = Callable[[], Mapping[str, Mapping[str, Any]]]
LABELS = ("bus", "protocol", "module")


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class LivenessCollector(Collector):
    """Per-module request/response metrics (see the module docstring)."""

    def __init__(self, source: LivenessSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        return []  # registration must not read the daemon's state

    def collect(self) -> Iterator[Metric]:
        reports = self._source()
        requests = CounterMetricFamily(
            "candiag_module_requests", "Requests of the controller to the module.", labels=LABELS
        )
        replies = CounterMetricFamily(
            "candiag_module_replies", "Replies of the module to the controller.", labels=LABELS
        )
        unanswered = CounterMetricFamily(
            "candiag_module_unanswered",
            "Requests to the module without an answer within the reply window.",
            labels=LABELS,
        )
        errors = CounterMetricFamily(
            "candiag_module_error_replies",
            "Replies of the module carrying an error code (code: the protocol's value).",
            labels=(*LABELS, "code"),
        )
        second = CounterMetricFamily(
            "candiag_module_second_answers",
            "Further answers to one request (two modules at one address).",
            labels=LABELS,
        )
        latency = HistogramMetricFamily(
            "candiag_module_reply_latency_seconds",
            "Time from the controller's request to the module's answer.",
            labels=LABELS,
        )
        age = GaugeMetricFamily(
            "candiag_module_last_request_age_seconds",
            "Seconds since the controller last asked the module.",
            labels=LABELS,
        )
        for bus, report in sorted(reports.items()):
            for mod in (report or {}).get("modules") or []:
                labels = [bus, str(mod["protocol"]), str(mod["address"])]
                requests.add_metric(labels, float(mod["requests"]))
                replies.add_metric(labels, float(mod["replies"]))
                unanswered.add_metric(labels, float(mod["unanswered"]))
                second.add_metric(labels, float(mod["second_answers"]))
                for code, e in sorted(mod["errors"].items()):
                    errors.add_metric([*labels, code], float(e["count"]))
                cumulative, buckets = 0, []
                bounds = [*mod["latency_buckets_s"], float("inf")]
                for bound, n in zip(bounds, mod["latency_bucket_counts"], strict=True):
                    cumulative += int(n)
                    buckets.append((_le(bound), float(cumulative)))
                latency.add_metric(labels, buckets, float(mod["latency_sum_s"]))
                if mod.get("last_request_age_s") is not None:
                    age.add_metric(labels, float(mod["last_request_age_s"]))
        yield from (requests, replies, unanswered, errors, second, latency, age)
