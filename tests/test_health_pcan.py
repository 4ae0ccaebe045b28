"""PCAN status codes, exceptions and PEAK error frames mapped into candiag's model."""

from __future__ import annotations

import numpy as np
from can.interfaces.pcan import basic as pcb
from can.interfaces.pcan.pcan import PcanCanOperationError

from candiag.health.busstate import BusStateTracker
from candiag.health.errorframes import ErrorFrameSummary
from candiag.health.pcan import (
    map_pcan_exception,
    map_pcan_status,
    pcan_error_frames_to_socketcan,
)
from candiag.ingest.frames import FLAG_ERROR
from tests.synthetic import frames


def test_status_codes_map_to_states_and_classes() -> None:
    ok = map_pcan_status(pcb.PCAN_ERROR_OK)
    assert (ok.state, ok.classes, ok.fatal) == ("error_active", (), False)
    off = map_pcan_status(pcb.PCAN_ERROR_BUSOFF)
    assert (off.state, off.classes, off.names) == ("bus_off", ("bus_off",), ("BUSOFF",))
    assert map_pcan_status(pcb.PCAN_ERROR_BUSWARNING).state == "error_warning"
    assert map_pcan_status(pcb.PCAN_ERROR_BUSHEAVY).state == "error_warning"
    assert map_pcan_status(pcb.PCAN_ERROR_BUSPASSIVE).state == "error_passive"
    light = map_pcan_status(pcb.PCAN_ERROR_BUSLIGHT)
    assert (light.state, light.classes) == ("error_active", ("controller",))
    # Several bits: the most severe state wins, every class is kept.
    both = map_pcan_status(int(pcb.PCAN_ERROR_BUSPASSIVE) | int(pcb.PCAN_ERROR_BUSOFF))
    assert both.state == "bus_off" and set(both.classes) == {"bus_off", "controller"}
    assert set(both.names) == {"BUSPASSIVE", "BUSOFF"}


def test_drops_harmless_and_fatal_codes() -> None:
    q = map_pcan_status(pcb.PCAN_ERROR_QOVERRUN)
    assert (q.state, q.dropped, q.fatal) == (None, "socket", False)
    assert map_pcan_status(pcb.PCAN_ERROR_OVERRUN).dropped == "interface"
    assert map_pcan_status(pcb.PCAN_ERROR_QRCVEMPTY).state is None
    assert map_pcan_status(pcb.PCAN_ERROR_ILLDATA).fatal is False
    for lost in (pcb.PCAN_ERROR_NODRIVER, pcb.PCAN_ERROR_ILLHW, pcb.PCAN_ERROR_INITIALIZE):
        s = map_pcan_status(lost)
        assert (s.state, s.fatal) == ("down", True), s


def test_exceptions_from_python_can_texts() -> None:
    # python-can's fallback when PCAN-Basic cannot translate the code.
    fallback = PcanCanOperationError(
        "An error occurred. Error-code's text (10h) couldn't be retrieved"
    )
    assert map_pcan_exception(fallback).state == "bus_off"
    # PCAN-Basic's English texts (the header comments of PCANBasic.h).
    assert (
        map_pcan_exception("Bus error: the CAN controller is in bus-off state").state == "bus_off"
    )
    assert (
        map_pcan_exception("Bus error: the CAN controller is error passive").state
        == "error_passive"
    )
    assert (
        map_pcan_exception("Bus error: an error counter reached the 'heavy' limit").state
        == "error_warning"
    )
    assert map_pcan_exception("Receive queue was read too late").dropped == "socket"
    assert map_pcan_exception("BUSOFF").state == "bus_off"
    unknown = map_pcan_exception("something odd happened")
    assert (unknown.state, unknown.fatal) == ("down", True)


def test_peak_error_frames_become_socketcan_frames() -> None:
    e = int(FLAG_ERROR)
    peak = frames(
        [
            (1.0, 4, e, bytes([1, 0x0A, 0, 0])),  # stuff error, receiving, in the data field
            (2.0, 1, e, bytes([0, 0x19, 5, 136])),  # bit error while transmitting, ACK slot
            (3.0, 0, e, bytes([1, 0, 100, 0])),  # counters only: REC 100
            (4.0, 0x123, 0, bytes([1, 2, 3])),  # data frame: untouched
        ]
    )
    sock = pcan_error_frames_to_socketcan(peak)
    assert peak.can_id.tolist() == [4, 1, 0, 0x123]  # input unchanged
    assert sock.can_id.tolist() == [0x288, 0x288, 0x200, 0x123]
    assert sock.data[0, :8].tolist() == [0, 0, 0x04, 0x0A, 0, 0, 0, 0]
    assert sock.data[1, :8].tolist() == [0, 0, 0x01 | 0x80, 0x19, 0, 0, 136, 5]
    assert sock.data[2, :8].tolist() == [0, 0, 0, 0, 0, 0, 0, 100]
    assert sock.data[3, :3].tolist() == [1, 2, 3]
    summary = ErrorFrameSummary()
    summary.update(sock)
    assert summary.protocol_type["stuff"] == 1 and summary.protocol_type["tx"] == 1
    assert summary.protocol_location["ack"] == 1
    tracker = BusStateTracker()
    tracker.update(sock)
    # TEC 136 then REC 100: passive, then warning, from the counters.
    assert [c.new for c in tracker.changes] == ["error_passive", "error_warning"]


def test_status_feeds_the_state_tracker() -> None:
    tracker = BusStateTracker()
    for t, code in [(0.0, pcb.PCAN_ERROR_OK), (1.0, pcb.PCAN_ERROR_BUSOFF), (1.5, 0)]:
        status = map_pcan_status(code)
        assert status.state is not None
        tracker.observe(status.state, t, source=status.source)
    assert tracker.bus_off_events == 1 and tracker.state_name == "error_active"
    assert np.isclose(tracker.seconds_in_state[3], 0.5)
