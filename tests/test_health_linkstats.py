"""Netlink link statistics: parser on realistic iproute2 JSON, reader against the real ``ip``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from candiag.health.linkstats import (
    InterfaceDropCounter,
    LinkStats,
    parse_link_json,
    read_link_stats,
)

# `ip -details -statistics -json link show can0` on a sun4i/sja1000-class controller in
# error-passive (layout of iproute2 ip/iplink_can.c can_print_opt/can_print_xstats).
CAN0_PASSIVE = """[{"ifindex":3,"ifname":"can0","flags":["NOARP","UP","LOWER_UP","ECHO"],"mtu":16,
"qdisc":"pfifo_fast","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":10,
"link_type":"can","promiscuity":0,"allmulti":0,"min_mtu":0,"max_mtu":0,
"linkinfo":{"info_kind":"can","info_data":{"ctrlmode":["BERR-REPORTING"],"state":"ERROR-PASSIVE",
"berr_counter":{"tx":0,"rx":135},"restart_ms":100,"bittiming":{"bitrate":250000,
"sample_point":"0.875","tq":250,"prop_seg":6,"phase_seg1":7,"phase_seg2":2,"sjw":1,"brp":6},
"bittiming_const":{"name":"sun4i_can","tseg1":{"min":1,"max":16},"tseg2":{"min":1,"max":8},
"sjw":{"min":1,"max":4},"brp":{"min":1,"max":64},"brp_inc":1},"clock":24000000},
"info_xstats":{"restarts":1,"bus_error":2087,"arbitration_lost":0,"error_warning":3,
"error_passive":2,"bus_off":1}},"num_tx_queues":1,"num_rx_queues":1,"gso_max_size":65536,
"gso_max_segs":65535,"stats64":{"rx":{"bytes":161232,"packets":20154,"errors":2087,
"dropped":12,"over_errors":3,"multicast":0},"tx":{"bytes":0,"packets":0,"errors":0,
"dropped":0,"carrier_errors":0,"collisions":0}}}]"""

# An mcp251xfd CAN FD controller after bus-off, restart-ms 0 (stays off), link down.
CAN1_FD_BUSOFF = """[{"ifindex":4,"ifname":"can1","flags":["NOARP","ECHO"],"mtu":72,"qdisc":"pfifo_fast",
"operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":10,"link_type":"can",
"linkinfo":{"info_kind":"can","info_data":{"ctrlmode":["FD","BERR-REPORTING"],"state":"BUS-OFF",
"berr_counter":{"tx":248,"rx":0},"restart_ms":0,"bittiming":{"bitrate":500000,"sample_point":"0.800",
"tq":25,"prop_seg":31,"phase_seg1":32,"phase_seg2":16,"sjw":1,"brp":1},
"data_bittiming":{"bitrate":2000000,"sample_point":"0.750","tq":25,"prop_seg":7,"phase_seg1":7,
"phase_seg2":5,"sjw":1,"brp":1},"clock":40000000},"info_xstats":{"restarts":0,"bus_error":0,
"arbitration_lost":0,"error_warning":1,"error_passive":1,"bus_off":1}},
"stats64":{"rx":{"bytes":0,"packets":0,"errors":0,"dropped":0,"over_errors":0,"multicast":0},
"tx":{"bytes":64,"packets":8,"errors":1,"dropped":0,"carrier_errors":0,"collisions":0}}}]"""

# vcan: no controller, so no info_data and no info_xstats.
VCAN0 = """[{"ifindex":5,"ifname":"vcan0","flags":["NOARP","UP","LOWER_UP"],"mtu":72,"qdisc":"noqueue",
"operstate":"UNKNOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"can",
"promiscuity":0,"linkinfo":{"info_kind":"vcan"},"num_tx_queues":1,"num_rx_queues":1,
"stats64":{"rx":{"bytes":80,"packets":10,"errors":0,"dropped":0,"over_errors":0,"multicast":0},
"tx":{"bytes":80,"packets":10,"errors":0,"dropped":0,"carrier_errors":0,"collisions":0}}}]"""


def test_parse_error_passive_controller() -> None:
    s = parse_link_json(CAN0_PASSIVE, "can0")
    assert (s.device, s.kind, s.up, s.source) == ("can0", "can", True, "netlink")
    assert (s.state, s.tec, s.rec, s.restart_ms) == ("error_passive", 0, 135, 100)
    assert (s.bitrate, s.sample_point, s.data_bitrate) == (250000, 0.875, None)
    assert (s.restarts, s.bus_error, s.error_warning, s.error_passive, s.bus_off) == (
        1,
        2087,
        3,
        2,
        1,
    )
    assert (s.rx_packets, s.rx_errors, s.rx_dropped, s.rx_over_errors) == (20154, 2087, 12, 3)
    assert s.to_json()["source"] == "netlink"


def test_parse_fd_bus_off_link_down() -> None:
    s = parse_link_json(CAN1_FD_BUSOFF)
    assert (s.state, s.tec, s.up, s.operstate) == ("bus_off", 248, False, "DOWN")
    assert (s.bitrate, s.data_bitrate) == (500000, 2000000)
    assert s.tx_errors == 1


def test_parse_vcan_without_controller_data() -> None:
    s = parse_link_json(VCAN0, "vcan0")
    assert (s.kind, s.up, s.state, s.tec, s.bus_off, s.bitrate) == (
        "vcan",
        True,
        None,
        None,
        None,
        None,
    )
    assert s.rx_packets == 10


def test_parse_rejects_other_text() -> None:
    with pytest.raises(ValueError):
        parse_link_json("Device does not exist")
    with pytest.raises(ValueError, match="no link can7"):
        parse_link_json(VCAN0, "can7")


def test_interface_drop_deltas_with_counter_reset() -> None:
    base = parse_link_json(CAN0_PASSIVE)
    drops = InterfaceDropCounter()

    def snap(dropped: int, over: int) -> LinkStats:
        doc = json.loads(CAN0_PASSIVE)
        doc[0]["stats64"]["rx"].update(dropped=dropped, over_errors=over)
        return parse_link_json(json.dumps(doc))

    assert drops.update(base) == 0
    assert drops.update(snap(20, 3)) == 8
    assert drops.update(snap(20, 5)) == 2
    assert drops.update(snap(1, 0)) == 1  # driver reloaded: counters restarted
    assert drops.total == 11


def test_reader_on_real_ip_and_missing_things(tmp_path: Path) -> None:
    if shutil.which("ip") is None:
        pytest.skip("iproute2 not installed")
    lo = read_link_stats("lo")
    assert lo is not None and lo.device == "lo" and lo.kind is None and lo.rx_packets is not None
    assert read_link_stats("candiag-no-such-dev0") is None
    assert read_link_stats("lo", ip=str(tmp_path / "no-ip-here")) is None
    fake = tmp_path / "ip"
    fake.write_text("#!/bin/sh\necho 'not json'\n")
    fake.chmod(0o755)
    assert read_link_stats("lo", ip=str(fake)) is None
    slow = tmp_path / "slow-ip"
    slow.write_text("#!/bin/sh\nexec sleep 5\n")
    slow.chmod(0o755)
    assert read_link_stats("lo", timeout=0.2, ip=str(slow)) is None
