"""Request/response liveness (candiag/liveness): requests paired with their replies, per-module
figures, and the findings that tell a silent module from a controller that stopped asking,
on every protocol's simulator (candiag/sim/protocols) with the faults docs/protocols.md lists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from candiag.decode.dbc import load_dbc_paths
from candiag.decode.decoder import BatchDecoder
from candiag.diagnosis.engine import DiagnosisEngine
from candiag.diagnosis.timeline import bus_timeline
from candiag.health.pipeline import BusPipeline
from candiag.ingest.frames import FrameBatch
from candiag.liveness import LivenessTracker
from candiag.liveness.pairing import Replies, Requests, pair
from candiag.sim.faults import parse_fault
from candiag.sim.protocols import PROTOCOL_NAMES
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_info, pack_path

T0 = 1_700_000_000.0
FAULT_AT = 6.0
# The last module of every simulator (the faults' default), and the only one of DPM1000/BEG.
LAST = {"infy": 4, "winline": 4, "sinexcel": 4, "uugreen": 2, "huawei": 2, "dpm1000": 0,
        "beg1k075g": 0}  # fmt: skip
LIVENESS_CODES = (
    "CAN_MODULE_NOT_ANSWERING",
    "CAN_CONTROLLER_NOT_POLLING",
    "CAN_MODULE_REJECTS_REQUESTS",
    "CAN_MODULE_ADDRESS_CONFLICT",
    "CAN_MODULE_SLOW_REPLIES",
)


def budget_s(protocol: str) -> float:
    """The protocol's timeout plus one poll period (docs/liveness.md): the time the controller
    gives a module up after (CandiagControllerTimeoutMs), else the module's own timeout; 1 s
    where neither is published (DPM1000, BEG1K075G, Sinexcel: the reply timeout of one
    request is not a liveness timeout)."""
    info = pack_info(protocol)
    timeout = info.controller_timeout_ms or info.module_timeout_ms
    poll = info.poll_period_ms or 1000
    return ((timeout or 1000) + poll) / 1000.0


def _simulate(protocol: str, seconds: float, *specs: str) -> FrameBatch:
    faults = tuple(parse_fault(s) for s in specs)
    sim = ProtocolSimulator(ProtocolSimConfig(protocol, faults=faults))
    return FrameBatch.concat(list(sim.chunks(seconds)))


def _tracker(protocol: str, batch: FrameBatch, pieces: int = 1) -> LivenessTracker:
    db = load_dbc_paths([pack_path(protocol)])
    decoder, tracker = BatchDecoder(db), LivenessTracker(db)
    for part in np.array_split(np.arange(len(batch)), pieces):
        tracker.update(decoder.decode(batch.take(part)))
    tracker.flush()
    return tracker


def findings_over_time(
    protocol: str, seconds: float, *specs: str, step: float = 0.1
) -> dict[tuple[str, str], float]:
    """(code, subject) -> seconds after the start when the engine raised it, evaluating the
    pipeline every ``step`` of capture time as the daemon does in wall time."""
    batch = _simulate(protocol, seconds, *specs)
    pipeline = BusPipeline("can0", load_dbc_paths([pack_path(protocol)]))
    engine = DiagnosisEngine()
    first: dict[tuple[str, str], float] = {}
    for cut in np.arange(T0 + step, T0 + seconds, step).tolist():
        lo, hi = np.searchsorted(batch.timestamp, (cut - step, cut)).tolist()
        if hi > lo:
            pipeline.process(batch.take(np.arange(lo, hi)))
        pipeline.advance(cut)
        report, timeline = pipeline.report(cut, detail=False), bus_timeline(pipeline, cut)
        raised, _ = engine.update(cut, [report], timelines=[timeline])
        for f in raised:
            first.setdefault((f.code, f.subject), cut - T0)
    return first


def _liveness(first: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: v for k, v in first.items() if k[0] in LIVENESS_CODES}


# -- pairing ------------------------------------------------------------------------------


def _q(*rows: tuple[float, int, int, int]) -> Requests:
    a = np.array(rows, np.float64).reshape(-1, 4)
    return Requests(a[:, 0], a[:, 1].astype(np.int64), a[:, 2].astype(np.int64),
                    a[:, 3].astype(np.int64))  # fmt: skip


def _r(*rows: tuple[float, int, int, int]) -> Replies:
    a = np.array(rows, np.float64).reshape(-1, 4)
    return Replies(a[:, 0], a[:, 1].astype(np.int64), a[:, 2].astype(np.int64),
                   a[:, 3].astype(np.int64))  # fmt: skip


def test_a_register_read_twice_gets_two_answers_in_order() -> None:
    # Winline reads V twice per cycle before the module answered the first.
    p = pair(_q((0.0, 9, 1, 1), (0.001, 9, 1, 1)), _r((0.004, 9, 1, 1), (0.006, 9, 1, 1)), 0.5)
    assert p.answers.tolist() == [0, 1] and p.second_answers.tolist() == [0, 0]


def test_a_request_asked_again_after_silence_is_unanswered_and_the_reply_is_the_new_ones() -> None:
    p = pair(_q((0.0, 9, 1, 1), (1.0, 9, 1, 1)), _r((1.003, 9, 1, 1)), 1.5)
    assert p.first_reply.tolist() == [-1, 0]


def test_two_answers_to_one_request_are_a_conflict_but_the_frames_of_one_answer_are_not() -> None:
    twin = pair(_q((0.0, 9, 2, 5)), _r((0.003, 9, 2, 5), (0.004, 9, 2, 5)), 0.5)
    assert twin.second_answers.tolist() == [1]
    # Sinexcel: query 0x0202 answered by 0x0202 .. 0x020A (other commands, one answer).
    six = pair(
        _q((0.0, 9, 2, 0x202)), _r(*[(0.003 + i / 1000, 9, 2, 0x202 + i) for i in range(6)]), 0.5
    )
    assert six.second_answers.tolist() == [0] and (six.answers == 0).all()


def test_answers_of_another_module_or_message_or_too_late_answer_nothing() -> None:
    p = pair(
        _q((0.0, 9, 1, 1)),
        _r((0.002, 9, 2, 1), (0.003, 8, 1, 1), (0.9, 9, 1, 1)),
        0.5,
    )
    assert p.answers.tolist() == [-1, -1, -1] and p.first_reply.tolist() == [-1]


def test_a_broadcast_is_answered_by_every_module() -> None:
    p = pair(_q((0.0, 9, -1, 0)), _r((0.002, 9, 1, 7), (0.003, 9, 2, 7)), 0.5)
    assert p.answers.tolist() == [0, 0] and p.kind.tolist() == [3, 3]


# -- figures per module ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_healthy_modules_answer_every_request_within_milliseconds(protocol: str) -> None:
    tracker = _tracker(protocol, _simulate(protocol, 8.0))
    report = tracker.report()
    addresses = set(ProtocolSimulator(ProtocolSimConfig(protocol)).ctx.addresses)
    modules = {m["address"]: m for m in report["modules"]}
    assert set(modules) == addresses
    for m in modules.values():
        assert m["requests"] > 3 and m["replies"] >= m["answered"] > 0
        # DPM1000's on/off request is not answered (EVerest does not wait for it).
        assert m["unanswered"] <= (2 if protocol == "dpm1000" else 1)
        assert m["second_answers"] == 0 and not m["errors"]
        assert 1.0 < m["latency_ms"]["median"] < 50.0
        assert sum(m["latency_bucket_counts"]) == m["answered"]


def test_batches_do_not_change_the_figures() -> None:
    batch = _simulate("winline", 8.0, "module_silent@3+2")
    whole = _tracker("winline", batch).report()
    split = _tracker("winline", batch, pieces=37).report()
    strip = ("latency_sum_s",)
    assert [{k: v for k, v in m.items() if k not in strip} for m in whole["modules"]] == [
        {k: v for k, v in m.items() if k not in strip} for m in split["modules"]
    ]


@pytest.mark.parametrize("protocol", [p for p in PROTOCOL_NAMES if p != "uugreen"])
def test_rejected_requests_are_counted_by_code_with_their_meaning(protocol: str) -> None:
    tracker = _tracker(protocol, _simulate(protocol, 6.0, "rejected_requests@2+2"))
    invalid = 2 if protocol in ("infy", "beg1k075g", "huawei") else 0xF2
    for m in tracker.report()["modules"]:
        assert str(invalid) in m["errors"], m["errors"]
        meaning = m["errors"][str(invalid)]["meaning"].lower()
        assert "invalid" in meaning and "command" in meaning


# -- findings ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_a_silent_module_is_told_from_a_controller_that_stopped_asking(protocol: str) -> None:
    module = LAST[protocol]
    seconds = FAULT_AT + budget_s(protocol) + 0.5
    silent = _liveness(findings_over_time(protocol, seconds, f"module_silent@{FAULT_AT}+60"))
    key = ("CAN_MODULE_NOT_ANSWERING", f"can0/power_module/{module}")
    assert set(silent) == {key}, silent
    assert silent[key] - FAULT_AT <= budget_s(protocol)
    one = _liveness(
        findings_over_time(protocol, seconds, f"controller_silent@{FAULT_AT}+60:module=last")
    )
    key = ("CAN_CONTROLLER_NOT_POLLING", f"can0/power_module/{module}")
    assert set(one) == {key}, one
    assert one[key] - FAULT_AT <= budget_s(protocol)
    every = _liveness(findings_over_time(protocol, seconds, f"controller_silent@{FAULT_AT}+60"))
    several = len(ProtocolSimulator(ProtocolSimConfig(protocol)).ctx.addresses) > 1
    subject = "can0/controller" if several else f"can0/power_module/{module}"
    assert set(every) == {("CAN_CONTROLLER_NOT_POLLING", subject)}, every


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_conflicts_rejections_and_slow_replies_are_found_on_the_module(protocol: str) -> None:
    module = f"can0/power_module/{LAST[protocol]}"
    seconds = FAULT_AT + 12.0
    conflict = _liveness(findings_over_time(protocol, seconds, f"duplicate_address@{FAULT_AT}+60"))
    assert set(conflict) == {("CAN_MODULE_ADDRESS_CONFLICT", module)}, conflict
    slow = _liveness(findings_over_time(protocol, seconds, f"slow_replies@{FAULT_AT}+60"))
    assert set(slow) == {("CAN_MODULE_SLOW_REPLIES", module)}, slow
    if protocol != "uugreen":  # UUGreen has no error reply
        spec = f"rejected_requests@{FAULT_AT}+60:module=last"
        rejected = _liveness(findings_over_time(protocol, seconds, spec))
        assert set(rejected) == {("CAN_MODULE_REJECTS_REQUESTS", module)}, rejected


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_a_healthy_bus_raises_no_liveness_finding(protocol: str) -> None:
    assert not _liveness(findings_over_time(protocol, 8.0, step=0.5))


def test_findings_read_the_report_section_only(tmp_path: Any) -> None:
    from candiag.diagnosis.engine import load_rulebook
    from candiag.liveness.rules import liveness_conditions
    from tests.bus_reports import bus_report

    book = load_rulebook()
    assert not list(liveness_conditions(book, bus_report({"name": "can0"}), {"bus": "can0"}))
    section = {
        "now": 100.0,
        "protocols": {"p": {"poll_period_ms": 1000}},
        "modules": [
            {"protocol": "p", "address": 3, "requests": 50, "unanswered_run": 5,
             "unanswered_since": 95.0, "last_request_age_s": 0.5, "last_reply_age_s": 6.0},
        ],
    }  # fmt: skip
    bus = dataclasses.replace(bus_report({"name": "can0"}), liveness=section)
    (cond,) = liveness_conditions(book, bus, {"bus": "can0"})
    assert cond.code == "CAN_MODULE_NOT_ANSWERING" and cond.subject == "can0/power_module/3"


@pytest.mark.slow
def test_analyze_json_and_html_carry_the_liveness_section(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    log, out, html = tmp_path / "w.log", tmp_path / "w.json", tmp_path / "w.html"
    run = [sys.executable, "-m", "candiag"]
    subprocess.run([*run, "simulate", "--protocol", "winline", "--scenario",
                    "module_not_answering", "-o", str(log), "-d", "40"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*run, "analyze", str(log), "--dbc", str(pack_path("winline")), "--json",
                    str(out), "--html", str(html)], capture_output=True)  # fmt: skip
    report = json.loads(out.read_text())
    modules = {m["address"]: m for m in report["liveness"]["modules"]}
    assert modules[4]["unanswered"] > 10 and modules[4]["unanswered_run"] > 10
    assert all(modules[a]["unanswered"] == 0 for a in (1, 2, 3))
    codes = {(f["code"], f["subject"]) for f in report["findings"]}
    assert ("CAN_MODULE_NOT_ANSWERING", "can0/power_module/4") in codes
    assert not any(c == "CAN_CONTROLLER_NOT_POLLING" for c, _ in codes)
    page = html.read_text()
    assert "Power modules (request/response)" in page and "not answering" in page
