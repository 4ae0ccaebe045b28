"""``candiag.health.linkstats`` against the real ``ip -details -statistics -json`` of the VM."""

from __future__ import annotations

import subprocess

from candiag.health.linkstats import InterfaceDropCounter, parse_link_json, read_link_stats

from .vcanlib import Frame, RawSocket, link


def test_reads_the_real_ip_output_of_vcan(vcan0: str) -> None:
    before = read_link_stats(vcan0)
    assert before is not None
    assert before.device == vcan0 and before.kind == "vcan" and before.up
    assert before.state is None and before.tec is None  # vcan has no controller
    assert before.tx_packets is not None and before.rx_packets is not None
    with RawSocket(vcan0) as raw:
        raw.send([Frame(0x100 + i, bytes([i])) for i in range(7)])
    after = read_link_stats(vcan0)
    assert after is not None and after.tx_packets is not None and after.rx_packets is not None
    assert after.tx_packets - before.tx_packets == 7
    assert after.rx_packets - before.rx_packets == 7
    drops = InterfaceDropCounter()
    assert drops.update(before) == 0 and drops.update(after) == 0


def test_parser_agrees_with_ip_itself(vcan0: str) -> None:
    text = subprocess.run(
        ["ip", "-details", "-statistics", "-json", "link", "show", "dev", vcan0],
        capture_output=True, check=True, timeout=10,
    ).stdout  # fmt: skip
    parsed = parse_link_json(text, vcan0)
    read = read_link_stats(vcan0)
    assert read is not None
    assert (parsed.device, parsed.kind, parsed.up, parsed.operstate) == (
        read.device, read.kind, read.up, read.operstate,
    )  # fmt: skip


def test_link_down_is_seen_and_missing_device_is_none(vcan0: str) -> None:
    link(vcan0, "down")
    try:
        down = read_link_stats(vcan0)
        assert down is not None and not down.up and down.operstate == "DOWN"
    finally:
        link(vcan0, "up")
    up = read_link_stats(vcan0)
    assert up is not None and up.up
    assert read_link_stats("nosuchcan7") is None
