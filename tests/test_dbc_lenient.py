"""Vendor DBCs load leniently (as ``cantools decode --no-strict``), every problem is a warning
at the line of the definition at fault, ``strict=True`` refuses them, and hostile DBCs are
refused in words before cantools spends time on them."""

from __future__ import annotations

import logging
from pathlib import Path

import cantools
import numpy as np
import pytest
from cantools.database.can import Message, Signal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.decode.dbc import DbcWarning, load_dbc_paths, load_dbc_text
from candiag.decode.dbc_layout import layout_problems
from candiag.decode.dbc_text import index_dbc
from candiag.decode.decoder import BatchDecoder
from candiag.errors import DbcError
from tests.dbc_corpus import DATA_DBC, CorpusReport, check_dbc, frames_for
from tests.dbc_oracle import compare

HEADER = 'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: X\n\n'  # 8 lines: a BO_ after it is on line 9


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def sg(name: str, start: int, length: int, order: int = 1, mux: str = "", sign: str = "+") -> str:
    tag = f" {mux}" if mux else ""
    return f' SG_ {name}{tag} : {start}|{length}@{order}{sign} (1,0) [0|0] "" X\n'


# -- tests/data/dbc: decode equals cantools --------------------------------------------------


@pytest.mark.parametrize("path", sorted(DATA_DBC.glob("*.dbc")), ids=lambda p: p.name)
def test_sample_dbcs_decode_like_cantools(path: Path) -> None:
    report = CorpusReport()
    check_dbc(path, report)
    assert not report.refused, report.refused
    assert report.counts["frames"] > 0


def test_samples_cover_strict_and_lenient_only_dbcs() -> None:
    report = CorpusReport()
    for path in sorted(DATA_DBC.glob("*.dbc")):
        check_dbc(path, report)
    lenient = {Path(p).name for p in report.lenient_only}
    assert {
        "canmatrix_aa.dbc",
        "cantools_bad_message_length.dbc",
        "cantools_issue_63.dbc",
        "cantools_incorrect-val.dbc",
        "opendbc_hongqi_hs5.dbc",
        "opendbc_mazda_3_2019.dbc",
    } <= lenient
    assert len(report.strict) >= 5
    # Frames cantools refuses (broken layouts) are still compared, signal by signal.
    assert report.counts["cantools_refused_frames"] > 0
    assert report.counts["values_vs_single_signal"] > 0


# -- issue 12 item 10: the line of the definition at fault ---------------------------------


def test_duplicate_names_in_canmatrix_aa_are_located_at_both_lines() -> None:
    path = DATA_DBC / "canmatrix_aa.dbc"
    db = load_dbc_paths([path])
    (warning,) = db.warnings
    assert (warning.line, warning.kind, warning.message) == (
        52,
        "duplicate_name",
        "Receive_PDO_Mapping_Parameter_1",
    )
    assert f"{path}:49 (0x301)" in warning.text
    # Both decode by identifier, as cantools decodes them; the earlier one is renamed.
    assert db.by_name("Receive_PDO_Mapping_Parameter_1").frame_id == 385
    assert db.by_name("Receive_PDO_Mapping_Parameter_1@0x301").frame_id == 769
    with pytest.raises(DbcError) as info:
        load_dbc_paths([path], strict=True)
    assert str(info.value).startswith(f"{path}:52: message name Receive_PDO_Mapping_Parameter_1")
    assert f"{path}:49" in str(info.value)


@pytest.mark.parametrize(
    ("name", "statement", "kind"),
    [
        ("cantools_incorrect-val.dbc", "VAL_ 99 signal1", "unused_value_table"),
        ("cantools_incorrect-sig_valtype.dbc", "SIG_VALTYPE_ 345 signal2", "unused_value_type"),
    ],
)
def test_unused_value_tables_are_located_at_their_line(
    name: str, statement: str, kind: str
) -> None:
    path = DATA_DBC / name
    line = line_of(path.read_text(), statement)
    db = load_dbc_paths([path])  # cantools refuses these even leniently; candiag skips the line
    (warning,) = db.warnings
    assert (warning.line, warning.kind) == (line, kind)
    assert "no BO_ has identifier" in warning.text
    with pytest.raises(DbcError, match=rf"^{path}:{line}: .*candiag ignores"):
        load_dbc_paths([path], strict=True)


def test_unused_value_table_of_a_message_names_the_message_and_its_line() -> None:
    text = HEADER + "BO_ 7 Msg: 8 X\n" + sg("Real", 0, 8) + '\nVAL_ 7 Gone 1 "on" 0 "off";\n'
    db = load_dbc_text(text, "v.dbc")
    (warning,) = db.warnings
    assert warning.line == line_of(text, "VAL_ 7")
    assert "message Msg (BO_ 7, line 9) has no signal Gone" in warning.text


def test_undefined_attribute_is_named_in_words_at_its_line() -> None:
    text = HEADER + "BO_ 1 Msg: 8 X\n" + sg("A", 0, 8) + '\nBA_ "Attr" BO_ 1 5;\n'
    line = line_of(text, 'BA_ "Attr"')
    db = load_dbc_text(text, "sample.dbc")
    (warning,) = db.warnings
    assert str(warning) == (
        f"sample.dbc:{line}: attribute 'Attr' is set here but never defined with BA_DEF_; "
        "candiag ignores this setting: add BA_DEF_ for 'Attr' or remove the line"
    )
    with pytest.raises(DbcError, match=rf"sample\.dbc:{line}: attribute 'Attr' is set here"):
        load_dbc_text(text, "sample.dbc", strict=True)


def test_every_message_line_is_right_in_a_long_generated_file() -> None:
    parts = [HEADER]
    for i in range(300):
        parts.append(f"BO_ {i + 1} M{i}: 8 X\n" + sg(f"S{i}", 0, 8) + sg(f"T{i}", 4, 8) + "\n")
    text = "".join(parts)
    db = load_dbc_text(text, "long.dbc")
    assert len(db.warnings) == 201  # 200 listed per file, the rest counted
    for i, warning in enumerate(db.warnings[:200]):
        assert warning.line == line_of(text, f" SG_ T{i} ")  # the later signal overlaps
        assert warning.message == f"M{i}"
    assert str(db.warnings[-1]) == "long.dbc: 100 more problems in this file are not listed"
    assert [m.source_line for m in db.messages] == [
        line_of(text, f"BO_ {i + 1} M{i}:") for i in range(300)
    ]


def test_index_ignores_keywords_inside_strings_and_comments() -> None:
    text = (
        HEADER
        + 'CM_ "BO_ 5 Fake: 8 X\n SG_ F : 0|8@1+ (1,0) [0|0] \\"\\" X";\n'
        + "// BO_ 6 Comment: 8 X\n"
        + "BO_ 7 Real: 8 X\n"
        + sg("R", 0, 8)
    )
    index = index_dbc(text, "s.dbc")
    assert [(m.name, m.line) for m in index.messages] == [("Real", 12)]
    assert [s.name for s in index.messages[0].signals] == ["R"]


# -- strict vs lenient: the layout cantools' strict mode refuses -----------------------------


def test_overlap_and_past_end_are_warnings_leniently_and_errors_strictly() -> None:
    text = HEADER + "BO_ 1 Msg: 2 X\n" + sg("A", 0, 12) + sg("B", 8, 8) + sg("C", 12, 8)
    db = load_dbc_text(text, "o.dbc")
    kinds = [(w.kind, w.line) for w in db.warnings]
    assert kinds == [("signal_overlap", 11), ("signal_past_end", 12)]
    assert [s.name for s in db.by_name("Msg").signals] == ["A", "B"]  # C is not decoded
    with pytest.raises(DbcError) as info:
        load_dbc_text(text, "o.dbc", strict=True)
    assert str(info.value).splitlines() == [
        "o.dbc: 2 problems (strict loading refuses them; without --strict they are warnings):",
        f"  {db.warnings[0]}",
        f"  {db.warnings[1]}",
    ]


def test_float_of_no_float_length_is_not_decoded() -> None:
    text = HEADER + "BO_ 1 Msg: 8 X\n" + sg("F", 0, 8) + sg("G", 8, 16) + "\n"
    text += "SIG_VALTYPE_ 1 F : 1;\nSIG_VALTYPE_ 1 G : 1;\n"
    db = load_dbc_text(text, "f.dbc")
    assert [s.name for s in db.by_name("Msg").signals] == ["G"]  # a half float decodes
    (warning,) = db.warnings
    assert warning.kind == "signal_float_length" and warning.line == 10
    load_dbc_text(text, "f.dbc", strict=True)  # cantools' strict mode accepts it: a warning


def test_signal_multiplexed_by_a_non_multiplexer_is_not_decoded_like_cantools() -> None:
    text = HEADER + "BO_ 1 Msg: 8 X\n" + sg("Sel", 0, 2, mux="m") + sg("Child", 8, 8, mux="m2")
    text += "\nSG_MUL_VAL_ 1 Child Sel 2-2;\n"
    db = load_dbc_text(text, "m.dbc")
    assert [s.name for s in db.by_name("Msg").signals] == ["Sel"]
    (warning,) = db.warnings
    assert warning.kind == "signal_unselectable" and warning.line == 11
    assert "not marked as a multiplexer (M) in its SG_ line (line 10)" in warning.text


def test_children_of_a_multiplexer_past_the_end_are_not_decoded() -> None:
    text = HEADER + "BO_ 1 Msg: 1 X\n" + sg("Sel", 8, 8, mux="M") + sg("Child", 0, 8, mux="m1")
    db = load_dbc_text(text, "m.dbc")
    assert db.by_name("Msg").signals == ()
    assert [w.kind for w in db.warnings] == ["signal_past_end", "signal_unselectable"]


def test_two_signals_of_one_name_both_decode() -> None:
    text = HEADER + "BO_ 1 Msg: 8 X\n" + sg("Sel", 0, 8, mux="M")
    text += sg("A", 8, 8, mux="m1") + sg("A", 8, 16, mux="m2")
    db = load_dbc_text(text, "d.dbc", strict=True)  # cantools' strict mode accepts it
    msg = db.by_name("Msg")
    assert [s.name for s in msg.signals] == ["Sel", "A", "A#2"]
    assert [w.kind for w in db.warnings] == ["duplicate_signal"]
    data = np.zeros((2, 64), np.uint8)
    data[:, :4] = [[1, 0x34, 0x12, 0], [2, 0x34, 0x12, 0]]
    from candiag.ingest.frames import FrameBatch

    batch = FrameBatch(
        timestamp=np.arange(2.0),
        can_id=np.ones(2, np.uint32),
        flags=np.zeros(2, np.uint8),
        dlc=np.full(2, 8, np.uint8),
        data=data,
        channel=np.zeros(2, np.int16),
        channels=["can0"],
    )
    decoded = BatchDecoder(db).decode(batch).messages["Msg"]
    assert decoded.present["A"].tolist() == [True, False]
    assert decoded.present["A#2"].tolist() == [False, True]
    assert int(decoded.signals["A"][0]) == 0x34 and int(decoded.signals["A#2"][1]) == 0x1234


def test_same_identifier_twice_in_one_file_uses_the_later_like_cantools(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = HEADER + "BO_ 5 First: 8 X\n" + sg("A", 0, 8) + "\nBO_ 5 Second: 8 X\n" + sg("B", 0, 16)
    with caplog.at_level(logging.DEBUG):
        db = load_dbc_text(text, "d.dbc")
        assert db.cantools_db.decode_message(5, bytes(8)) == {"B": 0}
    assert not [r for r in caplog.records if r.name.startswith("cantools")]  # nothing raw
    assert [m.name for m in db.messages] == ["Second"]
    (warning,) = db.warnings
    assert (warning.line, warning.kind) == (12, "duplicate_id")
    assert "already used by message First at d.dbc:9" in warning.text


def test_cantools_log_lines_outside_loading_are_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    load_dbc_text(HEADER + "BO_ 5 M: 8 X\n" + sg("A", 0, 8), "x.dbc")  # installs the filter
    with caplog.at_level(logging.WARNING):
        logging.getLogger("cantools.database.can.database").warning("not during a load")
    assert [r.getMessage() for r in caplog.records] == ["not during a load"]


def test_candiag_conventions_are_warnings_leniently() -> None:
    attrs = (
        'BA_DEF_ BO_ "CandiagNodeMask" HEX 0 536870911;\nBA_DEF_ SG_ "CandiagRole" STRING ;\n'
        'BA_DEF_ BO_ "GenMsgCycleTime" STRING ;\n'
        'BA_ "CandiagNodeMask" BO_ 2147483904 4095;\nBA_ "CandiagRole" SG_ 2147483904 A "nope";\n'
        'BA_ "GenMsgCycleTime" BO_ 2147483904 "fast";\n'
    )
    text = HEADER + "BO_ 2147483904 Msg: 8 X\n" + sg("A", 0, 8) + attrs
    db = load_dbc_text(text, "c.dbc")
    msg = db.by_name("Msg")
    assert (msg.node_mask, msg.signal("A").role, msg.cycle_time_ms) == (0, None, None)
    lines = [w.line for w in db.warnings]
    assert lines == [  # in line order
        line_of(text, 'BA_ "CandiagNodeMask" BO_'),
        line_of(text, 'BA_ "CandiagRole" SG_'),
        line_of(text, 'BA_ "GenMsgCycleTime" BO_'),
    ]
    with pytest.raises(DbcError, match="3 problems"):
        load_dbc_text(text, "c.dbc", strict=True)


def test_warning_json_shape() -> None:
    warning = DbcWarning("a.dbc", 3, "M", "what is wrong", "signal_overlap")
    assert warning.as_dict() == {
        "file": "a.dbc",
        "line": 3,
        "message": "M",
        "kind": "signal_overlap",
        "text": "what is wrong",
    }
    assert str(warning) == "a.dbc:3: what is wrong"
    assert str(DbcWarning("a.dbc", 0, None, "x")) == "a.dbc: x"


# -- issue 13 item 12: hostile DBCs refused in words, before cantools -------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            "BO_ 1 M: 4000000000 X\n" + sg("A", 0, 8),
            r"h\.dbc:9: message M is 4000000000 bytes long; a CAN frame carries 0 to 8 bytes, "
            r"a CAN FD frame at most 64",
        ),
        (
            "BO_ 1 M: 8 X\n" + sg("A", 99999999999, 8),
            r"h\.dbc:10: signal A of message M \(little-endian \(@1\), start bit 99999999999, "
            r"8 bits\) ends past bit 511, outside the 64 bytes of the largest CAN FD frame",
        ),
        ("BO_ 1 M: 8 X\n" + sg("A", 0, 999999), r"h\.dbc:10: signal A .* 999999 bits\) ends past"),
        ("BO_ 1 M: 8 X\n" + sg("A", 7, 999999, 0), r"h\.dbc:10: signal A of message M \(big-"),
        ("BO_ 1 M: 8 X\n" + sg("A", -1, 8), r"h\.dbc:10: signal A of message M starts at bit -1"),
        ("BO_ 1 M: 8 X\n" + sg("A", 0, 0), r"h\.dbc:10: signal A of message M is 0 bits long"),
        (
            "BO_ 2060 M: 8 X\n" + sg("A", 0, 8),
            r"h\.dbc:9: message M has identifier 0x80C \(BO_ 2060\), wider than the 11 bits of "
            r"a standard identifier; if it is an extended identifier, write BO_ 2147485708",
        ),
        (
            "BO_ 4294967295 M: 8 X\n" + sg("A", 0, 8),
            r"h\.dbc:9: message M has extended identifier 0x7FFFFFFF, wider than 29 bits",
        ),
        (
            "BO_ 99999999999999999999 M: 8 X\n" + sg("A", 0, 8),
            r"h\.dbc:9: message M has identifier 99999999999999999999, which is no CAN identifier",
        ),
        (
            "BO_ 1 M: 8 X\n" + sg("S", 0, 8, mux="M") + sg("A", 8, 8, mux="m1") + "\n"
            "SG_MUL_VAL_ 1 A S 0-4000000000;\n",
            r"h\.dbc:13: SG_MUL_VAL_ makes multiplexer S select signal A for 4000000001 values",
        ),
        ('BO_ 1 M: 8 X\n SG_ A : 0|8@1+ (1,0) [0|0] "unit X\n', r"h\.dbc:10: a string opened"),
    ],
)
def test_hostile_dbc_is_refused_in_words(body: str, words: str) -> None:
    for strict in (False, True):
        with pytest.raises(DbcError, match=words):
            load_dbc_text(HEADER + body, "h.dbc", strict=strict)


def test_many_hostile_lines_are_all_listed_with_a_bound() -> None:
    body = "BO_ 1 M: 64 X\n" + "".join(sg(f"A{i}", 600 + i, 8) for i in range(50))
    with pytest.raises(DbcError) as info:
        load_dbc_text(HEADER + body, "h.dbc")
    lines = str(info.value).splitlines()
    assert lines[0] == "h.dbc: 50 problems (no CAN frame can carry these; fix the DBC):"
    assert lines[1].startswith("  h.dbc:10: signal A0 of message M")
    assert lines[-1] == "  ... and 30 more"


def test_signal_split_over_lines_is_still_bounded() -> None:
    # Tokens may be separated by newlines; the index reads the statement as cantools does.
    body = 'BO_ 1 M: 8 X\n SG_ A :\n 0|\n999999@1+ (1,0) [0|0] "" X\n'
    with pytest.raises(DbcError, match=r"h\.dbc:10: signal A .* 999999 bits"):
        load_dbc_text(HEADER + body, "h.dbc")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "BO_",
                "SG_",
                "VAL_",
                "BA_",
                "BA_DEF_",
                "CM_",
                "SIG_VALTYPE_",
                "SG_MUL_VAL_",
                '"',
                ";",
                ":",
                "|",
                "@",
                "(",
                ")",
                "[",
                "]",
                ",",
                "1",
                "-7",
                "4000000000",
                "99999999999",
                "0.5",
                "M",
                "m1",
                "X",
                "Name",
                "1+",
                "0-",
                "\n",
                " ",
                "//",
            ]
        ),
        max_size=60,
    )
)
def test_any_token_soup_loads_or_fails_in_words(tokens: list[str]) -> None:
    text = HEADER + "BO_ 1 Msg: 8 X\n" + sg("A", 0, 8) + " ".join(tokens) + "\n"
    try:
        db = load_dbc_text(text, "soup.dbc")
    except DbcError as err:
        message = str(err)
        assert message.startswith("soup.dbc")
        head = message.splitlines()[0]
        words = head.split(": ", 1)[1] if ": " in head else ""
        assert len(words) > 15, f"bare error: {message!r}"
        return
    for warning in db.warnings:
        assert warning.text and 0 <= warning.line <= text.count("\n") + 1


# -- the layout checker gives cantools' strict verdict ------------------------------------------


@st.composite
def layouts(draw: st.DrawFn) -> Message:
    length = draw(st.sampled_from([1, 2, 4, 8, 8, 12, 16, 64]))
    bits = 8 * length
    signals: list[Signal] = []
    mux_ids: list[int] = []
    if draw(st.booleans()):
        start = draw(st.integers(0, bits - 1))
        signals.append(Signal("Mux", start, draw(st.integers(1, 8)), is_multiplexer=True))
        mux_ids = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    for i in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 70))
        big = draw(st.booleans())
        start = draw(st.integers(0, bits + 8))
        mux = draw(st.sampled_from([None, *mux_ids])) if mux_ids else None
        signals.append(
            Signal(
                f"S{i}",
                start,
                n,
                "big_endian" if big else "little_endian",
                multiplexer_ids=None if mux is None else [mux],
                multiplexer_signal=None if mux is None else "Mux",
            )
        )
    return Message(frame_id=1, name="M", length=length, signals=signals, strict=False)


@settings(max_examples=400, deadline=None)
@given(layouts())
def test_layout_problems_equal_cantools_strict_verdict(message: Message) -> None:
    try:
        message.refresh(strict=True)
        refused = False
    except cantools.database.Error:
        refused = True
    finally:
        message.refresh(strict=False)
    problems = [p for p in layout_problems(message) if p.strict_refuses]
    assert bool(problems) == refused, [p.text for p in problems]


# -- the decoder on what lenient DBCs hold ---------------------------------------------------


def test_long_integer_and_half_float_signals_decode_like_cantools() -> None:
    text = (
        HEADER
        + "BO_ 1 Fd: 64 X\n"
        + sg("WideLe", 3, 100, sign="-")
        + sg("WideBe", 215, 130, 0)
        + ' SG_ Scaled : 350|70@1+ (0.5,1) [0|0] "" X\n'
        + sg("Half", 432, 16)
        + sg("HalfBe", 455, 16, 0)
        + "\nSIG_VALTYPE_ 1 Half : 1;\nSIG_VALTYPE_ 1 HalfBe : 1;\n"
    )
    db = load_dbc_text(text, "wide.dbc", strict=True)
    assert not db.warnings
    batch = frames_for(db, np.random.default_rng(3), randoms=30)
    result = BatchDecoder(db).decode(batch)
    counts = compare(db, batch, result)
    assert counts["values_vs_cantools"] >= 5 * 30
    wide = result.messages["Fd"].signals["WideLe"]
    assert wide.dtype == object and any(abs(int(v)) > 2**64 for v in wide)


def test_multiplexer_ids_beyond_64_bits_never_select() -> None:
    text = HEADER + "BO_ 1 M: 8 X\n" + sg("S", 0, 8, mux="M") + sg("A", 8, 8, mux="m1")
    text += sg("B", 16, 8, mux="m99999999999999999999999")
    db = load_dbc_text(text, "x.dbc")
    batch = frames_for(db, np.random.default_rng(1))
    result = BatchDecoder(db).decode(batch)
    compare(db, batch, result)
    assert not result.messages["M"].present["B"].any()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            'BO_ 1 M: 8 X\n SG_ A : 0|8@1+ (.25,0) [0|0] "" X\n',
            r"h\.dbc:10:\d+: invalid syntax in .*: a number must start with a digit",
        ),
        (
            "BO_ 1 2017_5: 8 X\n",
            r"h\.dbc:9:7: invalid syntax .*: the name '2017_5' starts with a digit",
        ),
        (
            'CM_ "no semicolon"\nBO_ 1 M: 8 X\n',
            r"h\.dbc:10:1: .*: the CM_ statement on line 9 does not end with ';'",
        ),
        ('CM_ 1 "x";\n', r"h\.dbc:9:5: .*: a comment on a message is written CM_ BO_"),
        ('BO_ 1 M: 8 X\n SG_ A : 0|8@1+ (1,0) [0|0] "" X\nCM_ SG_ 1 "x";\n', r"CM_ SG_ <"),
    ],
)
def test_syntax_errors_say_what_is_probably_wrong(body: str, words: str) -> None:
    with pytest.raises(DbcError, match=words):
        load_dbc_text(HEADER + body, "h.dbc")


def test_multiplexers_nested_beyond_cantools_are_refused_in_words() -> None:
    n = 1500
    body = "BO_ 1 M: 64 X\n" + sg("S0", 0, 1, mux="M")
    body += "".join(sg(f"S{i}", i % 512, 1, mux="m1M") for i in range(1, n))
    body += "".join(f"SG_MUL_VAL_ 1 S{i} S{i - 1} 1-1;\n" for i in range(1, n))
    with pytest.raises(DbcError, match=r"^d\.dbc: cantools cannot read the DBC: signals are "):
        load_dbc_text(HEADER + body, "d.dbc")


def test_renamed_signals_are_numbered_in_order() -> None:
    # '#' cannot be in a DBC name, so a renamed signal never takes a name of the file.
    body = "BO_ 1 M: 8 X\n" + sg("A", 0, 1) + sg("B", 1, 1) + sg("A", 2, 1) + sg("A", 3, 1)
    db = load_dbc_text(HEADER + body, "n.dbc")
    assert [s.name for s in db.by_name("M").signals] == ["A", "B", "A#2", "A#3"]
    kinds = [w.kind for w in db.warnings]
    assert kinds.count("duplicate_signal") == 2
    # cantools' strict mode refuses one name twice in one frame (it sees the last A each time)
    assert "signal name A is defined twice in message M" in db.warnings[0].text


def test_many_duplicate_identifiers_give_bounded_warnings() -> None:
    body = "".join(f"BO_ 5 M{i}: 8 X\n" + sg(f"S{i}", 0, 8) + "\n" for i in range(250))
    db = load_dbc_text(HEADER + body, "d.dbc")
    assert [m.name for m in db.messages] == ["M249"]
    assert len(db.warnings) == 201 and db.warnings[-1].kind == "more"
    assert db.warnings[-1].text == "49 more problems of this kind are not listed"


@st.composite
def lenient_dbcs(draw: st.DrawFn) -> str:
    """One message with any layout cantools reads leniently: overlaps, signals past the
    end, half/single/double floats, signals longer than 64 bits, a multiplexer."""
    length = draw(st.sampled_from([1, 3, 8, 8, 12, 24, 64]))
    lines = [HEADER, f"BO_ 1 M: {length} X\n"]
    floats = []
    mux = draw(st.booleans())
    if mux:
        lines.append(sg("Sel", draw(st.integers(0, 8 * length - 1)), 2, mux="M"))
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["int", "int", "wide", "f16", "f32", "f64"]))
        if kind == "int":
            n = draw(st.integers(1, 64))
        elif kind == "wide":
            n = draw(st.integers(65, 130))
        else:
            n = int(kind[1:])
        start = draw(st.integers(0, max(0, 8 * length - 1)))
        order = draw(st.integers(0, 1))
        tag = draw(st.sampled_from(["", "m0", "m1", "m3"])) if mux else ""
        scale = draw(st.sampled_from(["1,0", "1,-40", "0.5,2", "3,7"]))
        sign = draw(st.sampled_from("+-"))
        lines.append(
            f" SG_ S{i}{' ' + tag if tag else ''} : {start}|{n}@{order}{sign} ({scale}) "
            '[0|0] "" X\n'
        )
        if kind.startswith("f"):
            floats.append(f"SIG_VALTYPE_ 1 S{i} : {1 if kind != 'f64' else 2};\n")
    return "".join(lines) + "\n" + "".join(floats)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lenient_dbcs(), st.integers(0, 2**32 - 1))
def test_any_lenient_layout_decodes_like_cantools(text: str, seed: int) -> None:
    try:
        db = load_dbc_text(text, "l.dbc")
    except DbcError as err:  # only what no frame can carry (a signal past bit 511)
        assert "ends past bit 511" in str(err), str(err)
        return
    batch = frames_for(db, np.random.default_rng(seed), randoms=4)
    result = BatchDecoder(db).decode(batch)
    compare(db, batch, result)


def test_rebuilding_a_database_keeps_its_warnings_once() -> None:
    from candiag.config.check import apply_mask_overrides
    from candiag.config.model import FamilyConfig

    attrs = (
        'BA_DEF_ BO_ "CandiagNodeMask" HEX 0 536870911;\n'
        'BA_DEF_ BO_ "CandiagNodeFamily" STRING ;\n'
        'BA_ "CandiagNodeMask" BO_ 2147483904 255;\n'
        'BA_ "CandiagNodeFamily" BO_ 2147483904 "pm";\n'
    )
    text = HEADER + "BO_ 2147483904 Pm: 8 X\n" + sg("A", 0, 8) + "\n"
    text += "BO_ 2147483911 Exact: 8 X\n" + sg("B", 0, 8) + "\n" + attrs
    db = load_dbc_text(text, "r.dbc")
    assert [w.kind for w in db.warnings] == ["masked_id_overlap"]
    rebuilt = apply_mask_overrides(db, [FamilyConfig("pm", mask=0xFF)])
    assert rebuilt is not db and rebuilt.warnings == db.warnings
