"""The liveness findings as interval rules (candiag/liveness/intervals.py) on hand-made
timelines: episodes bounded by the requests and replies that prove them, the thresholds of
``[thresholds]`` (overridable), and "not answering" told from "not polling"."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from candiag.diagnosis.engine import DiagnosisEngine, RuleBook, load_rulebook
from candiag.diagnosis.episodes import Episode
from candiag.diagnosis.intervalrule import IntervalFinding
from candiag.diagnosis.timeline import BusTimeline
from candiag.errors import ConfigError
from candiag.liveness.exchanges import EventLog, ModuleExchanges
from candiag.liveness.intervals import liveness_faults

BOOK = load_rulebook()
LATENCY = 0.004  # a healthy answer


def module(
    address: int = 1,
    asked: Any = None,
    latency: Any = None,
    second: Any = None,
    period: float | None = 1.0,
    **more: Any,
) -> ModuleExchanges:
    """A module asked once a second from 0 to 299 s, every request answered in 4 ms,
    unless ``asked``/``latency``/``second`` say otherwise (NaN latency: unanswered)."""
    t = np.arange(0.0, 300.0) if asked is None else np.asarray(asked, np.float64)
    lat = np.full(t.size, LATENCY) if latency is None else np.asarray(latency, np.float64)
    sec = np.zeros(t.size, np.int64) if second is None else np.asarray(second, np.int64)
    arrays = {k: np.asarray(v, np.float64) for k, v in more.items() if k.endswith("_t")}
    rest = {k: v for k, v in more.items() if not k.endswith("_t")}
    if "error_code" in rest:
        rest["error_code"] = np.asarray(rest["error_code"], np.int64)
    if "serial" in rest:
        rest["serial"] = np.asarray(rest["serial"], np.int64)
    return ModuleExchanges(
        protocol="p",
        address=address,
        poll_period_s=period,
        reply_window_s=0.5,
        first_asked=float(t[0]) if t.size else None,
        last_asked=float(t[-1]) if t.size else None,
        asked_t=t,
        latency_s=lat,
        second=sec,
        **arrays,
        **rest,
    )


def findings(
    *modules: ModuleExchanges, end: float = 300.0, book: RuleBook = BOOK
) -> dict[tuple[str, str], IntervalFinding]:
    timeline = BusTimeline("can0", 0.0, end, modules=modules)
    return {(f.code, f.subject): f for f in liveness_faults(book, timeline)}


def bounds(f: IntervalFinding) -> list[tuple[float, float | None]]:
    return [(e.start, e.end) for e in f.episodes]


def with_thresholds(**values: float) -> RuleBook:
    keys = {f"liveness_{k}": v for k, v in values.items()}
    return dataclasses.replace(BOOK, thresholds={**BOOK.thresholds, **keys})


def silent_between(lo: float, hi: float, t: Any = None) -> Any:
    t = np.arange(0.0, 300.0) if t is None else t
    return np.where((t >= lo) & (t < hi), np.nan, LATENCY)


M1 = "can0/power_module/1"


def test_a_healthy_module_gives_nothing() -> None:
    assert findings(module()) == {}


def test_unanswered_requests_in_a_row_are_one_episode_per_silence() -> None:
    lat = silent_between(130.0, 135.0)
    lat[200:205] = np.nan
    found = findings(module(latency=lat))
    f = found[("CAN_MODULE_NOT_ANSWERING", M1)]
    # From the first unanswered request to the reply that ended the silence.
    assert bounds(f) == [(130.0, 135.0 + LATENCY), (200.0, 205.0 + LATENCY)]
    assert f.fields["run"] == 5 and f.fields["asked"] == "the controller keeps asking"
    assert f.proof_s == pytest.approx(1.0 + 0.5)  # the second request's reply window
    assert set(found) == {("CAN_MODULE_NOT_ANSWERING", M1)}


def test_one_lost_answer_is_not_a_finding_unless_the_threshold_says_so() -> None:
    lat = silent_between(150.0, 151.0)
    assert findings(module(latency=lat)) == {}
    strict = findings(module(latency=lat), book=with_thresholds(unanswered_in_a_row=1))
    assert bounds(strict[("CAN_MODULE_NOT_ANSWERING", M1)]) == [(150.0, 151.0 + LATENCY)]


def test_a_module_the_controller_gave_up_stays_not_answering_not_unpolled() -> None:
    # Silent from 120 s; the controller asks 15 more times, then never again.
    t = np.arange(0.0, 135.0)
    found = findings(module(asked=t, latency=silent_between(120.0, 1e9, t)))
    f = found[("CAN_MODULE_NOT_ANSWERING", M1)]
    assert bounds(f) == [(120.0, None)]
    assert f.fields["asked"] == "the controller asked until it gave the module up"
    assert set(found) == {("CAN_MODULE_NOT_ANSWERING", M1)}


def test_no_request_for_longer_than_the_limit_is_not_polling_from_last_to_next_request() -> None:
    t = np.concatenate([np.arange(0.0, 140.0), np.arange(143.0, 300.0)])  # 4 s without a request
    found = findings(module(asked=t))
    f = found[("CAN_CONTROLLER_NOT_POLLING", M1)]
    assert bounds(f) == [(139.0, 143.0)] and f.proof_s == 2.5
    assert f.fields["which"] == "module 1"
    # 2 s is within 2.5 poll periods; a user's limit of 1.5 periods makes it one.
    t2 = np.concatenate([np.arange(0.0, 140.0), np.arange(141.0, 300.0)])
    assert findings(module(asked=t2)) == {}
    loose = findings(module(asked=t2), book=with_thresholds(not_polled_periods=1.5))
    assert bounds(loose[("CAN_CONTROLLER_NOT_POLLING", M1)]) == [(139.0, 141.0)]


def test_requests_that_stop_for_good_leave_an_open_episode_from_the_last_one() -> None:
    found = findings(module(asked=np.arange(0.0, 200.0)))
    assert bounds(found[("CAN_CONTROLLER_NOT_POLLING", M1)]) == [(199.0, None)]


def test_the_declared_poll_period_or_the_assumed_one_sets_the_limit() -> None:
    t = np.concatenate([np.arange(0.0, 140.0, 0.1), np.arange(140.5, 300.0, 0.1)])
    fast = findings(module(asked=t, period=0.1))  # 0.6 s > 2.5 x 100 ms
    f = fast[("CAN_CONTROLLER_NOT_POLLING", M1)]
    assert f.episodes[0].start == pytest.approx(139.9) and f.episodes[0].end == 140.5
    assert f.fields["poll_period"] == "0.1 s"
    assumed = findings(module(asked=t, period=None))
    assert assumed == {}  # 1 s assumed: 0.6 s is nothing
    t3 = np.concatenate([np.arange(0.0, 140.0), np.arange(142.0, 300.0)])
    fast_default = findings(
        module(asked=t3, period=None), book=with_thresholds(default_poll_period_s=0.5)
    )
    f = fast_default[("CAN_CONTROLLER_NOT_POLLING", M1)]
    assert f.fields["poll_period"] == "0.5 s (assumed: not declared)"


def test_every_module_left_alone_is_the_controller_and_not_each_module() -> None:
    t = np.concatenate([np.arange(0.0, 140.0), np.arange(160.0, 300.0)])
    u = np.concatenate([np.arange(0.2, 140.2), np.arange(160.2, 300.2)])
    # Module 2 alone is also left out later, 200..210 s.
    u = u[(u < 200.0) | (u > 210.0)]
    found = findings(module(1, asked=t), module(2, asked=u))
    controller = found[("CAN_CONTROLLER_NOT_POLLING", "can0/controller")]
    assert [(round(e.start, 3), e.end) for e in controller.episodes] == [(139.2, 160.0)]
    assert controller.fields["address"] == "all"
    two = found[("CAN_CONTROLLER_NOT_POLLING", "can0/power_module/2")]
    assert [(round(e.start, 3), round(e.end or 0, 3)) for e in two.episodes] == [(199.2, 210.2)]
    assert ("CAN_CONTROLLER_NOT_POLLING", M1) not in found


def test_error_replies_are_bounded_by_the_first_and_last_and_10_s_apart_are_two() -> None:
    errors = np.concatenate([np.arange(130.0, 140.0), np.arange(170.0, 172.0)]) + LATENCY
    codes = np.full(errors.size, 0xF2)
    meanings = {0xF2: "InvalidCommand"}
    found = findings(module(error_t=errors, error_code=codes, error_meanings=meanings))
    f = found[("CAN_MODULE_REJECTS_REQUESTS", M1)]
    assert bounds(f) == [(130.0 + LATENCY, 139.0 + LATENCY), (170.0 + LATENCY, 171.0 + LATENCY)]
    assert f.fields["codes"] == "0xf2 InvalidCommand (2x)"  # the last episode's
    # Still within the window at the end of the data: open.
    late = findings(module(error_t=[295.0], error_code=[0xF2], error_meanings=meanings))
    assert bounds(late[("CAN_MODULE_REJECTS_REQUESTS", M1)]) == [(295.0, None)]


def test_second_answers_on_most_requests_are_a_conflict_a_few_are_not() -> None:
    second = np.zeros(300, np.int64)
    second[140:160] = 1
    found = findings(module(second=second))
    f = found[("CAN_MODULE_ADDRESS_CONFLICT", M1)]
    assert bounds(f) == [(140.0, 159.0)]
    assert f.fields["how"] == "20 second answers to one request"
    few = np.zeros(300, np.int64)
    few[[100, 150, 200]] = 1  # bunching late answers, one per 50 s
    assert findings(module(second=few)) == {}
    share = findings(module(second=few), book=with_thresholds(conflict_min_share=0.01))
    assert share == {}  # still fewer than 2 in 10 s


def test_the_duplicate_bit_and_two_serials_are_conflicts() -> None:
    bit = findings(module(dup_t=np.arange(150.0, 155.0)))
    assert bounds(bit[("CAN_MODULE_ADDRESS_CONFLICT", M1)]) == [(150.0, 154.0)]
    serial_t = np.array([0.0, 150.0, 150.5, 151.0])  # the first heard, then alternating
    twins = findings(module(serial_t=serial_t, serial=[7, 9, 7, 9]))
    f = twins[("CAN_MODULE_ADDRESS_CONFLICT", M1)]
    assert bounds(f) == [(150.0, 151.0)] and "2 serial numbers" in f.fields["how"]


def test_a_median_latency_above_the_limit_is_slow_bounded_by_the_slow_answers() -> None:
    lat = np.full(300, LATENCY)
    lat[150:170] = 0.2
    found = findings(module(latency=lat))
    f = found[("CAN_MODULE_SLOW_REPLIES", M1)]
    assert bounds(f) == [(150.0, 169.0)]
    assert f.fields["median_ms"] == "200" and f.fields["limit_ms"] == "100"
    assert set(found) == {("CAN_MODULE_SLOW_REPLIES", M1)}
    assert findings(module(latency=lat), book=with_thresholds(slow_reply_ms=250.0)) == {}


def test_late_replies_during_unanswered_requests_are_slow_not_silent() -> None:
    lat = silent_between(130.0, 135.0)
    late = np.arange(130.0, 135.0) + 1.2  # each answer arrives after the next request
    found = findings(module(latency=lat, late_t=late))
    assert set(found) == {("CAN_MODULE_SLOW_REPLIES", M1)}
    f = found[("CAN_MODULE_SLOW_REPLIES", M1)]
    assert bounds(f) == [(131.2, 135.0 + LATENCY)]
    assert f.fields["median_ms"] == "more than one poll period"


def test_the_engine_keeps_the_bounds_and_the_detection_time() -> None:
    lat = silent_between(130.0, 135.0)
    engine = DiagnosisEngine(book=BOOK)
    timeline = BusTimeline("can0", 0.0, 300.0, modules=(module(latency=lat),))
    engine.apply_timelines(300.0, [timeline])
    (f,) = [f for f in engine.all_findings_flat() if f.code == "CAN_MODULE_NOT_ANSWERING"]
    assert f.episodes == [Episode(130.0, 135.0 + LATENCY)] and f.cleared_at == 135.0 + LATENCY
    assert f.detected_at == pytest.approx(131.5)


def test_the_event_log_is_bounded_live_and_complete_offline() -> None:
    live, offline = EventLog("v"), EventLog("v", keep_history=True)
    for start in range(0, 7200, 10):
        t = np.arange(start, start + 10, dtype=np.float64)
        live.add(t[::-1].copy(), v=t[::-1].copy())  # out of order within a batch
        offline.add(t, v=t)
    t_live, cols = live.arrays()
    assert t_live[0] >= 7199 - 3600 and bool(np.all(np.diff(t_live) >= 0))
    assert bool(np.array_equal(cols["v"], t_live))
    assert len(offline) == 7200 and offline.arrays()[0][0] == 0.0


def test_liveness_thresholds_are_overridable_and_checked_with_file_and_key(tmp_path: Any) -> None:
    good = tmp_path / "ok.toml"
    good.write_text("[thresholds]\nliveness_slow_reply_ms = 250.0\n")
    assert load_rulebook(good).t("liveness_slow_reply_ms") == 250.0
    assert load_rulebook().t("liveness_slow_reply_ms") == 100.0  # the one default
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\nliveness_not_polled_periods = 0.5\nliveness_typo = 1\n")
    with pytest.raises(ConfigError) as err:
        load_rulebook(bad)
    text = str(err.value)
    assert "bad.toml:2" in text and "thresholds.liveness_not_polled_periods" in text
    assert "bad.toml:3" in text and "thresholds.liveness_typo" in text


def test_the_record_does_not_depend_on_batches_and_analyze_keeps_all_of_it() -> None:
    from candiag.decode.dbc import load_dbc_paths
    from candiag.sim.protocols.packs import pack_path
    from tests.test_liveness import _simulate, _tracker

    batch = _simulate("winline", 12.0, "module_silent@3+2", "rejected_requests@7+2:module=2")
    whole, split = _tracker("winline", batch).timeline(), _tracker("winline", batch, 23).timeline()
    assert [m.address for m in whole] == [m.address for m in split] == [1, 2, 3, 4]
    for a, b in zip(whole, split, strict=True):
        for name in ("asked_t", "latency_s", "second", "late_t", "error_t", "error_code"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert np.isnan(whole[3].latency_s).sum() >= 2 and whole[1].error_t.size > 0
    from candiag.decode.decoder import BatchDecoder
    from candiag.liveness import LivenessTracker

    tracker = LivenessTracker(load_dbc_paths([pack_path("winline")]), keep_history=True)
    tracker.update(BatchDecoder(tracker.db).decode(batch))
    assert tracker.modules and all(m.asked_log.keep_history for m in tracker.modules.values())
    # analyze's pipelines keep every exchange (whole_capture), the live ones the last hour
    from candiag.health.pipeline import BusPipeline

    db = load_dbc_paths([pack_path("winline")])
    assert BusPipeline("x", db, whole_capture=True).liveness.keep_history
    assert not BusPipeline("x", db).liveness.keep_history
