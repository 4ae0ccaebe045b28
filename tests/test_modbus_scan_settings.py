"""``modbus scan`` skips a setting the port refuses and goes on; the no-answer finding's fix
names the device to open (not the port's config name) and says to stop what holds it.

The port is a real pty (Linux ptys refuse parity E: termios EINVAL) behind the simulated
meters; the diagnosis is fed by a real poller's snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from candiag.cli import main
from candiag.diagnosis.engine import DiagnosisEngine
from candiag.errors import PortUnavailableError, SettingUnsupportedError
from candiag.modbus.config import PortConfig
from candiag.modbus.link import SerialRtuLink
from candiag.modbus.poller import PortPoller
from candiag.modbus.profile import shipped_profile_names
from candiag.modbus.sim import SimulatedMeterLine


@pytest.fixture
def line() -> Iterator[SimulatedMeterLine]:
    with SimulatedMeterLine([("sdm630", 1), ("djsf1352", 2)], baudrate=9600) as sim:
        yield sim


def _refused_parity(port: str) -> str:
    """A parity this pty refuses once it was opened at 8N1 (Linux: E gives termios EINVAL
    after N, the order a scan tries them in); the tests need one to exist."""
    first = SerialRtuLink(port, 9600, "N")
    first.open()
    first.close()
    for parity in ("E", "O"):
        link = SerialRtuLink(port, 9600, parity)
        try:
            link.open()
        except SettingUnsupportedError:
            return parity
        link.close()
    pytest.skip("this platform's ptys accept every parity")


def test_a_refused_setting_is_its_own_error_and_the_port_still_opens(
    line: SimulatedMeterLine,
) -> None:
    parity = _refused_parity(line.port)
    with pytest.raises(SettingUnsupportedError, match=f"cannot use 9600 8{parity}1"):
        SerialRtuLink(line.port, 9600, parity).open()
    link = SerialRtuLink(line.port, 9600, "N")
    link.open()
    try:
        assert link.transact(1, 4, 0, 2, 0.5).outcome == "ok"
    finally:
        link.close()


def test_a_missing_port_is_not_a_refused_setting() -> None:
    with pytest.raises(PortUnavailableError) as err:
        SerialRtuLink("/dev/ttyNOPE9", 9600, "E").open()
    assert not isinstance(err.value, SettingUnsupportedError)


@pytest.mark.slow
def test_scan_skips_the_refused_setting_reports_it_and_goes_on(
    line: SimulatedMeterLine, capsys: pytest.CaptureFixture[str]
) -> None:
    parity = _refused_parity(line.port)
    profiles = len(shipped_profile_names())
    argv = ["modbus", "scan", "--port", line.port, "--ids", "1-3", "--baudrates", "9600"]
    argv += ["19200", "--parities", "N", parity, "--timeout", "0.2"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert f"9600 8{parity}1" in data["skipped"]
    assert "cannot use" in data["skipped"][f"9600 8{parity}1"]
    assert "19200 8N1" not in data["skipped"]
    # both meters found at 9600 8N1 (3 probes, 2 hits each probed with every profile) ...
    assert {(h["parity"], h["baudrate"], h["unit_id"]) for h in data["hits"]} == {
        ("N", 9600, 1),
        ("N", 9600, 2),
    }
    # ... and every setting after the refused one that the port took was probed (3 ids each)
    tried_after = 2 - sum(1 for label in data["skipped"] if label != f"9600 8{parity}1")
    assert data["requests"] == 3 + 2 * profiles + 3 * tried_after
    assert data["complete"] is True
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"skipped 9600 8{parity}1: the port refuses it" in out
    assert f"{len(data['skipped'])} of 4 settings could not be tried on this port" in out
    assert "2 device(s) answer" in out


def test_scan_of_a_missing_port_still_ends_with_a_link_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["modbus", "scan", "--port", "/dev/ttyNOPE9", "--ids", "1", "--parities", "E", "N"]
    assert main(argv) == 3
    assert "serial port /dev/ttyNOPE9 does not exist" in capsys.readouterr().err


def test_no_answer_fix_gives_the_device_path_and_says_to_stop_the_daemon(
    line: SimulatedMeterLine,
) -> None:
    config = PortConfig.from_mapping(
        {
            "name": "rs485",
            "port": line.port,
            "baudrate": 9600,
            "timeout": 0.05,
            "retries": 0,
            "gap": 0.0,
            "id_switch_pause": 0.0,
            "devices": [{"name": "ac_meter", "profile": "sdm630", "unit_id": 9}],  # silent id
        }
    )
    poller = PortPoller(config)
    try:
        for _ in range(3):
            poller.poll_once()
        device = poller.snapshot()[0].as_dict()
    finally:
        poller.stop()
    assert (device["port"], device["path"]) == ("rs485", line.port)
    engine = DiagnosisEngine()
    engine.update(0.0, [], [device])
    (finding,) = [f for f in engine.findings() if f.code == "MODBUS_NO_ANSWER"]
    assert f"candiag modbus scan --port {line.port}`" in finding.fix
    assert "--port rs485" not in finding.fix
    assert finding.fix.startswith("Stop the candiag daemon or monitor")
