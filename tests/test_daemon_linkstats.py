"""The daemon's second health source on SocketCAN: the kernel's link statistics."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from test_health_linkstats import CAN0_PASSIVE

from candiag.config.load import parse_config_text
from candiag.decode.dbc import load_reference_database
from candiag.health.linkstats import parse_link_json
from candiag.live import readers
from candiag.live.bus import LiveBus


def stats_with(**changes: Any) -> Any:
    doc = json.loads(CAN0_PASSIVE)
    link = doc[0]
    for key, value in changes.items():
        if key == "state":
            link["linkinfo"]["info_data"]["state"] = value
        elif key == "rx_dropped":
            link["stats64"]["rx"]["dropped"] = value
    return parse_link_json(json.dumps(doc), "can0")


def monitor() -> LiveBus:
    config = parse_config_text(
        '[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "can0"\n'
    )
    mon = LiveBus(config.buses[0], load_reference_database())
    mon.set_link(True, 100.0)
    return mon


def test_kernel_state_and_counters_reach_the_report() -> None:
    mon = monitor()
    mon.observe_link((1, stats_with()), 101.0)
    report = mon.report(101.0)
    assert report.state == "error_passive"
    assert report.bus_state is not None and "netlink" in report.bus_state.sources
    assert report.error_frames.counters_source == "netlink"
    assert (report.error_frames.tec_last, report.error_frames.rec_last) == (0, 135)
    assert report.link is not None and report.link.source == "netlink"
    snap = mon.snapshot(101.0)
    assert (snap.tx_errors, snap.rx_errors) == (0, 135)
    # The same snapshot seen again changes nothing; a new one with bus-off counts an event.
    mon.observe_link((1, stats_with()), 102.0)
    mon.observe_link((2, stats_with(state="BUS-OFF")), 103.0)
    assert mon.state_name() == "bus_off" and mon.bus_off_events == 1


def test_poller_reads_in_its_thread_and_counts_interface_drops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drops = iter([10, 10, 17, 25])
    last = {"value": 10}

    def fake_read(device: str, timeout: float = 2.0) -> Any:
        last["value"] = next(drops, last["value"])
        return stats_with(rx_dropped=last["value"])

    monkeypatch.setattr(readers, "read_link_stats", fake_read)
    poller = readers.LinkStatsPoller("can0", interval=0.01)
    poller.start()
    try:
        deadline = time.monotonic() + 5
        while poller.updates < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        poller.stop()
    assert poller.updates >= 4
    assert poller.dropped.total == 15  # 10 -> 25: the first snapshot is the baseline
    assert poller.latest is not None and poller.latest.state == "error_passive"


def test_only_socketcan_buses_get_a_link_poller() -> None:
    config = parse_config_text(
        '[[can.buses]]\nname = "a"\ninterface = "socketcan"\nchannel = "can0"\n'
        '[[can.buses]]\nname = "b"\ninterface = "virtual"\nchannel = "x"\n'
    )
    socketcan, virtual = (readers.open_reader(b) for b in config.buses)
    assert socketcan.link is not None and socketcan.link.device == "can0"
    assert virtual.link is None and virtual.link_stats is None


def test_pcan_bus_off_exception_counts_as_a_bus_off_event() -> None:
    from can.interfaces.pcan.basic import PCAN_ERROR_BUSOFF

    config = parse_config_text(
        '[[can.buses]]\nname = "p"\ninterface = "pcan"\nchannel = "PCAN_USBBUS1"\n'
    )
    mon = LiveBus(config.buses[0], load_reference_database())
    mon.set_link(True, 10.0)
    reason = f"receive failed: PcanCanOperationError: Bus error ({PCAN_ERROR_BUSOFF:x}h)"
    mon.set_link(False, 11.0, reason)
    assert mon.bus_off_events == 1 and mon.state_name() == "down"
    mon.set_link(True, 12.0)
    mon.set_link(False, 13.0, "receive failed: OSError: device vanished")
    assert mon.bus_off_events == 1  # a plain loss is not a bus-off
