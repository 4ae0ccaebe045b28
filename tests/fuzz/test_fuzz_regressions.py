"""Regression tests for the bugs the fuzzers found (docs/fuzzing.md lists them).

Each test is the minimal input a fuzzer produced (or its readable equivalent) and the
behaviour the contract asks for: a clear error naming where, or a count of what was
skipped, never another exception.
"""

from __future__ import annotations

import gzip
import math
import re
import struct
from pathlib import Path

import pytest

from candiag.capture import CaptureReader
from candiag.capture.formats.candump import parse_candump
from candiag.cli import main
from candiag.config.load import load_config, parse_config_text
from candiag.decode.dbc import load_dbc_paths
from candiag.errors import CaptureError, ConfigError, DbcError, PortUnavailableError, ProfileError
from candiag.modbus.link import make_link, with_crc
from candiag.modbus.profile import decode_block, find_profile, load_profile
from fuzz.targets import PROFILE_DIR, ROOT, ScriptedStream, check_candump, scripted_link

MODBUS_PORT = """
[[modbus.ports]]
port = "{port}"
[[modbus.ports.devices]]
profile = "sdm120"
"""


# -- candump ---------------------------------------------------------------------------------
def test_candump_timestamp_beyond_int64_is_malformed_not_written_as_garbage() -> None:
    """Found by hypothesis: ``(10000000000000000000)`` was accepted, then written back as
    ``(-09223372036854775808.000000)`` (int64 overflow in the formatter)."""
    parsed = parse_candump(b"(10000000000000000000)\tcan0\t00000000#00000000000A\n")
    assert len(parsed.batch) == 0
    assert "more than 17 digits" in parsed.malformed[0].reason
    check_candump(b"(10000000000000000000)\t\x00\t00000000#00000000000A")  # the fuzzer's input
    ok = parse_candump(b"(1234567890123456.5) can0 123#01\n")
    assert len(ok.batch) == 1
    check_candump(b"(1234567890123456.5) can0 123#01\n")


def test_candump_far_future_timestamps_keep_within_a_microsecond() -> None:
    """Found by make fuzz: after 2**32 s (year 2106) float64 cannot hold every microsecond,
    so re-formatting may move the last digit; the value stays within 1 µs (float64
    timestamps are the FrameBatch model, so this is a documented limit, not a fix)."""
    from candiag.capture.formats.candump import format_candump

    first = parse_candump(b"(10000000000.00117)\tcan0\t000#00")
    again = parse_candump(format_candump(first.batch))
    assert abs(again.batch.timestamp[0] - 10000000000.00117) <= 2e-6
    check_candump(b"(10000000000.00117)\t\x00\t000#00")  # the fuzzer's input


# -- python-can capture formats ----------------------------------------------------------------
def test_blf_cut_inside_its_header_is_a_capture_error(tmp_path: Path) -> None:
    """Found by hypothesis: python-can's BLF reader raised struct.error from its constructor."""
    path = tmp_path / "cut.blf"
    path.write_bytes(b"LOGG" + b"\0" * 20)
    with pytest.raises(CaptureError, match=r"cut\.blf: python-can cannot open it as blf"):
        list(CaptureReader(path).batches())


def test_blf_with_a_bad_object_is_a_capture_error(tmp_path: Path) -> None:
    """Found by hypothesis: BLFParseError (not a ValueError) escaped the reader."""
    path = tmp_path / "bad.blf"
    path.write_bytes(b"\x06" + b"\0" * 160)
    with pytest.raises(CaptureError, match=r"bad\.blf"):
        list(CaptureReader(path).batches())


def test_asc_gz_that_is_not_gzip_reports_where_it_stopped(tmp_path: Path) -> None:
    """Found by hypothesis: gzip.BadGzipFile (an OSError) escaped while iterating."""
    path = tmp_path / "broken.asc.gz"
    path.write_bytes(b"\x1f")
    try:
        reader = CaptureReader(path)
        batches = list(reader.batches())
    except CaptureError as err:
        assert "broken.asc.gz" in str(err)
        return
    assert not batches
    assert reader.stats.malformed == 1
    assert "reader stopped" in reader.stats.examples[0].reason


def test_asc_gz_cut_short_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    asc = (
        "date Sat Nov 21 10:00:00.000 am 2026\nbase hex  timestamps absolute\n"
        "internal events logged\nBegin Triggerblock Sat Nov 21 10:00:00.000 am 2026\n"
        + "".join(f"   {i * 0.01:.6f} 1  123             Rx   d 2 01 02\n" for i in range(2000))
    )
    packed = gzip.compress(asc.encode(), mtime=0)
    path = tmp_path / "cut.asc.gz"
    path.write_bytes(packed[: len(packed) // 2])
    reader = CaptureReader(path)
    frames = sum(len(b) for b in reader.batches())
    assert 0 < frames < 2000
    # Every whole line before the cut is read; the torn last line is reported, not parsed.
    assert reader.stats.truncated and reader.stats.malformed == 1
    assert "cut short" in reader.stats.examples[0].reason


# -- DBC ---------------------------------------------------------------------------------------
DBC = """VERSION ""

NS_ :

BS_:

BU_:

BO_ 256 Status: 8 Vector__XXX
 SG_ Speed : 0|16@1+ (1,0) [0|0] "" Vector__XXX
{extra}
"""


def test_dbc_with_a_byte_cp1252_leaves_undefined(tmp_path: Path) -> None:
    """Found by hypothesis: byte 0x81 made load_dbc_paths raise UnicodeDecodeError."""
    comment = tmp_path / "comment.dbc"
    text = DBC.format(extra='CM_ BO_ 256 "caf\x81 text";')
    comment.write_bytes(text.encode("latin-1"))
    assert load_dbc_paths([comment]).by_name("Status").frame_id == 256
    name = tmp_path / "name.dbc"
    name.write_bytes(DBC.format(extra="").replace("Speed", "Sp\x81ed").encode("latin-1"))
    with pytest.raises(DbcError, match=r"name\.dbc:10:8: invalid syntax"):
        load_dbc_paths([name])


# -- config and check-config -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "where"),
    [
        # Found by hypothesis (config_tree): OverflowError formatting the value.
        (MODBUS_PORT.format(port="/dev/ttyUSB0") + "interval = " + "9" * 400, "modbus.ports"),
        (
            '[[can.buses]]\nname = "a"\ninterface = "virtual"\nchannel = "x"\n'
            '[[can.buses.families]]\nname = "power_module"\ntimeout_s = ' + "9" * 400,
            "can.buses[0].families[0].timeout_s",
        ),
        ("[metrics]\nlisten = 0x" + "f" * 5000, "metrics.listen"),
        # Found by hypothesis: ValueError from urllib ("Port out of range", "Invalid IPv6 URL").
        (MODBUS_PORT.format(port="tcp://127.0.0.1:99999"), "modbus.ports[0].port"),
        (MODBUS_PORT.format(port="rtu+tcp://[::1"), "modbus.ports[0].port"),
    ],
)
def test_config_values_that_crashed_the_loader(text: str, where: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "fuzz.toml")
    problems = caught.value.problems
    assert any(re.match(rf"fuzz\.toml:\d+:\d+: {re.escape(where)}", p) for p in problems), problems
    path = tmp_path / "candiag.toml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2


def test_config_integer_longer_than_4300_digits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by hypothesis: tomllib raises a plain ValueError (int()'s digit limit)."""
    with pytest.raises(ConfigError, match=r"^big\.toml:2:5: expected a 64-bit integer, found a"):
        parse_config_text("[daemon]\nx = " + "9" * 5000, "big.toml")
    path = tmp_path / "big.toml"
    path.write_text("[daemon]\nx = " + "9" * 5000)
    assert main(["check-config", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"big\.toml"):
        load_config(path)


def test_make_link_refuses_an_unusable_port_with_a_link_error() -> None:
    for port in ("tcp://127.0.0.1:99999", "tcp://[::1", "rtu+tcp://host:port"):
        with pytest.raises(PortUnavailableError, match="cannot use port"):
            make_link(port)
    assert make_link("TCP://127.0.0.1:502").description == "tcp://127.0.0.1:502"


# -- meter profiles ----------------------------------------------------------------------------
def _profile_text(**replace: str) -> str:
    text = (PROFILE_DIR / "sdm120.toml").read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_profile_number_beyond_64_bits(tmp_path: Path) -> None:
    """Found by hypothesis: math.isfinite(10**400) raised OverflowError."""
    path = tmp_path / "huge.toml"
    path.write_text(_profile_text(**{'unit = "V"': 'unit = "V"\nscale = 1' + "0" * 400}))
    with pytest.raises(ProfileError, match=r"huge\.toml:\d+:1: quantities\.voltage_l1\.scale: "):
        load_profile(path)


def test_profile_that_is_not_utf8_or_has_a_5000_digit_number(tmp_path: Path) -> None:
    """Found by hypothesis: UnicodeDecodeError and int()'s ValueError escaped load_profile."""
    latin = tmp_path / "latin.toml"
    latin.write_bytes(_profile_text().encode("utf-8").replace("°".encode(), b"\xb0") + b"\x80")
    with pytest.raises(ProfileError, match=r"latin\.toml:\d+:\d+: expected UTF-8 text, found byte"):
        load_profile(latin)
    digits = tmp_path / "digits.toml"
    digits.write_text(_profile_text(**{"unit_id = 1": "unit_id = " + "1" * 5000}))
    with pytest.raises(ProfileError, match=r"digits\.toml:\d+:\d+: expected a 64-bit integer"):
        load_profile(digits)


def test_exponent_register_with_a_nonsense_exponent_is_skipped_not_raised() -> None:
    """Found by hypothesis (modbus_poller): 10.0**exponent raised OverflowError in the
    polling thread for a DJSF1352 reply with a decimal-point code of 400."""
    profile = find_profile(str(PROFILE_DIR / "djsf1352.toml"))
    block = profile.blocks[0]
    registers = [0] * block.count
    registers[0], registers[1] = 1234, 400  # voltage raw, its exponent register
    values = decode_block(profile, block, registers)
    assert "voltage" not in values
    registers[1] = 3  # 10^(3-3): the real scale
    assert math.isclose(decode_block(profile, block, registers)["voltage"], 1234.0)


def test_poller_survives_a_reply_with_a_nonsense_exponent() -> None:
    from candiag.modbus.config import DeviceConfig, PortConfig
    from candiag.modbus.poller import PortPoller

    path = str(ROOT / "config" / "meters" / "djsf1352.toml")
    profile = find_profile(path)
    replies: list[bytes | None] = []
    for block in profile.blocks:
        registers = [400] * block.count
        data = struct.pack(f">{block.count}H", *registers)
        replies.append(with_crc(bytes([1, block.function, len(data)]) + data))
    port = PortConfig(
        name="p",
        port="/dev/null",
        transport="tcp",
        gap=0.0,
        id_switch_pause=0.0,
        devices=(DeviceConfig(name="dc", profile=path, unit_id=1),),
    )
    poller = PortPoller(port, link=scripted_link(ScriptedStream(replies)))
    poller.poll_once()
    (snap,) = poller.snapshot()
    assert snap.up
    assert "voltage" not in snap.readings and "current" not in snap.readings
    assert all(math.isfinite(r.value) for r in snap.readings.values())


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # Found by hypothesis (config_tree): OSError ENAMETOOLONG from Path.is_file/exists.
        (
            MODBUS_PORT.format(port="/dev/null").replace('"sdm120"', '"' + "x" * 300 + '"'),
            "modbus.ports[0].devices[0]",
        ),
        (
            MODBUS_PORT.format(port="/dev/null").replace('"sdm120"', '"/' + "x" * 300 + '.toml"'),
            "modbus.ports[0].devices[0]",
        ),
        (
            '[[can.buses]]\nname = "a"\ninterface = "virtual"\nchannel = "x"\ndbc = ["'
            + "x" * 300
            + '"]\n',
            "can.buses[0].dbc[0]: expected a usable file path",
        ),
        ('[metrics]\nweb_config_file = "' + "y" * 300 + '"\n', "metrics.web_config_file"),
        # RuntimeError from Path.expanduser for an unknown user.
        (
            '[[can.buses]]\nname = "a"\ninterface = "virtual"\nchannel = "x"\n'
            'dbc = ["~nosuchuser-candiag/x.dbc"]\n',
            "can.buses[0].dbc[0]: expected a usable file path",
        ),
    ],
)
def test_config_paths_the_file_system_refuses(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text.replace("/dev/ttyUSB0", "/dev/null"), "paths.toml")
    problems = caught.value.problems
    assert any(re.match(rf"paths\.toml:\d+:\d+: {re.escape(where)}", p) for p in problems), problems
    assert all(len(p) < 500 for p in problems), "a value from the file was copied whole"


def test_find_profile_with_a_name_too_long_for_the_file_system() -> None:
    with pytest.raises(ProfileError, match="unknown meter profile"):
        find_profile("x" * 300)
    with pytest.raises(ProfileError, match="meter profile file not found"):
        find_profile("/" + "x" * 300 + ".toml")


FAMILY = (
    '[[can.buses]]\nname = "a"\ninterface = "virtual"\nchannel = "x"\n'
    '[[can.buses.families]]\nname = "power_module"\nexpected = {expected}\n'
)


def test_expected_address_range_with_thousands_of_digits() -> None:
    """Found by make fuzz: int() of a 63,179-digit range bound raised ValueError."""
    with pytest.raises(ConfigError) as caught:
        parse_config_text(FAMILY.format(expected='["1-' + "9" * 5000 + '"]'), "range.toml")
    assert caught.value.problems[0].startswith(
        "range.toml:7:13: can.buses[0].families[0].expected[0]: expected"
    )


def test_many_overlapping_address_ranges_are_reported_not_hung_on() -> None:
    """Seen while fixing the above: duplicates were found with list.count per address,
    quadratic (about 10**12 steps for 200 full ranges; pytest-timeout would catch a hang)."""
    ranges = ", ".join(['"0-4096"'] * 200)
    with pytest.raises(ConfigError) as caught:
        parse_config_text(FAMILY.format(expected=f"[{ranges}]"), "dupes.toml")
    (problem,) = caught.value.problems
    assert problem.startswith(
        "dupes.toml:7:1: can.buses[0].families[0].expected: expected each address once"
    )
    assert "4096]" in problem


def test_metrics_listen_port_with_thousands_of_digits() -> None:
    """Seen while fixing the ranges: int() of a 5,000-digit port raised ValueError."""
    with pytest.raises(ConfigError, match=r"metrics\.listen: .*port must be 0-65535"):
        parse_config_text('[metrics]\nlisten = "127.0.0.1:' + "9" * 5000 + '"\n', "l.toml")
    from candiag.config.listen import split_listen

    assert split_listen("127.0.0.1:009847") == ("127.0.0.1", 9847)
    assert split_listen("[::1]:0") == ("::1", 0)
