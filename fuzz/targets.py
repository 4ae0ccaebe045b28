"""The fuzz targets: for each input path, a check that takes bytes and asserts the contract.

The contract of every input path (docs/fuzzing.md): bad input gives a result plus a count
of what was skipped, or a :class:`~candiag.errors.CandiagError` subclass whose message says
where; never another exception, never a hang.  A check raises ``AssertionError`` (or lets
the unexpected exception through) when that contract is broken; both engines record that
as a crash.

Inputs are bytes so that atheris (libFuzzer) and hypothesis drive the same code;
:class:`ByteReader` turns bytes into structured choices (layouts, key paths, replies) the
way atheris' ``FuzzedDataProvider`` does, but in plain Python so it runs without atheris.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import io
import itertools
import json
import math
import random
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tomllib

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

ROOT = Path(__file__).resolve().parent.parent
CRASH_DIR = ROOT / "fuzz" / "crashes"

# --------------------------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------------------------


class ByteReader:
    """Structured choices consumed from the front of a byte string.

    Past its end the input is extended by a PRNG seeded with the input itself, so that a
    short input still describes a rich structure (many signals, several frames) while
    the fuzzer keeps control through the bytes it does give.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self._more: random.Random | None = None

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += len(chunk)
        if len(chunk) < n:
            if self._more is None:
                self._more = random.Random(zlib.crc32(self.data) ^ len(self.data))
            chunk += self._more.randbytes(n - len(chunk))
        return chunk

    def int(self, lo: int, hi: int) -> int:
        span = hi - lo
        if span <= 0:
            return lo
        chunk = self.take((span.bit_length() + 7) // 8)
        return lo + int.from_bytes(chunk, "little") % (span + 1)

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def pick(self, items: Any) -> Any:
        seq = list(items)
        return seq[self.int(0, len(seq) - 1)]

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


_SCRATCH: list[Path] = []
_COUNTER = itertools.count()


def scratch_file(suffix: str, content: bytes) -> Path:
    """A fresh file in this process's scratch folder (removed at exit)."""
    if not _SCRATCH:
        folder = Path(tempfile.mkdtemp(prefix="candiag-fuzz-"))
        _SCRATCH.append(folder)
        atexit.register(shutil.rmtree, folder, True)
    path = _SCRATCH[0] / f"in{next(_COUNTER)}{suffix}"
    path.write_bytes(content)
    return path


def mutate(data: bytes, r: ByteReader) -> bytes:
    """Byte-level damage to a valid file: the usual ways files go bad in the field."""
    buf = bytearray(data)
    for _ in range(r.int(1, 6)):
        op = r.int(0, 9)
        pos = r.int(0, max(len(buf), 1) - 1) if buf else 0
        if op == 0 and buf:  # flip one bit
            buf[pos] ^= 1 << r.int(0, 7)
        elif op == 1:  # insert random bytes
            buf[pos:pos] = r.take(r.int(1, 8))
        elif op == 2 and buf:  # delete a run
            del buf[pos : pos + r.int(1, 16)]
        elif op == 3:  # truncate (a recording cut by a power loss)
            del buf[pos:]
        elif op == 4:  # NUL bytes
            buf[pos:pos] = b"\0" * r.int(1, 4)
        elif op == 5:  # non-UTF-8
            buf[pos:pos] = r.pick([b"\xff", b"\xc3", b"\x81", b"\xed\xa0\x80", b"\xfe\xfe"])
        elif op == 6:  # line endings
            buf[pos:pos] = r.pick([b"\r", b"\r\n", b"\n\n", b"\n\r"])
        elif op == 7:  # a huge line
            buf[pos:pos] = r.pick([b"A", b"0", b"9", b" ", b"#", b"."]) * r.int(100, 70_000)
        elif op == 8 and buf:  # duplicate a slice
            end = min(len(buf), pos + r.int(1, 200))
            buf[pos:pos] = buf[pos:end]
        elif op == 9:  # a token from the format's grammar
            buf[pos:pos] = r.pick(
                [b"#", b"##", b"###", b"(", b")", b"=", b'"', b"[", b"]", b"{", b"}", b"\\", b";",
                 b"-", b"0x", b"1e999", b"99999999999999999999", b"nan", b"inf", b"R", b"_"]
            )  # fmt: skip
    return bytes(buf)


# --------------------------------------------------------------------------------------------
# 1. candump text and capture files
# --------------------------------------------------------------------------------------------


def check_candump(data: bytes) -> None:
    """parse_candump: every line is a frame, a malformed entry or blank; frames round-trip."""
    from candiag.capture.formats.candump import format_candump, parse_candump
    from candiag.capture.formats.candump.formatter import channel_token

    parsed = parse_candump(data)
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    assert parsed.lines == lines, f"{parsed.lines} lines parsed, {lines} in the input"
    batch = parsed.batch
    accounted = len(batch) + len(parsed.malformed) + parsed.blank
    assert accounted == lines, "a line was neither a frame, malformed nor blank"
    numbers = [m.line for m in parsed.malformed]
    assert numbers == sorted(set(numbers)) and all(1 <= n <= lines for n in numbers)
    assert all(m.reason for m in parsed.malformed)
    assert np.isfinite(batch.timestamp).all()
    assert (batch.dlc <= batch.data.shape[1]).all()
    text = format_candump(batch)
    again = parse_candump(text)
    assert not again.malformed, f"formatted frames do not parse back: {again.malformed[:2]}"
    assert len(again.batch) == len(batch)
    b2 = again.batch
    assert np.array_equal(b2.can_id, batch.can_id)
    assert np.array_equal(b2.flags, batch.flags)
    assert np.array_equal(b2.dlc, batch.dlc)
    width = min(b2.data.shape[1], batch.data.shape[1])
    assert np.array_equal(b2.data[:, :width], batch.data[:, :width])
    assert not b2.data[:, width:].any() and not batch.data[:, width:].any()
    names = [channel_token(c).decode() for c in batch.channels]
    assert [b2.channels[i] for i in b2.channel] == [names[i] for i in batch.channel]
    tolerance = 1e-6 + 4 * np.spacing(np.abs(batch.timestamp))
    assert (np.abs(b2.timestamp - batch.timestamp) <= tolerance).all(), "timestamps drifted"
    if (np.abs(batch.timestamp) < _EXACT_MICROSECONDS).all():
        assert format_candump(b2) == text, "formatting is not a fixpoint"


# Below 2**32 s (year 2106) a float64 timestamp holds every microsecond exactly enough for
# `%.6f` to be a fixpoint; beyond, its spacing approaches 1 µs and re-formatting may move
# the last digit (the 1 µs tolerance above still holds).  Found by `make fuzz`.
_EXACT_MICROSECONDS = 2.0**32


_CAPTURE_SUFFIXES = (".log", ".log.gz", ".candump", ".asc", ".trc", ".csv", ".blf", ".txt")


def check_capture_file(data: bytes) -> None:
    """CaptureReader on a file of any suffix: batches and consistent stats, or CaptureError."""
    from candiag.capture import CaptureReader
    from candiag.errors import CaptureError

    r = ByteReader(data)
    suffix = r.pick(_CAPTURE_SUFFIXES)
    compress = r.int(0, 3) == 0 and not suffix.endswith(".gz")
    chunk_lines = r.pick([1, 3, 64, 262_144])
    body = r.rest()
    if suffix.endswith(".gz") or compress:
        packed = bytearray(gzip.compress(body, mtime=0))
        damage = ByteReader(body[:8])
        kind = damage.int(0, 3)
        if kind == 1 and packed:  # truncated (no trailer)
            del packed[damage.int(1, len(packed)) :]
        elif kind == 2 and packed:  # corrupted byte
            packed[damage.int(0, len(packed) - 1)] ^= 0x5A
        body = bytes(packed)
        suffix += "" if suffix.endswith(".gz") else ".gz"
    path = scratch_file(suffix, body)
    try:
        reader = CaptureReader(path, chunk_lines=chunk_lines, block_bytes=r.pick([None, 7, 4096]))
        batches = list(reader.batches())
    except CaptureError as err:
        assert str(path) in str(err), f"CaptureError does not name the file: {err}"
        return
    finally:
        path.unlink(missing_ok=True)
    stats = reader.stats
    assert stats.frames == sum(len(b) for b in batches)
    assert len(stats.examples) == min(stats.malformed, 10)
    assert all(len(b) for b in batches)
    if reader.format == "candump":
        assert stats.frames + stats.malformed + stats.blank == stats.lines, "candump lines lost"
    assert stats.summary().startswith(str(path))


# --------------------------------------------------------------------------------------------
# 2. DBC loading and the vectorized decoder
# --------------------------------------------------------------------------------------------

_DBC_LINE_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+)(?::\d+)?: ")


def _check_dbc_error(message: str, path: str, text: str) -> None:
    assert message.startswith(path), f"DbcError does not name the file: {message}"
    match = _DBC_LINE_RE.match(message)
    if match and match.group("path") == path:
        line = int(match.group("line"))
        assert 1 <= line <= text.count("\n") + 2, f"DbcError line {line} outside the file"


def check_dbc_text(data: bytes) -> None:
    """load_dbc_text / load_dbc_paths: a database or a DbcError naming the file (and line)."""
    from candiag.decode.dbc import load_dbc_paths, load_dbc_text
    from candiag.errors import DbcError

    text = data.decode("cp1252", errors="replace")
    try:
        db = load_dbc_text(text, "fuzz.dbc")
    except DbcError as err:
        _check_dbc_error(str(err), "fuzz.dbc", text)
        db = None
    path = scratch_file(".dbc", data)
    try:
        from_file = load_dbc_paths([path])
    except DbcError as err:
        _check_dbc_error(str(err), str(path), text)
        from_file = None
    finally:
        path.unlink(missing_ok=True)
    if from_file is not None:
        _decode_random_frames(from_file, ByteReader(data[-64:]))
    if db is not None:
        _decode_random_frames(db, ByteReader(data[:64]))


def _decode_random_frames(db: Any, r: ByteReader) -> None:
    """Frames for every message of ``db`` (random payloads and lengths) decode like cantools."""
    from candiag.decode.decoder import BatchDecoder

    if not db.messages:
        return
    batch = _frames_for(db.messages, r, np.random.default_rng(r.int(0, 2**32 - 1)), 24)
    result = BatchDecoder(db).decode(batch)
    compare_with_cantools(db, batch, result)


def _frames_for(messages: list[Any], r: ByteReader, rng: np.random.Generator, n: int) -> Any:
    from candiag.ingest.frames import FD_DLC_TO_LEN, FLAG_EXTENDED, FLAG_FD, FrameBatch

    fd_lengths = sorted(set(FD_DLC_TO_LEN))
    choice = rng.integers(0, len(messages), n)
    can_id = np.empty(n, np.uint32)
    flags = np.zeros(n, np.uint8)
    dlc = np.empty(n, np.uint8)
    for row, c in enumerate(choice.tolist()):
        msg = messages[c]
        node = int(rng.integers(0, 1 << 16)) if msg.node_mask else 0
        can_id[row] = msg.frame_id | (msg.node_mask & (node << _low_bit(msg.node_mask)))
        flags[row] = FLAG_EXTENDED if msg.is_extended else 0
        kind = r.int(0, 5)
        if kind == 0:  # short frame: counted, not decoded
            length = int(rng.integers(0, max(msg.length, 1)))
        elif kind == 1:  # longer than the message: first bytes decode
            length = int(rng.choice([x for x in fd_lengths if x >= msg.length] or [64]))
        else:
            length = msg.length
        dlc[row] = min(length, 64)
    data = rng.integers(0, 256, (n, 64), dtype=np.uint8)
    data[np.arange(64)[None, :] >= dlc[:, None]] = 0
    flags[dlc > 8] |= FLAG_FD
    return FrameBatch(
        timestamp=np.arange(n, dtype=np.float64),
        can_id=can_id,
        flags=flags,
        dlc=dlc,
        data=data,
        channel=np.zeros(n, np.int16),
        channels=["can0"],
    )


def _low_bit(mask: int) -> int:
    return (mask & -mask).bit_length() - 1 if mask else 0


def compare_with_cantools(db: Any, batch: Any, result: Any) -> int:
    """Every decoded value equals cantools' ``decode_message(..., decode_choices=False)``.

    Short frames must be counted and not decoded.  Where cantools refuses a frame because
    a multiplexer value selects nothing, candiag keeps the valid signals (decoder docstring).
    """
    import cantools

    lengths = {m.name: m.length for m in db.messages}
    decoded_rows = 0
    checked = 0
    for decoded in result.messages.values():
        msg = decoded.message
        assert np.all(np.diff(decoded.index) > 0), "frames must stay in capture order"
        assert (batch.dlc[decoded.index] >= lengths[msg.name]).all(), "a short frame was decoded"
        decoded_rows += len(decoded)
        for k, row in enumerate(decoded.index.tolist()):
            payload = bytes(batch.data[row, : batch.dlc[row]])
            try:
                want: dict[str, Any] = msg.cantools_message.decode(
                    payload, decode_choices=False, scaling=True
                )
            except (cantools.database.DecodeError, ValueError, KeyError):
                if _layout_refused(msg.cantools_message):
                    checked += _compare_signal_by_signal(decoded, k, payload, f"{msg.name}[{row}]")
                else:
                    _check_refused(decoded, k)
                continue
            got = {s.name for s in msg.signals if decoded.present[s.name][k]}
            assert got == set(want), f"{msg.name} frame {row}: signals {got} != {set(want)}"
            for name, value in want.items():
                _same_value(decoded.signals[name][k], value, f"{msg.name}.{name}[{row}]")
                checked += 1
    assert decoded_rows == result.decoded_frames
    short = sum(result.short_frames.values())
    assert decoded_rows + short + sum(result.unknown_ids.values()) == int(batch.is_data.sum())
    return checked


def _layout_refused(message: Any) -> bool:
    """A DBC loaded leniently: cantools' strict check refuses the message (overlapping
    signals, or a float of no float length), so cantools may refuse every frame of it."""
    import cantools

    if any(s.is_float and s.length not in (16, 32, 64) for s in message.signals):
        return True
    try:
        message.refresh(strict=True)
    except cantools.database.Error:
        return True
    finally:
        message.refresh(strict=False)
    return False


def _compare_signal_by_signal(decoded: Any, k: int, payload: bytes, where: str) -> int:
    """Each present signal equals cantools decoding that signal alone."""
    from cantools.database.can import Message, Signal
    from cantools.database.conversion import BaseConversion

    checked = 0
    for sig in decoded.message.signals:
        if not decoded.present[sig.name][k]:
            continue
        conversion = BaseConversion.factory(sig.scale, sig.offset, None, sig.is_float)
        alone = Signal("x", sig.start, sig.length, sig.byte_order, sig.is_signed,
                       conversion=conversion)  # fmt: skip
        message = Message(frame_id=1, name="m", length=64, signals=[alone], strict=False)
        want = message.decode(payload.ljust(64, b"\0"), decode_choices=False)["x"]
        _same_value(decoded.signals[sig.name][k], want, f"{where}.{sig.name}")
        checked += 1
    return checked


def _check_refused(decoded: Any, k: int) -> None:
    mux_ids: dict[str, set[int]] = {}
    for sig in decoded.message.signals:
        if sig.multiplexer_signal is not None:
            mux_ids.setdefault(sig.multiplexer_signal, set()).update(sig.multiplexer_ids or ())
    assert any(
        decoded.present[mux][k] and _selector(decoded.signals[mux][k]) not in ids
        for mux, ids in mux_ids.items()
    ), f"{decoded.message.name}[{k}]: cantools refused a frame candiag decoded as valid"


def _selector(value: Any) -> int:
    v = float(value) if isinstance(value, float | np.floating) else int(value)
    return int(v) if isinstance(v, int) or math.isfinite(v) else -1


def _same_value(got: Any, want: Any, where: str) -> None:
    if isinstance(want, int):
        assert not isinstance(got, float | np.floating), f"{where}: int expected, got {got!r}"
        assert int(got) == want, f"{where}: {got!r} != {want!r}"
        return
    got_f, want_f = float(got), float(want)
    if math.isnan(want_f):
        assert math.isnan(got_f), f"{where}: {got_f!r} != nan"
    else:
        assert got_f == want_f or math.isclose(got_f, want_f, rel_tol=1e-9, abs_tol=1e-300), (
            f"{where}: {got_f!r} != {want_f!r}"
        )


_SCALINGS = [("1", "0"), ("1", "-40"), ("-3", "7"), ("0.1", "0"), ("0.001", "-500"),
             ("2.5", "0.25"), ("1", "0.5"), ("1e10", "0"), ("1000000", "-1e15")]  # fmt: skip
_LENGTHS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64]


def random_layout_dbc(r: ByteReader) -> str:
    """A DBC with 1-3 messages of random signal layouts (non-overlapping), FD lengths,
    optional multiplexer and node mask; every signal kind cantools knows."""
    lines = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_:", ""]
    tail: list[str] = ['BA_DEF_ BO_ "CandiagNodeMask" HEX 0 536870911;']
    tail.append('BA_DEF_DEF_ "CandiagNodeMask" 0;')
    used: list[tuple[bool, int, int]] = []
    for index in range(r.int(1, 3)):
        extended = r.bool()
        mask = r.pick([0, 0, 0, 0xFF, 0xF00]) if extended else r.pick([0, 0, 0x7])
        frame_id = r.int(0, 0x1FFFFFFF if extended else 0x7FF) & ~mask
        if _clashes(used, extended, frame_id, mask):
            extended, frame_id, mask = False, 0x7F0 + index, 0
            if _clashes(used, extended, frame_id, mask):
                continue
        used.append((extended, frame_id, mask))
        length = r.pick(_LENGTHS)
        dbc_id = frame_id | (0x80000000 if extended else 0)
        lines.append(f"BO_ {dbc_id} M{index}: {length} Vector__XXX")
        occupied: set[int] = set()
        mux_tag: list[str] = [""]
        if length >= 1 and r.int(0, 2) == 0:
            line = _place(r, f"Mux{index}", length, occupied, " M", tail, dbc_id, mux=True)
            if line:
                lines.append(line)
                mux_tag = ["", *(f" m{r.int(0, 7)}" for _ in range(r.int(1, 3)))]
        for k in range(r.int(0, 5)):
            tag = r.pick(mux_tag)
            group = set(occupied) if tag else occupied
            line = _place(r, f"S{index}_{k}", length, group, tag, tail, dbc_id)
            if line:
                lines.append(line)
        lines.append("")
        if mask:
            tail.append(f'BA_ "CandiagNodeMask" BO_ {dbc_id} {mask};')
    return "\n".join(lines + tail) + "\n"


def _clashes(used: list[tuple[bool, int, int]], extended: bool, frame_id: int, mask: int) -> bool:
    """Would this identifier claim a frame of an already placed message?"""
    return any(e == extended and not (f ^ frame_id) & ~(m | mask) for e, f, m in used)


def _place(
    r: ByteReader,
    name: str,
    length: int,
    occupied: set[int],
    tag: str,
    tail: list[str],
    dbc_id: int,
    *,
    mux: bool = False,
) -> str | None:
    total = 8 * length
    kind = 0 if mux else r.pick([0, 0, 0, 1, 2])
    n = r.int(1, 8 if mux else 64) if kind == 0 else (32 if kind == 1 else 64)
    if n > total:
        return None
    little = r.bool()
    first = r.int(0, total - n)
    if little:
        bits = set(range(first, first + n))
        start = first
    else:  # network bit numbering: MSB first; start is cantools' MSB sawtooth bit
        bits = {8 * (b // 8) + 7 - b % 8 for b in range(first, first + n)}
        start = 8 * (first // 8) + 7 - first % 8
    if occupied & bits:
        return None
    occupied |= bits
    signed = "-" if kind or (not mux and r.bool()) else "+"
    scale, offset = ("1", "0") if mux else r.pick(_SCALINGS)
    if kind:
        tail.append(f"SIG_VALTYPE_ {dbc_id} {name} : {kind};")
    order = 1 if little else 0
    return f' SG_ {name}{tag} : {start}|{n}@{order}{signed} ({scale},{offset}) [0|0] "" X'


def check_decoder(data: bytes) -> int:
    """BatchDecoder equals cantools on random layouts, payloads, FD and short frames."""
    from candiag.decode.dbc import load_dbc_text
    from candiag.decode.decoder import BatchDecoder
    from candiag.errors import DbcError

    r = ByteReader(data)
    text = random_layout_dbc(r)
    try:
        db = load_dbc_text(text, "layout.dbc")
    except DbcError as err:
        # Only cantools' own refusals are acceptable here (e.g. a multiplexed signal group
        # it considers overlapping); they must still name the file.
        _check_dbc_error(str(err), "layout.dbc", text)
        return 0
    if not db.messages:
        return 0
    rng = np.random.default_rng(r.int(0, 2**32 - 1))
    batch = _frames_for(db.messages, r, rng, r.int(1, 48))
    result = BatchDecoder(db).decode(batch)
    return compare_with_cantools(db, batch, result)


# --------------------------------------------------------------------------------------------
# 3. config files and `candiag check-config`
# --------------------------------------------------------------------------------------------

EXAMPLE_CONFIG = ROOT / "config" / "candiag.example.toml"
# The one format of config problems (docs/config-errors.md):
# file[:line:col]: [key.path: ]expected ..., found ...[; fix]
_PROBLEM_RE = re.compile(r"^\S[^\n]*?: (?:[^\n]+?: )?expected [^\n]+?, found ")


def check_config_text(data: bytes) -> None:
    """load_config: a Config or a ConfigError whose every problem starts with a location."""
    from candiag.config.load import load_config
    from candiag.config.model import Config
    from candiag.errors import ConfigError

    path = scratch_file(".toml", data)
    try:
        config = load_config(path)
        assert isinstance(config, Config)
    except ConfigError as err:
        _check_problems(err)
        assert str(path) in str(err), f"ConfigError does not name the file: {err}"
    finally:
        path.unlink(missing_ok=True)


def _check_problems(err: Any) -> None:
    assert err.problems, "ConfigError without problems"
    for problem in err.problems:
        assert _PROBLEM_RE.match(problem), f"problem not in the one format: {problem!r}"


def problem_key(problem: str, source: str) -> str:
    """The key path of a problem of ``source`` ("" for the file itself or another file)."""
    if not problem.startswith(f"{source}:"):
        return ""
    rest = re.sub(r"^:\d+:\d+", "", problem[len(source) :])[2:]
    head = rest.split("expected ", 1)[0]
    return head[:-2] if head.endswith(": ") else ""


def check_cli(data: bytes) -> None:
    """`candiag check-config FILE` exits 0 (summary) or 2 (a message), never a traceback."""
    from candiag.cli import main

    path = scratch_file(".toml", data)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["check-config", str(path)])
    finally:
        path.unlink(missing_ok=True)
    assert code in (0, 2), f"exit code {code}: {err.getvalue()}"
    if code == 0:
        assert out.getvalue().startswith("OK: ")
    else:
        assert err.getvalue().startswith("candiag: error: "), err.getvalue()
        assert "Traceback" not in err.getvalue()


_NASTY = [
    -1, 0, 1, 10**400, -(10**400), 2**63, float("nan"), float("inf"), -1e308, 1e-320, 0.5,
    True, "", " ", "x" * 300, "\0", "tcp://127.0.0.1:99999", "tcp://[::1", "rtu+tcp://:1",
    "1-999999999", "5-1", "0x1FFFFFFF", "../../etc/passwd", "é", [], [1, "a"], [[]], {}, {"x": 1},
    "~nosuchuser-candiag/x", "a\0b",
    [{"name": "can0"}], "can0", "virtual", "pcan", "sdm120", "/dev/null", "[::1]:0",
]  # fmt: skip


def toml_dumps(data: Mapping[str, Any]) -> str:
    """A minimal TOML writer (inline tables) for generated documents; tomllib reads it back."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in data.items())


def _toml_key(key: str) -> str:
    return _toml_string(str(key))


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaf_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaf_paths(value, (*path, i))


def _key_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _replace(node: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy: Any = dict(node) if isinstance(node, Mapping) else list(node)
    if not rest:
        if delete:
            del copy[head]
        else:
            copy[head] = value
    else:
        copy[head] = _replace(copy[head], rest, value, delete)
    return copy


def mutate_document(doc: Mapping[str, Any], r: ByteReader) -> tuple[dict[str, Any], str]:
    """Replace, delete or add one value of ``doc``; return the new document and the parent
    key path of the change (where a problem must be reported if it is refused)."""
    paths = [p for p in _leaf_paths(doc) if p]
    path = r.pick(paths)
    action = r.int(0, 2)
    if action == 2:  # an unknown key next to the value
        parent = path[:-1]
        node: Any = doc
        for part in parent:
            node = node[part]
        if isinstance(node, Mapping):
            path = (*parent, r.pick(["bitrate_", "Name", "x", "listen_only ", "devices2"]))
            action = 0
    value = r.pick(_NASTY)
    new = _replace(doc, path, value, delete=action == 1)
    return new, _key_path(path[:-1])


def check_config_tree(data: bytes) -> None:
    """One value of the example config broken: accepted, or refused at (or under) its table."""
    from candiag.config.load import parse_config_text
    from candiag.errors import ConfigError

    doc = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    r = ByteReader(data)
    parents = []
    for _ in range(r.int(1, 2)):
        doc, parent = mutate_document(doc, r)
        parents.append(parent)
    try:
        parse_config_text(toml_dumps(doc), "tree.toml", base_dir=EXAMPLE_CONFIG.parent)
    except ConfigError as err:
        _check_problems(err)
        if all(parents):
            tops = tuple(parent.split(".")[0].split("[")[0] for parent in parents)
            keys = [problem_key(p, "tree.toml") for p in err.problems]
            assert any(k.startswith(tops) for k in keys), (
                f"changes under {parents} refused without naming them: {err.problems}"
            )


# --------------------------------------------------------------------------------------------
# 4. meter profiles
# --------------------------------------------------------------------------------------------

PROFILE_DIR = ROOT / "config" / "meters"


def check_profile_text(data: bytes) -> None:
    """load_profile: a MeterProfile or ProfileError/SafetyError; a profile decodes any
    registers to finite values or skips them."""
    from candiag.errors import ProfileError, SafetyError
    from candiag.modbus.profile import load_profile

    path = scratch_file(".toml", data)
    try:
        profile = load_profile(path)
    except ProfileError as err:  # a ConfigError: every problem in the one format, in this file
        _check_problems(err)
        assert all(p.startswith(f"{path}:") for p in err.problems), err.problems
        return
    except SafetyError as err:
        assert str(err).startswith(f"{path}:"), f"profile error does not name the file: {err}"
        return
    finally:
        path.unlink(missing_ok=True)
    check_profile_decoding(profile, ByteReader(data[::-1]))


def check_profile_decoding(profile: Any, r: ByteReader) -> None:
    from candiag.modbus.profile import READ_FUNCTION_CODES, decode_block

    for block in profile.blocks:
        assert block.function in READ_FUNCTION_CODES
        special = [0, 0xFFFF, 0x7FFF, 0x8000, 0x7F80, 0xFF80, 0x7FC0, 400, 308, 65000]
        registers = [r.pick(special) if r.bool() else r.int(0, 0xFFFF) for _ in range(block.count)]
        values = decode_block(profile, block, registers)
        assert set(values) <= set(block.quantities)
        assert all(math.isfinite(v) for v in values.values()), values


# --------------------------------------------------------------------------------------------
# 5. Modbus replies
# --------------------------------------------------------------------------------------------


class ScriptedStream:
    """A peer that answers each request with the next scripted reply, then stays silent.

    ``read`` returns what the peer sent, up to ``n`` bytes, without waiting: a real stream
    would wait until its deadline and return the same bytes.  ``None`` as a reply means
    the line fails (an OSError, as when a USB adapter is pulled).
    """

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = list(replies)
        self.pending = b""
        self.failing = False
        self.requests: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.requests.append(bytes(data))
        reply = self.replies.pop(0) if self.replies else b""
        self.failing = reply is None
        self.pending = reply or b""

    def read(self, n: int, deadline: float) -> bytes:
        if self.failing:
            raise OSError(5, "Input/output error")
        chunk, self.pending = self.pending[:n], self.pending[n:]
        return chunk

    def flush_input(self) -> None:
        self.pending = b""

    def close(self) -> None:
        self.pending = b""


def _scripted_replies(r: ByteReader, unit_id: int, function: int, count: int) -> list[bytes | None]:
    """Replies: random bytes, or a valid reply damaged in one of the field's usual ways."""
    from candiag.modbus.link import with_crc

    nbytes = count * 2 if function in (3, 4) else (count + 7) // 8
    replies: list[bytes | None] = []
    for _ in range(r.int(1, 4)):
        kind = r.int(0, 7)
        good = bytes([unit_id, function, nbytes]) + r.take(nbytes).ljust(nbytes, b"\0")
        if kind == 0:
            replies.append(r.take(r.int(0, 300)))
        elif kind == 1:
            replies.append(with_crc(good))
        elif kind == 2:
            replies.append(with_crc(good)[: r.int(0, len(good) + 1)])
        elif kind == 3:
            replies.append(with_crc(bytes([unit_id, function | 0x80, r.int(0, 255)])))
        elif kind == 4:
            replies.append(with_crc(bytes([r.int(0, 255), *good[1:]])))
        elif kind == 5:
            replies.append(with_crc(bytes([unit_id, r.int(0, 255), r.int(0, 255)]) + r.take(20)))
        elif kind == 6:
            replies.append(None)
        else:
            frame = bytearray(with_crc(good))
            frame[r.int(0, len(frame) - 1)] ^= 1 << r.int(0, 7)
            replies.append(bytes(frame))
    return replies


def check_modbus_reply(data: bytes) -> None:
    """The RTU and Modbus TCP framing classify any reply as one outcome, within the timeout."""
    import struct
    import time

    from candiag.modbus.link import OUTCOMES, _mbap_transaction, _rtu_transaction

    r = ByteReader(data)
    mbap = r.bool()
    unit_id, function = r.int(0, 247), r.int(1, 4)
    count = r.int(1, 125 if function in (3, 4) else 2000)
    address = r.int(0, 0xFFFF - count + 1)
    if mbap:
        raw = r.rest()
        replies: list[bytes | None] = [raw]
        if raw[:1] == b"\x01":  # a well-formed MBAP wrapping of random PDU bytes
            pdu = raw[1:254]
            replies = [struct.pack(">HHHB", 1, 0, len(pdu) + 1, unit_id) + pdu]
    else:
        replies = _scripted_replies(r, unit_id, function, count)
    stream = ScriptedStream(replies)
    for tid in range(1, len(replies) + 1):
        began = time.monotonic()
        try:
            if mbap:
                tx = _mbap_transaction(stream, tid, unit_id, function, address, count, 0.05)
            else:
                tx = _rtu_transaction(stream, unit_id, function, address, count, 0.05)
        except OSError:
            continue  # a StreamLink turns this into "io" (checked by check_poller)
        assert time.monotonic() - began < 1.0
        assert tx.outcome in OUTCOMES, tx.outcome
        assert tx.detail or tx.outcome == "ok"
        if tx.outcome == "ok":
            expected = count * 2 if function in (3, 4) else (count + 7) // 8
            assert len(tx.data) == expected
            if function in (3, 4):
                assert len(tx.registers) == count
        if tx.outcome == "exception":
            assert tx.exception_code is not None


def scripted_link(stream: ScriptedStream) -> Any:
    """A real :class:`~candiag.modbus.link.StreamLink` (RTU framing, the io guard) whose wire
    is a :class:`ScriptedStream`.  Built on call: the fuzz runner imports no candiag code."""
    from candiag.modbus.link import StreamLink, rtu_exchange

    class ScriptedLink(StreamLink):
        description = "scripted"

        def open(self) -> None:
            self._stream = stream

        def close(self) -> None:
            self._stream = None

        def _exchange(
            self, unit_id: int, function: int, address: int, count: int, timeout: float
        ) -> Any:
            return rtu_exchange(unit_id, function, address, count, timeout)

    link = ScriptedLink()
    link.open()
    return link


def check_poller(data: bytes) -> None:
    """PortPoller.poll_once on any replies: no exception escapes, every transaction is
    counted under one reason, and only finite readings from ok replies are kept."""
    from candiag.modbus.config import DeviceConfig, PortConfig
    from candiag.modbus.link import FAILURE_REASONS
    from candiag.modbus.poller import PortPoller
    from candiag.modbus.profile import find_profile

    r = ByteReader(data)
    name = r.pick(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))
    profile = find_profile(name)
    unit_id = profile.unit_id
    replies: list[bytes | None] = []
    for block in profile.blocks:
        replies += _scripted_replies(r, unit_id, block.function, block.count)[:1]
    stream = ScriptedStream(replies)
    port = PortConfig(
        name="fuzz",
        port="/dev/null",
        transport="tcp",
        timeout=0.01,
        retries=0,
        gap=0.0,
        id_switch_pause=0.0,
        devices=(DeviceConfig(name="meter", profile=name, unit_id=unit_id),),
    )
    transactions: list[Any] = []
    poller = PortPoller(
        port, link=scripted_link(stream), on_transaction=lambda d, tx: transactions.append(tx)
    )
    poller.poll_once()
    (snap,) = poller.snapshot()
    assert snap.requests == len(transactions)
    assert sum(snap.failures_by_reason.values()) == sum(tx.outcome != "ok" for tx in transactions)
    assert set(snap.failures_by_reason) == set(FAILURE_REASONS)
    assert all(math.isfinite(reading.value) for reading in snap.readings.values())
    if not any(tx.outcome in ("ok", "exception") for tx in transactions):
        assert not snap.up and not snap.readings, "a device without answers is not up"


# --------------------------------------------------------------------------------------------
# Registry: seeds and hypothesis strategies
# --------------------------------------------------------------------------------------------


def _seed_candump() -> list[bytes]:
    from candiag.capture.formats.candump import format_candump
    from candiag.sim.charger import ChargerSimulator

    sim = ChargerSimulator()
    batch = sim.generate(sim.start_time, sim.start_time + 1.0)
    text = format_candump(batch)
    lines = text.splitlines(keepends=True)
    extra = [
        b"(1700000000.000100) can0 123#R\n",
        b"(1700000000.000100) can0 123#R5\n",
        b"(1700000000.000100) can0 18FF50E5##10102030405060708090A0B\n",
        b"(1700000000.000100) can0 20000040#0000000000000000\n",
        b"(1700000000.000100) vcan-1 123#0102030405060708_9 R\n",
    ]
    return [b"".join(lines[:40]), *extra, b"".join(lines[:5]).replace(b"\n", b"\r\n")]


def _seed_dbc() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "dbc").glob("*.dbc"))]


def _seed_config() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "config").glob("*.toml"))]


def _seed_profiles() -> list[bytes]:
    return [p.read_bytes() for p in sorted(PROFILE_DIR.glob("*.toml"))]


def _seed_random() -> list[bytes]:
    return [bytes(range(256)), b"\x01" * 64, b"\xff" * 64, b"\x00\x01\x02\x03" * 16]


@dataclass(frozen=True)
class Target:
    """One fuzz target: its check, its seed corpus and how seeds are damaged."""

    name: str
    check: Callable[[bytes], object]  # raises when the contract is broken
    seeds: Callable[[], list[bytes]]
    description: str
    mutate_seeds: bool = True  # hypothesis: also damage the seeds (else raw bytes only)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("candump", check_candump, _seed_candump, "candump -L text: parse_candump"),
        Target("capture", check_capture_file, lambda: [b"\0\0\0" + s for s in _seed_candump()],
               "capture files of every suffix, gzip damage: CaptureReader"),
        Target("dbc", check_dbc_text, _seed_dbc, "DBC text and files: load_dbc_text/paths"),
        Target("decoder", check_decoder, _seed_random, "BatchDecoder vs cantools, random layouts",
               mutate_seeds=False),
        Target("config", check_config_text, _seed_config, "config files: load_config"),
        Target("config_tree", check_config_tree, _seed_random,
               "example config with values broken at key paths", mutate_seeds=False),
        Target("check_config_cli", check_cli, _seed_config, "candiag check-config FILE"),
        Target("profile", check_profile_text, _seed_profiles, "meter profiles: load_profile"),
        Target("modbus_reply", check_modbus_reply, _seed_random,
               "RTU/MBAP reply classification", mutate_seeds=False),
        Target("modbus_poller", check_poller, _seed_random,
               "PortPoller.poll_once on scripted replies", mutate_seeds=False),
    )
}  # fmt: skip


def strategy(target: Target) -> SearchStrategy[bytes]:
    """Hypothesis inputs for ``target``: raw bytes, and (for file formats) damaged seeds."""
    from hypothesis import strategies as st

    raw = st.binary(max_size=2048)
    if not target.mutate_seeds:
        return raw
    seeds = target.seeds()
    damaged = st.builds(
        lambda seed, how: mutate(seed, ByteReader(how)),
        st.sampled_from(seeds),
        st.binary(min_size=1, max_size=64),
    )
    return st.one_of(raw, damaged, st.sampled_from(seeds))
