"""Node presence, duplicates, firmware and signal statistics on frames of the reference DBCs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pytest

from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.decode.decoder import BatchDecoder
from candiag.health.nodes import FamilyPolicy, NodeTracker
from candiag.health.signals import SignalStats
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


def encode(
    db: ChargerDatabase, frames: Iterable[tuple[float, str, int, Mapping[str, float]]]
) -> FrameBatch:
    """Frames (timestamp, message, node, values) encoded with cantools."""
    rows = sorted(frames, key=lambda f: f[0])
    n = len(rows)
    batch = FrameBatch(
        timestamp=np.array([r[0] for r in rows], np.float64),
        can_id=np.zeros(n, np.uint32),
        flags=np.zeros(n, np.uint8),
        dlc=np.zeros(n, np.uint8),
        data=np.zeros((n, 8), np.uint8),
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )
    for i, (_, name, node, values) in enumerate(rows):
        msg = db.by_name(name)
        full = {s.name: 0 for s in msg.signals}
        full.update(values)
        payload = db.cantools_db.encode_message(name, full, strict=False)
        batch.can_id[i] = msg.can_id_for(node) if node >= 0 else msg.frame_id
        batch.flags[i] = FLAG_EXTENDED if msg.is_extended else 0
        batch.dlc[i] = len(payload)
        batch.data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
    return batch


def telemetry(
    nodes: Iterable[int], t0: float, t1: float, period: float = 0.1, offset: float = 0.0
) -> list[tuple[float, str, int, Mapping[str, float]]]:
    out: list[tuple[float, str, int, Mapping[str, float]]] = []
    for node in nodes:
        for t in np.arange(t0 + offset, t1, period):
            out.append(
                (
                    float(t),
                    "ModuleTelemetry",
                    node,
                    {"OutputVoltage": 750.0, "OutputCurrent": 20.0 + node},
                )
            )
    return out


def track(db: ChargerDatabase, batch: FrameBatch, tracker: NodeTracker) -> None:
    tracker.update(BatchDecoder(db).decode(batch))


def statuses(tracker: NodeTracker, now: float) -> dict[int, str]:
    return {v.address: v.status for v in tracker.view(now) if v.family == "power_module"}


def test_nodes_online_then_one_goes_silent(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    frames = telemetry(range(1, 5), 0.0, 10.0)
    frames = [f for f in frames if not (f[2] == 3 and f[0] > 5.0)]
    track(db, encode(db, frames), tracker)
    assert statuses(tracker, 10.0) == {1: "online", 2: "online", 3: "offline", 4: "online"}
    view = {v.address: v for v in tracker.view(10.0) if v.family == "power_module"}
    assert view[3].silent_s == pytest.approx(10.0 - 5.0, abs=0.11)
    # Default timeout: 3 x the family's shortest cycle time (100 ms here), at least 1 s.
    cycles = [m.cycle_time_ms for m in db.families["power_module"] if m.cycle_time_ms]
    assert view[3].timeout_s == max(1.0, 3 * min(cycles) / 1000)


def test_expected_node_never_seen_is_offline(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db, [FamilyPolicy("power_module", expected=frozenset({1, 2, 9}))])
    track(db, encode(db, telemetry([1, 2], 0.0, 2.0)), tracker)
    view = {v.address: v for v in tracker.view(2.0) if v.family == "power_module"}
    assert view[9].status == "offline" and view[9].last_seen is None and view[9].expected


def test_dropout_and_return_is_intermittent(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    frames = [f for f in telemetry([1, 2], 0.0, 10.0) if not (f[2] == 2 and 3.0 < f[0] < 5.0)]
    # Split over two batches so the gap crosses a batch boundary too.
    batch = encode(db, frames)
    track(db, batch.take(batch.timestamp < 4.0), tracker)
    track(db, batch.take(batch.timestamp >= 4.0), tracker)
    view = {v.address: v for v in tracker.view(10.0) if v.family == "power_module"}
    assert view[2].status == "intermittent" and view[2].dropouts == 1
    assert view[1].status == "online" and view[1].dropouts == 0


def test_two_senders_on_one_address_are_duplicate(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    frames = telemetry([1, 2], 0.0, 5.0) + telemetry([2], 0.0, 5.0, offset=0.05)
    track(db, encode(db, frames), tracker)
    view = {v.address: v for v in tracker.view(5.0) if v.family == "power_module"}
    assert view[2].status == "duplicate"
    assert view[2].rate_ratio == pytest.approx(2.0, rel=0.05)
    assert view[1].status == "online" and view[1].rate_ratio == pytest.approx(1.0, rel=0.05)


def test_duplicate_address_alarm_bit_marks_duplicate(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    frames = [
        *telemetry([5], 0.0, 2.0),
        (1.0, "ModuleStatus", 5, {"id_repeat_alarm": 1, "fan_fault_alarm": 1}),
    ]
    track(db, encode(db, frames), tracker)
    (view,) = [v for v in tracker.view(2.0) if v.family == "power_module"]
    assert view.status == "duplicate"
    assert set(view.alarms) == {"duplicate_address", "fan"}


def test_firmware_inventory_and_mismatch(db: ChargerDatabase) -> None:
    policy = FamilyPolicy(
        "power_module",
        allowed_firmware=frozenset({"DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0"}),
    )
    tracker = NodeTracker(db, [policy])
    version = {"DCDC_Major": 1, "DCDC_Minor": 4, "PFC_Major": 2, "PFC_Minor": 0}
    frames = [(0.5, "ModuleVersion", n, version) for n in (1, 2, 3)]
    frames.append((0.5, "ModuleVersion", 4, {**version, "DCDC_Minor": 2}))
    track(db, encode(db, frames), tracker)
    (mismatch,) = tracker.firmware_mismatches()
    assert mismatch.family == "power_module"
    assert mismatch.majority == "DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0"
    assert mismatch.by_version["DCDC_Major=1 DCDC_Minor=2 PFC_Major=2 PFC_Minor=0"] == [4]
    assert mismatch.not_allowed == {4: "DCDC_Major=1 DCDC_Minor=2 PFC_Major=2 PFC_Minor=0"}


def test_consistent_firmware_is_no_mismatch(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    version = {"DCDC_Major": 1, "DCDC_Minor": 4, "PFC_Major": 2, "PFC_Minor": 0}
    track(db, encode(db, [(0.5, "ModuleVersion", n, version) for n in (1, 2)]), tracker)
    assert tracker.firmware_mismatches() == []


def test_signal_stats_per_node_and_freshness(db: ChargerDatabase) -> None:
    stats = SignalStats(db)
    frames = telemetry([1, 2], 0.0, 1.0)
    stats.update(BatchDecoder(db).decode(encode(db, frames)))
    doc = stats.to_json()
    cur1 = doc["ModuleTelemetry.OutputCurrent[1]"]
    assert cur1["count"] == 10 and cur1["last"] == pytest.approx(21.0) and cur1["unit"] == "A"
    assert cur1["min"] == cur1["max"] == pytest.approx(21.0)
    assert doc["ModuleTelemetry.OutputCurrent[2]"]["mean"] == pytest.approx(22.0)
    fresh_now = {s.key for s in stats.fresh(1.0)}
    assert "ModuleTelemetry.OutputVoltage[1]" in fresh_now
    assert not list(stats.fresh(100.0))  # stale values are never reported as fresh
    assert stats.facts(1.0)["currents"]["modules_output_a"] == pytest.approx(43.0)


def test_contactor_facts_pair_command_and_feedback(db: ChargerDatabase) -> None:
    stats = SignalStats(db)
    frames: list[tuple[float, str, int, Mapping[str, float]]] = [
        (0.0, "ContactorCommand", -1, {"DCPlusCommand": 1, "DCMinusCommand": 1}),
        (0.0, "ContactorFeedback", -1, {"DCPlusFeedback": 1, "DCMinusFeedback": 0}),
        (2.0, "ContactorCommand", -1, {"DCPlusCommand": 1, "DCMinusCommand": 1}),
        (
            2.0,
            "ContactorFeedback",
            -1,
            {"DCPlusFeedback": 1, "DCMinusFeedback": 0, "DCMinusWelded": 1},
        ),
    ]
    stats.update(BatchDecoder(db).decode(encode(db, frames)))
    facts = {c["name"]: c for c in stats.facts(3.0)["contactors"]}
    assert facts["DCPlus"]["mismatch_s"] == 0.0
    assert facts["DCMinus"]["mismatch_s"] == pytest.approx(3.0)
    assert facts["DCMinus"]["weld"] is True


def test_healthy_simulated_charger_nodes_are_all_online(db: ChargerDatabase) -> None:
    """Regression: messages with long cycles between short ones are not dropouts."""
    from candiag.sim.charger import ChargerSimulator, SimConfig

    sim = ChargerSimulator(SimConfig(modules=8))
    batch = sim.generate(sim.start_time, sim.start_time + 30.0)
    tracker = NodeTracker(db)
    decoder = BatchDecoder(db)
    for lo in np.arange(0.0, 30.0, 7.0):  # several batches, boundaries mid-traffic
        sel = (batch.timestamp >= sim.start_time + lo) & (batch.timestamp < sim.start_time + lo + 7)
        tracker.update(decoder.decode(batch.take(sel)))
    views = tracker.view(sim.start_time + 30.0)
    modules = [v for v in views if v.family == "power_module"]
    assert [v.address for v in modules] == list(range(1, 9))
    assert {v.status for v in views} == {"online"}, [(v.family, v.address, v.status) for v in views]
    assert all(v.dropouts == 0 for v in views)
    assert tracker.firmware_mismatches() == []


def test_intermittent_is_forgotten_ten_minutes_after_the_return(db: ChargerDatabase) -> None:
    tracker = NodeTracker(db)
    frames = [f for f in telemetry([1], 0.0, 20.0) if not 3.0 < f[0] < 5.0]
    track(db, encode(db, frames), tracker)
    assert statuses(tracker, 20.0) == {1: "intermittent"}
    track(db, encode(db, telemetry([1], 20.0, 640.0, period=0.5)), tracker)
    (view,) = tracker.view(640.0)
    assert view.status == "online" and view.dropouts == 1


def _reference_presence(
    tracker: NodeTracker, batches: list[FrameBatch], decoder: BatchDecoder
) -> dict[tuple[str, int], tuple[Any, ...]]:
    """A straightforward per-frame reference of presence and rate bookkeeping."""
    state: dict[tuple[str, int], dict[str, Any]] = {}
    rate_message = {
        family: min((m for m in msgs if m.cycle_time_ms), key=lambda m: m.cycle_time_ms or 0).name
        for family, msgs in tracker._db.families.items()
        if any(m.cycle_time_ms for m in msgs)
    }
    for batch in batches:
        rows: list[tuple[str, int, float, bool]] = []
        for decoded in decoder.decode(batch).messages.values():
            family = decoded.message.family
            if family is None:
                continue
            for t, node in zip(decoded.timestamp.tolist(), decoded.node.tolist(), strict=True):
                address = node if decoded.message.node_mask else 0
                rows.append((family, address, t, decoded.message.name == rate_message[family]))
        for family, address, t, is_rate in sorted(rows):
            s = state.setdefault(
                (family, address),
                {"first": None, "last": None, "frames": 0, "drop": 0, "end": None, "gap": 0.0},
            )
            s.setdefault("tail", [])
            s["frames"] += 1
            if is_rate:
                s["tail"] = (s["tail"] + [t])[-32:]
            if s["last"] is None:
                s["first"] = s["last"] = t
                continue
            if t < s["last"]:
                continue
            gap = t - s["last"]
            if gap > tracker.timeout_for(family):
                s["drop"] += 1
                s["end"] = t
            s["gap"] = max(s["gap"], gap)
            s["last"] = t
    return {
        k: (s["first"], s["last"], s["frames"], s["drop"], s["end"], s["gap"], s["tail"])
        for k, s in state.items()
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_presence_equals_a_per_frame_reference_under_faults(db: ChargerDatabase, seed: int) -> None:
    """Vectorized presence (all nodes in one sort) against the per-frame reference.

    Random batch boundaries, batches delivered slightly out of order, and the faults that
    change presence: a silent module, a duplicate address, jitter.
    """
    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.faults import parse_fault

    faults = (
        parse_fault("module_silent@20+15:module=3"),
        parse_fault("duplicate_address@40+20:module=5"),
        parse_fault("jitter@10+30:module=2"),
    )
    sim = ChargerSimulator(SimConfig(modules=6, faults=faults, seed=seed))
    whole = sim.generate(sim.start_time, sim.start_time + 80.0)
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, len(whole), 40))
    batches = [
        whole.take(slice(a, b)) for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)
    ]
    for i in range(0, len(batches) - 1, 7):  # a late batch now and then
        batches[i], batches[i + 1] = batches[i + 1], batches[i]
    tracker = NodeTracker(db)
    decoder = BatchDecoder(db)
    for batch in batches:
        tracker.update(decoder.decode(batch))
    expected = _reference_presence(tracker, batches, decoder)
    got = {
        key: (
            n.first_seen,
            n.last_seen,
            n.frames,
            n.dropouts,
            n.last_dropout_end,
            n.longest_gap_s,
            [t for track in n.messages.values() for t in track.tail.tolist()],
        )
        for key, n in tracker.nodes.items()
    }
    assert got == expected
    assert expected[("power_module", 3)][3] >= 1  # the silent module dropped out


def test_contactor_mismatch_lasts_across_batches() -> None:
    """Regression: a disagreement is timed from its start, not from the latest batch.

    Command and feedback frames interleave (feedback 50 ms after each command); the
    carried sample of one side used to count as "agreeing" and restart the clock.
    """
    from candiag.health.signals import ContactorFact

    fact = ContactorFact("DCMinus")
    for lo in (0.0, 10.0, 20.0):
        t = np.arange(lo, lo + 10.0, 0.1)
        fact.advance((t, np.ones_like(t)), (t + 0.05, np.zeros_like(t)))
        assert fact.disagree_since == pytest.approx(0.05)
    assert fact.to_json(30.0)["mismatch_s"] == pytest.approx(29.95)
    t = np.arange(30.0, 31.0, 0.1)
    fact.advance((t, np.ones_like(t)), (t + 0.05, np.where(t < 30.5, 0.0, 1.0)))
    assert fact.disagree_since is None  # feedback followed at last
    fact.advance((t + 1, np.zeros_like(t)), (t + 1.05, np.ones_like(t)))
    assert fact.disagree_since == pytest.approx(31.0)  # a new disagreement, new start


@pytest.mark.parametrize("seed", range(5))
def test_contactor_shortcut_equals_the_full_merge(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches that only repeat the carried values take a shortcut; it changes nothing."""
    from candiag.health import signals
    from candiag.health.signals import ContactorFact

    rng = np.random.default_rng(seed)
    batches = []
    for k in range(40):
        t = k + np.sort(rng.random(rng.integers(1, 6)))
        level = float(rng.random() < 0.2)  # mostly steady, sometimes switching
        cmd = np.full(t.size, level if rng.random() < 0.5 else 1.0)
        fb = np.full(t.size, 1.0 if rng.random() < 0.9 else 0.0)
        batches.append(((t, cmd), (t + 0.05, fb)))
    fast, full = ContactorFact("c"), ContactorFact("c")
    states = []
    for command, feedback in batches:
        fast.advance(command, feedback)
        states.append((fast.disagree_since, fast.command, fast.feedback, fast.last_ts))
    monkeypatch.setattr(signals, "_repeats", lambda *_: False)
    for (command, feedback), state in zip(batches, states, strict=True):
        full.advance(command, feedback)
        assert (full.disagree_since, full.command, full.feedback, full.last_ts) == state


def test_fact_shortcut_equals_the_general_update(
    db: ChargerDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Facts folded per step with ``update_last`` equal the general per-node update."""
    from candiag.health import signals
    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.faults import parse_fault

    faults = (
        parse_fault("contactor_mismatch@5:contactor=dc_plus,mode=stuck_open"),
        parse_fault("cooling_no_flow@12"),
    )
    sim = ChargerSimulator(SimConfig(modules=4, faults=faults))
    whole = sim.generate(sim.start_time, sim.start_time + 30.0)
    decoder = BatchDecoder(db)
    steps = [decoder.decode(whole.take(slice(a, a + 997))) for a in range(0, len(whole), 997)]

    def run() -> tuple[Any, ...]:
        stats = SignalStats(db)
        for result in steps:
            stats.update(result, stats=False)
        tables = {
            name: (t.rows, t.count.tolist(), t.last.tolist(), t.last_ts.tolist())
            for name, t in stats.fact_tables.items()
        }
        return tables, stats.facts(sim.start_time + 30.0)

    fast = run()
    monkeypatch.setattr(
        signals._MessageTable, "update_last", lambda self, decoded: self.update(decoded)
    )
    assert run() == fast
    assert {c["name"]: c["mismatch_s"] for c in fast[1]["contactors"]}["DCPlus"] > 20.0
