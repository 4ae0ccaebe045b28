"""``candiag probe`` on SocketCAN: the link's rate and state read with ``ip -details -json``.

The seam is the ``ip`` program itself: a small executable prints a recorded iproute2 output
(tests/data/iproute2/, vcan ones recorded in the microVM) or fails as ``ip`` does, so the
real subprocess call and the real parser run.  The CLI tests put it first on ``PATH``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from candiag.health.linkstats import link_rate, read_link

DATA = Path(__file__).parent / "data" / "iproute2"
REPO = Path(__file__).resolve().parents[1]

FAKE_IP = f"""#!{sys.executable}
import os, sys, time
with open(os.environ["FAKE_IP_ARGS"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(float(os.environ.get("FAKE_IP_SLEEP", "0")))
sys.stderr.write(os.environ.get("FAKE_IP_STDERR", ""))
path = os.environ.get("FAKE_IP_OUTPUT")
if path:
    sys.stdout.write(open(path).read())
sys.exit(int(os.environ.get("FAKE_IP_RC", "0")))
"""


@pytest.fixture
def fake_ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory holding an ``ip`` that answers from the FAKE_IP_* variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ip = bin_dir / "ip"
    ip.write_text(FAKE_IP)
    ip.chmod(ip.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_IP_ARGS", str(tmp_path / "ip-args"))
    return bin_dir


def _answer(
    monkeypatch: pytest.MonkeyPatch, output: str | None, rc: int = 0, stderr: str = ""
) -> None:
    if output is None:
        monkeypatch.delenv("FAKE_IP_OUTPUT", raising=False)
    else:
        monkeypatch.setenv("FAKE_IP_OUTPUT", output)
    monkeypatch.setenv("FAKE_IP_RC", str(rc))
    monkeypatch.setenv("FAKE_IP_STDERR", stderr)


def _text_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "out.json"
    path.write_text(text)
    return str(path)


def test_a_configured_can_link_gives_its_rate_and_state(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, str(DATA / "can0_250k_error_passive.json"))
    reading = read_link("can0", ip=str(fake_ip / "ip"))
    rate = link_rate(reading)
    assert (rate.kind, rate.up, rate.bitrate, rate.state, rate.listenable) == (
        "can",
        True,
        250_000,
        "error_passive",
        True,
    )
    assert "250,000 bit/s set on the link can0 (sample point 0.875)" in rate.text
    assert "controller error_passive" in rate.text
    asked = Path(os.environ["FAKE_IP_ARGS"]).read_text().split()
    assert asked == ["-details", "-statistics", "-json", "link", "show", "dev", "can0"]


def test_a_can_fd_link_that_is_down_says_so_and_is_not_listened_to(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, str(DATA / "can1_fd_bus_off_down.json"))
    rate = link_rate(read_link("can1", ip=str(fake_ip / "ip")))
    assert (rate.bitrate, rate.data_bitrate, rate.up, rate.listenable) == (
        500_000,
        2_000_000,
        False,
        False,
    )
    assert "CAN FD data phase 2,000,000 bit/s" in rate.text
    assert "can1 is down (operstate DOWN)" in rate.text and "sudo ip link set can1 up" in rate.text
    assert "controller bus_off" in rate.text


def test_a_can_link_never_configured_has_no_rate_and_says_how_to_set_one(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, str(DATA / "can0_no_bitrate_down.json"))
    rate = link_rate(read_link("can0", ip=str(fake_ip / "ip")))
    assert rate.bitrate is None and rate.state == "stopped" and not rate.listenable
    assert "can0 has no bitrate set: set one with `sudo ip link set can0 down;" in rate.text
    assert "type can bitrate <N> listen-only on" in rate.text


@pytest.mark.parametrize("recorded", ["vcan0_up.json", "vcan0_up_details.json", "vxcan0_up.json"])
def test_a_virtual_link_has_no_rate_to_read(
    recorded: str, fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, str(DATA / recorded))
    device = recorded.split("_", 1)[0]
    rate = link_rate(read_link(device, ip=str(fake_ip / "ip")))
    assert (rate.bitrate, rate.up, rate.listenable, rate.state) == (None, True, True, None)
    assert f"{device} is a virtual CAN link" in rate.text
    assert "the rate cannot be read" in rate.text


def test_a_virtual_link_that_is_down_is_not_listened_to(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, str(DATA / "vcan0_down.json"))
    rate = link_rate(read_link("vcan0", ip=str(fake_ip / "ip")))
    assert not rate.up and not rate.listenable
    assert "the rate cannot be read" in rate.text and "vcan0 is down" in rate.text


def test_missing_ip_is_said_in_words() -> None:
    rate = link_rate(read_link("can0", ip="candiag-no-such-ip-program"))
    assert rate.bitrate is None and rate.kind is None
    assert "`candiag-no-such-ip-program` was not found on PATH" in rate.text
    assert rate.listenable  # not knowing the rate is no reason not to listen


def test_a_missing_device_is_what_ip_says_and_not_listened_to(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, None, rc=1, stderr='Device "can7" does not exist.\n')
    rate = link_rate(read_link("can7", ip=str(fake_ip / "ip")))
    assert 'failed: Device "can7" does not exist.' in rate.text
    assert not rate.listenable


@pytest.mark.parametrize(
    ("output", "why"),
    [
        ('[{"ifname":"can0","flags":["UP"', "not iproute2's JSON"),
        ("", "not iproute2's JSON"),
        ('[{"ifname":"can9"}]', "no link can0"),
        ("42", "no link can0"),
        ('{"ifname":"can0","flags":"UP","linkinfo":["can"],"stats64":7}', ""),
    ],
)
def test_malformed_output_is_said_or_read_defensively(
    output: str, why: str, fake_ip: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _answer(monkeypatch, _text_file(tmp_path, output))
    reading = read_link("can0", ip=str(fake_ip / "ip"))
    rate = link_rate(reading)
    assert rate.bitrate is None
    if why:
        assert reading.stats is None and why in rate.text, rate.text
    else:  # odd types inside valid JSON: no kind, not up, nothing invented
        assert reading.stats is not None and rate.kind is None and not rate.up
        assert "can0 is not a CAN link (kind none)" in rate.text


def test_ip_that_hangs_is_given_up(fake_ip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, str(DATA / "vcan0_up.json"))
    monkeypatch.setenv("FAKE_IP_SLEEP", "5")
    rate = link_rate(read_link("vcan0", timeout=0.3, ip=str(fake_ip / "ip")))
    assert "did not answer in 0.3 s" in rate.text


# -- the CLI ------------------------------------------------------------------------------------
def _probe(fake_ip: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{fake_ip}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [sys.executable, "-m", "candiag", "probe", "-i", "socketcan", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_probe_on_a_link_that_is_down_reports_its_rate_and_does_not_listen(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _answer(monkeypatch, str(DATA / "can1_fd_bus_off_down.json"))
    done = _probe(fake_ip, "-c", "can1")
    assert done.returncode == 3, done.stderr
    out = done.stdout
    assert "Bitrate: 500,000 bit/s (set on the link can1 (ip link); candiag does not" in out
    assert "Link: 500,000 bit/s set on the link can1" in out and "can1 is down" in out
    assert "sudo ip link set <if> down" in out  # how to set another rate (candiag does not)
    assert "Protocol: not identified (not listened: " in out
    assert "bitrate = 500000" in out  # the config snippet keeps the link's rate
    assert "listening" not in done.stderr  # nothing opened


def test_probe_json_carries_the_link(fake_ip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, str(DATA / "vcan0_down.json"))
    done = _probe(fake_ip, "-c", "vcan0", "--json", "-")
    assert done.returncode == 3, done.stderr
    result = json.loads(done.stdout)
    assert result["bitrate"] is None and result["identification"] is None
    link = result["link"]
    assert (link["kind"], link["up"], link["listenable"]) == ("vcan", False, False)
    assert result["bitrate_note"] is None  # a vcan has no rate to set
    assert result["scan"] == []  # no bitrate scan on SocketCAN


def test_probe_on_an_up_link_reads_the_rate_before_listening(
    fake_ip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No scan on SocketCAN: the rate is the link's.  (This kernel has no AF_CAN, so opening
    the socket fails after the link was read; the microVM test listens for real.)"""
    _answer(monkeypatch, str(DATA / "can0_250k_error_passive.json"))
    done = _probe(fake_ip, "-c", "can0", "--listen", "0.2")
    assert "probe: SocketCAN link: 250,000 bit/s set on the link can0" in done.stderr
    assert "listening at" not in done.stderr  # no per-rate scan
    if done.returncode == 0:  # a kernel with SocketCAN but no can0 frames
        assert "Bitrate: 250,000 bit/s" in done.stdout
    else:
        assert done.returncode == 3 and "cannot open" in done.stderr
