"""BusHealth composition and per-channel dispatch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from candiag.health.bus import BusHealth, split_by_channel
from candiag.health.busload import frame_bits
from candiag.health.linkstats import parse_link_json
from candiag.ingest.frames import FLAG_ERROR
from tests.synthetic import frames, synthetic_batch

LINK = """[{"ifname":"can0","flags":["NOARP","UP","LOWER_UP"],"operstate":"UP",
"linkinfo":{"info_kind":"can","info_data":{"state":"ERROR-WARNING","berr_counter":{"tx":100,"rx":0}},
"info_xstats":{"restarts":0,"bus_error":5,"arbitration_lost":0,"error_warning":1,
"error_passive":0,"bus_off":0}},"stats64":{"rx":{"packets":10,"errors":0,"dropped":DROP,
"over_errors":0},"tx":{"packets":0,"errors":0,"dropped":0}}}]"""


def test_split_by_channel_keeps_every_frame() -> None:
    batch = synthetic_batch(3000, channels=("can0", "can1", "can2"), seed=9)
    parts = split_by_channel(batch)
    assert set(parts) == {"can0", "can1", "can2"}
    assert sum(len(p) for p in parts.values()) == 3000
    for name, part in parts.items():
        assert {part.channels[c] for c in np.unique(part.channel)} == {name}
    assert split_by_channel(batch.take(batch.channel == 1)).keys() == {"can1"}


def test_bus_health_per_channel_totals_and_json() -> None:
    """Each channel's part of a two-bus capture, fed in chunks, as analyze feeds it."""
    batch = synthetic_batch(20_000, channels=("can0", "can1"), error_share=0.01, seed=4)
    buses = {"can0": BusHealth("can0", 500_000), "can1": BusHealth("can1", 250_000)}
    for chunk in np.array_split(np.arange(len(batch)), 4):
        for name, part in split_by_channel(batch.take(chunk)).items():
            buses[name].update(part)
    doc = {name: bus.to_json() for name, bus in buses.items()}
    nominal, _ = frame_bits(batch)
    for name, bitrate in (("can0", 500_000), ("can1", 250_000)):
        sel = np.array(batch.channels)[batch.channel] == name
        bus = doc[name]
        assert bus["bitrate"] == bitrate
        assert bus["frames"]["error"] == int((sel & batch.is_error).sum())
        assert bus["bits"]["nominal"] == int(nominal[sel].sum())
        # The span starts one first-frame length before the first (end-of-frame) timestamp.
        ts = batch.timestamp[sel]
        first = nominal[sel][int(ts.argmin())] / bitrate
        span = ts.max() - ts.min() + first
        assert bus["mean_load_ratio"] == pytest.approx(nominal[sel].sum() / bitrate / span)
        assert bus["error_frames"]["error_frames"] == bus["frames"]["error"]
    json.dumps(doc)  # JSON-ready throughout


def test_link_stats_feed_state_and_drops() -> None:
    bus = BusHealth("can0", 500_000)
    bus.update(frames([(10.0, 0x100, 0, bytes(8))]))
    bus.observe_link(parse_link_json(LINK.replace("DROP", "3")), 11.0)
    bus.observe_link(parse_link_json(LINK.replace("DROP", "7")), 12.0)
    assert bus.state.state_name == "error_warning"
    assert bus.dropped["interface"] == 4
    bus.add_dropped("socket", 1)
    doc = bus.to_json()
    assert doc["frames_dropped"]["interface"] == {"source": "netlink", "frames": 4}
    assert doc["frames_dropped"]["socket"] == {"source": "socket", "frames": 1}
    assert set(doc["bus_state"]["sources"]) == {"netlink"}
    assert doc["link"]["source"] == "netlink"
    with pytest.raises(ValueError):
        bus.add_dropped("elsewhere", 1)


def test_pcan_layout_is_converted_before_counting() -> None:
    bus = BusHealth("pcan0", pcan_error_layout=True)
    bus.update(frames([(1.0, 4, int(FLAG_ERROR), bytes([1, 0x0A, 0, 130]))]))
    assert bus.errors.by_class["protocol"] == 1 and bus.errors.tec_last == 130
    assert bus.state.state_name == "error_passive"
