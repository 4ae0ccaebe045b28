"""The problems toolkit (candiag.config.problems, .toml, .files): the one format, key paths,
"did you mean", ranges, and where each key of a TOML file is."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
from hypothesis import given, settings
from hypothesis import strategies as st

from candiag.config.files import decode_utf8, read_bytes
from candiag.config.problems import (
    Limit,
    Problem,
    Problems,
    did_you_mean,
    key_text,
    oversized_integers,
    quoted,
)
from candiag.config.toml import key_positions, parse_toml
from candiag.errors import ConfigError, ProfileError

REPO = Path(__file__).resolve().parent.parent


def test_a_problem_reads_file_line_column_key_expected_found_fix() -> None:
    problem = Problem("c.toml", "log.level", "one of debug, info", "'loud'", "fix it", 3, 9)
    assert (
        str(problem) == "c.toml:3:9: log.level: expected one of debug, info, found 'loud'; fix it"
    )
    assert str(Problem("c.toml", "", "UTF-8 text", "byte 0xff")) == (
        "c.toml: expected UTF-8 text, found byte 0xff"
    )
    assert Problem("c.toml", "a", "x", "y", line=2).where == "c.toml:2"


def test_key_paths_quote_what_toml_would_quote_and_cut_long_keys() -> None:
    assert key_text(("can", "buses", 1, "bitrate")) == "can.buses[1].bitrate"
    assert key_text(("can", "buses", 0, "listen_only ")) == 'can.buses[0]."listen_only "'
    assert key_text(("users", "a:b")) == 'users."a:b"'
    assert key_text(("a.b",)) == '"a.b"'
    long = key_text(("x" * 10_000,))
    assert len(long) < 70 and long.endswith('…"')
    assert key_text(()) == ""


def test_did_you_mean_and_quoted() -> None:
    assert did_you_mean("bitrat", ["bitrate", "channel"]) == "did you mean 'bitrate'?"
    assert did_you_mean("zzz", ["bitrate", "channel"]) == ""
    assert did_you_mean("x" * 100_000, ["bitrate"]) == ""  # bounded work
    assert quoted("/etc/candiag/meters/my.toml") == "'/etc/candiag/meters/my.toml'"
    long = quoted("/" + "d" * 500 + "/my_meter.toml")
    assert long.endswith("my_meter.toml'") and len(long) < 170


@pytest.mark.parametrize(
    ("limit", "value", "allowed"),
    [
        (Limit(1, 10), 5, True),
        (Limit(1, 10), 5.5, True),
        (Limit(1, 10), 0, False),
        (Limit(1, 10), math.nan, False),
        (Limit(-math.inf, math.inf), math.inf, False),  # never infinite, whatever the range
        (Limit(1, 10), True, False),
        (Limit(1, 10), "5", False),
        (Limit(1, 10, kind="integer"), 5.0, False),
        (Limit(1, 10, kind="integer"), 5, True),
        (Limit(1, 10, kind="whole"), 5.0, True),
        (Limit(1, 10, kind="whole"), 5.5, False),
    ],
)
def test_limits_take_finite_numbers_of_the_right_kind(
    limit: Limit, value: object, allowed: bool
) -> None:
    assert limit.allows(value) is allowed


def test_limit_wording() -> None:
    assert Limit(0.01, 1, "a share").expected() == "a number in 0.01..1 (a share)"
    assert Limit(1, 1e6, kind="whole").expected() == "a whole number in 1..1000000"
    assert Limit(300, 1_000_000, kind="integer").expected() == "an integer in 300..1000000"


def test_readers_report_type_range_and_unknown_keys_with_positions() -> None:
    text = '[log]\nlevel = "loud"\nlevl = 1\n[daemon]\ninterval = nan\ncount = 1.5\n'
    problems = Problems("t.toml")
    data = parse_toml(text, problems)
    assert data is not None and not problems.lines
    log = problems.table(data["log"], ("log",), {"level"})
    problems.choice(log, ("log",), "level", ("debug", "info"))
    daemon = problems.table(data["daemon"], ("daemon",))
    problems.number(daemon, ("daemon",), "interval", 0.01, 10.0, meaning="seconds")
    problems.integer(daemon, ("daemon",), "count", 1, 5)
    problems.string(daemon, ("daemon",), "name", required=True)
    assert problems.lines == [
        "t.toml:3:1: log.levl: expected a key of log (level), found an unknown key; did you mean "
        "'level'?",
        "t.toml:2:1: log.level: expected one of debug, info, found 'loud'",
        "t.toml:5:1: daemon.interval: expected a number in 0.01..10 (seconds), found nan",
        "t.toml:6:1: daemon.count: expected an integer in 1..5, found a number 1.5",
        # Not in the file: placed at its table.
        "t.toml:4:1: daemon.name: expected a non-empty string, found nothing; this key is required",
    ]
    with pytest.raises(ConfigError) as info:
        problems.raise_if_any()
    assert info.value.problems == problems.lines
    assert str(info.value).startswith("t.toml: 5 problems:\n  - t.toml:3:1: log.levl:")


def test_problems_of_another_file_keep_their_own_location() -> None:
    problems = Problems("candiag.toml")
    problems.add(("modbus", "ports", 0, "devices", 0, "profile"), "a valid profile", "'x.toml'")
    problems.extend(["x.toml:3:1: quantities.voltage.unit: expected one of V, found 'volts'"])
    error = problems.error(ProfileError)
    assert isinstance(error, ConfigError)
    assert error.problems == [
        "candiag.toml: modbus.ports[0].devices[0].profile: expected a valid profile, found 'x.toml'",
        "x.toml:3:1: quantities.voltage.unit: expected one of V, found 'volts'",
    ]


def test_a_config_error_built_from_plain_text_is_prefixed_with_its_file() -> None:
    err = ConfigError(["a: expected b, found c", "d: expected e, found f"], path="x.toml")
    assert err.problems == ["x.toml: a: expected b, found c", "x.toml: d: expected e, found f"]
    assert str(ConfigError("a: expected b, found c", path="x.toml")) == (
        "x.toml: a: expected b, found c"
    )


def test_a_value_from_the_file_is_never_copied_whole() -> None:
    problems = Problems("t.toml")
    problems.add_value(("a",), "an integer", "x" * 1_000_000)
    problems.add(("b",), "something", "y" * 1_000_000 + " the end")
    assert all(len(line) < 500 for line in problems.lines)
    assert problems.lines[1].endswith(" the end")


# --- TOML: syntax, 64 bits, where each key is ---------------------------------------------------


def test_toml_syntax_error_at_its_line_and_column() -> None:
    problems = Problems("t.toml")
    assert parse_toml('[log]\nlevel = "info"\nthis is not toml\n', problems) is None
    assert problems.lines == [
        "t.toml:3:6: expected valid TOML, found a TOML syntax error (Expected '=' after a key in "
        "a key/value pair); fix the TOML syntax"
    ]


def test_integers_beyond_64_bits_and_beyond_4300_digits() -> None:
    problems = Problems("t.toml")
    assert parse_toml("[a]\nb = [1, 99999999999999999999]\n", problems) is None
    assert problems.lines == ["t.toml:2:9: a.b[1]: expected a 64-bit integer, found a larger one"]
    problems = Problems("t.toml")
    assert parse_toml("[a]\nb = " + "9" * 5000 + "\n", problems) is None
    assert problems.lines[0].startswith("t.toml:2:5: expected a 64-bit integer, found a value ")
    assert list(oversized_integers({"x": [1 << 63, -(1 << 63)]})) == [("x", 0)]


def test_files_that_cannot_be_read(tmp_path: Path) -> None:
    problems = Problems("f")
    assert read_bytes(tmp_path / "absent", problems, hint="give another") is None
    assert read_bytes(tmp_path, problems, hint="give a file") is None
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2048)
    assert read_bytes(big, problems, hint="smaller", max_bytes=1024) is None
    assert decode_utf8(b"ok\nab\xffc", problems) is None
    assert problems.lines == [
        "f: expected an existing file, found no such file; give another",
        "f: expected a regular file, found a folder; give a file",
        "f: expected at most 1024 bytes, found 2048 bytes; smaller",
        "f:2:3: expected UTF-8 text, found byte 0xff; save the file as UTF-8",
    ]


TRICKY = '''\
# a comment with key = 1
title = """
not_a_key = 1
[not_a_table]
"""
literal = \'\'\'x = 1\'\'\'
"quoted key" = 1
'dotted.quoted'.inner = 2
a.b . c = 3
[[can.buses]]
name = "a"
families = [ { name = "x", expected = [1, 2] },
             { name = "y" } ]
[[can.buses]]
name = "b"  # trailing comment
[[can.buses.families]]
name = "z"
[can.buses.extra]
k = "v\\"k = 2"
[[can.buses]]
[[can.buses.families]]
[[can.buses.families]]
deep = [[[1]], [[2, 3]]]
time = 1979-05-27 07:32:00Z
'''


def test_key_positions_in_a_tricky_file() -> None:
    positions = key_positions(TRICKY)
    assert positions[("title",)] == (2, 1)
    assert ("not_a_key",) not in positions and ("not_a_table",) not in positions
    assert positions[("literal",)] == (6, 1)
    assert positions[("quoted key",)] == (7, 1)
    assert positions[("dotted.quoted", "inner")] == (8, 1)
    assert positions[("a", "b", "c")] == (9, 1)
    assert positions[("can", "buses", 0)] == (10, 1)
    assert positions[("can", "buses", 0, "families", 0, "expected", 1)] == (12, 43)
    assert positions[("can", "buses", 0, "families", 1, "name")] == (13, 16)
    assert positions[("can", "buses", 1, "name")] == (15, 1)
    assert positions[("can", "buses", 1, "families", 0, "name")] == (17, 1)
    assert positions[("can", "buses", 1, "extra", "k")] == (19, 1)
    assert ("k",) not in positions  # inside a string
    assert positions[("can", "buses", 2)] == (20, 1)
    assert positions[("can", "buses", 2, "families", 1, "deep", 1, 0, 1)] == (23, 21)
    assert positions[("can", "buses", 2, "families", 1, "time")] == (24, 1)


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        out = [path] if path else []
        for key, value in node.items():
            out += _leaf_paths(value, (*path, key))
        return out
    if isinstance(node, list):
        out = [path]
        for i, value in enumerate(node):
            out += _leaf_paths(value, (*path, i))
        return out
    return [path]


def _repo_toml_files() -> list[Path]:
    return sorted(
        p
        for folder in ("config", "candiag", "tests/data")
        for p in (REPO / folder).rglob("*.toml")
        if p.is_file()
    )


@pytest.mark.parametrize("path", _repo_toml_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_key_of_every_toml_file_of_the_repository_has_its_position(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    positions = key_positions(text)
    missing = [p for p in _leaf_paths(data) if p not in positions]
    assert not missing, missing[:5]
    lines = text.splitlines()
    for key_path, (line, column) in positions.items():
        last = key_path[-1]
        if isinstance(last, str) and last.isidentifier():  # a bare key: on its line
            assert last in lines[line - 1][column - 1 :], (key_path, line, column)


_keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
_scalars = st.one_of(
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.booleans(),
    st.text(max_size=12),
    st.floats(allow_nan=False),
)
_documents = st.recursive(
    st.dictionaries(_keys, _scalars, max_size=4),
    lambda inner: st.dictionaries(
        _keys,
        st.one_of(_scalars, inner, st.lists(inner, max_size=3), st.lists(_scalars)),
        max_size=4,
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(document=_documents)
def test_every_key_of_a_random_document_has_its_position(document: dict[str, Any]) -> None:
    from fuzz.targets import toml_dumps

    text = toml_dumps(document)
    data = tomllib.loads(text)
    positions = key_positions(text)
    missing = [p for p in _leaf_paths(data) if p not in positions]
    assert not missing, (text, missing[:5])


def test_the_scanner_is_linear_on_a_hostile_file() -> None:
    # 200,000 keys in one inline table and an array nested past the recorded depth.
    text = "a = {" + ", ".join(f"k{i} = {i}" for i in range(200_000)) + "}\n"
    text += "b = " + "[" * 200 + "1" + "]" * 200 + "\n"
    positions = key_positions(text)
    assert positions[("a", "k199999")][0] == 1 and ("b",) in positions


# --- one tomllib import, config without the daemon or a simulator ------------------------------


def test_tomllib_is_imported_in_one_place() -> None:
    importers = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "candiag").rglob("*.py")
        if "import tomllib" in p.read_text(encoding="utf-8")
        or "import tomli " in p.read_text(encoding="utf-8")
    )
    assert importers == ["candiag/config/toml.py"]


def test_loading_and_checking_a_config_imports_no_daemon_and_no_simulator() -> None:
    code = (
        "import sys\n"
        "from candiag.config.check import load_and_check\n"
        "from candiag.config.load import load_config\n"
        f"c = load_config({str(REPO / 'config' / 'demo.toml')!r})\n"
        "assert c.simulator is not None\n"
        "bad = [m for m in sys.modules if m.startswith(('candiag.daemon', 'candiag.tui',"
        " 'candiag.sim.faults', 'candiag.sim.charger', 'candiag.sim.runner', 'candiag.modbus.sim',"
        " 'pymodbus'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
