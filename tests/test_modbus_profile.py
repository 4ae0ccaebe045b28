"""Meter profiles: shipped files, validation errors with key paths, block planning, decoding."""

from __future__ import annotations

import filecmp
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from candiag.errors import ProfileError, SafetyError
from candiag.modbus.profile import (
    DATA_TYPES,
    QuantityDef,
    decode_block,
    encode_value,
    find_profile,
    load_profile,
    parse_profile,
    register_value,
    shipped_profile_dir,
    shipped_profile_names,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"sdm630", "sdm120", "djsf1352", "isocha425hv"}


def _profile(**quantities: dict[str, Any]) -> dict[str, Any]:
    return {
        "meter": {"model": "Test meter"},
        "defaults": {"baudrate": 9600, "parity": "N", "stopbits": 1, "unit_id": 1},
        "limits": {"max_registers_per_request": 40, "max_gap_registers": 4},
        "quantities": quantities,
    }


def _q(
    register: int, function: int = 4, type_: str = "f32", unit: str = "V", **kw: Any
) -> dict[str, Any]:
    return {"register": register, "function": function, "type": type_, "unit": unit, **kw}


def test_every_shipped_profile_loads_with_its_documented_defaults() -> None:
    assert SHIPPED <= set(shipped_profile_names())
    sdm630, sdm120 = find_profile("sdm630"), find_profile("sdm120")
    djsf, bender = find_profile("djsf1352"), find_profile("isocha425hv")
    assert (sdm630.baudrate, sdm630.parity, sdm630.unit_id) == (9600, "N", 1)
    assert (sdm120.baudrate, sdm120.unit_id) == (2400, 1)
    assert (bender.baudrate, bender.parity, bender.unit_id) == (19200, "E", 3)
    assert djsf.quantity("voltage").exponent_register == 1
    assert djsf.quantity("energy_import").uncertain
    assert sdm630.quantity("energy_import").base_unit == "J"


def test_packaged_profiles_are_identical_to_the_repo_copies() -> None:
    repo_dir = REPO / "config" / "meters"
    names = sorted(p.name for p in repo_dir.glob("*.toml"))
    assert names == sorted(p.name for p in shipped_profile_dir().glob("*.toml"))
    match, mismatch, errors = filecmp.cmpfiles(
        repo_dir, shipped_profile_dir(), names, shallow=False
    )
    assert mismatch == [] and errors == [], "copy config/meters/*.toml to candiag/data/meters/"
    assert len(match) == len(names) >= 4


def test_sdm630_standard_set_is_read_in_at_most_three_requests() -> None:
    profile = find_profile("sdm630")
    assert len(profile.blocks) <= 3
    assert all(b.count <= profile.max_registers and b.function == 4 for b in profile.blocks)
    covered = {name for b in profile.blocks for name in b.quantities}
    assert covered == {q.name for q in profile.quantities}
    # The first block reaches from voltage L1 (0x0000) to export energy (0x004A + 2).
    assert (profile.blocks[0].address, profile.blocks[0].count) == (0, 0x4C)


def test_decimal_code_quantity_and_its_exponent_land_in_one_block() -> None:
    profile = find_profile("djsf1352")
    assert len(profile.blocks) == 1
    block = profile.blocks[0]
    registers = [0] * block.count
    registers[0], registers[1] = 4005, 2  # 4005 x 10^(2-3) V
    registers[2], registers[3] = (-1234) & 0xFFFF, 1  # int16, x 10^-2 A
    registers[12], registers[13] = 0x0001, 0x0002  # u32 high word first, Wh
    values = decode_block(profile, block, registers)
    assert values["voltage"] == pytest.approx(400.5)
    assert values["current"] == pytest.approx(-12.34)
    assert values["energy_import"] == pytest.approx((65536 + 2) * 3600.0)


def test_nan_floats_are_skipped_not_reported() -> None:
    profile = find_profile("sdm120")
    block = profile.blocks[0]
    registers = [0x7FC0, 0] + [0] * (block.count - 2)  # voltage is NaN
    values = decode_block(profile, block, registers)
    assert "voltage_l1" not in values and values["current_l1"] == 0.0


@pytest.mark.parametrize(
    ("quantities", "where"),
    [
        ({"voltage_l1": _q(0, type_="f16")}, "quantities.voltage_l1.type"),
        ({"voltage_l1": _q(0, unit="A")}, "quantities.voltage_l1.unit"),
        ({"voltage_l1": _q(0, word_order="middle")}, "quantities.voltage_l1.word_order"),
        ({"voltage_l1": _q(0, scle=2.0)}, "quantities.voltage_l1.scle"),
        ({"volts": _q(0)}, "quantities.volts"),
        ({"voltage_l1": _q(0, function=1)}, "quantities.voltage_l1.function"),
        ({"voltage_l1": _q(-1)}, "quantities.voltage_l1.register"),
        ({"voltage_l1": _q(0, scale=0)}, "quantities.voltage_l1.scale"),
        ({"voltage_l1": _q(0, exponent_register=5)}, "quantities.voltage_l1.exponent_register"),
        ({"voltage_l1": _q(0), "voltage_l2": _q(1)}, "quantities.voltage_l2.register"),
        ({"voltage_l1": _q(0, type_="f64")}, "expected a quantity"),
        ({}, "quantities: expected at least one"),
    ],
)
def test_invalid_profiles_are_rejected_naming_file_and_key_path(
    quantities: dict[str, Any], where: str
) -> None:
    data = _profile(**quantities)
    if where == "expected a quantity":
        data["limits"]["max_registers_per_request"] = 2
    with pytest.raises(ProfileError) as err:
        parse_profile(data, source="meters/test.toml", name="test")
    assert str(err.value).startswith("meters/test.toml:")
    assert where in str(err.value)


def test_overlap_error_names_both_quantities() -> None:
    data = _profile(voltage_l1=_q(0), current_l1=_q(1, unit="A"))
    with pytest.raises(ProfileError, match=r"quantities\.voltage_l1"):
        parse_profile(data, source="x.toml", name="x")


@pytest.mark.parametrize("function", [5, 6, 15, 16, 23])
def test_a_write_function_code_is_a_safety_error(function: int) -> None:
    data = _profile(voltage_l1=_q(0, function=function))
    with pytest.raises(SafetyError) as err:
        parse_profile(data, source="evil.toml", name="evil")
    assert str(err.value) == (
        "evil.toml: quantities.voltage_l1.function: expected 3 (holding registers) or 4 (input "
        f"registers), found function code {function}, which is not a read; candiag only reads "
        "Modbus (function codes 1-4) and never writes to a meter"
    )


def test_all_problems_are_listed_at_once() -> None:
    data = _profile(voltage_l1=_q(0, type_="f16"), current_l1=_q(10, unit="V"))
    data["defaults"]["parity"] = "X"
    with pytest.raises(ProfileError) as err:
        parse_profile(data, source="x.toml", name="x")
    text = str(err.value)
    assert "3 problems" in text and "defaults.parity" in text and "current_l1.unit" in text


def test_profile_files_errors_and_lookup(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[meter\nmodel = 1\n")
    with pytest.raises(ProfileError, match=r"broken\.toml:1:7: expected valid TOML, found a TOML"):
        load_profile(broken)
    with pytest.raises(ProfileError, match=r"known profiles: .*sdm630"):
        find_profile("no_such_meter")
    with pytest.raises(ProfileError, match="not found"):
        find_profile(str(tmp_path / "missing.toml"))
    custom = tmp_path / "my_meter.toml"
    custom.write_text(
        '[meter]\nmodel = "Mine"\n[quantities.frequency]\nregister = 7\nfunction = 3\n'
        'type = "u16"\nunit = "Hz"\nscale = 0.01\n'
    )
    profile = find_profile(str(custom))
    assert profile.name == "my_meter" and profile.blocks[0].address == 7


@given(
    data_type=st.sampled_from(sorted(DATA_TYPES)),
    word_order=st.sampled_from(["big", "little"]),
    value=st.floats(min_value=-16000, max_value=16000, allow_nan=False),
)
def test_encode_then_decode_round_trips(data_type: str, word_order: str, value: float) -> None:
    if data_type.startswith("u"):
        value = abs(value)
    q = QuantityDef(
        name="voltage", register=10, function=3, data_type=data_type, word_order=word_order,
        unit="V", base_unit="V", factor=1.0, scale=0.5,
    )  # fmt: skip
    registers = encode_value(q, value)
    assert len(registers) == q.count and all(0 <= r <= 0xFFFF for r in registers)
    decoded = register_value(q, registers, 10)
    tolerance = 0.5 if DATA_TYPES[data_type][2] else abs(value) * 1e-6 + 1e-9
    assert math.isclose(decoded, value, abs_tol=tolerance)


def test_word_order_little_swaps_words() -> None:
    big = QuantityDef("power", 0, 4, "u32", "big", "W", "W", 1.0)
    little = QuantityDef("power", 0, 4, "u32", "little", "W", "W", 1.0)
    assert register_value(big, [0x0001, 0x0000], 0) == 65536.0
    assert register_value(little, [0x0001, 0x0000], 0) == 1.0
