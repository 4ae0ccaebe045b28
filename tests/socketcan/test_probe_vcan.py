"""``candiag probe -i socketcan -c vcan0`` while the simulator plays a protocol pack's bus.

The simulator sends Infy V1.13 (the controller polling four modules) on vcan0; probe reads
the link with the real ``ip`` (a vcan has no bitrate: probe says the rate cannot be read), does no scan, listens at what the link carries and identifies
the pack with the controller and module addresses.  On the link taken down, probe says so
and listens to nothing.  (A missing link is tested on the host with what ``ip`` prints:
tests/test_probe_link.py; each candiag start costs much time under the VM's emulation.  A
module asked but silent is named on captures, tests/test_probe.py: live, when probe starts
listening is not known, and Infy's controller gives a silent module up after 15 s.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .vcanlib import RawSocket, candiag_cmd, link, run_candiag, start, stop

CHANNEL = "vcan0"
SIM_SECONDS = 900  # stopped when probe is done (a slow VM starts probe late)


@dataclass
class Probed:
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, object]
    snippet: str


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    tmp = tmp_path_factory.mktemp("probe")
    out_json, snippet = tmp / "probe.json", tmp / "bus.toml"
    with RawSocket(CHANNEL) as witness:
        sim = start(
            candiag_cmd(
                "simulate", "--protocol", "infy", "-i", "socketcan", "-c", CHANNEL,
                "-d", str(SIM_SECONDS), "-q",
            ),
            tmp / "simulate.out",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 240
            while not witness.receive(0.5, limit=1):  # the simulator is sending
                assert sim.poll() is None, (tmp / "simulate.out").read_text()
                assert time.monotonic() < deadline, "the simulator sent nothing in 240 s"
            time.sleep(2.0)  # the controller has asked every module
            done = run_candiag(
                "probe", "-i", "socketcan", "-c", CHANNEL, "--listen", "8",
                "--json", str(out_json), "--config-snippet", str(snippet),
                timeout=400,
            )  # fmt: skip
        finally:
            stop(sim)
    yield Probed(
        done.returncode,
        done.stdout,
        done.stderr,
        json.loads(out_json.read_text()) if out_json.exists() else {},
        snippet.read_text() if snippet.exists() else "",
    )


def test_probe_says_a_vcan_has_no_rate_and_does_not_scan(probed: Probed) -> None:
    assert probed.returncode == 0, probed.stdout + probed.stderr
    link_json = probed.result["link"]
    assert isinstance(link_json, dict)
    assert (link_json["kind"], link_json["up"], link_json["bitrate"]) == ("vcan", True, None)
    assert probed.result["bitrate"] is None and probed.result["scan"] == []
    said = "Link: vcan0 is a virtual CAN link (vcan): it has no bitrate, so the rate cannot be read"
    assert said in probed.stdout
    assert "Bitrate: unknown (the link vcan0 reports no rate)" in probed.stdout
    assert "listening at" not in probed.stderr  # no per-rate scan
    assert "# bitrate unknown: the link reports none" in probed.snippet


def test_probe_identifies_the_pack_and_its_addresses_on_vcan(probed: Probed) -> None:
    ident = probed.result["identification"]
    assert isinstance(ident, dict)
    assert ident["pack"] == "infy_v113.dbc", ident
    best = ident["best"]
    assert best["confidence"] >= 0.9, best
    assert best["controller_address"] == 0xF0
    assert best["modules_answering"] == [1, 2, 3, 4]
    assert best["modules_asked_but_silent"] == []
    assert "Protocol: infy_v1.13 (infy_v113.dbc)" in probed.stdout
    assert "modules asked but silent: none" in probed.stdout
    assert 'dbc = ["' in probed.snippet and "expected = [1, 2, 3, 4]" in probed.snippet


def test_probe_on_vcan_down_says_so_and_listens_to_nothing(vcan0: str) -> None:
    link(vcan0, "down")
    try:
        done = run_candiag("probe", "-i", "socketcan", "-c", vcan0, "--json", "-", timeout=300)
    finally:
        link(vcan0, "up")
    assert done.returncode == 3, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["link"]["up"] is False and result["identification"] is None
    assert "vcan0 is down (operstate DOWN)" in result["identification_note"]


def test_recorded_vcan_outputs_are_what_ip_prints_here(vcan0: str) -> None:
    """tests/data/iproute2/vcan0_up.json (used by the host tests) has the keys ip prints now."""
    import subprocess

    recorded = json.loads(
        (Path(__file__).parents[1] / "data" / "iproute2" / "vcan0_up.json").read_text()
    )[0]
    now = json.loads(
        subprocess.run(
            ["ip", "-details", "-statistics", "-json", "link", "show", "dev", vcan0],
            capture_output=True, check=True, timeout=10, text=True,
        ).stdout
    )[0]  # fmt: skip
    assert now["linkinfo"] == recorded["linkinfo"] == {"info_kind": "vcan"}
    assert set(recorded) <= set(now)
