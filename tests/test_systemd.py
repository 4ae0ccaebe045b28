"""The shipped systemd units: `systemd-analyze verify` is clean, the sandbox scores <= 2.0."""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest
from external_tools import require_tool

SYSTEMD_DIR = Path(__file__).resolve().parents[1] / "systemd"
SERVICE = SYSTEMD_DIR / "candiag.service"
NETWORK = SYSTEMD_DIR / "80-can0.network"
EXEC_START = "/usr/local/bin/candiag"
MAX_EXPOSURE = 2.0


def _unit_lines(path: Path) -> list[tuple[str, str]]:
    """(key, value) of every directive, repeated keys kept (configparser would merge them)."""
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _verify(unit: Path) -> str:
    analyze = require_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    return (result.stdout + result.stderr).strip() + ("" if result.returncode == 0 else " [rc!=0]")


def _verifiable_copy(tmp_path: Path, text: str) -> Path:
    # verify insists that ExecStart's binary exists: point it at a stand-in in tmp_path,
    # changing nothing else.
    binary = tmp_path / "candiag"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    assert text.count(EXEC_START) == 1, "ExecStart must name /usr/local/bin/candiag exactly once"
    unit = tmp_path / "candiag.service"
    unit.write_text(text.replace(EXEC_START, str(binary)))
    return unit


def test_service_verifies_clean(tmp_path: Path) -> None:
    unit = _verifiable_copy(tmp_path, SERVICE.read_text())
    assert _verify(unit) == ""


def test_verify_would_catch_a_bad_directive(tmp_path: Path) -> None:
    # Proves the check above can fail: an unknown address family is reported.
    text = SERVICE.read_text().replace("AF_NETLINK", "AF_NETLINK AF_BOGUS")
    output = _verify(_verifiable_copy(tmp_path, text))
    assert "AF_BOGUS" in output


def _exposure(unit: Path) -> tuple[float, str]:
    analyze = require_tool("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert match, f"no exposure line in:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1)), match.group(2)


def test_service_sandbox_exposure_is_at_most_2() -> None:
    score, label = _exposure(SERVICE)
    assert score <= MAX_EXPOSURE, f"exposure {score} {label} > {MAX_EXPOSURE}"
    assert label in ("SAFE", "OK")


def test_weakening_the_sandbox_raises_the_score(tmp_path: Path) -> None:
    weak = tmp_path / "candiag.service"
    text = SERVICE.read_text()
    for directive in (
        "DynamicUser=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
    ):
        text = text.replace(f"\n{directive}\n", "\n")
    weak.write_text(text)
    assert _exposure(weak)[0] > _exposure(SERVICE)[0]


def test_service_contract() -> None:
    directives = _unit_lines(SERVICE)
    values: dict[str, list[str]] = {}
    for key, value in directives:
        values.setdefault(key, []).append(value)
    assert values["Type"] == ["notify"]
    assert values["WatchdogSec"] == ["30s"]
    assert values["Restart"] == ["on-failure"]
    assert values["ExecStart"] == [f"{EXEC_START} run --config /etc/candiag/candiag.toml"]
    assert values["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert values["SupplementaryGroups"] == ["dialout"]
    assert "char-ttyUSB rw" in values["DeviceAllow"]
    families = values["RestrictAddressFamilies"][0].split()
    assert {"AF_CAN", "AF_NETLINK", "AF_UNIX"} <= set(families)
    # Directives that would break CAN or serial access must stay out.
    for forbidden in ("PrivateNetwork", "PrivateUsers"):
        assert forbidden not in values
    assert values["PrivateDevices"] == ["no"]
    assert values["CapabilityBoundingSet"] == [""]


def _networkd_keys() -> bytes:
    binary = Path("/usr/lib/systemd/systemd-networkd")
    if not binary.exists():
        pytest.skip("systemd-networkd not installed (apt-get install systemd)")
    return binary.read_bytes()


def test_can_network_file_uses_only_keys_networkd_knows() -> None:
    # networkd has no offline checker; its gperf table holds every "Section.Key" it parses.
    known = _networkd_keys()
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(NETWORK)
    keys = [f"{section}.{key}" for section in parser.sections() for key in parser[section]]
    assert "CAN.BitRate" in keys
    unknown = [k for k in keys if f"\0{k}\0".encode() not in known]
    assert not unknown, f"keys systemd-networkd does not know: {unknown}"
    assert b"\0CAN.NoSuchKey\0" not in known


def test_can_network_file_is_listen_only_with_auto_restart() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(NETWORK)
    can = parser["CAN"]
    assert parser["Match"]["Name"] == "can0"
    assert can["BitRate"] == "500K"
    assert can["RestartSec"] == "100ms"
    assert can["ListenOnly"] == "yes"


@pytest.mark.parametrize("path", [SERVICE, NETWORK, SYSTEMD_DIR / "README.md"])
def test_files_are_shipped(path: Path) -> None:
    assert path.read_text().strip()
