"""``candiag probe``: the listen-only bitrate scan against a simulated bus that shows error
frames at wrong rates and valid traffic at the right one (python-can's virtual bus, a separate
sender plays the charger: probe itself never transmits), protocol identification of every
pack's simulated capture, no claim on the reference charger's or a vehicle's traffic, and the
CLI's verdict, JSON and config snippet (which check-config accepts)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import can
import numpy as np
import pytest

from candiag.cli import main
from candiag.cli.probe import parse_rates
from candiag.errors import InputError
from candiag.ingest.frames import FrameBatch
from candiag.ingest.scan import DEFAULT_CANDIDATES, choose, scan_bitrates, scan_refusal
from candiag.liveness.protocol_id import identify
from candiag.sim.faults import parse_fault
from candiag.sim.protocols import PROTOCOL_NAMES
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import PACK_FILES, pack_info
from candiag.socketcan_errors import CAN_ERR_PROT
from tests.vehicle_traffic import opendbc_files, vehicle_batch

ADDRESSES = {"infy": [1, 2, 3, 4], "winline": [1, 2, 3, 4], "sinexcel": [1, 2, 3, 4],
             "uugreen": [1, 2], "huawei": [1, 2], "dpm1000": [0], "beg1k075g": [0]}  # fmt: skip


def _simulate(protocol: str, seconds: float, *specs: str) -> FrameBatch:
    faults = tuple(parse_fault(s) for s in specs)
    sim = ProtocolSimulator(ProtocolSimConfig(protocol, faults=faults))
    return FrameBatch.concat(list(sim.chunks(seconds)))


# -- identification -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_each_packs_capture_is_identified_with_its_addresses(protocol: str) -> None:
    result = identify(_simulate(protocol, 8.0))
    best = result.best
    assert best is not None and best.name == PACK_FILES[protocol], [
        (s.name, s.confidence, s.reason) for s in result.scores[:3]
    ]
    assert best.confidence >= 0.9
    controller = pack_info(protocol).controller_address
    assert best.controller_address == (None if controller < 0 else controller)
    assert best.modules_answering == ADDRESSES[protocol] and best.modules_silent == []
    assert not result.unexplained
    # The runner-up, if any, is far behind (DPM1000's identifiers are Winline's with group 3).
    assert all(s.confidence < 0.5 for s in result.scores[1:])


@pytest.mark.parametrize("protocol", ["infy", "winline", "huawei"])
def test_a_module_asked_but_silent_is_named(protocol: str) -> None:
    best = identify(_simulate(protocol, 8.0, "module_silent@2+60")).best
    assert best is not None and best.name == PACK_FILES[protocol]
    last = ADDRESSES[protocol][-1]
    assert best.modules_silent == [last] and last not in best.modules_answering


def test_another_controller_address_is_learnt() -> None:
    batch = _simulate("infy", 6.0)
    # The same bus with the controller at 0xF3: source byte of requests, destination of replies.
    ids = batch.can_id.astype(np.int64)
    request = (ids & 0xFF) == 0xF0
    ids = np.where(request, (ids & ~0xFF) | 0xF3, (ids & ~0xFF00) | 0xF300)
    moved = FrameBatch(**{**batch.__dict__, "can_id": ids.astype(np.uint32)})
    best = identify(moved).best
    assert best is not None and best.name == "infy_v113.dbc"
    assert best.controller_address == 0xF3 and best.modules_answering == [1, 2, 3, 4]


@pytest.mark.slow
def test_no_pack_is_claimed_on_the_reference_chargers_capture(tmp_path: Path) -> None:
    from candiag.capture import read_capture

    log = tmp_path / "reference.log"
    assert main(["simulate", "-o", str(log), "-d", "20"]) == 0
    batch, _ = read_capture(log)
    result = identify(batch)
    assert result.best is None, [(s.name, s.confidence, s.reason) for s in result.scores[:3]]
    assert result.unexplained and result.unexplained[0][1] > 0


@pytest.mark.slow
def test_no_pack_is_claimed_on_vehicle_traffic() -> None:
    files = opendbc_files()
    if not files:
        pytest.skip("opendbc's DBCs are not here (make realworld)")
    judged = 0
    for dbc in files:
        try:
            batch = vehicle_batch(dbc, seconds=6.0)
        except Exception:
            continue
        if not len(batch):
            continue
        judged += 1
        result = identify(batch)
        assert result.best is None, (dbc.name, result.best.name, result.best.reason)
    assert judged >= 30


# -- bitrate scan -------------------------------------------------------------------------------


class _ChargerAtRate:
    """The simulated charger's bus as an adapter at ``rate`` receives it: valid Infy frames
    at the charger's own rate, protocol error frames (stuff errors) at any other.  It sends
    from its own virtual bus object; the probe only listens."""

    def __init__(self, channel: str, bitrate: int) -> None:
        self.bitrate = bitrate
        self.listening_at: int | None = None
        self.bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
        self.frames = _simulate("infy", 20.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _ChargerAtRate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.bus.shutdown()

    def _run(self) -> None:
        # Valid frames keep the simulator's timing (the poll period is evidence); error
        # frames come as fast as a controller at the wrong rate would report them.
        rel = self.frames.timestamp - self.frames.timestamp[0]
        start, i = time.monotonic(), 0
        while not self._stop.wait(0.002) and i < len(rel):
            if self.listening_at is None:
                continue
            if self.listening_at != self.bitrate:
                msg = can.Message(arbitration_id=CAN_ERR_PROT, is_error_frame=True,
                                  data=bytes([0, 0, 0x04, 0, 0, 0, 0, 0]))  # fmt: skip
                self.bus.send(msg)
                continue
            while i < len(rel) and rel[i] <= time.monotonic() - start:
                data = bytes(self.frames.data[i, : self.frames.dlc[i]])
                self.bus.send(can.Message(arbitration_id=int(self.frames.can_id[i]), data=data,
                                          is_extended_id=True))  # fmt: skip
                i += 1


def test_the_scan_picks_the_rate_with_valid_traffic_and_no_protocol_errors() -> None:
    with _ChargerAtRate("probe-scan", 250_000) as charger:
        seen: list[tuple[str, int]] = []

        def progress(stage: str, rate: int, _result: Any) -> None:
            seen.append((stage, rate))
            charger.listening_at = rate if stage == "start" else None

        results = scan_bitrates(
            "virtual", "probe-scan", (125_000, 250_000, 500_000), dwell_s=0.3, progress=progress
        )
    by_rate = {r.bitrate: r for r in results}
    assert by_rate[250_000].valid_frames > 10 and by_rate[250_000].protocol_errors == 0
    for rate in (125_000, 500_000):
        assert by_rate[rate].protocol_errors > 10 and by_rate[rate].valid_frames == 0
    best = choose(results)
    assert best is not None and best.bitrate == 250_000
    assert seen == [(s, r) for r in (125_000, 250_000, 500_000) for s in ("start", "done")]


def test_a_silent_bus_is_listened_to_longer_and_gives_no_rate() -> None:
    t = time.monotonic()
    results = scan_bitrates("virtual", "probe-silent", (125_000,), dwell_s=0.1, max_dwell_s=0.4)
    assert 0.35 < time.monotonic() - t < 2.0 and results[0].dwell_s >= 0.35
    assert choose(results) is None


def test_interfaces_without_listen_only_are_refused_and_named() -> None:
    assert scan_refusal("pcan") is None and scan_refusal("virtual") is None
    for interface in ("gs_usb", "ixxat", "udp_multicast"):
        refusal = scan_refusal(interface)
        assert refusal is not None and interface in refusal and "listen-only" in refusal
    assert "ip link set" in (scan_refusal("socketcan") or "")
    with pytest.raises(ValueError, match="gs_usb"):
        scan_bitrates("gs_usb", "0", (125_000,))


def test_the_cli_refuses_a_scan_without_listen_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "-i", "gs_usb", "-c", "0"]) != 0
    err = capsys.readouterr().err
    assert "gs_usb" in err and "listen-only" in err


def test_bitrate_lists() -> None:
    assert parse_rates("125k, 250000,1M") == [125_000, 250_000, 1_000_000]
    assert DEFAULT_CANDIDATES == (125_000, 250_000, 500_000, 1_000_000, 50_000, 100_000, 800_000)
    with pytest.raises(InputError, match="fast"):
        parse_rates("fast")
    with pytest.raises(InputError, match="outside"):
        parse_rates("1")


# -- the CLI --------------------------------------------------------------------------------


def test_probe_a_capture_gives_a_verdict_json_and_a_config_check_config_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "huawei.log"
    assert main(["simulate", "--protocol", "huawei", "-o", str(log), "-d", "8",
                 "--fault", "module_silent@2+60"]) == 0  # fmt: skip
    capsys.readouterr()
    out_json, snippet = tmp_path / "probe.json", tmp_path / "bus.toml"
    code = main(["probe", "--capture", str(log), "--json", str(out_json),
                 "--config-snippet", str(snippet)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "huawei_r100040gx" in text and "asked but silent: 2" in text
    data = json.loads(out_json.read_text())
    assert data["bitrate"] == 125_000 and data["identification"]["pack"] == "huawei_r100040gx.dbc"
    assert data["identification"]["best"]["modules_asked_but_silent"] == [2]
    assert "expected = [1, 2]" in snippet.read_text()
    assert main(["check-config", str(snippet)]) == 0
    assert capsys.readouterr().out.startswith("OK")


def test_probe_live_on_a_virtual_bus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "probe.json"
    with _ChargerAtRate("probe-live", 500_000) as charger:
        charger.listening_at = 500_000  # one candidate: the charger's own rate
        code = main(["probe", "-i", "virtual", "-c", "probe-live", "--bitrates", "500k",
                     "--dwell", "0.3", "--listen", "3", "--json", str(out_json)])  # fmt: skip
    assert code == 0
    data = json.loads(out_json.read_text())
    assert data["bitrate"] == 500_000
    assert data["identification"]["pack"] == "infy_v113.dbc"
    assert "listening at 500,000 bit/s" in capsys.readouterr().err
