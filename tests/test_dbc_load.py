"""DBC loading: attributes from the DBC, clear file:line errors, and the vectorized id lookup."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from candiag.decode.dbc import (
    ChargerDatabase,
    load_dbc_paths,
    load_dbc_text,
    reference_dbc_dir,
)
from candiag.errors import DbcError, InputError

FIXTURE = Path(__file__).parent / "data" / "decode_fixture.dbc"

HEADER = """VERSION ""

NS_ :

BS_:

BU_: A

"""

ATTRS = """
BA_DEF_ BO_ "GenMsgCycleTime" INT 0 3600000;
BA_DEF_ BO_ "CandiagNodeMask" HEX 0 536870911;
BA_DEF_ BO_ "CandiagNodeFamily" STRING ;
BA_DEF_ SG_ "CandiagRole" STRING ;
BA_DEF_DEF_ "GenMsgCycleTime" 0;
BA_DEF_DEF_ "CandiagNodeMask" 0;
BA_DEF_DEF_ "CandiagNodeFamily" "";
BA_DEF_DEF_ "CandiagRole" "";
"""


def message(frame_id: int, name: str, signal: str = "Value") -> str:
    return f'BO_ {frame_id} {name}: 8 A\n SG_ {signal} : 0|16@1+ (1,0) [0|0] "" A\n\n'


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="cp1252")
    return path


@pytest.fixture(scope="module")
def fixture_db() -> ChargerDatabase:
    return load_dbc_paths([FIXTURE])


def test_attributes_come_from_the_dbc(fixture_db: ChargerDatabase) -> None:
    pm = fixture_db.by_name("PM_Status")
    assert (pm.frame_id, pm.is_extended, pm.length) == (0x08000000, True, 8)
    assert pm.cycle_time_ms == 100
    assert pm.node_mask == 0xFF
    assert pm.family == "power_module"
    assert pm.signal("OverTemp").role == "alarm:over_temperature"
    assert pm.signal("OutputVoltage").unit == "V"
    # Firmware components in start-bit order, whatever order the SG_ lines are in.
    assert [s.name for s in pm.signals_with_role("firmware")] == ["FwMajor", "FwMinor"]
    heartbeat = fixture_db.by_name("Heartbeat")
    assert heartbeat.node_mask == 0 and heartbeat.family is None  # BA_DEF_DEF_ defaults
    assert heartbeat.cycle_time_ms == 500
    assert fixture_db.by_name("Floats").cycle_time_ms is None  # default 0 = not cyclic
    assert [m.name for m in fixture_db.families["dc_meter"]] == ["MeterRegister"]
    assert pm.source_file == str(FIXTURE)


def test_integer_and_float_signal_kinds(fixture_db: ChargerDatabase) -> None:
    pm = fixture_db.by_name("PM_Status")
    assert pm.signal("Temperature").is_integer  # (1,-40): cantools returns ints
    assert not pm.signal("OutputVoltage").is_integer  # 0.1 scale: floats
    floats = fixture_db.by_name("Floats")
    assert floats.signal("Single").is_float and floats.signal("Double").length == 64
    meter = fixture_db.by_name("MeterRegister")
    assert meter.is_multiplexed
    assert meter.signal("Voltage").multiplexer_ids == (2,)


def test_node_helpers_roundtrip(fixture_db: ChargerDatabase) -> None:
    pm = fixture_db.by_name("PM_Status")
    assert pm.can_id_for(3) == 0x08000003
    assert pm.node_of(0x0800002A) == 0x2A
    with pytest.raises(ValueError):
        pm.can_id_for(0x100)
    assert fixture_db.by_name("Heartbeat").node_of(0x40) == -1


def test_cantools_db_merges_all_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.dbc", HEADER + message(0x10, "First"))
    b = write(tmp_path, "b.dbc", HEADER + message(0x11, "Second"))
    db = load_dbc_paths([a, b])
    encoded = db.cantools_db.encode_message("Second", {"Value": 513})
    assert db.cantools_db.decode_message(0x11, encoded) == {"Value": 513}
    assert [m.source_file for m in db.messages] == [str(a), str(b)]


def test_folder_loads_every_dbc_sorted(tmp_path: Path) -> None:
    write(tmp_path, "b.dbc", HEADER + message(0x11, "Second"))
    write(tmp_path, "a.dbc", HEADER + message(0x10, "First"))
    write(tmp_path, "notes.txt", "not a dbc")
    db = load_dbc_paths([tmp_path])
    assert [m.name for m in db.messages] == ["First", "Second"]


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    text = HEADER + message(0x10, "First") + 'BO_ 17 Broken: 8 A\n SG_ X 0|8@1+ (1,0) [0|0] "" A\n'
    path = write(tmp_path, "broken.dbc", text)
    with pytest.raises(DbcError) as info:
        load_dbc_paths([path])
    line = text.splitlines().index(' SG_ X 0|8@1+ (1,0) [0|0] "" A') + 1
    assert re.search(rf"broken\.dbc:{line}:\d+: invalid syntax", str(info.value))
    assert "fix the line or remove the file" in str(info.value)
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_signal_outside_message_names_its_line(tmp_path: Path) -> None:
    text = HEADER + 'BO_ 16 Short: 2 A\n SG_ TooLong : 8|16@1+ (1,0) [0|0] "" A\n'
    path = write(tmp_path, "short.dbc", text)
    with pytest.raises(
        DbcError,
        match=r"short\.dbc:10: signal TooLong of message Short \(start bit 8, 16 bits\) needs "
        r"3 bytes but the message is 2 bytes long",
    ):
        load_dbc_paths([path], strict=True)
    db = load_dbc_paths([path])  # lenient: loads, the signal is not decoded, one warning
    assert db.by_name("Short").signals == ()
    (warning,) = db.warnings
    assert (warning.file, warning.line, warning.message) == (str(path), 10, "Short")
    assert warning.kind == "signal_past_end"


def test_same_id_in_two_files_is_refused(tmp_path: Path) -> None:
    a = write(tmp_path, "a.dbc", HEADER + message(0x10, "First"))
    b = write(tmp_path, "b.dbc", HEADER + message(0x10, "Other"))
    line = HEADER.count("\n") + 1  # both name the line of each BO_
    with pytest.raises(
        DbcError,
        match=rf"b\.dbc:{line}: message Other \(0x10\) and First \(0x10, .*a\.dbc:{line}\) "
        "claim the same identifier",
    ):
        load_dbc_paths([a, b], strict=True)
    db = load_dbc_paths([a, b])  # lenient: the later definition, as cantools
    assert [m.name for m in db.messages] == ["Other"]
    (warning,) = db.warnings
    assert warning.where == f"{b}:{line}" and warning.kind == "duplicate_id"
    assert f"already used by message First at {a}:{line}" in warning.text


def test_same_name_in_two_files_is_refused(tmp_path: Path) -> None:
    a = write(tmp_path, "a.dbc", HEADER + message(0x10, "First"))
    b = write(tmp_path, "b.dbc", HEADER + message(0x12, "First"))
    line = HEADER.count("\n") + 1
    with pytest.raises(
        DbcError, match=rf"b\.dbc:{line}: message name First is also defined in .*a\.dbc:{line};"
    ):
        load_dbc_paths([a, b], strict=True)
    db = load_dbc_paths([a, b])  # lenient: both decode by identifier; the earlier is renamed
    assert [m.name for m in db.messages] == ["First@0x010", "First"]
    assert db.by_name("First").frame_id == 0x12
    (warning,) = db.warnings
    assert warning.where == f"{b}:{line}" and warning.kind == "duplicate_name"


def test_mask_overlapping_base_id_is_refused() -> None:
    text = (
        HEADER + message(0x80000105, "Pm") + ATTRS + 'BA_ "CandiagNodeMask" BO_ 2147483909 255;\n'
    )
    with pytest.raises(DbcError) as info:
        load_dbc_text(text, "pm.dbc", strict=True)
    line = text.splitlines().index('BA_ "CandiagNodeMask" BO_ 2147483909 255;') + 1
    assert f"pm.dbc:{line}: message Pm" in str(info.value)  # the BA_ at fault
    assert "overlaps the BO_ identifier 0x105" in str(info.value)
    assert "0x100" in str(info.value)  # the suggested identifier
    db = load_dbc_text(text, "pm.dbc")  # lenient: the mask is ignored, matched exactly
    assert db.by_name("Pm").node_mask == 0
    assert [w.line for w in db.warnings] == [line]


def test_mask_wider_than_identifier_is_refused() -> None:
    text = HEADER + message(0x100, "Std") + ATTRS + 'BA_ "CandiagNodeMask" BO_ 256 4096;\n'
    with pytest.raises(DbcError, match="exceeds the 11-bit identifier"):
        load_dbc_text(text, "std.dbc", strict=True)
    assert "exceeds the 11-bit" in load_dbc_text(text, "std.dbc").warnings[0].text


def test_mask_declared_as_string_is_refused() -> None:
    attrs = ATTRS.replace('"CandiagNodeMask" HEX 0 536870911', '"CandiagNodeMask" STRING')
    attrs = attrs.replace('"CandiagNodeMask" 0;', '"CandiagNodeMask" "";')
    text = HEADER + message(0x100, "Std") + attrs + 'BA_ "CandiagNodeMask" BO_ 256 "ff";\n'
    line = text.splitlines().index('BA_DEF_ BO_ "CandiagNodeMask" STRING;') + 1
    with pytest.raises(
        DbcError, match=rf"x\.dbc:{line}: attribute CandiagNodeMask is declared STRING"
    ):
        load_dbc_text(text, "x.dbc", strict=True)
    db = load_dbc_text(text, "x.dbc")
    assert db.by_name("Std").node_mask == 0 and db.warnings[0].line == line


def test_masked_message_overlapping_an_exact_one_is_refused() -> None:
    text = (
        HEADER
        + message(0x80000100, "Masked")
        + message(0x80000107, "Exact")
        + ATTRS
        + 'BA_ "CandiagNodeMask" BO_ 2147483904 255;\n'
    )
    with pytest.raises(DbcError, match="overlapping identifiers"):
        load_dbc_text(text, "x.dbc", strict=True)
    db = load_dbc_text(text, "x.dbc")  # lenient: the exact identifier wins, as in cantools
    index, node = db.match(np.array([0x107, 0x108], np.uint32), np.array([True, True]))
    assert index.tolist() == [db.index_of("Exact"), db.index_of("Masked")]
    assert node.tolist() == [-1, 8]
    (warning,) = db.warnings
    assert warning.kind == "masked_id_overlap" and warning.message == "Exact"
    assert "node 7 of Masked is not seen" in warning.text


def test_unknown_role_is_refused() -> None:
    text = HEADER + message(0x100, "Std") + ATTRS + 'BA_ "CandiagRole" SG_ 256 Value "firmwear";\n'
    with pytest.raises(DbcError, match=r"unknown CandiagRole 'firmwear', which candiag ignores"):
        load_dbc_text(text, "x.dbc", strict=True)
    db = load_dbc_text(text, "x.dbc")
    assert db.by_name("Std").signal("Value").role is None
    assert db.warnings[0].line == text.count("\n")  # the BA_ line


def test_missing_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DbcError, match="no such DBC file or folder"):
        load_dbc_paths([tmp_path / "nope.dbc"])
    with pytest.raises(DbcError, match="contains no"):
        load_dbc_paths([tmp_path])
    with pytest.raises(DbcError, match="no DBC file given"):
        load_dbc_paths([])


def test_match_exact_masked_and_ide(fixture_db: ChargerDatabase) -> None:
    ids = np.array([0x40, 0x40, 0x08000000, 0x080000FE, 0x08000100, 0x100, 0x7FF], np.uint32)
    ext = np.array([False, True, True, True, True, False, False])
    message, node = fixture_db.match(ids, ext)
    pm = fixture_db.index_of("PM_Status")
    hb = fixture_db.index_of("Heartbeat")
    meter = fixture_db.index_of("MeterRegister")
    assert message.tolist() == [hb, -1, pm, pm, -1, meter, -1]
    assert node.tolist() == [-1, -1, 0, 0xFE, -1, -1, -1]
    assert message.dtype == np.int32 and node.dtype == np.int32


def test_match_many_masks_and_empty_input() -> None:
    attrs = ATTRS + "".join(
        f'BA_ "CandiagNodeMask" BO_ {0x80000000 | base} {mask};\n'
        for base, mask in ((0x1000, 0xF), (0x2000, 0xF0), (0x30000, 0xFF00))
    )
    text = (
        HEADER
        + message(0x80001000, "LowNibble")
        + message(0x80002000, "HighNibble")
        + message(0x80030000, "ByteOne")
        + attrs
    )
    db = load_dbc_text(text, "m.dbc")
    ids = np.array([0x1007, 0x2070, 0x2007, 0x3AB00, 0x3AB01], np.uint32)
    message_index, node = db.match(ids, np.ones(5, bool))
    assert message_index.tolist() == [0, 1, -1, 2, -1]
    assert node.tolist() == [7, 7, -1, 0xAB, -1]
    empty = db.match(np.empty(0, np.uint32), np.empty(0, bool))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


def test_reference_dbcs_load_with_candiag_conventions() -> None:
    folder = reference_dbc_dir()
    if not any(folder.glob("*.dbc")):
        pytest.skip("reference DBCs not written yet")
    db = load_dbc_paths([folder])
    assert db.messages, "reference DBC folder holds no messages"
    for msg in db.messages:
        assert msg.cycle_time_ms is not None, f"{msg.name} has no GenMsgCycleTime"
    assert any(m.node_mask for m in db.messages)


def test_reference_dir_prefers_packaged_copy(tmp_path: Path) -> None:
    # The fallback is the repository's dbc/ folder next to the package.
    folder = reference_dbc_dir()
    assert folder.name == "dbc"
    assert folder.parent.name in {"data", Path(__file__).resolve().parent.parent.name}
    copy = tmp_path / "copy.dbc"
    shutil.copy(FIXTURE, copy)
    assert len(load_dbc_paths([copy])) == 4


def test_database_built_from_edited_messages_is_checked(fixture_db: ChargerDatabase) -> None:
    pm = fixture_db.by_name("PM_Status")
    twin = dataclasses.replace(pm, name="PM_Twin")
    with pytest.raises(DbcError, match=r"PM_Twin .* and PM_Status .* claim the same identifier"):
        ChargerDatabase([pm, twin])
    wider = dataclasses.replace(pm, name="PM_Wide", frame_id=0x08000000, node_mask=0xFFF)
    with pytest.raises(DbcError, match="overlapping identifiers"):
        ChargerDatabase([pm, wider])
    moved = dataclasses.replace(pm, name="PM_Moved", frame_id=0x08001000)
    assert len(ChargerDatabase([pm, moved])) == 2


MASKS = {False: [0, 0, 0x7, 0x70, 0x700], True: [0, 0, 0xFF, 0xFF00, 0x3F0000, 0x1E000000]}


@st.composite
def catalogues(draw: st.DrawFn) -> list[tuple[bool, int, int]]:
    entries = []
    for _ in range(draw(st.integers(1, 8))):
        extended = draw(st.booleans())
        mask = draw(st.sampled_from(MASKS[extended]))
        base = draw(st.integers(0, 0x1FFFFFFF if extended else 0x7FF)) & ~mask
        entries.append((extended, base, mask))
    return entries


def reference_match(
    entries: list[tuple[bool, int, int]], can_id: int, ext: bool
) -> tuple[int, int]:
    for i, (e, base, mask) in enumerate(entries):
        if e == ext and not mask and can_id == base:
            return i, -1
    for i, (e, base, mask) in enumerate(entries):
        if e == ext and mask and can_id & ~mask == base:
            return i, (can_id & mask) >> ((mask & -mask).bit_length() - 1)
    return -1, -1


@settings(max_examples=200, deadline=None)
@given(catalogues(), st.data())
def test_match_equals_a_per_frame_reference(
    entries: list[tuple[bool, int, int]], data: st.DataObject
) -> None:
    clashes = [
        (i, j)
        for i, a in enumerate(entries)
        for j, b in enumerate(entries)
        if i < j and a[0] == b[0] and not (a[1] ^ b[1]) & ~(a[2] | b[2])
    ]
    body = "".join(
        message(base | (0x80000000 if ext else 0), f"M{i}")
        for i, (ext, base, _) in enumerate(entries)
    )
    attrs = "".join(
        f'BA_ "CandiagNodeMask" BO_ {base | (0x80000000 if ext else 0)} {mask};\n'
        for ext, base, mask in entries
        if mask
    )
    text = HEADER + body + ATTRS + attrs
    if clashes:
        with pytest.raises(DbcError, match="claim"):
            load_dbc_text(text, "h.dbc", strict=True)
    # Lenient: of two messages with one identifier the later is used (as cantools) ...
    # BA_ attributes are keyed by identifier: every message of one identifier gets its mask.
    masks = {(ext, base): mask for ext, base, mask in entries if mask}
    kept = [
        (*e[:2], masks.get(e[:2], 0))
        for i, e in enumerate(entries)
        if all(f[:2] != e[:2] for f in entries[i + 1 :])
    ]
    ambiguous = [
        (a, b)
        for i, a in enumerate(kept)
        for b in kept[i + 1 :]
        if a[0] == b[0] and a[2] and b[2] and not (a[1] ^ b[1]) & ~(a[2] | b[2])
    ]
    if ambiguous:  # ... but two node-address ranges claiming one frame are refused
        with pytest.raises(DbcError, match="claim"):
            load_dbc_text(text, "h.dbc")
        return
    db = load_dbc_text(text, "h.dbc")
    frames: list[tuple[int, bool]] = []
    assert len(db) == len(kept)
    for ext, base, mask in entries:
        shift = (mask & -mask).bit_length() - 1 if mask else 0
        address = data.draw(st.integers(0, mask >> shift))
        frames += [(base | (address << shift), ext), (base, not ext)]
    frames += data.draw(
        st.lists(st.tuples(st.integers(0, 0x7FF), st.just(False)), max_size=5)
        | st.lists(st.tuples(st.integers(0, 0x1FFFFFFF), st.just(True)), max_size=5)
    )
    ids = np.array([f[0] for f in frames], np.uint32)
    ext_flags = np.array([f[1] for f in frames], bool)
    index, nodes = db.match(ids, ext_flags)
    expected = [reference_match(kept, i, e) for i, e in frames]
    assert list(zip(index.tolist(), nodes.tolist(), strict=True)) == expected
