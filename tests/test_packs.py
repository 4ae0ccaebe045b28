"""The protocol packs (candiag/data/packs): strict loading, the Candiag* declarations, and
golden frames built by hand from the public sources (EVerest/everest-core at 23c9dac1, the
F1atline Sinexcel README, foxBMS's vendor DBCs), decoded by cantools with the pack.

Every golden frame cites where its bytes come from; paths are in EVerest/everest-core unless
another repository is named.
"""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path
from typing import Any

import cantools
import numpy as np
import pytest

from candiag.decode.dbc import KNOWN_ROLES, PACK_ROLES, load_dbc_paths
from tests.pack_resolver import MASKS, PackResolver, attr

REPO = Path(__file__).resolve().parent.parent
PACKS = REPO / "candiag" / "data" / "packs"
PACK_FILES = sorted(PACKS.glob("*.dbc"))
POWER_MODULE_PACKS = {
    "infy_v113.dbc",
    "infy_beg1k075g.dbc",
    "uugreen_ur1000x0.dbc",
    "winline_v150.dbc",
    "dpm1000.dbc",
    "huawei_r100040gx.dbc",
    "sinexcel.dbc",
}
ALL_PACKS = POWER_MODULE_PACKS | {"isabellenhuette_ivt_s.dbc", "bender_iso165c.dbc"}
DIRECTIONS = {"", "request", "reply", "both", "report"}
# What the public sources say (docs/protocols.md): poll period, module self-off, controller
# drop, per-request reply timeout (ms; 0 = not published), bitrate (0 = not stated).
FACTS = {
    "infy_v113.dbc": ("infy_v1.13", 0xF0, 1000, 10000, 15000, 0, 125000),
    "infy_beg1k075g.dbc": ("infy_beg1k075g", 0xF0, 350, 0, 0, 0, 125000),
    "uugreen_ur1000x0.dbc": ("uugreen_ur1000x0", 1, 100, 0, 5000, 0, 0),
    "winline_v150.dbc": ("winline_v1.50", 0xF0, 1000, 0, 15000, 0, 125000),
    "dpm1000.dbc": ("dpm1000", 0xF0, 250, 0, 0, 250, 0),
    "huawei_r100040gx.dbc": ("huawei_r100040gx", -1, 250, 0, 2000, 0, 0),
    "sinexcel.dbc": ("sinexcel", 0x0F0, 0, 0, 0, 0, 125000),
}
SOURCES = ("EVerest/everest-core at 23c9dac1", "F1atline/Sinexcel", "foxBMS/foxbms-2")


def _load(path: Path, caplog: pytest.LogCaptureFixture) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.DEBUG, logger="cantools"):
            db = cantools.database.load_file(str(path), strict=True)
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, f"{path.name}: cantools logged {[r.getMessage() for r in noisy]}"
    return db


@pytest.fixture(scope="module")
def packs() -> dict[str, Any]:
    return {p.name: cantools.database.load_file(str(p), strict=True) for p in PACK_FILES}


def test_every_pack_is_shipped() -> None:
    assert {p.name for p in PACK_FILES} == ALL_PACKS


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.name)
def test_pack_loads_strict_without_warnings(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = _load(path, caplog)
    assert db.messages
    assert path.read_bytes().isascii()
    text = path.read_text("ascii")
    head = text[text.index('CM_ "') : text.index('";', text.index('CM_ "'))]
    assert any(source in head for source in SOURCES), f"{path.name}: no public source cited"
    assert "docs/protocols.md" in head


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.name)
def test_pack_loads_through_candiag_strictly_without_warnings(path: Path) -> None:
    db = load_dbc_paths([path], strict=True)
    assert not db.warnings
    assert all(s.role is None or s.role in KNOWN_ROLES | PACK_ROLES or s.role.startswith("alarm:")
               for m in db.messages for s in m.signals)  # fmt: skip


def test_all_packs_load_together_and_claim_no_frame_twice() -> None:
    db = load_dbc_paths([PACKS], strict=True)
    assert not db.warnings
    assert len({m.name for m in db.messages}) == len(db.messages)


@pytest.mark.parametrize("name", sorted(FACTS))
def test_pack_declares_the_protocol_facts(name: str, packs: dict[str, Any]) -> None:
    db = packs[name]
    got = tuple(
        attr(db, a, None) if a == "CandiagProtocol" else int(attr(db, a, 0))
        for a in (
            "CandiagProtocol",
            "CandiagControllerAddress",
            "CandiagPollPeriodMs",
            "CandiagModuleTimeoutMs",
            "CandiagControllerTimeoutMs",
            "CandiagReplyTimeoutMs",
            "CandiagBitrate",
        )
    )
    assert got == FACTS[name]


@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.name)
def test_message_declarations_are_consistent(path: Path, packs: dict[str, Any]) -> None:
    db = packs[path.name]
    names = {m.name for m in db.messages}
    width = 0x1FFFFFFF
    for msg in db.messages:
        assert msg.comment and len(msg.comment) > 20, msg.name
        direction = attr(msg, "CandiagDirection", "")
        assert direction in DIRECTIONS, (msg.name, direction)
        # The controller's frames are not the module's presence: requests are "<family>_poll"
        # (or have no family), answers carry the module's family.
        family = str(attr(msg, "CandiagNodeFamily", "") or "")
        if direction == "request":
            assert family == "" or family.endswith("_poll"), (msg.name, family)
        elif direction in ("reply", "report"):
            assert family and not family.endswith("_poll"), (msg.name, family)
        else:
            assert not family.endswith("_poll"), (msg.name, family)
        reply = attr(msg, "CandiagReply", "")
        if direction in ("request", "both"):
            assert reply in names, f"{msg.name}: CandiagReply {reply!r}"
            assert attr(db.get_message_by_name(reply), "CandiagDirection") in ("reply", "both")
        masks = [int(attr(msg, m, 0) or 0) for m in MASKS]
        for i, a in enumerate(masks):
            assert a & ~width == 0, msg.name
            for b in masks[i + 1 :]:
                assert a & b == 0, f"{msg.name}: overlapping identifier fields"
        node_mask = int(attr(msg, "CandiagNodeMask", 0) or 0)
        assert msg.frame_id & node_mask == 0, f"{msg.name}: node bits set in the BO_ id"
        broadcast = int(attr(msg, "CandiagBroadcastNode", -1))
        if broadcast >= 0:
            assert node_mask and broadcast <= node_mask >> (
                (node_mask & -node_mask).bit_length() - 1
            )
        error_mask = int(attr(msg, "CandiagErrorMask", 0) or 0)
        assert msg.frame_id & error_mask == 0, msg.name
        for sig in msg.signals:
            role = attr(sig, "CandiagRole", "")
            if role == "reply_error":
                assert attr(sig, "CandiagOkValue") is not None and sig.choices, sig.name
            if role == "direction":
                assert attr(sig, "CandiagRequestValues") and attr(sig, "CandiagReplyValues")
            if sig.is_float:
                assert sig.length == 32, sig.name


def test_id_error_tables_name_the_published_codes(packs: dict[str, Any]) -> None:
    for name, codes in (
        ("infy_v113.dbc", {0: "Normal", 2: "CommandInvalid", 3: "DataInvalid", 7: "InStartProcessing"}),
        ("infy_beg1k075g.dbc", {0: "Normal", 2: "CommandInvalid", 3: "DataInvalid", 7: "InStartProcessing"}),
    ):  # fmt: skip
        db = packs[name]
        table = db.dbc.value_tables[attr(db, "CandiagIdErrorTable")]
        assert dict(table) == codes


def test_reply_error_bytes_name_the_published_codes(packs: dict[str, Any]) -> None:
    wanted = {0xF0, 0xF1, 0xF2, 0xF3, 0xF4}
    for name in ("winline_v150.dbc", "dpm1000.dbc", "sinexcel.dbc"):
        msg = next(m for m in packs[name].messages if attr(m, "CandiagDirection") == "reply")
        sig = next(s for s in msg.signals if attr(s, "CandiagRole") == "reply_error")
        assert set(sig.choices) == wanted and attr(sig, "CandiagOkValue") == 0xF0
    huawei = packs["huawei_r100040gx.dbc"].get_message_by_name("Huawei_QueryAllRealtimeData_Reply")
    sig = next(s for s in huawei.signals if attr(s, "CandiagRole") == "reply_error")
    assert {int(k): str(v) for k, v in sig.choices.items()} == {
        0: "Success",
        2: "InvalidCommand",
        3: "AddressIdentificationInProgress",
    }


def test_roles_cover_the_alarms_the_issue_names(packs: dict[str, Any]) -> None:
    roles: dict[str, set[str]] = {}
    for name, db in packs.items():
        roles[name] = {
            str(attr(s, "CandiagRole"))
            for m in db.messages
            for s in m.signals
            if attr(s, "CandiagRole")
        }
    for name in ("infy_v113.dbc", "winline_v150.dbc", "dpm1000.dbc", "sinexcel.dbc"):
        assert {"alarm:communication_interrupt", "alarm:over_temperature", "alarm:fan"} <= roles[
            name
        ]
    for name in ("infy_v113.dbc", "dpm1000.dbc", "sinexcel.dbc"):
        assert "alarm:duplicate_address" in roles[name]
    for name in ("winline_v150.dbc", "dpm1000.dbc", "sinexcel.dbc"):
        assert "alarm:derating" in roles[name]
    # DPM1000 and the Infy packs publish no firmware register; the others do.
    for name in ("winline_v150.dbc", "huawei_r100040gx.dbc", "sinexcel.dbc"):
        assert "firmware" in roles[name]
    # Serial numbers: Infy barcode, UUGreen ReadSN, Winline 0x0054/0x0055, Huawei 0x002 (none
    # is published for BEG1K075G, DPM1000 or Sinexcel).
    for name in (
        "infy_v113.dbc",
        "uugreen_ur1000x0.dbc",
        "winline_v150.dbc",
        "huawei_r100040gx.dbc",
    ):
        assert "serial" in roles[name], name
    assert {"output_voltage", "output_current"} <= set.intersection(
        *(roles[n] for n in POWER_MODULE_PACKS)
    )


# -- golden frames --------------------------------------------------------------------------


def _f32(value: float) -> bytes:
    return struct.pack(">f", value)


def _decode(
    path: str, can_id: int, payload: bytes, extended: bool = True
) -> tuple[Any, Any, dict[str, Any]]:
    resolver = PackResolver(PACKS / path)
    found = resolver.resolve(can_id, payload, extended)
    assert found is not None, f"{can_id:08X} not in {path}"
    return found.message, found, found.message.decode(payload, decode_choices=False)


def test_infy_read_vi_request_and_reply() -> None:
    # CanPackets.cpp encode_can_id (l.23-39): src 7..0, dst 15..8, cmd 21..16, device 25..22;
    # InfyCanDevice.cpp send_command_impl (l.241-252) uses device 0x0A, error 0; read requests
    # carry 8 zero bytes (InfyCanDevice.hpp send_command, l.46-50). Controller -> module 1:
    msg, res, values = _decode("infy_v113.dbc", 0x028301F0, bytes(8))
    assert (msg.name, res.node, res.peer, res.direction) == (
        "Infy_ReadVI_Request",
        1,
        0xF0,
        "request",
    )
    assert values["Padding"] == 0
    # The reply (destination 0xF0, source 1): BE float32 V and I (CanPackets.cpp ReadModuleVI l.139-143).
    msg, res, values = _decode("infy_v113.dbc", 0x0283F001, _f32(750.5) + _f32(-2.25))
    assert (msg.name, res.node, res.peer, res.direction) == ("Infy_ReadVI_Reply", 1, 0xF0, "reply")
    assert values == {"OutputVoltage": 750.5, "OutputCurrent": -2.25}
    assert (
        attr(msg, "CandiagReply") is None
        and attr(
            PackResolver(PACKS / "infy_v113.dbc").db.get_message_by_name("Infy_ReadVI_Request"),
            "CandiagReply",
        )
        == "Infy_ReadVI_Reply"
    )


def test_infy_status_bits_barcode_setpoints_and_error_code() -> None:
    # PowerModuleStatus (CanPackets.cpp l.60-95): status0 = b7, status1 = b6, status2 = b5;
    # status1 bit7 communication_interrupt_alarm, bit4 over_temperature, status2 bit1 id_repeat.
    _, res, values = _decode("infy_v113.dbc", 0x0284F005, bytes([0, 0, 0, 0, 0, 0x02, 0x90, 0x01]))
    assert res.node == 5
    assert values["communication_interrupt_alarm"] == 1 and values["over_temperature_alarm"] == 1
    assert values["id_repeat_alarm"] == 1 and values["output_short_current"] == 1
    assert values["fan_fault_alarm"] == 0 and values["dc_side_off"] == 0
    # Barcode "081807123451V1704" -> 56 13 0C 15 A3 FB 06 A8 (CanPackets.cpp l.174-176), printed
    # Infy[0x00/SN_130C15A3FB06A8_V] (README l.224).
    _, res, values = _decode("infy_v113.dbc", 0x028BF000, bytes.fromhex("56130C15A3FB06A8"))
    assert chr(values["BarcodeChar13"]) == "V" and values["BarcodePacked"] == 0x130C15A3FB06A8
    # SetModuleVI: u32 mV, u32 mA (CanPackets.cpp l.200-205): 750 V, 50 A to module 2.
    _, res, values = _decode("infy_v113.dbc", 0x029C02F0, struct.pack(">II", 750_000, 50_000))
    assert (res.node, res.direction) == (2, "request") and values == {
        "Voltage": 750.0,
        "Current": 50.0,
    }
    # A reply with identifier error code 3 (bits 28..26; BEG1K075G CanPackets.hpp l.49-53):
    # the same message, the code in the error field, named by the pack's table.
    msg, res, _ = _decode("infy_v113.dbc", 0x0283F001 | (3 << 26), bytes(8))
    db = PackResolver(PACKS / "infy_v113.dbc").db
    assert msg.name == "Infy_ReadVI_Reply" and res.error == 3
    assert db.dbc.value_tables[attr(db, "CandiagIdErrorTable")][res.error] == "DataInvalid"


def test_candiag_loader_resolves_infy_nodes_and_directions_today() -> None:
    # What the current loader does with CandiagNodeMask: request and reply of one module.
    db = load_dbc_paths([PACKS / "infy_v113.dbc"])
    ids = np.array([0x028305F0, 0x0283F005, 0x028405F0, 0x0284F03F], np.uint32)
    message, node = db.match(ids, np.ones(4, bool))
    names = [db.messages[i].name for i in message]
    assert names == [
        "Infy_ReadVI_Request",
        "Infy_ReadVI_Reply",
        "Infy_ReadStatus_Request",
        "Infy_ReadStatus_Reply",
    ]
    assert node.tolist() == [5, 5, 5, 0x3F]


def test_beg1k075g_register_read_write_and_status() -> None:
    # SystemDCVoltage request: b0 0x10, b1 0x01, u16 0, u32 value (CanPackets.cpp l.100-107),
    # read to broadcast 0x3F with device 0x0A (encode_can_id l.27-36, InfyCanDevice.cpp l.243).
    msg, res, values = _decode(
        "infy_beg1k075g.dbc", 0x02A33FF0, bytes([0x10, 0x01, 0, 0, 0, 0, 0, 0])
    )
    assert (msg.name, res.direction, values["Register"]) == (
        "BEG_ReadBroadcast_Request",
        "request",
        0x1001,
    )
    # The answer: value/1000 in b4-7 (InfyCanDevice.cpp l.63-64, CanPackets.cpp l.85-87).
    msg, res, values = _decode(
        "infy_beg1k075g.dbc", 0x02A3F000, bytes([0x10, 0x01, 0, 0]) + struct.pack(">I", 750_250)
    )
    assert msg.name == "BEG_Read_Reply" and values["SystemDCVoltage"] == pytest.approx(750.25)
    # 0x1110 status: the V1.13 status bytes at b5..b7 (CanPackets.cpp l.166-190).
    _, _, values = _decode(
        "infy_beg1k075g.dbc", 0x02A3F000, bytes([0x11, 0x10, 0, 0, 0, 0x02, 0x80, 0])
    )
    assert values["communication_interrupt_alarm"] == 1 and values["id_repeat_alarm"] == 1
    # OnOff write: 0x11 0x10, u16 0, u16 0, u16 0xA0 on (CanPackets.cpp l.251-259).
    _, res, values = _decode(
        "infy_beg1k075g.dbc", 0x02A43FF0, bytes([0x11, 0x10, 0, 0, 0, 0, 0, 0xA0])
    )
    assert values["SetOnOff"] == 0xA0
    # Power factor x1000 written to group 0, device 0x0B (CanPackets.cpp l.296-303, InfyCanDevice.cpp l.291-293).
    msg, res, values = _decode(
        "infy_beg1k075g.dbc", 0x02E400F0, bytes([0x21, 0x05, 0, 0]) + struct.pack(">i", 1000)
    )
    assert (msg.name, res.group) == ("BEG_WriteGroup_Request", 0) and values[
        "SetPowerFactor"
    ] == 1.0


def test_uugreen_read_set_and_serial_frames() -> None:
    # encode_can_id (UUGreenPower_UR1000X0 CanPackets.cpp l.77-84): module 1 -> 0x02204000;
    # payload b0 = group<<4 | type, b1 command, b4-7 u32 (l.92-103). ReadData Vout:
    _msg, res, values = _decode(
        "uugreen_ur1000x0.dbc", 0x02204000, bytes([0x02, 0x00, 0, 0, 0, 0, 0, 0])
    )
    assert (res.node, res.peer, res.direction) == (1, 1, "request")
    assert values["ReadCommand"] == 0 and "Read_Vout" not in values
    # The answer, with the module's date and serial bits in the identifier (13..0); value/1000 V
    # (UUGreenCanDevice.cpp l.154-155).
    can_id = 0x02204000 | (7 << 9) | 0x15
    _, res, values = _decode(
        "uugreen_ur1000x0.dbc", can_id, bytes([0x03, 0x00, 0, 0]) + struct.pack(">I", 750_000)
    )
    assert (res.node, res.serial, res.direction, values["Read_Vout"]) == (
        1,
        (7 << 9) | 0x15,
        "reply",
        750.0,
    )
    # SetData IoutLimit (UUGreenCanDevice.cpp l.77-78: current * 1000 / modules).
    _, res, values = _decode(
        "uugreen_ur1000x0.dbc", 0x02208000, bytes([0x00, 0x03, 0, 0]) + struct.pack(">I", 20_000)
    )
    assert (res.node, res.direction, values["Set_IoutLimit"]) == (2, "request", 20.0)
    # ReadSerialNumberResponse: b2-3 module info, b4-7 serial (UUGreenCanDevice.cpp l.119-126, 185-188).
    _, res, values = _decode(
        "uugreen_ur1000x0.dbc",
        0x02204000 | 0x3FFF,
        bytes([0x04, 0x05, 0x04, 0x01]) + struct.pack(">I", 123456),
    )
    assert (res.direction, values["SN_ModuleInfo"], values["SN_SerialNumber"]) == (
        "reply",
        0x0401,
        123456,
    )


def test_winline_read_reply_status_error_and_set() -> None:
    # encode_can_id (Winline CanPackets.cpp l.26-45) and build_read_command (l.79-98):
    # controller 0xF0 -> module 1, read voltage.
    msg, res, values = _decode(
        "winline_v150.dbc", 0x06080F80, bytes([0x10, 0, 0x00, 0x01, 0, 0, 0, 0])
    )
    assert (msg.name, res.node, res.peer, res.direction) == ("Winline_Request", 1, 0xF0, "request")
    assert values["ReadRegister"] == 0x0001
    # Module 1 -> controller 0x060F8008: b0 0x41 float, b1 0xF0, register, float32 (ReadVoltage l.254-266).
    msg, res, values = _decode(
        "winline_v150.dbc", 0x060F8008, bytes([0x41, 0xF0, 0, 1]) + _f32(750.5)
    )
    assert (msg.name, res.node, res.direction) == ("Winline_Reply", 1, "reply")
    assert values["ErrorCode"] == 0xF0 and values["Voltage"] == 750.5
    # Status 0x0040 (PowerModuleStatus l.139-193): bit 16 CAN communication failure, 27 fan, 24 derating.
    status = (1 << 16) | (1 << 27) | (1 << 24)
    _, _, values = _decode(
        "winline_v150.dbc", 0x060F8010, bytes([0x42, 0xF0, 0, 0x40]) + struct.pack(">I", status)
    )
    assert values["can_communication_failure"] == 1 and values["fan_fault"] == 1
    assert values["temperature_derating"] == 1 and values["module_fault"] == 0
    # An error answer 0xF2 (CanPackets.hpp ERROR_FAULT, l.32-36): the register, no value.
    _, _, values = _decode(
        "winline_v150.dbc", 0x060F8008, bytes([0x41, 0xF2, 0, 1, 0x44, 0x3B, 0x80, 0])
    )
    assert (
        values["ErrorCode"] == 0xF2 and values["RejectedRegister"] == 1 and "Voltage" not in values
    )
    # SetCurrent: A x 1024 integer (l.493-500): 50 A.
    _, _, values = _decode(
        "winline_v150.dbc", 0x06080F80, bytes([0x03, 0, 0x00, 0x1B]) + struct.pack(">I", 50 * 1024)
    )
    assert values["SetOutputCurrent"] == 50.0


def test_dpm1000_request_reply_alarm() -> None:
    # set_header (lib/everest/can_dpm1000/src/dpm1000.cpp l.25-33): monitor 0xF0 -> device 0 is
    # 0x06080783, b1 0xF0; request_data (l.45-53): b0 0x01, b2-3 the value type, big-endian.
    msg, res, values = _decode(
        "dpm1000.dbc", 0x06080783, bytes([0x01, 0xF0, 0x00, 0x01, 0, 0, 0, 0])
    )
    assert (msg.name, res.node, res.direction, values["ReadValueType"]) == (
        "DPM1000_Request",
        0,
        "request",
        1,
    )
    # set_data of a float: bytes reversed into big-endian (can_broker.cpp l.168-179): voltage 400 V.
    _, _, values = _decode("dpm1000.dbc", 0x06080783, bytes([0x03, 0xF0, 0x00, 0x21]) + _f32(400.0))
    assert values["SetVoltage"] == 400.0
    # The answer (handle_can_input l.198-221: b4-7 big-endian) and the alarm word (dpm1000.hpp
    # Alarm l.64-89: bit 10 ID repetition, bit 16 CAN communication fault).
    msg, res, values = _decode(
        "dpm1000.dbc", 0x060F8003, bytes([0x41, 0xF0, 0x00, 0x01]) + _f32(401.5)
    )
    assert (msg.name, res.direction, values["Voltage"]) == ("DPM1000_Reply", "reply", 401.5)
    alarm = struct.pack(">I", (1 << 10) | (1 << 16))
    _, _, values = _decode("dpm1000.dbc", 0x060F8003, bytes([0x41, 0xF0, 0x00, 0x40]) + alarm)
    assert values["id_number_repetition"] == 1 and values["can_communication_fault"] == 1
    # An error answer: b0 bit 7 (is_error_flag_set, dpm1000.hpp l.120-122), b1 0xF1.
    _, _, values = _decode("dpm1000.dbc", 0x060F800B, bytes([0xC1, 0xF1, 0x00, 0x01, 0, 0, 0, 0]))
    assert (values["ErrorFlag"], values["ErrorType"], values["RejectedValueType"]) == (1, 0xF1, 1)


def test_huawei_realtime_query_answer_version() -> None:
    # encode_can_id (Huawei_R100040Gx CanPackets.cpp l.197-215) to the broadcast address 0, and
    # the real-time query of tx_thread (HwCanDevice.cpp l.223-225): b3 0xAA, mask bit 22.
    msg, res, values = _decode(
        "huawei_r100040gx.dbc", 0x068040FC, bytes([0, 0, 0, 0xAA]) + struct.pack(">I", 1 << 22)
    )
    assert (msg.name, res.node, res.direction) == (
        "Huawei_QueryAllRealtimeData_Request",
        0,
        "request",
    )
    assert values["BitConfiguration"] == 0xAA and values["Query_OutputVoltageCurrentStatus"] == 1
    # Module 0x78 answers 0x191: low 16 bits V x10, high 16 bits I x10 (HwCanDevice.cpp l.143-145).
    msg, res, values = _decode(
        "huawei_r100040gx.dbc", 0x06F8407C, bytes([0x01, 0x91, 0, 0, 0x03, 0xE8, 0x1D, 0x4C])
    )
    assert (res.node, res.direction) == (0x78, "reply")
    assert (values["OutputCurrent"], values["OutputVoltage"]) == (100.0, 750.0)
    # Version 0x005: b2-3 HW, data DCDC major.minor, PFC major.minor (to_version_string l.56-66),
    # more-frames bit 0 set (last_packet_from_can_id, CanPackets.hpp l.77-79).
    _, res, values = _decode(
        "huawei_r100040gx.dbc", 0x06F8507D, bytes([0x00, 0x05, 0x01, 0x02, 1, 4, 2, 0])
    )
    assert (
        values["HWVersion"],
        values["DCDC_Major"],
        values["DCDC_Minor"],
        values["PFC_Major"],
    ) == (0x0102, 1, 4, 2)
    # An answer with error nibble 2 (CanPackets.hpp ErrorType l.90-94).
    _, _, values = _decode(
        "huawei_r100040gx.dbc", 0x06F8407C, bytes([0x21, 0x91, 0, 0, 0, 0, 0, 0])
    )
    assert values["ErrorType"] == 2 and "OutputVoltage" not in values
    # Voltage setpoint x1024 (HwCanDevice.cpp l.38-40): 750 V to module 0x78.
    _, res, values = _decode(
        "huawei_r100040gx.dbc",
        0x06F880FC,
        bytes([0x01, 0x00, 0, 0]) + struct.pack(">I", 750 * 1024),
    )
    assert (res.direction, values["SetOutputVoltage"]) == ("request", 750.0)


def test_sinexcel_query_and_answers() -> None:
    # F1atline/Sinexcel-EV-charger-module-CAN-bus-communication-protocol README (2a00f01):
    # protocol 0x60 at 28..22, destination 21..11, source 10..0; query 0x50 F0 02 02, content 0.
    msg, res, values = _decode(
        "sinexcel.dbc", 0x180008F0, bytes([0x50, 0xF0, 0x02, 0x02, 0, 0, 0, 0])
    )
    assert (msg.name, res.node, res.group, res.peer, res.direction) == (
        "Sinexcel_Request",
        1,
        0,
        0x0F0,
        "request",
    )
    # Module replies 0x0205 voltage x10 and 0x0206 current x100 (README "Message Content").
    _, res, values = _decode(
        "sinexcel.dbc", 0x18078001, bytes([0x41, 0xF0, 0x02, 0x05]) + struct.pack(">i", 7500)
    )
    assert (res.node, res.direction, values["OutputVoltage"]) == (1, "reply", 750.0)
    _, _, values = _decode(
        "sinexcel.dbc", 0x18078041, bytes([0x41, 0xF0, 0x02, 0x06]) + struct.pack(">i", 10025)
    )
    assert values["OutputCurrent"] == pytest.approx(100.25)
    # Error type 0xF4 "address is being identified" (README Error type table).
    _, _, values = _decode("sinexcel.dbc", 0x18078001, bytes([0x41, 0xF4, 0x02, 0x02, 0, 0, 0, 0]))
    assert values["ErrorType"] == 0xF4 and values["RejectedMessageId"] == 0x0202


def test_ivt_s_results_as_published() -> None:
    # foxBMS/foxbms-2 tools/dbc/third-party/isabellenhuette/IVT-S_12082020.dbc: IVT_Result_I
    # 23|32@0- mA, counter 11|4, id 7|8; IVT_Result_T 0.1 degC.
    db = cantools.database.load_file(str(PACKS / "isabellenhuette_ivt_s.dbc"), strict=True)
    values = db.decode_message(
        0x521, bytes([0x00, 0x13]) + struct.pack(">i", -10_000), decode_choices=False
    )
    assert (
        values["Current"] == -10.0
        and values["Current_MsgCount"] == 3
        and values["Current_OCS"] == 1
    )
    values = db.decode_message(
        0x525, bytes([0x04, 0x00]) + struct.pack(">i", 250), decode_choices=False
    )
    assert values["Temperature"] == 25.0
    values = db.decode_message(
        0x511, bytes([0xBB]) + struct.pack(">I", 0x01020304) + bytes(3), decode_choices=False
    )
    assert values["SerialNumber"] == 0x01020304


def test_bender_iso165c_info_and_error_response() -> None:
    # foxBMS/foxbms-2 tools/dbc/third-party/bender/iso165_IMD.dbc: IMD_Info 0x37, R_ISO 0|16@1+
    # kOhm, IsoWarning bit 21, VIFC IMC_Connection bit 33; IMD_Response 0x23 error frame (cmd 255)
    # with the error code 8|16 (1038 VIFC_NoResponseTimeout).
    db = cantools.database.load_file(str(PACKS / "bender_iso165c.dbc"), strict=True)
    values = db.decode_message(
        0x37, bytes([0xAC, 0x0D, 0x20, 0x00, 0x02, 0x00]), decode_choices=False
    )
    assert values["IMD_R_ISO"] == 3_500_000 and values["IMD_IsoWarning"] == 1
    assert values["VIFC_IMC_ConnectionFailure"] == 1 and values["IMD_GroundFault"] == 0
    values = db.decode_message(0x23, bytes([0xFF, 0x0E, 0x04, 53, 0]))
    assert (
        values["ErrorCode"] == "VIFC_NoResponseTimeout"
        and values["FailedCommand"] == "S_IMC_GET_R_ISO"
    )
