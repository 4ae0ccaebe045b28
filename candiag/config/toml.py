"""TOML for every candiag data file: the one ``tomllib`` import and what it leaves to us.

``tomllib`` parses; what it leaves to the caller lives here once:

* a syntax error as a problem at ``file:line:col`` (tomllib puts the position inside its
  message);
* integers TOML does not allow (beyond 64 bits: tomllib reads them at any size, and they
  break every later range check and message), and the 4300-digit values ``int()`` refuses;
* where each key is (:func:`key_positions`): tomllib keeps no positions, and a problem
  should point at the line to fix.  The scanner runs on text tomllib has accepted, so it
  only has to find keys, not to judge them; it is linear in the text.
"""

from __future__ import annotations

import bisect
import re
import sys
from pathlib import Path
from typing import Any

from candiag.config.files import decode_utf8, read_bytes
from candiag.config.problems import KeyPath, Position, Problems
from candiag.errors import one_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
_LONG_DIGITS_RE = re.compile(r"\d{4300,}")


def loads(text: str) -> dict[str, Any]:
    """Parse TOML shipped with candiag (trusted data: errors are bugs and raise)."""
    return tomllib.loads(text)


def read_toml(path: Path, problems: Problems, *, hint: str) -> dict[str, Any] | None:
    """Read and parse a TOML file; None (with problems) when it cannot be used.

    ``problems`` gets the file's key positions, so the checks after this place their
    problems on the right line.
    """
    data = read_bytes(path, problems, hint=hint)
    text = None if data is None else decode_utf8(data, problems)
    return None if text is None else parse_toml(text, problems)


def parse_toml(text: str, problems: Problems) -> dict[str, Any] | None:
    """Parse TOML text; None with a problem for a syntax error or an unusable number."""
    try:
        data = tomllib.loads(text)
    except TOMLDecodeError as err:
        message = str(err)
        pos = _TOML_POS_RE.search(message)
        at = (int(pos.group(1)), int(pos.group(2))) if pos else None
        what = (message[: pos.start()] + message[pos.end() :]) if pos else message
        found = f"a TOML syntax error ({what.strip()})"
        problems.add((), "valid TOML", found, "fix the TOML syntax", at=at)
        return None
    except ValueError as err:  # tomllib lets int()'s 4300-digit limit through
        digits = _LONG_DIGITS_RE.search(text)
        at = _position_in(text, digits.start()) if digits else None
        found = f"a value that cannot be read ({one_line(str(err), 120)})"
        problems.add((), "a 64-bit integer", found, "fix the value", at=at)
        return None
    problems.positions = key_positions(text)
    if not problems.integers_fit_64_bits(data):
        return None  # refused first: such numbers break every later check and message
    return data


def _position_in(text: str, offset: int) -> Position:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


# -- key positions ------------------------------------------------------------------------
_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)")
# Deeper arrays and inline tables are skipped without recording (tomllib accepted them, but
# a problem there is placed at the key holding them).
_MAX_DEPTH = 32


def key_positions(text: str) -> dict[KeyPath, Position]:
    """``(line, column)`` of every key, table header and array element of a TOML text.

    Key paths are those of the parsed document: ``("can", "buses", 1, "bitrate")`` for
    ``bitrate`` in the second ``[[can.buses]]``.  A table's position is its header's.
    """
    scanner = _KeyScanner(text)
    scanner.scan()
    return scanner.positions


class _KeyScanner:
    def __init__(self, text: str) -> None:
        self.t = text
        self.n = len(text)
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.positions: dict[KeyPath, Position] = {}

    def at(self, offset: int) -> Position:
        line = bisect.bisect_left(self.newlines, offset)
        start = self.newlines[line - 1] + 1 if line else 0
        return line + 1, offset - start + 1

    def record(self, path: KeyPath, offset: int) -> None:
        position = self.at(offset)
        for end in range(1, len(path) + 1):  # dotted keys also define the tables they name
            self.positions.setdefault(path[:end], position)

    def scan(self) -> None:
        table: KeyPath = ()
        array_tables: dict[KeyPath, int] = {}  # last index of each [[array]] (resolved path)
        while True:
            self.skip_blank(newlines=True)
            if self.i >= self.n:
                return
            start = self.i
            if self.t[self.i] == "[":
                double = self.t.startswith("[[", self.i)
                self.i += 2 if double else 1
                table = self.resolve(self.key(), array_tables, double=double)
                self.record(table, start)
                self.skip_line()
                continue
            keys = self.key()
            self.skip_blank()
            if not keys or self.i >= self.n or self.t[self.i] != "=":
                self.skip_line()  # (not reached on text tomllib accepted)
                continue
            self.i += 1
            path = (*table, *keys)
            self.record(path, start)
            self.value(path, 0)

    @staticmethod
    def resolve(keys: list[str], array_tables: dict[KeyPath, int], *, double: bool) -> KeyPath:
        resolved: KeyPath = ()
        for j, key in enumerate(keys):
            resolved = (*resolved, key)
            if double and j == len(keys) - 1:
                index = array_tables.get(resolved, -1) + 1
                array_tables[resolved] = index
                resolved = (*resolved, index)
            elif resolved in array_tables:
                resolved = (*resolved, array_tables[resolved])
        return resolved

    # -- pieces ---------------------------------------------------------------------------
    def skip_blank(self, *, newlines: bool = False) -> None:
        t, n = self.t, self.n
        while self.i < n:
            c = t[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#" and newlines:
                self.skip_line()
            else:
                return

    def skip_line(self) -> None:
        end = self.t.find("\n", self.i)
        self.i = self.n if end < 0 else end + 1

    def key(self) -> list[str]:
        keys: list[str] = []
        while self.i < self.n:
            self.skip_blank()
            c = self.t[self.i] if self.i < self.n else ""
            if c in "\"'":
                start = self.i
                self.string()
                raw = self.t[start + 1 : self.i - 1]
                keys.append(_unescape(raw) if c == '"' else raw)
            else:
                match = _BARE.match(self.t, self.i)
                if match is None:
                    return keys
                keys.append(match.group())
                self.i = match.end()
            self.skip_blank()
            if self.i < self.n and self.t[self.i] == ".":
                self.i += 1
                continue
            break
        return keys

    def value(self, path: KeyPath, depth: int) -> None:
        self.skip_blank()
        if self.i >= self.n:
            return
        c = self.t[self.i]
        if c in "\"'":
            self.string()
        elif c in "[{" and depth >= _MAX_DEPTH:
            self.skip_nested()
        elif c == "[":
            self.array(path, depth)
        elif c == "{":
            self.inline_table(path, depth)
        else:  # number, boolean, date-time: up to the next delimiter
            while self.i < self.n and self.t[self.i] not in ",]}\r\n#":
                self.i += 1

    def array(self, path: KeyPath, depth: int) -> None:
        self.i += 1
        index = 0
        while self.i < self.n:
            self.skip_blank(newlines=True)
            if self.i >= self.n or self.t[self.i] == "]":
                self.i += 1
                return
            if self.t[self.i] == ",":  # (after a value; a trailing comma)
                self.i += 1
                index += 1
                continue
            before = self.i
            item: KeyPath = (*path, index)
            self.record(item, self.i)
            self.value(item, depth + 1)
            if self.i == before:
                self.i += 1

    def inline_table(self, path: KeyPath, depth: int) -> None:
        self.i += 1
        while self.i < self.n:
            self.skip_blank(newlines=True)
            if self.i >= self.n or self.t[self.i] == "}":
                self.i += 1
                return
            if self.t[self.i] == ",":
                self.i += 1
                continue
            start = self.i
            keys = self.key()
            self.skip_blank()
            if not keys or self.i >= self.n or self.t[self.i] != "=":
                self.i = max(self.i, start + 1)
                continue
            self.i += 1
            item: KeyPath = (*path, *keys)
            self.record(item, start)
            self.value(item, depth + 1)

    def string(self) -> None:
        """Past the string starting at ``self.i`` (basic, literal, single- or multi-line)."""
        t, quote = self.t, self.t[self.i]
        if t.startswith(quote * 3, self.i):
            end = self.i + 3
            while True:
                end = t.find(quote * 3, end)
                if end < 0:
                    self.i = self.n
                    return
                if quote == '"' and _escaped(t, end):
                    end += 1
                    continue
                end += 3
                while end < self.n and t[end] == quote:
                    end += 1  # up to two quotes may end the content: """a""""
                self.i = end
                return
        end = self.i + 1
        while end < self.n:
            c = t[end]
            if c == "\\" and quote == '"':
                end += 2
                continue
            if c == quote or c == "\n":
                break
            end += 1
        self.i = min(end + 1, self.n)

    def skip_nested(self) -> None:
        """Past a too-deeply nested array or inline table, recording nothing."""
        depth = 0
        while self.i < self.n:
            c = self.t[self.i]
            if c in "\"'":
                self.string()
                continue
            if c == "#":
                self.skip_line()
                continue
            self.i += 1
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth -= 1
                if depth == 0:
                    return


def _escaped(text: str, offset: int) -> bool:
    backslashes = 0
    while offset - backslashes - 1 >= 0 and text[offset - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _unescape(raw: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[0] in "uU" and len(code) > 1:
            try:
                return chr(int(code[1:], 16))
            except ValueError:
                return match.group()
        return _ESCAPES.get(code, match.group())

    return _ESCAPE_RE.sub(one, raw)
