"""The DBC text before cantools reads it: where each definition is, and bounds checked first.

One pass over the text (regular expressions in C, no per-character Python) finds every
statement keyword outside strings and ``//`` comments, exactly where cantools' tokenizer
would see it, and records the line of each definition by what it names:

* ``BO_`` messages (raw DBC identifier, name, length) with their ``SG_`` signals
  (name, start bit, length, byte order, multiplexer marker);
* ``VAL_``, ``SIG_VALTYPE_``, ``SG_MUL_VAL_``, ``BA_``, ``BA_DEF_`` and ``CM_`` entries.

The loader then names the line of the definition at fault for any problem without
searching the text again (a search per message made 10,000 messages take minutes).

The same pass refuses, with ``file:line`` and in words, what no CAN frame can hold and
what would make cantools spend memory or time out of proportion to the file: a length
over 64 bytes (the largest CAN FD frame), a signal starting before bit 0 or ending past
bit 511, an identifier that cannot be a CAN identifier, and multiplexer ranges
(``SG_MUL_VAL_``) that cantools would expand into billions of values.  See docs/dbc.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

#: The largest payload of any CAN frame (CAN FD), in bytes.
MAX_FRAME_BYTES = 64
MAX_FRAME_BITS = 8 * MAX_FRAME_BYTES
#: Most multiplexer values one ``SG_MUL_VAL_`` statement may select (a 16-bit multiplexer).
MAX_MUX_VALUES = 1 << 16

EXTENDED_FLAG = 0x80000000
STANDARD_ID_MAX = 0x7FF
EXTENDED_ID_MAX = 0x1FFFFFFF
#: cantools skips the pseudo-message Vector tools put unassigned signals into.
INDEPENDENT_SIGNALS = "VECTOR__INDEPENDENT_SIG_MSG"

# cantools' tokens (formats/dbc/dbc_loader.py): whitespace, // comments, strings, numbers, words.
_S = r"(?:[ \r\n\t]|//[^\n]*\n)*"  # optional separators
_S1 = r"(?:[ \r\n\t]|//[^\n]*\n)+"  # at least one
_NUM = r"[-+]?\d+\.?\d*(?:[eE][+-]?\d+)?"
_WORD = r"[A-Za-z0-9_]+"
_STRING = r'"(?:\\"|[^"])*?"'

_KEYWORDS = (
    "BA_",
    "BA_DEF_",
    "BA_DEF_DEF_",
    "BA_DEF_DEF_REL_",
    "BA_DEF_REL_",
    "BA_DEF_SGTYPE_",
    "BA_REL_",
    "BA_SGTYPE_",
    "BO_",
    "BO_TX_BU_",
    "BS_",
    "BU_",
    "BU_BO_REL_",
    "BU_EV_REL_",
    "BU_SG_REL_",
    "CAT_",
    "CAT_DEF_",
    "CM_",
    "ENVVAR_DATA_",
    "EV_",
    "EV_DATA_",
    "FILTER",
    "NS_",
    "NS_DESC_",
    "SG_",
    "SG_MUL_VAL_",
    "SGTYPE_",
    "SGTYPE_VAL_",
    "SIG_GROUP_",
    "SIG_TYPE_REF_",
    "SIG_VALTYPE_",
    "SIGTYPE_VALTYPE_",
    "VAL_",
    "VAL_TABLE_",
    "VERSION",
)
#: Statements that do not end with ``;`` (everything else is skipped to its ``;``).
_OPEN_STATEMENTS = frozenset({"BO_", "SG_", "BU_", "BS_", "NS_", "VERSION"})

_SCAN = re.compile(
    _STRING
    + r'|(?P<quote>")|//[^\n]*(?:\n|\Z)|(?<![A-Za-z0-9_])(?P<kw>'
    + "|".join(sorted(_KEYWORDS, key=len, reverse=True))
    + r")(?![A-Za-z0-9_])",
    re.S,
)
_TO_SEMICOLON = re.compile(_STRING + r'|(?P<quote>")|//[^\n]*(?:\n|\Z)|(?P<semi>;)', re.S)
_NS_HEAD = re.compile(_S + r":")
_NS_NEXT = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z0-9_]++" + _S + r":")

_OBJECT = (
    rf"(?:(?P<bu>BU_){_S1}(?P<node>{_WORD})|(?P<bo>BO_){_S1}(?P<bo_id>{_NUM})"
    rf"|(?P<sg>SG_){_S1}(?P<sg_id>{_NUM}){_S1}(?P<sg_name>{_WORD})|(?P<ev>EV_){_S1}(?P<ev_name>{_WORD}))"
)
_HEADERS = {
    "BO_": re.compile(
        rf"BO_{_S1}(?P<id>{_NUM}){_S1}(?P<name>{_WORD}){_S}:{_S}(?P<length>{_NUM}){_S1}{_WORD}"
    ),
    "SG_": re.compile(
        rf"SG_{_S1}(?P<name>{_WORD})(?:{_S1}(?P<mux>{_WORD}))?{_S}:{_S}(?P<start>{_NUM}){_S}\|"
        rf"{_S}(?P<length>{_NUM}){_S}@{_S}(?P<order>{_NUM}){_S}(?P<sign>[-+])"
    ),
    "VAL_": re.compile(rf"VAL_{_S1}(?:(?P<id>{_NUM}){_S1})?(?P<name>{_WORD})"),
    "SIG_VALTYPE_": re.compile(
        rf"SIG_VALTYPE_{_S1}(?P<id>{_NUM}){_S1}(?P<name>{_WORD}){_S}:{_S}(?P<type>{_NUM})"
    ),
    "SG_MUL_VAL_": re.compile(
        rf"SG_MUL_VAL_{_S1}(?P<id>{_NUM}){_S1}(?P<name>{_WORD}){_S1}(?P<mux>{_WORD})"
        rf"(?P<ranges>(?:{_S}{_NUM}{_S}{_NUM}{_S},?)*)"
    ),
    "BA_": re.compile(rf'BA_{_S}"(?P<attr>(?:\\"|[^"])*?)"(?:{_S}{_OBJECT})?'),
    "BA_DEF_": re.compile(
        rf'BA_DEF_{_S}(?:(?P<kind>BU_|BO_|SG_|EV_){_S})?"(?P<attr>(?:\\"|[^"])*?)"{_S}'
        rf"(?P<type>{_WORD})?"
    ),
    "CM_": re.compile(rf"CM_(?:{_S}{_OBJECT})?"),
}
_RANGE = re.compile(rf"({_NUM}){_S}({_NUM})")


@dataclass(frozen=True)
class SignalLine:
    """One ``SG_`` definition as written."""

    line: int
    name: str
    start: int | None  # None when not an integer (cantools reports the syntax)
    length: int | None
    big_endian: bool
    mux: str  # "", "M", "m3", "m3M"


@dataclass
class MessageLine:
    """One ``BO_`` definition as written, with its ``SG_`` lines."""

    line: int
    dbc_id: int | None  # the raw BO_ number (bit 31: extended)
    name: str
    length: int | None
    signals: list[SignalLine] = field(default_factory=list)

    def signal_line(self, name: str) -> int:
        """Line of signal ``name`` (its first definition), else the ``BO_`` line."""
        for sig in self.signals:
            if sig.name == name:
                return sig.line
        return self.line


@dataclass(frozen=True)
class EntryLine:
    """A ``VAL_``, ``SIG_VALTYPE_``, ``BA_``, ``CM_`` or ``SG_MUL_VAL_`` statement."""

    line: int
    keyword: str
    name: str  # the attribute of BA_; the signal (or environment variable) of VAL_ etc.
    kind: str = ""  # object type of BA_/CM_: "BU_", "BO_", "SG_", "EV_" or "" (database)
    dbc_id: int | None = None
    signal: str = ""  # BA_/CM_ SG_: the signal
    span: tuple[int, int] = (0, 0)  # offsets of the whole statement, up to its ";"


@dataclass
class DbcIndex:
    """Where every definition of one DBC text is (1-based lines)."""

    source: str
    messages: list[MessageLine] = field(default_factory=list)
    entries: list[EntryLine] = field(default_factory=list)
    #: ``BA_DEF_`` lines by attribute name (first definition) and its declared type.
    attribute_definitions: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Problems no CAN frame or bounded load can accept: ``(line, words)``.
    problems: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_id: dict[int, list[MessageLine]] | None = None
        self._attributes: dict[tuple[str, str, int | None, str], int] | None = None

    def messages_with_id(self, dbc_id: int) -> list[MessageLine]:
        if self._by_id is None:
            self._by_id = {}
            for msg in self.messages:
                if msg.dbc_id is not None:
                    self._by_id.setdefault(msg.dbc_id, []).append(msg)
        return self._by_id.get(dbc_id, [])

    def entries_of(self, keyword: str) -> Iterator[EntryLine]:
        return (e for e in self.entries if e.keyword == keyword)

    def attribute_line(
        self, attr: str, kind: str = "", dbc_id: int | None = None, signal: str = ""
    ) -> int:
        """Line of the ``BA_`` setting ``attr`` on that object (0: not set in the text)."""
        if self._attributes is None:
            self._attributes = {}
            for entry in self.entries_of("BA_"):
                key = (entry.name, entry.kind, entry.dbc_id, entry.signal)
                self._attributes.setdefault(key, entry.line)
        return self._attributes.get((attr, kind, dbc_id, signal), 0)


def index_dbc(text: str, source: str) -> DbcIndex:
    """Index ``text`` (one DBC file) and check the bounds cantools does not check cheaply."""
    index = DbcIndex(source)
    current: MessageLine | None = None
    line = 1
    last = 0
    pos = 0
    while True:
        match = _SCAN.search(text, pos)
        if match is None:
            break
        start = match.start()
        line += text.count("\n", last, start)
        last = start
        if match.group("quote") is not None:
            index.problems.append((line, "a string opened here is never closed (missing '\"')"))
            break
        keyword = match.group("kw")
        pos = match.end()
        if keyword is None:  # a string or a comment
            continue
        if keyword == "SG_" and current is not None:
            _signal(index, current, text, start, line)
            continue
        current = None
        if keyword == "BO_":
            current = _message(index, text, start, line)
        elif keyword == "NS_":
            pos = _ns_end(text, pos)
        if keyword in _OPEN_STATEMENTS:
            continue
        end = _statement_end(text, pos)
        if end < 0:
            index.problems.append(
                (line, "a string opened in this statement is never closed (missing '\"')")
            )
            break
        if keyword in _HEADERS:
            _entry(index, keyword, text, (start, end), line)
        pos = end
    return index


def _ns_end(text: str, pos: int) -> int:
    """Where the ``NS_ :`` list of keywords ends: at the first ``word :`` (as cantools reads it)."""
    head = _NS_HEAD.match(text, pos)
    if head is None:
        return pos
    after = _NS_NEXT.search(text, head.end())
    return after.start() if after else len(text)


def _statement_end(text: str, pos: int) -> int:
    """Offset after the ``;`` ending the statement at ``pos`` (-1: an unclosed string)."""
    for match in _TO_SEMICOLON.finditer(text, pos):
        if match.group("semi") is not None:
            return match.end()
        if match.group("quote") is not None:
            return -1
    return len(text)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _message(index: DbcIndex, text: str, start: int, line: int) -> MessageLine | None:
    match = _HEADERS["BO_"].match(text, start)
    if match is None:
        return None  # cantools reports the syntax error with its line
    name = match.group("name")
    dbc_id = _int(match.group("id"))
    try:
        length: int | None = int(match.group("length"), 0)  # as cantools reads it
    except ValueError:
        length = None
    msg = MessageLine(line, dbc_id, name, length)
    index.messages.append(msg)
    if name == INDEPENDENT_SIGNALS:
        return msg  # cantools discards it and its signals
    what = f"message {name}"
    if dbc_id is not None:
        index.problems.extend((line, p) for p in identifier_problems(what, dbc_id))
    if length is not None and not 0 <= length <= MAX_FRAME_BYTES:
        index.problems.append(
            (
                line,
                f"{what} is {length} bytes long; a CAN frame carries 0 to 8 bytes, "
                f"a CAN FD frame at most {MAX_FRAME_BYTES}: give its real length",
            )
        )
    return msg


def identifier_problems(what: str, dbc_id: int) -> list[str]:
    """Why a ``BO_`` number is no CAN identifier (cantools refuses these too, wordlessly)."""
    if not 0 <= dbc_id <= 0xFFFFFFFF:
        return [
            f"{what} has identifier {dbc_id}, which is no CAN identifier (a BO_ number is "
            f"0..{STANDARD_ID_MAX} for a standard identifier, {EXTENDED_FLAG} + 0..."
            f"{EXTENDED_ID_MAX} for an extended one)"
        ]
    can_id = dbc_id & ~EXTENDED_FLAG
    if dbc_id & EXTENDED_FLAG:
        if can_id > EXTENDED_ID_MAX:
            return [
                f"{what} has extended identifier 0x{can_id:X}, wider than 29 bits "
                f"(BO_ {dbc_id}); an extended identifier is at most 0x{EXTENDED_ID_MAX:X}"
            ]
        return []
    if can_id > STANDARD_ID_MAX:
        hint = (
            f"if it is an extended identifier, write BO_ {can_id | EXTENDED_FLAG} "
            f"({EXTENDED_FLAG} + 0x{can_id:X}, as DBC files mark extended identifiers)"
            if can_id <= EXTENDED_ID_MAX
            else f"an extended identifier is at most 0x{EXTENDED_ID_MAX:X}"
        )
        return [
            f"{what} has identifier 0x{can_id:X} (BO_ {dbc_id}), wider than the 11 bits of "
            f"a standard identifier; {hint}"
        ]
    return []


def _signal(index: DbcIndex, msg: MessageLine, text: str, start: int, line: int) -> None:
    match = _HEADERS["SG_"].match(text, start)
    if match is None:
        return  # cantools reports the syntax error with its line
    sig = SignalLine(
        line=line,
        name=match.group("name"),
        start=_int(match.group("start")),
        length=_int(match.group("length")),
        big_endian=match.group("order") == "0",
        mux=match.group("mux") or "",
    )
    msg.signals.append(sig)
    if msg.name == INDEPENDENT_SIGNALS or sig.start is None or sig.length is None:
        return
    problem = signal_bounds_problem(sig.name, msg.name, sig.start, sig.length, sig.big_endian)
    if problem:
        index.problems.append((line, problem))


def signal_bounds_problem(
    signal: str, message: str, start: int, length: int, big_endian: bool
) -> str:
    """Why a signal can be in no CAN frame at all ("" when it can)."""
    what = f"signal {signal} of message {message}"
    if length < 1:
        return f"{what} is {length} bits long; a signal has at least 1 bit"
    if start < 0:
        return f"{what} starts at bit {start}; bits are numbered from 0"
    first = 8 * (start // 8) + 7 - start % 8 if big_endian else start
    if first + length > MAX_FRAME_BITS:
        order = "big-endian (@0)" if big_endian else "little-endian (@1)"
        return (
            f"{what} ({order}, start bit {start}, {length} bits) ends past bit "
            f"{MAX_FRAME_BITS - 1}, outside the {MAX_FRAME_BYTES} bytes of the largest CAN "
            f"FD frame; check its start bit and length"
        )
    return ""


def _entry(index: DbcIndex, keyword: str, text: str, span: tuple[int, int], line: int) -> None:
    match = _HEADERS[keyword].match(text, span[0])
    if match is None:
        return
    groups = match.groupdict()
    if keyword == "BA_DEF_":
        name = groups["attr"].replace('\\"', '"')
        index.attribute_definitions.setdefault(name, (line, groups.get("type") or ""))
        return
    if keyword in ("BA_", "CM_"):
        kind = next((k for k in ("bu", "bo", "sg", "ev") if groups.get(k)), "")
        object_id = _int(groups.get("bo_id") or groups.get("sg_id"))
        index.entries.append(
            EntryLine(
                line=line,
                keyword=keyword,
                name=(groups.get("attr") or "").replace('\\"', '"'),
                kind=f"{kind.upper()}_" if kind else "",
                dbc_id=object_id,
                signal=groups.get("sg_name") or groups.get("node") or groups.get("ev_name") or "",
                span=span,
            )
        )
        return
    index.entries.append(
        EntryLine(
            line=line,
            keyword=keyword,
            name=groups["name"],
            dbc_id=_int(groups.get("id")),
            span=span,
        )
    )
    if keyword == "SG_MUL_VAL_":
        count = 0
        for low, high in _RANGE.findall(groups["ranges"] or ""):
            lo, hi = _int(low), _int(high[1:] if high[:1] in "+-" else high)
            if lo is not None and hi is not None:
                count += max(0, hi - lo + 1)
        if count > MAX_MUX_VALUES:
            index.problems.append(
                (
                    line,
                    f"SG_MUL_VAL_ makes multiplexer {groups['mux']} select signal "
                    f"{groups['name']} for {count} values; candiag accepts at most "
                    f"{MAX_MUX_VALUES} (a 16-bit multiplexer) per signal: check the ranges",
                )
            )
