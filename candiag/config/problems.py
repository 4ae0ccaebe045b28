"""The one problems collector every config-like file of candiag is checked with.

Every loader (``candiag.toml`` with its ``[[modbus.ports]]``, meter profiles, health
thresholds, diagnosis overrides, the YAML web config) reports what is wrong in one format
(``docs/config-errors.md``)::

    FILE[:LINE:COL]: [KEY.PATH: ]expected WHAT, found WHAT[; HOW TO FIX]

e.g. ``candiag.toml:7:1: can.buses[0].bitrat: expected a key of can.buses[0] (bitrate,
channel, ...), found an unknown key; did you mean 'bitrate'?``.  A :class:`Problems`
collects every problem of one file (a file is checked to the end, so one ``check-config``
run lists everything to fix) and raises them together as one
:class:`~candiag.errors.ConfigError`.

The readers (:meth:`Problems.string`, :meth:`Problems.integer`, :meth:`Problems.number`,
:meth:`Problems.choice`, ...) hold the checks every loader needs once: the type, finite
numbers within a :class:`Limit`, unknown keys and choices with "did you mean", values from
the file never copied whole into a message.  Positions (``LINE:COL``) come from
:func:`candiag.config.toml.key_positions` (TOML) or the YAML node tree; a key that is not
in the file (a missing one) is placed at the nearest table around it.

We validate by hand instead of with a schema library: the messages must name key paths the
way the example files do, and the project keeps its dependency list short.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from candiag.errors import ConfigError, shown

KeyPart = str | int
KeyPath = tuple[KeyPart, ...]
Position = tuple[int, int]  # (line, column), both from 1
Positions = Mapping[KeyPath, Position]

# Longest "found" text of a problem: values from the file are quoted cut (``shown``); this
# is the net under everything else.  Its end is kept (the reason after a value, the last of
# a list of duplicates).
MAX_FOUND = 400
# Longest text of one key in a key path.
MAX_KEY = 60
# Known keys or choices listed in full up to this many; beyond, only "did you mean".
MAX_LISTED = 24
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INT64 = (-(1 << 63), 1 << 63)


def key_text(path: Iterable[KeyPart]) -> str:
    """``("can", "buses", 1, "bitrate")`` -> ``can.buses[1].bitrate``.

    Keys TOML would have to quote (spaces, dots, an empty key) are quoted, so
    ``"listen_only "`` is visibly not ``listen_only``; long keys are cut.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if len(part) <= MAX_KEY else part[: MAX_KEY - 1] + "…"
        if not _BARE_KEY.fullmatch(text):
            text = json.dumps(text, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


def kind_of(value: object, *, yaml: bool = False) -> str:
    """What a value is, in the words of a config file: ``a string``, ``an integer``, ...
    (TOML's words, or YAML's: ``a mapping``, ``a list``)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, Mapping):
        return "a mapping" if yaml else "a table"
    if isinstance(value, (list, tuple)):
        return "a list" if yaml else "an array"
    return f"a {type(value).__name__}"


def described(value: object, *, yaml: bool = False) -> str:
    """A value of the wrong kind: its kind and (cut) text, e.g. ``a string 'fast'``."""
    if value is None:
        return "nothing (null)"
    return f"{kind_of(value, yaml=yaml)} {shown(value)}"


def cut(text: str, limit: int = MAX_FOUND) -> str:
    """``text`` cut to ``limit`` characters, its start and end kept."""
    if len(text) <= limit:
        return text
    tail = limit // 3
    return text[: limit - tail - 1] + "…" + text[-tail:]


def quoted(text: str, limit: int = 160) -> str:
    """``repr(text)`` for a path or name, its start and end kept when long (the file name
    at the end of a path is what tells it apart)."""
    if len(text) <= limit:
        return repr(text)
    half = limit // 2
    return repr(text[:half] + "…" + text[-half:])


def did_you_mean(value: object, known: Iterable[object]) -> str:
    """``did you mean 'bitrate'?`` for the closest known name, or ``""``."""
    match = difflib.get_close_matches(str(value)[:MAX_KEY], [str(k) for k in known], 1, 0.6)
    return f"did you mean {match[0]!r}?" if match else ""


def one_of(choices: Collection[object]) -> str:
    """``one of a, b, c`` (long lists named by their size only)."""
    if len(choices) > MAX_LISTED:
        return f"one of {len(choices)} known names"
    return "one of " + ", ".join(str(c) for c in choices)


@dataclass(frozen=True)
class Limit:
    """The values a number may take and what it means (for the message).

    ``kind``: ``"integer"`` (a TOML/YAML integer), ``"whole"`` (an integer or a float
    without fraction) or ``"number"`` (any finite number).
    """

    low: float
    high: float
    meaning: str = ""
    kind: str = "number"

    def expected(self) -> str:
        noun = {"integer": "an integer", "whole": "a whole number"}.get(self.kind, "a number")
        text = f"{noun} in {_number(self.low)}..{_number(self.high)}"
        return f"{text} ({self.meaning})" if self.meaning else text

    def allows(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.kind == "integer" and not isinstance(value, int):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.kind != "whole" or float(value).is_integer()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Problem:
    """One problem: where (file, position, key path), what was expected, what was found."""

    file: str
    key: str  # rendered key path; "" when the problem is the file itself
    expected: str
    found: str
    hint: str = ""
    line: int | None = None
    column: int | None = None

    @property
    def where(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return where

    def __str__(self) -> str:
        key = f"{self.key}: " if self.key else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.where}: {key}expected {self.expected}, found {self.found}{hint}"


class _Absent:
    """A key that is not in its table (distinct from a YAML null)."""


ABSENT: Any = _Absent()


class Problems:
    """Collects the problems of one file; :meth:`raise_if_any` raises them as one error.

    ``positions`` maps key paths to ``(line, column)``; a problem is placed at its key or,
    for a key that is not in the file, at the nearest table around it.
    """

    def __init__(
        self, file: str, positions: Positions | None = None, *, yaml: bool = False
    ) -> None:
        self.file = file
        self.positions: Positions = positions or {}
        self.yaml = yaml  # describe values in YAML's words
        self.lines: list[str] = []

    def __len__(self) -> int:
        return len(self.lines)

    # -- adding ---------------------------------------------------------------------------
    def add(
        self,
        path: KeyPath,
        expected: str,
        found: str,
        hint: str = "",
        *,
        at: Position | None = None,
    ) -> Problem:
        """One problem at ``path`` (``()``: the file itself); ``at`` overrides the position."""
        problem = self.problem(path, expected, found, hint, at=at)
        self.lines.append(str(problem))
        return problem

    def problem(
        self,
        path: KeyPath,
        expected: str,
        found: str,
        hint: str = "",
        *,
        at: Position | None = None,
    ) -> Problem:
        """A problem placed in this file, not collected (e.g. for a SafetyError)."""
        line, column = at if at is not None else self.position(path) or (None, None)
        return Problem(self.file, key_text(path), expected, cut(found), hint, line, column)

    def add_value(self, path: KeyPath, expected: str, value: object, hint: str = "") -> Problem:
        """A value of the wrong kind or out of range, described as it is in the file."""
        return self.add(path, expected, self.described(value), hint)

    def described(self, value: object) -> str:
        return described(value, yaml=self.yaml)

    def missing(self, path: KeyPath, expected: str) -> Problem:
        return self.add(path, expected, "nothing", "this key is required")

    def extend(self, lines: Iterable[str]) -> None:
        """Problems already in the one format (e.g. of a meter profile a device names)."""
        self.lines.extend(lines)

    def position(self, path: KeyPath) -> Position | None:
        for end in range(len(path), 0, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return None

    # -- raising --------------------------------------------------------------------------
    def error(self, kind: type[ConfigError] = ConfigError) -> ConfigError:
        return kind(self.lines, path=self.file, located=True)

    def raise_if_any(self, kind: type[ConfigError] = ConfigError) -> None:
        if self.lines:
            raise self.error(kind)

    # -- readers --------------------------------------------------------------------------
    def table(
        self, value: object, path: KeyPath, known: Collection[str] | None = None
    ) -> Mapping[str, Any]:
        """``value`` as a table (``{}`` and a problem if it is not one); unknown keys reported."""
        if not isinstance(value, Mapping):
            self.add_value(path, "a table", value)
            return {}
        if known is not None:
            self.unknown_keys(value, path, known)
        return value

    def unknown_keys(
        self,
        table: Mapping[Any, Any],
        path: KeyPath,
        known: Collection[str],
        *,
        what: str = "",
    ) -> list[str]:
        """A problem per key of ``table`` not in ``known``; returns the known keys present."""
        present = []
        what = what or (f"a key of {key_text(path)}" if path else "a top-level key")
        listed = f"{what} ({', '.join(sorted(known))})" if len(known) <= MAX_LISTED else what
        for key in table:
            if key in known:
                present.append(str(key))
                continue
            self.add((*path, str(key)), listed, "an unknown key", did_you_mean(key, known))
        return present

    def array_of_tables(self, value: object, path: KeyPath) -> list[Mapping[str, Any]]:
        """The tables of a ``[[path]]`` array; anything else is a problem (and skipped)."""
        if value is ABSENT:
            return []
        if not isinstance(value, list):
            self.add_value(path, f"an array of tables ([[{key_text(path)}]])", value)
            return []
        out: list[Mapping[str, Any]] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append(item)
            else:
                self.add_value((*path, i), "a table", item)
        return out

    def get(self, table: Mapping[str, Any], path: KeyPath, key: str, expected: str) -> Any:
        """``table[key]``, or :data:`ABSENT` (a problem when ``expected`` is given)."""
        if key in table:
            return table[key]
        if expected:
            self.missing((*path, key), expected)
        return ABSENT

    def string(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        key: str,
        *,
        required: bool = False,
        expected: str = "a non-empty string",
    ) -> str | None:
        value = self.get(table, path, key, expected if required else "")
        if value is ABSENT:
            return None
        if not isinstance(value, str) or not value.strip():
            self.add_value((*path, key), expected, value)
            return None
        return value

    def integer(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        key: str,
        low: int,
        high: int,
        *,
        required: bool = False,
        meaning: str = "",
    ) -> int | None:
        limit = Limit(low, high, meaning, kind="integer")
        value = self.number_in(table, path, key, limit, required=required)
        return None if value is None else int(value)

    def number(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        key: str,
        low: float,
        high: float,
        *,
        required: bool = False,
        meaning: str = "",
    ) -> float | None:
        value = self.number_in(table, path, key, Limit(low, high, meaning), required=required)
        return None if value is None else float(value)

    def number_in(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        key: str,
        limit: Limit,
        *,
        required: bool = False,
    ) -> int | float | None:
        """A finite number within ``limit`` (NaN and infinities never are)."""
        value = self.get(table, path, key, limit.expected() if required else "")
        if value is ABSENT:
            return None
        if not limit.allows(value):
            kind = int if limit.kind == "integer" else int | float
            right_kind = isinstance(value, kind) and not isinstance(value, bool)
            found = _number_text(value) if right_kind else self.described(value)
            self.add((*path, key), limit.expected(), found)
            return None
        number: int | float = value
        return number

    def boolean(self, table: Mapping[str, Any], path: KeyPath, key: str, default: bool) -> bool:
        value = self.get(table, path, key, "")
        if value is ABSENT:
            return default
        if not isinstance(value, bool):
            self.add_value((*path, key), "true or false", value)
            return default
        return value

    def choice(
        self,
        table: Mapping[str, Any],
        path: KeyPath,
        key: str,
        choices: Collection[str],
        *,
        required: bool = False,
        expected: str = "",
    ) -> str | None:
        """One of ``choices`` (exact); a near miss gets "did you mean"."""
        expected = expected or one_of(choices)
        value = self.get(table, path, key, expected if required else "")
        if value is ABSENT:
            return None
        if not isinstance(value, str) or value not in choices:
            found = shown(value) if isinstance(value, str) else self.described(value)
            hint = did_you_mean(value, choices) if isinstance(value, str) else ""
            self.add((*path, key), expected, found, hint)
            return None
        return value

    def strings(self, table: Mapping[str, Any], path: KeyPath, key: str) -> list[str]:
        """An array of non-empty strings (one string alone is taken as an array of one)."""
        value = self.get(table, path, key, "")
        if value is ABSENT:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.add_value((*path, key), "an array of strings", value)
            return []
        out: list[str] = []
        for i, item in enumerate(items):
            if isinstance(item, str) and item.strip():
                out.append(item)
            else:
                where = (*path, key, i) if isinstance(value, list) else (*path, key)
                self.add_value(where, "a non-empty string", item)
        return out

    def integers_fit_64_bits(self, data: object) -> bool:
        """A problem per integer beyond 64 bits (TOML allows no more; tomllib and YAML read
        any size, and such numbers break every later check); True when there is none."""
        before = len(self)
        for path in oversized_integers(data):
            self.add(path, "a 64-bit integer", "a larger one")
        return len(self) == before


def _number_text(value: int | float) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return shown(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def oversized_integers(node: object, path: KeyPath = ()) -> Iterator[KeyPath]:
    """Key paths of the integers in ``node`` beyond 64 bits."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from oversized_integers(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from oversized_integers(value, (*path, i))
    elif isinstance(node, int) and not isinstance(node, bool):
        if not _INT64[0] <= node < _INT64[1]:
            yield path
