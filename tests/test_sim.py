"""The simulated reference charger: encoding, cycle times, physical plausibility, faults."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from candiag.errors import InputError
from candiag.health.busload import frame_bits as frame_bits_exact
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FrameBatch
from candiag.sim.charger import (
    ChargerSimulator,
    SimConfig,
    frame_bits,
    message_periods,
    simulate,
)
from candiag.sim.encode import MessageEncoder
from candiag.sim.faults import Fault, parse_fault
from candiag.sim.scenarios import scenario_faults, scenario_names
from tests.can_bitstream import frame_bits_reference

T0 = 1_700_000_000.0
WIRE_WAIT_S = 0.005  # longest a healthy frame waits for the wire at 125 kbit/s, with margin
MODULE_MESSAGES = {
    "ModuleTelemetry",
    "ModuleStatus",
    "ModuleCapabilities",
    "ModuleVersion",
    "ModuleRegister",
}


@pytest.fixture(scope="module")
def healthy() -> tuple[ChargerSimulator, FrameBatch]:
    sim = ChargerSimulator()
    return sim, FrameBatch.concat(list(sim.chunks(60.0, chunk_seconds=7.0)))


def decode(sim: ChargerSimulator, batch: FrameBatch) -> dict[tuple[str, int], list[Any]]:
    """(message, node) -> [(t, signals)] using cantools (the reference decoder)."""
    out: dict[tuple[str, int], list[Any]] = defaultdict(list)
    data_rows = np.flatnonzero(batch.is_data)
    for i in data_rows.tolist():
        can_id = int(batch.can_id[i])
        extended = bool(batch.flags[i] & FLAG_EXTENDED)
        node = can_id & 0xFF if extended else 0
        try:
            msg = sim.db.get_message_by_frame_id(can_id & ~0xFF if extended else can_id)
        except KeyError:
            continue
        signals = msg.decode(bytes(batch.data[i, : batch.dlc[i]]), decode_choices=False)
        out[(msg.name, node)].append((float(batch.timestamp[i]) - T0, signals))
    return out


def series(rows: list[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r[0] for r in rows]), np.array([float(r[1][name]) for r in rows])


# -- encoding ---------------------------------------------------------------------------
def test_vectorized_encoder_equals_cantools_for_every_message() -> None:
    sim = ChargerSimulator()
    rng = np.random.default_rng(7)
    for msg in sim.db.messages:
        n = 64
        values: dict[str, Any] = {}
        for sig in msg.signals:
            if sig.is_float:
                values[sig.name] = rng.uniform(-900.0, 900.0, n)
                continue
            lo = -(1 << (sig.length - 1)) if sig.is_signed else 0
            hi = (1 << (sig.length - (1 if sig.is_signed else 0))) - 1
            values[sig.name] = rng.integers(lo, hi, n, endpoint=True) * sig.scale + sig.offset
        mux = next((s for s in msg.signals if s.is_multiplexer), None)
        if mux is not None:
            values[mux.name] = rng.choice(sorted(mux.choices), n).astype(float)
        rows = MessageEncoder(msg).encode(values, n)
        for i in range(n):
            frame = {k: float(v[i]) for k, v in values.items()}
            if mux is not None:
                frame = {
                    k: v
                    for k, v in frame.items()
                    if not msg.get_signal_by_name(k).multiplexer_ids
                    or int(frame[mux.name]) in msg.get_signal_by_name(k).multiplexer_ids
                }
            assert bytes(rows[i, : msg.length]) == msg.encode(frame, strict=False), msg.name
            assert not rows[i, msg.length :].any()


def test_generated_frames_round_trip_through_cantools(
    healthy: tuple[ChargerSimulator, FrameBatch],
) -> None:
    sim, batch = healthy
    part = batch.take(slice(0, 3000))
    decoded = decode(sim, part)
    assert sum(len(v) for v in decoded.values()) == len(part), "every frame must decode"
    for (name, _), rows in decoded.items():
        msg = sim.db.get_message_by_name(name)
        for _, signals in rows[:5]:
            data = msg.encode(signals, strict=True)
            assert msg.decode(data, decode_choices=False) == signals


# -- timing -----------------------------------------------------------------------------
def test_sorted_and_every_message_at_its_cycle_time(
    healthy: tuple[ChargerSimulator, FrameBatch],
) -> None:
    sim, batch = healthy
    assert np.all(np.diff(batch.timestamp) >= 0)
    assert batch.timestamp[0] >= T0 and batch.timestamp[-1] < T0 + 60.0
    assert not batch.is_error.any()
    periods = message_periods(sim)
    seen = set()
    for can_id in np.unique(batch.can_id).tolist():
        rows = batch.can_id == can_id
        extended = bool(batch.flags[rows][0] & FLAG_EXTENDED)
        msg = sim.db.get_message_by_frame_id(can_id & ~0xFF if extended else can_id)
        times = batch.timestamp[rows]
        gaps = np.diff(times)
        # Queued at the cycle time; waiting for the wire (22 % load) shifts a frame by ms.
        assert np.abs(gaps - periods[msg.name]).max() < WIRE_WAIT_S, msg.name
        # ... but never drifts: the mean gap is the cycle time.
        mean_gap = (times[-1] - times[0]) / (len(times) - 1)
        assert mean_gap == pytest.approx(periods[msg.name], abs=WIRE_WAIT_S / len(times))
        assert abs(rows.sum() - 60.0 / periods[msg.name]) <= 1
        seen.add((msg.name, can_id & 0xFF if extended else 0))
    expected = {(m, a) for m in MODULE_MESSAGES for a in range(1, 9)}
    expected |= {(m.name, 0) for m in sim.db.messages if m.name not in MODULE_MESSAGES}
    assert seen == expected


@pytest.mark.parametrize("bitrate", [125_000, 500_000])
def test_frames_never_overlap_on_the_wire(bitrate: int) -> None:
    """Each frame ends at least its own length after the previous one (end timestamps)."""
    sim = ChargerSimulator(SimConfig(bitrate=bitrate, seed=5))
    batch = FrameBatch.concat(list(sim.chunks(20.0, chunk_seconds=3.0)))
    data = batch.take(~batch.is_error)
    lengths = np.array(
        [
            frame_bits_reference(
                int(data.can_id[i]),
                extended=bool(data.flags[i] & FLAG_EXTENDED),
                dlc=int(data.dlc[i]),
                data=data.data[i].tobytes(),
            )[0]
            for i in range(len(data))
        ]
    )
    gaps = np.diff(data.timestamp)
    resolution = 5e-7  # float64 epoch seconds: 0.24 µs steps near 1.7e9
    assert (gaps >= lengths[1:] / bitrate - resolution).all()
    # Back to back happens (the wire is shared), and then the gap is exactly the length.
    tight = np.isclose(gaps, lengths[1:] / bitrate, rtol=0, atol=resolution)
    assert tight.sum() > 0.05 * len(gaps)


def test_chunking_does_not_change_the_frames() -> None:
    one = ChargerSimulator().generate(T0, T0 + 20.0)
    sim = ChargerSimulator()
    edges = [T0, T0 + 1.7, T0 + 1.71, T0 + 9.3, T0 + 20.0]
    many = FrameBatch.concat([sim.generate(a, b) for a, b in itertools.pairwise(edges)])
    assert len(one) == len(many)
    np.testing.assert_array_equal(one.can_id, many.can_id)
    # Signal noise is drawn per chunk, so payloads, their stuff bits and with them the wire
    # times differ by a few bit times (8 µs each at 125 kbit/s); nothing shifts further.
    np.testing.assert_allclose(one.timestamp, many.timestamp, rtol=0, atol=20 * 8e-6)


def test_bus_load_matches_the_frames(healthy: tuple[ChargerSimulator, FrameBatch]) -> None:
    sim, batch = healthy
    ext = (batch.flags & FLAG_EXTENDED) != 0
    bits = np.where(ext, 67, 47) + 8 * batch.dlc.astype(np.int64)
    measured = bits.sum() / 60.0 / sim.config.bitrate
    assert measured == pytest.approx(sim.nominal_bus_load(), rel=0.01)
    assert 0.15 < measured < 0.35
    assert frame_bits(True, 8) == 131 and frame_bits(False, 8) == 111


# -- physics ----------------------------------------------------------------------------
def test_charging_session_is_plausible(healthy: tuple[ChargerSimulator, FrameBatch]) -> None:
    sim, batch = healthy
    d = decode(sim, batch)
    t, v = series(d[("ModuleTelemetry", 1)], "OutputVoltage")
    assert abs(v[t < 1.9]).max() < 1.0, "no output before pre-charge"
    assert 740 < v[(t > 8) & (t < 9)].mean() < 760, "voltage reaches the battery at DC+ close"
    assert 750 < v[t > 40].mean() < 800
    assert np.all(np.diff(v[(t > 2.1) & (t < 7.9)]) > 0), "voltage ramps during pre-charge"

    per_address = [series(d[("ModuleTelemetry", a)], "OutputCurrent")[1] for a in range(1, 9)]
    # A module's last frame may still be on the wire when the capture ends: align the
    # modules on the frames they all sent (one per cycle).
    common = min(len(c) for c in per_address)
    assert len(t) - common <= 1
    t = t[:common]
    currents = np.array([c[:common] for c in per_address])
    late = t > 45
    per_module = currents[:, late].mean(axis=1)
    assert per_module == pytest.approx(np.full(8, per_module.mean()), rel=0.05), "sharing"
    assert per_module.mean() > 30
    early = currents[:, (t > 12) & (t < 35)].mean(axis=0)
    assert np.all(np.diff(early) > -0.5), "current ramps up"
    tm, meter_i = series(d[("Meter_Current", 0)], "Current")
    assert meter_i[tm > 45].mean() == pytest.approx(currents[:, late].sum(axis=0).mean(), rel=0.01)

    # Contactor sequence: DC- and pre-charge close first, DC+ later, pre-charge opens after.
    feedback = d[("ContactorFeedback", 0)]
    tf, plus = series(feedback, "DCPlusFeedback")
    _, minus = series(feedback, "DCMinusFeedback")
    _, pre = series(feedback, "PrechargeFeedback")
    assert tf[minus == 1][0] < tf[plus == 1][0]
    assert tf[pre == 1][0] < tf[plus == 1][0] < tf[pre == 1][-1] + 0.2
    assert np.all(pre[tf > 9] == 0) and np.all(plus[tf > 9] == 1)

    # Temperatures follow the load with lag; pump and flow rise with load.
    tt, temp = series(d[("ModuleStatus", 1)], "ModuleTemperature")
    assert temp[tt < 5].max() <= 26 and temp[tt > 55].min() >= temp[tt < 5].max() + 4
    tc, flow = series(d[("CoolingStatus", 0)], "CoolantFlow")
    assert flow[tc > 50].mean() > 2 * flow[tc < 5].mean()

    # Rolling counters step by one modulo 16.
    _, counter = series(d[("ContactorCommand", 0)], "CommandCounter")
    assert np.all(np.diff(counter) % 16 == 1)


def test_energy_and_charge_accumulate_as_integrals(
    healthy: tuple[ChargerSimulator, FrameBatch],
) -> None:
    sim, batch = healthy
    d = decode(sim, batch)
    te, energy_wh = series(d[("Meter_Energy", 0)], "Energy")
    tq, charge_as = series(d[("Meter_Charge", 0)], "Charge")
    ti, current = series(d[("Meter_Current", 0)], "Current")
    tv, voltage = series(d[("Meter_Voltage1", 0)], "Voltage1")
    assert np.all(np.diff(energy_wh) >= 0) and np.all(np.diff(charge_as) >= 0)
    u_at_i = np.interp(ti, tv, voltage)
    power = u_at_i * current
    cumulative_wh = (
        np.concatenate([[0], np.cumsum((power[1:] + power[:-1]) / 2 * np.diff(ti))]) / 3600
    )
    expected_wh = np.interp(te[-1], ti, cumulative_wh)
    assert energy_wh[-1] == pytest.approx(expected_wh, rel=0.02)
    cumulative_as = np.concatenate([[0], np.cumsum((current[1:] + current[:-1]) / 2 * np.diff(ti))])
    assert charge_as[-1] == pytest.approx(np.interp(tq[-1], ti, cumulative_as), rel=0.02)
    assert energy_wh[-1] > 1000


# -- faults -----------------------------------------------------------------------------
def _errors(batch: FrameBatch) -> FrameBatch:
    return batch.take((batch.flags & FLAG_ERROR) != 0)


def _ids_between(batch: FrameBatch, can_id: int, a: float, b: float) -> int:
    t = batch.timestamp - T0
    return int(((batch.can_id == can_id) & batch.is_data & (t >= a) & (t < b)).sum())


def test_error_frames_of_a_class_at_a_rate() -> None:
    batch = simulate(30.0, [Fault("error_frames", 10.0, 10.0, {"class": "ack", "rate": 5})])
    err = _errors(batch)
    assert len(err) == 50
    assert set(err.can_id.tolist()) == {0x020 | 0x080}
    assert np.all((err.timestamp >= T0 + 10) & (err.timestamp < T0 + 20))
    stuff = _errors(simulate(10.0, [parse_fault("error_frames@0:class=stuff,rate=2,tec=20")]))
    assert len(stuff) == 20
    assert set(stuff.can_id.tolist()) == {0x008 | 0x080 | 0x200}
    assert np.all(stuff.data[:, 2] == 0x04) and np.all(stuff.data[:, 3] == 0x0A)
    assert np.all(stuff.data[:, 6] == 20)


def test_controller_passive_then_back_to_active() -> None:
    err = _errors(simulate(20.0, [parse_fault("controller@5+3:state=passive,tec=140,rec=7")]))
    assert err.timestamp.tolist() == [T0 + 5, T0 + 8]
    assert set(err.can_id.tolist()) == {0x004 | 0x200}
    assert err.data[0, 1] == 0x20 and err.data[0, 6] == 140 and err.data[0, 7] == 7
    assert err.data[1, 1] == 0x40


def test_bus_off_silences_everything_then_restarts() -> None:
    batch = simulate(20.0, [Fault("bus_off", 5.0, 3.0)])
    t = batch.timestamp - T0
    inside = (t >= 5.0) & (t < 8.0)
    assert batch.take(inside).can_id.tolist() == [0x040]
    assert batch.is_error[inside].all()
    restart = batch.take(batch.is_error & (batch.can_id == 0x100))
    assert restart.timestamp.tolist() == [T0 + 8.0]
    assert batch.is_data[(t > 8.0) & (t < 9.0)].sum() > 200


def test_module_silent_stops_one_module() -> None:
    batch = simulate(20.0, [parse_fault("module_silent@10:module=3")])
    assert _ids_between(batch, 0x0283F003, 0, 10) == 100
    assert _ids_between(batch, 0x0283F003, 10, 20) == 0
    assert _ids_between(batch, 0x0284F003, 10, 20) == 0
    assert _ids_between(batch, 0x0283F004, 10, 20) == 100


def test_duplicate_address_doubles_rate_and_sets_id_repeat() -> None:
    sim = ChargerSimulator(SimConfig(faults=(parse_fault("duplicate_address@10:module=2"),)))
    batch = FrameBatch.concat(list(sim.chunks(20.0)))
    assert _ids_between(batch, 0x0283F002, 0, 10) == 100
    assert _ids_between(batch, 0x0283F002, 10, 20) == 200
    assert _ids_between(batch, 0x0283F001, 10, 20) == 100
    d = decode(sim, batch)
    t, alarm = series(d[("ModuleStatus", 2)], "id_repeat_alarm")
    assert not alarm[t < 10].any() and alarm[t >= 10].all()
    assert not series(d[("ModuleStatus", 1)], "id_repeat_alarm")[1].any()


def test_firmware_mismatch_on_one_module() -> None:
    sim = ChargerSimulator(SimConfig(faults=tuple(scenario_faults("firmware_mismatch"))))
    d = decode(sim, sim.generate(T0, T0 + 5))
    versions = {
        a: {k: int(v) for k, v in d[("ModuleVersion", a)][0][1].items() if k != "HardwareRevision"}
        for a in range(1, 9)
    }
    assert versions[5] == {"DCDC_Major": 1, "DCDC_Minor": 3, "PFC_Major": 2, "PFC_Minor": 0}
    assert all(versions[a]["DCDC_Minor"] == 4 for a in range(1, 9) if a != 5)


def test_wrong_bitrate_bursts_of_protocol_errors_without_a_sender() -> None:
    healthy_ids = set(simulate(10.0).can_id.tolist())
    batch = simulate(10.0, [parse_fault("wrong_bitrate@2:interval=0.5,burst=6")])
    err = _errors(batch)
    assert len(err) == 16 * 6
    assert set(err.can_id.tolist()) == {0x008 | 0x080}
    assert set(err.data[:, 2].tolist()) == {0x04, 0x02, 0x00}  # stuff, form, CRC (unspecified)
    assert 0x08 in set(err.data[:, 3].tolist())  # CRC sequence location
    assert set(batch.can_id[batch.is_data].tolist()) == healthy_ids


def test_overload_reaches_the_target_load() -> None:
    batch = simulate(20.0, [parse_fault("overload@10:load=0.9")])
    t = batch.timestamp - T0
    healthy = (t >= 1) & (t < 9) & batch.is_data
    ext = (batch.flags[healthy] & FLAG_EXTENDED) != 0
    bits = (np.where(ext, 67, 47) + 8 * batch.dlc[healthy].astype(np.int64)).sum()
    assert bits / 8 / 125_000 == pytest.approx(0.226, abs=0.01)  # no-stuffing estimate
    # The target is the exact load (stuff bits included), as candiag measures it.
    loaded = (t >= 11) & (t < 19) & batch.is_data
    exact = frame_bits_exact(batch.take(loaded))[0].sum()
    assert exact / 8 / 125_000 == pytest.approx(0.9, abs=0.01)


@pytest.mark.parametrize(("chunk_seconds", "seconds"), [(5.0, 20.0), (0.02, 3.0)])
def test_overload_never_asks_the_wire_for_more_than_it_has(
    chunk_seconds: float, seconds: float
) -> None:
    """92 % at 500 kbit/s (the soak's load) in file chunks and live steps: no backlog grows."""
    fault = parse_fault("overload@0:load=0.92")
    sim = ChargerSimulator(SimConfig(bitrate=500_000, faults=(fault,)))
    bits, worst = 0, 0.0
    for k in range(round(seconds / chunk_seconds)):
        t1 = T0 + (k + 1) * chunk_seconds
        bits += int(frame_bits_exact(sim.generate(T0 + k * chunk_seconds, t1))[0].sum())
        worst = max(worst, sim._wire.free_at - t1)
    assert bits / seconds / 500_000 == pytest.approx(0.92, abs=0.01)
    assert worst < 0.02  # the wire is free again within 20 ms of every chunk's end


def test_jitter_on_one_module_only() -> None:
    batch = simulate(30.0, [parse_fault("jitter@0:module=4,ratio=0.5")])
    for address, jittery in ((4, True), (5, False)):
        rows = batch.can_id == (0x0283F000 | address)
        spread = np.diff(batch.timestamp[rows]).std()
        assert bool(spread > 0.01) == jittery, (address, spread)


def test_contactor_mismatch_cooling_no_flow_and_meter_reversed() -> None:
    faults = (
        parse_fault("contactor_mismatch@20:contactor=dc_plus,mode=stuck_open"),
        parse_fault("cooling_no_flow@30"),
        parse_fault("meter_reversed@40"),
    )
    sim = ChargerSimulator(SimConfig(faults=faults))
    d = decode(sim, FrameBatch.concat(list(sim.chunks(60.0))))
    tc, cmd = series(d[("ContactorCommand", 0)], "DCPlusCommand")
    tf, fb = series(d[("ContactorFeedback", 0)], "DCPlusFeedback")
    assert cmd[tc > 20].all() and not fb[tf > 20].any() and fb[(tf > 10) & (tf < 20)].all()

    ts, flow = series(d[("CoolingStatus", 0)], "CoolantFlow")
    _, alarm = series(d[("CoolingStatus", 0)], "NoFlowAlarm")
    _, outlet = series(d[("CoolingStatus", 0)], "CoolantOutletTemperature")
    ta, pump = series(d[("CoolingActuators", 0)], "PumpSpeedCommand")
    assert flow[ts > 40].max() < 2 and alarm[ts > 40].all() and not alarm[ts < 30].any()
    assert pump[ta > 40].min() > 50, "the pump is still commanded"
    assert outlet[ts > 58].mean() > outlet[(ts > 28) & (ts < 30)].mean() + 10

    tm, meter = series(d[("Meter_Current", 0)], "Current")
    _, module = series(d[("ModuleTelemetry", 1)], "OutputCurrent")
    assert meter[tm > 45].max() < -250 and module[-50:].min() > 30
    assert meter[(tm > 35) & (tm < 40)].min() > 250


def test_every_scenario_runs() -> None:
    names = scenario_names()
    assert {"healthy", "termination", "wrong_bitrate", "module_offline", "duplicate_address",
            "firmware_mismatch", "bus_off", "overload", "contactor_mismatch", "cooling_flow",
            "jitter"} <= set(names)  # fmt: skip
    for name in names:
        batch = simulate(12.0, scenario_faults(name))
        assert len(batch) > 2000
        assert (len(_errors(batch)) == 0) == (name not in {"wrong_bitrate", "bus_off"}), name
    termination = _errors(simulate(130.0, scenario_faults("termination")))
    assert 8 <= len(termination) <= 12  # 3 + 1.8 per minute over 2 minutes
    assert set(termination.data[:, 2].tolist()) == {0x04, 0x02}


def test_bad_fault_and_scenario_input_is_reported() -> None:
    f = parse_fault("error_frames@10+5:class=ack,rate=20")
    assert (f.kind, f.start, f.duration, f.params) == (
        "error_frames",
        10.0,
        5.0,
        {"class": "ack", "rate": "20"},
    )
    with pytest.raises(InputError, match="unknown fault kind 'nope'"):
        parse_fault("nope@1")
    with pytest.raises(InputError, match="START and DURATION"):
        parse_fault("bus_off@soon")
    with pytest.raises(InputError, match="key=value"):
        parse_fault("jitter:module")
    with pytest.raises(InputError, match="unknown scenario 'x'"):
        scenario_faults("x")
    with pytest.raises(InputError, match="state=passive needs tec or rec >= 128"):
        simulate(10.0, [parse_fault("controller@1:state=passive,tec=100")])
    with pytest.raises(InputError, match="class='zap'"):
        simulate(1.0, [parse_fault("error_frames:class=zap")])


def test_candiag_decoder_understands_every_simulated_frame(
    healthy: tuple[ChargerSimulator, FrameBatch],
) -> None:
    from candiag.decode.dbc import load_dbc_paths, reference_dbc_dir
    from candiag.decode.decoder import BatchDecoder

    _, batch = healthy
    result = BatchDecoder(load_dbc_paths([reference_dbc_dir()])).decode(batch)
    assert result.decoded_frames == len(batch)
    assert not result.unknown_ids and not result.short_frames
    telemetry = result.messages["ModuleTelemetry"]
    assert set(telemetry.node.tolist()) == set(range(1, 9))
    register = result.messages["ModuleRegister"]
    ambient = register.signals["AmbientTemperature"][register.present["AmbientTemperature"]]
    assert len(ambient) > 100 and abs(ambient.mean() - 25.0) < 0.1
