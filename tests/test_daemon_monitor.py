"""LiveBus: one bus's live analysis from frame batches to snapshot and report."""

from __future__ import annotations

import numpy as np
import pytest

from candiag.config.check import apply_mask_overrides
from candiag.config.model import BusConfig, FamilyConfig
from candiag.decode.dbc import ChargerDatabase, load_reference_database
from candiag.health.busload import frame_bits
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FrameBatch
from candiag.live.bus import LiveBus
from tests.synthetic import frames

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def db() -> ChargerDatabase:
    return load_reference_database()


def telemetry(db: ChargerDatabase, t0: float, nodes: list[int], n: int) -> FrameBatch:
    msg = db.by_name("ModuleTelemetry")
    rows = []
    for k in range(n):
        for node in nodes:
            payload = msg.cantools_message.encode(
                {"OutputVoltage": 400.0 + node, "OutputCurrent": 10.0}
            )
            rows.append((t0 + k * 0.1, msg.can_id_for(node), int(FLAG_EXTENDED), bytes(payload)))
    return frames(rows)


def bus_config(**kw: object) -> BusConfig:
    families = (FamilyConfig("power_module", expected=(1, 2, 3)),)
    return BusConfig(name="can0", interface="virtual", channel="t", families=families, **kw)  # type: ignore[arg-type]


def test_frames_nodes_signals_and_freshness(db: ChargerDatabase) -> None:
    mon = LiveBus(bus_config(), db)
    mon.set_link(True, T0)
    batch = telemetry(db, T0, [1, 2], 10)
    mon.process(batch)
    now = T0 + 1.0
    mon.advance(now)
    snap = mon.snapshot(now)
    assert snap.up and snap.state == "error_active"
    assert snap.frames == {"data": 20, "remote": 0, "error": 0}
    assert snap.id_frames == {"0x0283F001": 10, "0x0283F002": 10}
    up = {(n.family, n.node): n.up for n in snap.nodes}
    assert up[("power_module", "1")] and up[("power_module", "2")]
    assert up[("power_module", "3")] is False  # expected but never seen
    volts = {(s.signal, s.node): s.value for s in snap.signals}
    assert volts[("OutputVoltage", "1")] == pytest.approx(401.0)
    assert volts[("OutputVoltage", "2")] == pytest.approx(402.0)
    # 3 cycle times (0.3 s) after the last frame, values are withdrawn (the whole bus
    # being silent, wall time counts once the 2 s lag allowance has passed) ...
    mon.advance(T0 + 3.21)
    assert mon.snapshot(T0 + 3.21).signals == ()
    # ... but never because the reader has not handed the latest frames over yet.
    mon.advance(T0 + 3.21, complete_until=T0 + 1.0)
    assert mon.snapshot(T0 + 3.21).signals != ()
    # Bus load: exact frame bits over the covered span.
    bits = float(np.sum(frame_bits(batch)[0]))
    assert snap.load_ratio["10s"] == pytest.approx(bits / 125_000 / 1.0)
    assert snap.load_ratio["3600s"] == pytest.approx(snap.load_ratio["10s"])
    report = mon.report(now)
    assert report.name == "can0" and report.up is True
    assert {n.address for n in report.nodes} == {1, 2, 3}


def test_error_frames_by_class_and_window(db: ChargerDatabase) -> None:
    mon = LiveBus(bus_config(), db)
    mon.set_link(True, T0)
    ack = (T0, 0x020, int(FLAG_ERROR), bytes(8))
    cnt = (T0 + 0.5, 0x004 | 0x200, int(FLAG_ERROR), bytes([0, 0x08, 0, 0, 0, 0, 100, 3]))
    mon.process(frames([ack, ack, cnt]))
    snap = mon.snapshot(T0 + 1)
    assert snap.frames["error"] == 3
    assert snap.error_frames["ack"] == 2 and snap.error_frames["controller"] == 1
    assert snap.error_window["10s"]["ack"] == 2
    assert snap.tx_errors == 100 and snap.rx_errors == 3
    assert snap.state == "error_warning"
    assert snap.id_frames == {}  # error frames are not ids
    # An hour later the window has forgotten them, the totals have not.
    mon.advance(T0 + 3601)
    later = mon.snapshot(T0 + 3601)
    assert later.error_window["3600s"]["ack"] == 0 and later.error_frames["ack"] == 2


def test_link_down_state_and_withdrawn_signals(db: ChargerDatabase) -> None:
    mon = LiveBus(bus_config(), db)
    mon.set_link(True, T0)
    mon.process(telemetry(db, T0, [1], 3))
    mon.set_link(False, T0 + 0.25)
    snap = mon.snapshot(T0 + 0.25)
    assert not snap.up and snap.state == "down" and snap.signals == ()
    assert mon.report(T0 + 0.25).down_since == T0 + 0.25
    mon.set_link(True, T0 + 5)
    assert mon.snapshot(T0 + 5).state == "error_active"


def test_mask_override_rebinds_node_bits(db: ChargerDatabase) -> None:
    override = apply_mask_overrides(db, [FamilyConfig("power_module", mask=0x0F)])
    msg = override.by_name("ModuleTelemetry")
    assert msg.node_mask == 0x0F
    index, node = override.match(np.array([0x0283F005], np.uint32), np.array([True]))
    assert override.messages[int(index[0])].name == "ModuleTelemetry" and int(node[0]) == 5
    assert apply_mask_overrides(db, [FamilyConfig("power_module")]) is db


def test_liveness_relative_to_the_bus_then_wall_time(db: ChargerDatabase) -> None:
    mon = LiveBus(bus_config(), db)
    timeout = mon.pipeline.nodes.timeout_for("power_module")
    mon.set_link(True, T0)
    mon.process(telemetry(db, T0, [1, 2], 10))  # last frames at T0 + 0.9
    # Processing is 1 s behind wall time (loaded CPU): judged at the newest frame.
    mon.advance(T0 + 1.9, complete_until=T0 + 1.8)
    assert mon.as_of(T0 + 1.9) == pytest.approx(T0 + 0.9)
    assert all(n.up for n in mon.snapshot(T0 + 1.9).nodes if n.node in ("1", "2"))
    # Node 2 stops while node 1 goes on: silent relative to the bus.
    n = int((timeout + 0.6) / 0.1)
    mon.process(telemetry(db, T0 + 1.0, [1], n))
    last = T0 + 1.0 + (n - 1) * 0.1
    mon.advance(last + 0.5, complete_until=last + 0.4)
    assert mon.as_of(last + 0.5) == pytest.approx(last)
    up = {s.node: s.up for s in mon.snapshot(last + 0.5).nodes}
    assert up["1"] and not up["2"]
    # The whole bus silent: after 2 s wall time takes over and node 1 is down too.
    later = last + 2.0 + timeout + 0.5
    mon.advance(later)
    assert mon.as_of(later) == pytest.approx(later - 2.0)
    up = {s.node: s.up for s in mon.snapshot(later).nodes}
    assert not up["1"]


def test_contactor_mismatch_is_found_live_in_quarter_second_batches(db: ChargerDatabase) -> None:
    """Regression: live batches are short (0.25 s); a disagreement lasting seconds must
    show its whole duration (it used to restart with every batch and stay under 0.5 s)."""
    from candiag.diagnosis.engine import DiagnosisEngine
    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.faults import parse_fault

    fault = parse_fault("contactor_mismatch@0:contactor=dc_plus,mode=stuck_open")
    sim = ChargerSimulator(SimConfig(faults=(fault,)))
    whole = sim.generate(sim.start_time, sim.start_time + 30.0)
    mon = LiveBus(BusConfig(name="can0", interface="virtual", channel="t"), db)
    mon.set_link(True, sim.start_time)
    engine = DiagnosisEngine()
    for lo in np.arange(0.0, 30.0, 0.25):
        sel = (whole.timestamp >= sim.start_time + lo) & (
            whole.timestamp < sim.start_time + lo + 0.25
        )
        mon.process(whole.take(sel))
        now = sim.start_time + lo + 0.25
        mon.advance(now)
        engine.update(now, [mon.report(now)], [])
    findings = {f.code: f for f in engine.all_findings()}
    assert "CONTACTOR_MISMATCH" in findings
    assert findings["CONTACTOR_MISMATCH"].evidence["mismatch_s"] > 3.0
