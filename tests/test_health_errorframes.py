"""Error-frame classification and the bus-state tracker."""

from __future__ import annotations

import numpy as np
import pytest

from candiag.health.busstate import BUS_STATES, BusStateTracker, state_from_counters
from candiag.health.errorframes import ERROR_CLASSES, ErrorFrameSummary
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED
from tests.synthetic import frames, synthetic_batch

E = int(FLAG_ERROR)


def _err(ts: float, can_id: int, *payload: int) -> tuple[float, int, int, bytes]:
    return (ts, can_id, E, bytes(list(payload) + [0] * (8 - len(payload))))


def test_each_class_counted_even_when_combined() -> None:
    batch = frames(
        [
            _err(1.0, 0x008 | 0x080 | 0x200, 0, 0, 0x04, 0x0A, 0, 0, 12, 3),  # prot+berr+cnt
            _err(2.0, 0x020),  # ack
            _err(3.0, 0x040),  # bus-off
            _err(4.0, 0x100),  # restarted
            (5.0, 0x040, 0, bytes(8)),  # a DATA frame with id 0x040: never an error
            (6.0, 0x0283F001, int(FLAG_EXTENDED), bytes(8)),
        ]
    )
    summary = ErrorFrameSummary()
    summary.update(batch)
    assert summary.error_frames == 4
    assert set(summary.by_class) == set(ERROR_CLASSES)
    expected = dict.fromkeys(ERROR_CLASSES, 0)
    expected.update(protocol=1, bus_error=1, counters=1, ack=1, bus_off=1, restarted=1)
    assert summary.by_class == expected
    assert summary.protocol_type["stuff"] == 1
    assert summary.protocol_location["data"] == 1
    assert (summary.tec_last, summary.rec_last, summary.tec_max) == (12, 3, 12)


def test_subfields_only_read_under_their_class() -> None:
    batch = frames(
        [
            _err(1.0, 0x004, 0, 0x08 | 0x20),  # controller: tx_warning + tx_passive
            _err(1.5, 0x004, 0, 0x40),  # back to active
            _err(2.0, 0x020, 0, 0xFF, 0xFF, 0x19),  # ack only: bytes 1-3 must be ignored
            _err(3.0, 0x002, 17),  # lost arbitration at bit 17
            _err(4.0, 0x010, 0, 0, 0, 0, 0x04 | 0x70),  # CANH no wire, CANL short to GND
            _err(5.0, 0x008, 0, 0, 0x01 | 0x80, 0x19),  # bit error on tx, in the ACK slot
        ]
    )
    s = ErrorFrameSummary()
    s.update(batch)
    assert s.controller["tx_warning"] == 1 and s.controller["tx_passive"] == 1
    assert s.controller["active"] == 1 and s.controller["rx_warning"] == 0
    assert s.protocol_type == {**s.protocol_type, "bit": 1, "tx": 1, "stuff": 0}
    assert s.protocol_location["ack"] == 1 and s.protocol_location["other"] == 0
    assert s.lost_arbitration_bits == {17: 1}
    assert s.transceiver["canh_no_wire"] == 1 and s.transceiver["canl_short_to_gnd"] == 1
    js = s.to_json()
    assert js["controller"] == {"tx_warning": 1, "tx_passive": 1, "active": 1}
    assert js["lost_arbitration_bits"] == {"17": 1}


def test_counters_with_and_without_cnt_flag_kept_apart() -> None:
    batch = frames(
        [
            _err(1.0, 0x080 | 0x200, 0, 0, 0, 0, 0, 0, 100, 5),
            _err(2.0, 0x080, 0, 0, 0, 0, 0, 0, 120, 9),  # non-zero without CAN_ERR_CNT
            _err(0.5, 0x200, 0, 0, 0, 0, 0, 0, 90, 1),  # older: must not become "last"
        ]
    )
    s = ErrorFrameSummary()
    s.update(batch)
    assert (s.tec_last, s.rec_last, s.tec_max, s.rec_max) == (100, 5, 100, 5)
    assert (s.unflagged_tec_last, s.unflagged_rec_last) == (120, 9)
    assert (s.counter_frames_flagged, s.counter_frames_unflagged) == (2, 1)


def test_class_counts_match_a_per_frame_count_on_a_random_batch() -> None:
    batch = synthetic_batch(5000, error_share=0.2, seed=3)
    expected = dict.fromkeys(ERROR_CLASSES, 0)
    for can_id in batch.can_id[batch.is_error].tolist():
        bits = [can_id >> b & 1 for b in range(10)]
        for name, bit in zip(ERROR_CLASSES[:10], bits, strict=True):
            expected[name] += bit
        expected["unclassified"] += not any(bits)
    s = ErrorFrameSummary()
    s.update(batch)
    assert s.by_class == expected
    assert sum(expected.values()) > int(batch.is_error.sum())  # frames with several classes


def test_update_is_additive_across_batches() -> None:
    batch = synthetic_batch(4000, error_share=0.3, seed=5)
    whole, parts = ErrorFrameSummary(), ErrorFrameSummary()
    whole.update(batch)
    for chunk in np.array_split(np.arange(4000), 7):
        parts.update(batch.take(chunk))
    assert whole.to_json() == parts.to_json()


# -- bus state ---------------------------------------------------------------------------


def test_counter_thresholds() -> None:
    got = state_from_counters([0, 95, 96, 127, 128, 255, 0, 0], [0, 0, 0, 0, 0, 0, 96, 128])
    names = [BUS_STATES[s] for s in got]
    assert names == [
        "error_active",
        "error_active",
        "error_warning",
        "error_warning",
        "error_passive",
        "error_passive",
        "error_warning",
        "error_passive",
    ]
    assert BUS_STATES[state_from_counters([256], [0])[0]] == "bus_off"


def test_state_walk_with_time_in_state_and_events() -> None:
    batch = frames(
        [
            (0.0, 0x100, 0, bytes(8)),  # a data frame: the clock starts here
            _err(10.0, 0x004 | 0x200, 0, 0x08, 0, 0, 0, 0, 100, 0),  # tx warning
            _err(15.0, 0x008 | 0x080),  # protocol error: no state evidence
            _err(20.0, 0x004 | 0x200, 0, 0x20, 0, 0, 0, 0, 130, 0),  # tx passive
            _err(25.0, 0x040),  # bus-off
            _err(27.0, 0x100),  # restarted -> active
            _err(29.0, 0x040),  # bus-off again
            _err(30.0, 0x004, 0, 0x40),  # back to error-active
            (40.0, 0x100, 0, bytes(8)),
        ]
    )
    t = BusStateTracker()
    bus_off_times = t.update(batch)
    assert t.state_name == "error_active"
    assert bus_off_times.tolist() == [25.0, 29.0]
    assert t.bus_off_events == 2 and t.restarts == 1
    secs = dict(zip(BUS_STATES, t.seconds_in_state.tolist(), strict=True))
    assert secs == {
        "error_active": 10.0 + 2.0 + 10.0,
        "error_warning": 10.0,
        "error_passive": 5.0,
        "bus_off": 2.0 + 1.0,
        "down": 0.0,
    }
    assert [(c.old, c.new) for c in t.changes][:3] == [
        ("error_active", "error_warning"),
        ("error_warning", "error_passive"),
        ("error_passive", "bus_off"),
    ]
    assert t.to_json()["tec"] == 130


def test_state_is_kept_between_batches_and_advanced_to_now() -> None:
    t = BusStateTracker()
    t.update(frames([_err(100.0, 0x004, 0, 0x10)]))  # rx passive
    t.update(frames([(105.0, 0x100, 0, bytes(8))]))  # no evidence: stays passive
    assert t.state_name == "error_passive"
    t.advance(110.0)
    assert t.seconds_in_state[BUS_STATES.index("error_passive")] == pytest.approx(10.0)
    t.observe("down", 111.0, source="daemon")
    t.advance(112.0)
    assert t.state_name == "down"
    assert t.seconds_in_state[BUS_STATES.index("down")] == pytest.approx(1.0)
    assert t.to_json()["sources"] == ["daemon", "error_frame"]


def test_error_frame_without_class_bits_is_counted_unclassified() -> None:
    from candiag.health.errorframes import UNCLASSIFIED
    from candiag.health.windows import BusWindows

    batch = frames(
        [
            _err(1.0, 0x000, 0, 0, 0, 0, 0, 0, 0, 0),  # kind not recorded by the source
            _err(1.5, 0x020, 0, 0, 0, 0, 0, 0, 0, 0),  # ack
            _err(2.0, 0x000, 0, 0, 0, 0, 0, 0, 0, 0),
        ]
    )
    s = ErrorFrameSummary()
    s.update(batch)
    assert s.by_class[UNCLASSIFIED] == 2 and s.by_class["ack"] == 1
    assert sum(s.by_class.values()) == 3
    assert s.to_json()["by_class"][UNCLASSIFIED] == 2
    windows = BusWindows(bitrate=500_000)
    windows.update(batch)
    assert windows.error_counts(60)[UNCLASSIFIED] == 2
    assert windows.error_counts(60)["ack"] == 1
