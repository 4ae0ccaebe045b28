"""Issue 15: findings are episodes with exact bounds, read off each bus's timeline.

Unit tests build the trackers' intervals from frames of the reference DBCs; the end-to-end
tests run the real CLI on simulated captures whose faults are known to the frame.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from candiag.cli import main
from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.decode.decoder import BatchDecoder
from candiag.diagnosis.engine import DiagnosisEngine, load_rulebook
from candiag.diagnosis.episodes import Episode
from candiag.diagnosis.intervals import contactor_faults, node_offline
from candiag.diagnosis.timeline import BusTimeline, ContactorTrace, NodePresence
from candiag.health.nodes import NodeTracker
from candiag.health.signals import ContactorFact, Disagreement
from tests.test_health_nodes import encode, telemetry

Frames = list[tuple[float, str, int, Mapping[str, float]]]


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


# -- the trackers record intervals exact to the frames ----------------------------------------


def test_a_nodes_silences_are_its_last_frame_before_and_first_after(db: ChargerDatabase) -> None:
    frames = [f for f in telemetry([1, 2], 0.0, 30.0) if not (f[2] == 2 and 10.0 < f[0] < 15.0)]
    tracker = NodeTracker(db)
    decoder = BatchDecoder(db)
    batch = encode(db, frames)
    for lo in range(0, len(batch), 37):  # batches that cut the silence anywhere
        tracker.update(decoder.decode(batch.take(slice(lo, lo + 37))))
    gaps = tracker.nodes[("power_module", 2)].gaps
    assert len(gaps) == 1
    before, after = gaps[0]
    assert before == pytest.approx(10.0) and after == pytest.approx(15.0)
    assert tracker.nodes[("power_module", 1)].gaps == []


def test_contactor_disagreements_are_kept_as_intervals_across_batches() -> None:
    fact = ContactorFact("DCPlus")
    t = np.arange(0.0, 20.0, 0.1)
    command = np.ones_like(t)
    feedback = np.where((t >= 5.0) & (t < 8.0), 0.0, 1.0)
    for lo in range(0, len(t), 13):
        part = slice(lo, lo + 13)
        fact.advance((t[part], command[part]), (t[part] + 0.01, feedback[part]))
    (d,) = fact.all_disagreements()
    assert d.start == pytest.approx(5.01) and d.end == pytest.approx(8.01)
    assert (d.command, d.feedback) == (1.0, 0.0)


def test_a_disagreement_still_going_at_the_end_is_open() -> None:
    fact = ContactorFact("DCMinus")
    t = np.arange(0.0, 5.0, 0.1)
    fact.advance((t, np.ones_like(t)), (t, np.where(t >= 2.0, 0.0, 1.0)))
    assert fact.all_disagreements()[-1].end is None


# -- interval rules ---------------------------------------------------------------------------


def timeline(**kw: Any) -> BusTimeline:
    return BusTimeline(**{"bus": "can0", "start": 0.0, "end": 300.0, **kw})


def test_a_node_that_never_came_back_stays_offline_to_the_end() -> None:
    node = NodePresence("power_module", 3, 0.0, 100.0, 1.0, ((20.0, 25.0),))
    (found,) = node_offline(load_rulebook(), timeline(nodes=(node,)))
    assert found.episodes == (Episode(20.0, 25.0), Episode(100.0, None))
    assert found.evidence["never_came_back"] is True
    assert "silent for the last 200.0 s" in found.fields["silent"]


def test_weld_is_feedback_closed_after_an_open_command_without_coil_current() -> None:
    book = load_rulebook()
    stuck = Disagreement(50.0, 170.0, command=0.0, feedback=1.0, coil_max=0.0)
    driven = Disagreement(200.0, 210.0, command=0.0, feedback=1.0, coil_max=0.8)
    blip = Disagreement(220.0, 220.05, command=1.0, feedback=0.0)  # normal switching lag
    trace = ContactorTrace("DCPlus", (stuck, driven, blip), (), 299.9)
    found = {f.code: f.episodes for f in contactor_faults(book, timeline(contactors=(trace,)))}
    # No weld bit, yet welded: the reference DBC's own definition of a weld.
    assert found["CONTACTOR_WELD"] == (Episode(50.0, 170.0),)
    # The coil still driven: the contactor obeys a wrong coil drive, not a weld.
    assert found["CONTACTOR_MISMATCH"] == (Episode(200.0, 210.0),)


def test_a_fault_that_comes_back_is_one_finding_with_its_episodes() -> None:
    engine = DiagnosisEngine()
    trace = ContactorTrace(
        "DCPlus",
        tuple(Disagreement(t, t + 3.0, 1.0, 0.0) for t in (75.0, 135.0, 195.0)),
        (),
        299.0,
    )
    engine.apply_timelines(300.0, [timeline(contactors=(trace,))])
    (finding,) = engine.all_findings()
    doc = finding.to_json()
    assert doc["occurrences"] == 3 and doc["duration_s"] == pytest.approx(9.0)
    assert [(e["start"], e["end"]) for e in doc["episodes"]] == [
        (75.0, 78.0),
        (135.0, 138.0),
        (195.0, 198.0),
    ]
    assert doc["cleared_at"] == 198.0


def test_an_instant_finding_that_returns_gets_a_new_episode_not_a_new_finding() -> None:
    from tests.bus_reports import bus_report
    from tests.test_diagnosis_rules import healthy_bus, with_errors

    engine = DiagnosisEngine()
    faulty = with_errors(healthy_bus(), ack=40, bus_error=40)
    for now, bus in ((10.0, faulty), (20.0, healthy_bus()), (60.0, healthy_bus())):
        engine.update(now, [bus_report(bus)])
    engine.update(100.0, [bus_report(with_errors(healthy_bus(), ack=40, bus_error=40))])
    (finding,) = engine.all_findings()
    assert [(e.start, e.end) for e in finding.episodes] == [(10.0, 10.0), (100.0, None)]


# -- end to end: the real CLI on simulated captures -------------------------------------------


def simulate(path: Path, seconds: float, *faults: str) -> Path:
    args = ["simulate", "-o", str(path), "-d", str(seconds)]
    for fault in faults:
        args += ["--fault", fault]
    assert main(args) == 0
    return path


def analyze(capture: Path) -> dict[str, Any]:
    out = capture.with_suffix(".json")
    main(["analyze", str(capture), "--json", str(out)])
    doc: dict[str, Any] = json.loads(out.read_text())
    return doc


def sim_start(report: dict[str, Any]) -> float:
    return float(np.floor(report["capture"]["start"]))


@pytest.mark.slow
def test_a_contactor_open_3_s_three_times_after_minute_one_is_one_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    starts = (75, 135, 195)
    faults = [f"contactor_mismatch@{t}+3:contactor=dc_plus,mode=stuck_open" for t in starts]
    report = analyze(simulate(tmp_path / "flicker.log", 240, *faults))
    assert "3 episodes (9.0 s in all)" in capsys.readouterr().out
    top = report["findings"][0]
    assert (top["code"], top["subject"]) == ("CONTACTOR_MISMATCH", "can0/DCPlus")
    assert top["occurrences"] == 3
    t0 = sim_start(report)
    for episode, start in zip(top["episodes"], starts, strict=True):
        # Within one feedback period (100 ms) of the injected bounds.
        assert 0 <= episode["start"] - (t0 + start) <= 0.1
        assert 0 <= episode["end"] - (t0 + start + 3) <= 0.1


def _flat(findings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for f in findings:
        out.append(f)
        out.extend(_flat(f.get("consequences", [])))
    return out


@pytest.mark.slow
def test_a_module_that_never_comes_back_is_offline_to_the_end(tmp_path: Path) -> None:
    report = analyze(simulate(tmp_path / "gone.log", 120, "module_silent@70:module=3"))
    top = report["findings"][0]
    assert (top["code"], top["subject"]) == ("CAN_NODE_OFFLINE", "can0/power_module/3")
    assert "cleared_at" not in top and top["end"] is None
    assert -0.1 <= top["start"] - (sim_start(report) + 70) <= 0  # its last frame before
    # Its ids' broken cycles are the same silence: folded under it, not beside it.
    assert all(f["code"] != "CAN_CYCLE_VIOLATION" for f in report["findings"])


# -- TEC "rising" only when rising -------------------------------------------------------------


def counter_frames(times_tec: list[tuple[float, int]]) -> Any:
    from candiag.sim.faults import error_frame_batch
    from candiag.socketcan_errors import CAN_ERR_CNT, CAN_ERR_PROT

    data = np.zeros((len(times_tec), 8), np.uint8)
    data[:, 6] = [tec for _, tec in times_tec]
    ts = np.array([t for t, _ in times_tec], np.float64)
    return error_frame_batch(ts, CAN_ERR_PROT | CAN_ERR_CNT, data, "can0")


def test_counters_passing_the_warning_level_on_the_way_down_are_not_rising() -> None:
    from candiag.health.busstate import BusStateTracker
    from tests.bus_reports import bus_report
    from tests.test_diagnosis_rules import healthy_bus

    up, down = BusStateTracker(), BusStateTracker()
    up.update(counter_frames([(1.0, 80), (2.0, 100), (3.0, 110)]))
    down.update(counter_frames([(1.0, 136), (2.0, 130), (3.0, 120), (4.0, 120)]))
    assert (up.state_name, up.falling) == ("error_warning", False)
    assert (down.state_name, down.falling) == ("error_warning", True)
    codes = []
    for tracker in (up, down):
        engine = DiagnosisEngine()
        engine.update(
            5.0,
            [bus_report(healthy_bus(state=tracker.state_name, counters_falling=tracker.falling))],
        )
        codes.append([f.code for f in engine.findings()])
    assert codes == [["CAN_TEC_RISING"], []]


# -- causes first, consequences folded, nothing stale shown as fresh ---------------------------


def _without(capture: Path, after_s: float, keep_ids: set[int], out: Path) -> Path:
    """``capture`` with every data frame but ``keep_ids`` removed ``after_s`` into it."""
    lines = capture.read_text().splitlines(keepends=True)
    t0 = float(lines[0].split(")")[0].strip("("))
    kept = []
    for line in lines:
        stamp, _, frame = line.split(" ", 2)
        ident = frame.split("#")[0]
        error = len(ident) == 8 and int(ident, 16) & 0x20000000
        late = float(stamp.strip("()")) - t0 >= after_s
        if late and not error and int(ident, 16) not in keep_ids:
            continue
        kept.append(line)
    out.write_text("".join(kept))
    return out


@pytest.mark.slow
def test_ack_storm_leads_with_the_unpowered_nodes_not_the_adapter(tmp_path: Path) -> None:
    """Only the controller's frames go on after 70 s, each unacknowledged (ACK errors)."""
    raw = simulate(tmp_path / "raw.log", 200, "error_frames@70:class=ack,rate=100")
    report = analyze(_without(raw, 70.0, {0x200}, tmp_path / "ack.log"))
    (top, *rest) = report["findings"]
    assert top["code"] == "CAN_ERR_ACK" and "powered" in top["fix"]
    assert "adapter" not in top["fix"]
    assert not [f for f in rest if f["severity"] in ("critical", "warning")]
    offline = [c for c in top["consequences"] if c["code"] == "CAN_NODE_OFFLINE"]
    assert len(offline) == 11  # every node but the controller's contactor family
    t0 = sim_start(report)
    for c in offline:  # the last frame before: within the node's cycle (the IMD's is 1 s)
        period = 1.0 if c["subject"].startswith("can0/imd") else 0.1
        assert abs(c["start"] - (t0 + 70)) <= period and c["end"] is None
    assert abs(top["start"] - (t0 + 70)) <= 1.0  # a window rule: within one second
    # What the silent board said last is history, not the present.
    assert all(c["stale"] for c in report["contactors"])
    module1 = next(v for k, v in report["signals"].items() if "ModuleTelemetry" in k)
    assert module1["stale"] is True


@pytest.mark.slow
def test_three_dropouts_are_one_offline_finding_and_no_cycle_violation(
    tmp_path: Path,
) -> None:
    starts = (70, 130, 190)
    faults = [f"module_silent@{t}+5:module=3" for t in starts]
    report = analyze(simulate(tmp_path / "drops.log", 240, *faults))
    (top,) = report["findings"]
    assert (top["code"], top["subject"], top["occurrences"]) == (
        "CAN_NODE_OFFLINE",
        "can0/power_module/3",
        3,
    )
    t0 = sim_start(report)
    for episode, start in zip(top["episodes"], starts, strict=True):
        assert -0.1 <= episode["start"] - (t0 + start) <= 0
        assert 0 <= episode["end"] - (t0 + start + 5) <= 0.1
    folded = {c["code"] for c in top["consequences"]}
    # Issue 15 §5: its ids' broken periods during the silences are no cycle violation at all.
    assert folded == {"CAN_NODE_INTERMITTENT"}
    fresh = [v for k, v in report["signals"].items() if k.endswith("[3]")]
    assert fresh and not any(v["stale"] for v in fresh)  # it came back: fresh again


def test_a_node_silent_after_the_ack_errors_stopped_is_not_their_consequence() -> None:
    """Folding needs the effect to begin before its cause was over (an adversarial review:
    a module silent 10 s after ACK errors had stopped was filed under them)."""
    from candiag.diagnosis.causes import fold_consequences, load_causal_model
    from candiag.diagnosis.engine import Condition, DiagnosisEngine
    from candiag.diagnosis.episodes import Episode

    engine = DiagnosisEngine()

    def finding(code: str, subject: str, start: float, end: float | None) -> Any:
        f = engine._make(Condition(code, subject, {"bus": "can0"}, {}), since=start)
        f.episodes = [Episode(start, end)]
        return f

    ack = finding("CAN_ERR_ACK", "can0", 70.0, 80.0)
    during = finding("CAN_NODE_OFFLINE", "can0/power_module/2", 69.5, None)
    after = finding("CAN_NODE_OFFLINE", "can0/power_module/3", 90.0, None)
    top = fold_consequences([ack, during, after], load_causal_model())
    assert [f.subject for f in top] == ["can0", "can0/power_module/3"]
    assert [c.subject for c in ack.consequences] == ["can0/power_module/2"]


def _follows_pairwise(effect: Episode, cause: Episode, grace_s: float) -> bool:
    """The definition, one pair at a time: the effect overlaps the cause widened by the
    grace and began no later than LATE_START_S after the cause ended."""
    from candiag.diagnosis.causes import LATE_START_S

    began_in_time = cause.end is None or effect.start <= cause.end + LATE_START_S
    return began_in_time and effect.overlaps(cause, grace_s)


@given(
    effects=st.lists(
        st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(0, 8))), max_size=8
    ),
    causes=st.lists(
        st.tuples(st.integers(0, 60), st.one_of(st.none(), st.integers(0, 8))), max_size=8
    ),
    grace=st.sampled_from([0.0, 0.1, 0.3, 0.5, 2.0, 5.0]),
)
@example(effects=[(30, 10)], causes=[(41, 5)], grace=0.1)  # ends at 4.0; 4.1 - 0.1 < 4.0
def test_folding_in_time_is_the_pairwise_definition(
    effects: list[tuple[int, int | None]], causes: list[tuple[int, int | None]], grace: float
) -> None:
    """The vectorized check (a sort and a search) says what every pair says; tenths of a
    second and graces of tenths make ends meet starts, and make float rounding meet them
    too (a review found 4.1 - 0.1 < 4.0 and 4.1 < 4.0 + 0.1 disagreeing)."""
    from candiag.diagnosis.causes import _each_follows

    def episodes(raw: list[tuple[int, int | None]]) -> list[Episode]:
        return [Episode(s / 10, None if d is None else (s + d) / 10) for s, d in raw]

    e, c = episodes(effects), episodes(causes)
    expected = [any(_follows_pairwise(x, y, grace) for y in c) for x in e]
    assert _each_follows(e, c, grace).tolist() == expected
