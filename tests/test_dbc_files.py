"""The reference charger DBCs in dbc/: strict loading, candiag attribute conventions, round trips."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import cantools
import pytest

from candiag.decode.dbc import KNOWN_ROLES

REPO = Path(__file__).resolve().parent.parent
DBC_DIR = REPO / "dbc"
DBC_FILES = sorted(DBC_DIR.glob("*.dbc"))
EXPECTED_FILES = {
    "power_module.dbc",
    "contactors.dbc",
    "dc_meter.dbc",
    "cooling.dbc",
    "insulation_monitor.dbc",
}
FAMILIES = {"power_module", "contactor", "dc_meter", "cooling", "imd"}


def _load(path: Path, caplog: pytest.LogCaptureFixture) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.DEBUG, logger="cantools"):
            db = cantools.database.load_file(str(path), strict=True)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, f"{path.name}: cantools logged {[r.getMessage() for r in noisy]}"
    return db


def _role(signal: Any) -> str | None:
    attrs = signal.dbc.attributes if signal.dbc else {}
    role = attrs["CandiagRole"].value if "CandiagRole" in attrs else None
    return str(role) if role else None


def test_all_reference_files_present() -> None:
    assert {p.name for p in DBC_FILES} == EXPECTED_FILES


def test_packaged_copy_is_the_same_files() -> None:
    packaged = REPO / "candiag" / "data" / "dbc"
    assert sorted(p.name for p in packaged.glob("*.dbc")) == sorted(EXPECTED_FILES)
    for path in DBC_FILES:
        assert (packaged / path.name).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("path", DBC_FILES, ids=lambda p: p.name)
def test_loads_strict_without_warnings(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = _load(path, caplog)
    assert db.messages, f"{path.name} has no messages"
    # Read as bytes: a non-ASCII unit would decode differently under cantools' cp1252.
    assert path.read_bytes().isascii()


@pytest.mark.parametrize("path", DBC_FILES, ids=lambda p: p.name)
def test_every_message_has_cycle_time_comment_and_family(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _load(path, caplog)
    for msg in db.messages:
        assert msg.cycle_time and msg.cycle_time > 0, f"{msg.name}: no GenMsgCycleTime"
        assert msg.comment and len(msg.comment) > 20, f"{msg.name}: no CM_ BO_ comment"
        family = msg.dbc.attributes["CandiagNodeFamily"].value
        assert family in FAMILIES, f"{msg.name}: family {family!r}"


@pytest.mark.parametrize("path", DBC_FILES, ids=lambda p: p.name)
def test_masked_messages_have_zero_address_bits(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = _load(path, caplog)
    for msg in db.messages:
        attrs = msg.dbc.attributes
        mask = int(attrs["CandiagNodeMask"].value) if "CandiagNodeMask" in attrs else 0
        assert msg.frame_id & mask == 0, f"{msg.name}: address bits set in {msg.frame_id:#x}"


def test_power_module_layout_follows_infy(caplog: pytest.LogCaptureFixture) -> None:
    db = _load(DBC_DIR / "power_module.dbc", caplog)
    commands = {}
    for msg in db.messages:
        assert msg.is_extended_frame
        assert msg.dbc.attributes["CandiagNodeMask"].value == 0xFF
        assert (msg.frame_id >> 22) & 0xF == 0x0A, "device field must be 0x0A"
        assert (msg.frame_id >> 8) & 0xFF == 0xF0, "destination must be the controller"
        assert msg.frame_id >> 26 == 0, "error code must be 0"
        commands[msg.name] = (msg.frame_id >> 16) & 0x3F
    assert commands["ModuleTelemetry"] == 0x03
    assert commands["ModuleStatus"] == 0x04
    assert commands["ModuleCapabilities"] == 0x0A
    # The reference example reply of module 1 is 0x0283F001.
    assert db.get_message_by_name("ModuleTelemetry").frame_id | 0x01 == 0x0283F001
    telemetry = db.get_message_by_name("ModuleTelemetry")
    assert all(s.is_float and s.byte_order == "big_endian" for s in telemetry.signals)


def test_roles_cover_what_health_and_diagnosis_need(caplog: pytest.LogCaptureFixture) -> None:
    roles: dict[str, set[str]] = {}
    for path in DBC_FILES:
        for msg in _load(path, caplog).messages:
            for sig in msg.signals:
                role = _role(sig)
                if role:
                    roles.setdefault(role, set()).add(f"{msg.name}.{sig.name}")
    # Every role the health and diagnosis code understands, plus the alarm bits it reads.
    alarms = {"communication_interrupt", "duplicate_address", "over_temperature", "fan"}
    for needed in sorted(KNOWN_ROLES | {f"alarm:{a}" for a in alarms}):
        assert needed in roles, f"no signal has role {needed}"
    assert roles["firmware"] == {
        "ModuleVersion.DCDC_Major",
        "ModuleVersion.DCDC_Minor",
        "ModuleVersion.PFC_Major",
        "ModuleVersion.PFC_Minor",
    }
    assert roles["alarm:duplicate_address"] == {"ModuleStatus.id_repeat_alarm"}
    assert "ModuleStatus.communication_interrupt_alarm" in roles["alarm:communication_interrupt"]


def test_a_real_multiplexed_message_exists(caplog: pytest.LogCaptureFixture) -> None:
    db = _load(DBC_DIR / "power_module.dbc", caplog)
    msg = db.get_message_by_name("ModuleRegister")
    assert msg.is_multiplexed()
    data = msg.encode({"Register": 0x1106, "AmbientTemperature": -7.25})
    assert data[:2] == b"\x11\x06" and data[2:4] == b"\x00\x00"
    assert int.from_bytes(data[4:8], "big", signed=True) == -7250
    decoded = msg.decode(data, decode_choices=False)
    assert decoded == {"Register": 0x1106, "AmbientTemperature": -7.25}


def _sample_values(msg: Any, mux_value: int | None) -> dict[str, float]:
    """A distinct in-range physical value per signal, exactly representable."""
    values: dict[str, float] = {}
    for i, sig in enumerate(msg.signals):
        if sig.is_multiplexer:
            assert mux_value is not None
            values[sig.name] = mux_value
            continue
        if sig.multiplexer_ids and mux_value not in sig.multiplexer_ids:
            continue
        if sig.is_float:
            values[sig.name] = 100.5 + i
            continue
        span = (1 << (sig.length - (1 if sig.is_signed else 0))) - 1
        raw = (i * 37 + 5) % (span + 1)
        if sig.is_signed and i % 2:
            raw = -raw
        values[sig.name] = sig.conversion.raw_to_scaled(raw, decode_choices=False)
    return values


@pytest.mark.parametrize("path", DBC_FILES, ids=lambda p: p.name)
def test_encode_decode_round_trip(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = _load(path, caplog)
    for msg in db.messages:
        mux_values: list[int | None] = [None]
        if msg.is_multiplexed():
            mux = next(s for s in msg.signals if s.is_multiplexer)
            mux_values = sorted({v for s in msg.signals for v in (s.multiplexer_ids or [])}) or [0]
            assert mux.choices, f"{msg.name}: the multiplexer should name its values"
        for mux_value in mux_values:
            values = _sample_values(msg, mux_value)
            data = msg.encode(values, strict=False)
            assert len(data) == msg.length
            decoded = msg.decode(data, decode_choices=False)
            for name, value in values.items():
                assert decoded[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (
                    f"{msg.name}.{name}"
                )
