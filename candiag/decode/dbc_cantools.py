"""What cantools refuses even when it reads leniently, and the log lines it writes meanwhile.

:func:`cantools_load` reads a DBC text with cantools (``strict=False``), repairing what
cantools would otherwise refuse outright (value tables or value types naming a signal that
does not exist) and keeping each such repair as a warning at its line; cantools' own log
lines during the load are held back (:data:`CANTOOLS_LOG`) and reported as warnings of the
message they name (:func:`report_log`).  Errors cantools raises become a
:class:`~candiag.errors.DbcError` at the line (and with a hint) where possible.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candiag.decode.dbc_model import FileProblems, MessageDef, WarningKind
from candiag.decode.dbc_text import (
    INDEPENDENT_SIGNALS,
    DbcIndex,
    EntryLine,
    MessageLine,
)
from candiag.errors import DbcError

if TYPE_CHECKING:
    from cantools.database.errors import UnsupportedDatabaseFormatError

# -- cantools' log lines ---------------------------------------------------------------------


class CantoolsLog(logging.Filter):
    """Holds back cantools' log records in the thread that loads a DBC, to be reported."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        records: list[logging.LogRecord] | None = getattr(self._local, "records", None)
        if records is None:
            return True  # another thread, or not loading: cantools logs as usual
        records.append(record)
        return False

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[logging.LogRecord]]:
        self._install()
        previous = getattr(self._local, "records", None)
        records: list[logging.LogRecord] = []
        self._local.records = records
        try:
            yield records
        finally:
            self._local.records = previous

    def _install(self) -> None:
        # A logger's filters see only its own records, so every cantools logger gets one.
        with self._lock:
            names = [n for n in list(logging.Logger.manager.loggerDict) if n.startswith("cantools")]
            for name in ("cantools", *names):
                logger = logging.getLogger(name)
                if self not in logger.filters:
                    logger.addFilter(self)


CANTOOLS_LOG = CantoolsLog()


# -- cantools and what it refuses even leniently ------------------------------------------------

_UNUSED_RE = re.compile(r"^[ \t]*(VAL_|SIG_VALTYPE_) (\d+) (\w+)[ \t]*$", re.M)


def cantools_load(
    path: Path, text: str, index: DbcIndex, problems: FileProblems
) -> tuple[Any, list[logging.LogRecord]]:
    """cantools' database of ``text`` (lenient), and the log lines it wrote meanwhile.

    cantools refuses even leniently a ``VAL_``/``SIG_VALTYPE_`` for a signal that does not
    exist and a ``BA_`` of an attribute no ``BA_DEF_`` defines.  Both only add names or
    types to nothing, so candiag reports each at its line and reads the file without them
    (strict mode refuses them).
    """
    # Imported here: cantools (and python-can, which its tester imports) cost ~0.1 s of
    # start-up that commands reading no DBC must not pay (bench/bench_startup.py).
    import cantools
    from cantools.database.errors import UnsupportedDatabaseFormatError

    blanked: set[int] = set()
    for _attempt in range(4):  # undefined attributes, unused VAL_, unused SIG_VALTYPE_
        try:
            with CANTOOLS_LOG.capture() as records:
                db = cantools.database.load_string(text, database_format="dbc", strict=False)
            return db, records
        except UnsupportedDatabaseFormatError as err:
            repairs = _repairs(path, index, err, problems)
            if repairs is None or not repairs - blanked:
                raise _cantools_error(path, text, index, err) from None
        except (RecursionError, MemoryError) as err:
            raise _cantools_error(path, text, index, err) from None
        blanked |= repairs
        problems.raise_errors("cantools refuses them; fix the DBC")
        text = _blank(text, index, repairs)
    raise _cantools_error(path, text, index, RuntimeError("repeated refusals"))


def _repairs(
    path: Path, index: DbcIndex, err: UnsupportedDatabaseFormatError, problems: FileProblems
) -> set[int] | None:
    """Statements (entry positions in ``index.entries``) to leave out, reported; None: none."""
    cause = _cause(err)
    if isinstance(cause, KeyError):
        return _undefined_attributes(index, problems) or None
    message = str(cause)
    if not message.startswith(("unused VAL_ entries", "unused SIG_VALTYPE_ entries")):
        return None
    positions: dict[tuple[str, int | None, str], list[int]] = {}
    for pos, entry in enumerate(index.entries):
        positions.setdefault((entry.keyword, entry.dbc_id, entry.name), []).append(pos)
    found: set[int] = set()
    for keyword, raw_id, name in _UNUSED_RE.findall(message):
        for pos in positions.get((keyword, int(raw_id), name), []):
            if pos not in found:
                found.add(pos)
                _report_unused(index, index.entries[pos], problems)
    return found or None


def _report_unused(index: DbcIndex, entry: EntryLine, problems: FileProblems) -> None:
    assert entry.dbc_id is not None
    owners = index.messages_with_id(entry.dbc_id)
    if owners and owners[0].name == INDEPENDENT_SIGNALS:
        where = (
            f"signal {entry.name} belongs to {INDEPENDENT_SIGNALS} (signals assigned to no "
            f"message, line {owners[0].line}), which cantools and candiag skip"
        )
        name: str | None = None
    elif owners:
        msg = owners[0]
        where = (
            f"message {msg.name} (BO_ {entry.dbc_id}, line {msg.line}) has no signal {entry.name}"
        )
        name = msg.name
    else:
        where = f"no BO_ has identifier {entry.dbc_id}"
        name = None
    if entry.keyword == "VAL_":
        text = (
            f"VAL_ names values of signal {entry.name} of message {entry.dbc_id}, but {where}; "
            f"candiag ignores these value names: fix the identifier or signal name"
        )
        kind: WarningKind = "unused_value_table"
    else:
        text = (
            f"SIG_VALTYPE_ declares signal {entry.name} of message {entry.dbc_id} a float, but "
            f"{where}; candiag ignores it: fix the identifier or signal name"
        )
        kind = "unused_value_type"
    problems.add(entry.line, name, text, kind)


def _undefined_attributes(index: DbcIndex, problems: FileProblems) -> set[int]:
    found: set[int] = set()
    for pos, entry in enumerate(index.entries):
        if entry.keyword == "BA_" and entry.name not in index.attribute_definitions:
            found.add(pos)
            problems.add(
                entry.line,
                None,
                f"attribute '{entry.name}' is set here but never defined with BA_DEF_; "
                f"candiag ignores this setting: add BA_DEF_ for '{entry.name}' or remove the line",
                "undefined_attribute",
            )
    return found


def _blank(text: str, index: DbcIndex, entries: set[int]) -> str:
    """``text`` with those statements replaced by spaces (lines and offsets unchanged)."""
    spans = sorted(index.entries[i].span for i in entries)
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts.append(text[last:start])
        parts.append(re.sub(r"[^\n]", " ", text[start:end]))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _cause(err: BaseException) -> BaseException:
    return getattr(err, "e_dbc", None) or err.__cause__ or err.__context__ or err


def _cantools_error(path: Path, text: str, index: DbcIndex, err: BaseException) -> DbcError:
    """cantools' refusal in words, at the line of the definition it concerns."""
    cause = _cause(err)
    line = getattr(cause, "line", None)
    column = getattr(cause, "column", None)
    if isinstance(line, int):
        source = text.split("\n")
        snippet = source[line - 1].strip() if 0 < line <= len(source) else ""
        where = f"{path}:{line}:{column}" if isinstance(column, int) else f"{path}:{line}"
        hint = _syntax_hint(source, line, column if isinstance(column, int) else 0)
        return DbcError(
            f"{where}: invalid syntax in {snippet!r}: {hint}; fix the line or remove the file"
        )
    if isinstance(cause, KeyError) and cause.args:
        key = str(cause.args[0])
        words = f"'{key}' is used but never defined (no BA_DEF_ or definition of that name)"
        found = _line_quoting(text, key)
    elif isinstance(cause, RecursionError):
        words = (
            "signals are multiplexed too deeply for cantools to read (it follows nested "
            "multiplexers recursively, about a thousand levels at most)"
        )
        found = 0
    else:
        words = str(cause).strip() or f"{type(cause).__name__} while reading"
        found = _line_naming(index, words)
    where = f"{path}:{found}" if found else str(path)
    return DbcError(f"{where}: cantools cannot read the DBC: {words}; fix the DBC")


_SEMICOLON_KEYWORDS = frozenset(
    {"BA_", "BA_DEF_", "BA_DEF_DEF_", "BA_REL_", "BA_DEF_REL_", "CM_", "VAL_", "VAL_TABLE_"}
    | {"SIG_VALTYPE_", "SG_MUL_VAL_", "BO_TX_BU_", "SIG_GROUP_", "EV_", "ENVVAR_DATA_"}
)


def _syntax_hint(lines: list[str], line: int, column: int) -> str:
    """What is probably wrong where cantools' parser stopped (1-based line and column)."""
    rest = lines[line - 1][column - 1 :] if 0 < line <= len(lines) and column > 0 else ""
    if re.match(r"\.\d", rest):
        return "a number must start with a digit (0.25, not .25)"
    name = re.match(r"\d+[A-Za-z_][A-Za-z0-9_]*", rest)
    if name:
        return f"the name {name.group()!r} starts with a digit, which DBC names may not"
    statement = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    if statement.startswith("CM_ SG_") and rest.startswith('"'):
        return 'a comment on a signal is written CM_ SG_ <identifier> <signal> "text";'
    if statement.startswith("CM_") and rest[:1].isdigit():
        return 'a comment on a message is written CM_ BO_ <identifier> "text";'
    previous = line - 2
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    if previous >= 0 and column <= len(lines[line - 1]) - len(lines[line - 1].lstrip()) + 1:
        statement = lines[previous].strip()
        keyword = statement.split(None, 1)[0] if statement else ""
        if keyword in _SEMICOLON_KEYWORDS and not statement.endswith(";"):
            return f"the {keyword} statement on line {previous + 1} does not end with ';'"
    return "cantools expected a different word, number or sign at this column"


def _line_quoting(text: str, name: str) -> int:
    """Line of the first ``"name"`` in the text (once, on an error path)."""
    at = text.find(f'"{name}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 0


def _line_naming(index: DbcIndex, words: str) -> int:
    """Line of the first message named (quoted or as a word) in a cantools error text."""
    names = {m.name: m.line for m in reversed(index.messages)}
    for word in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", words):
        if word in names:
            return names[word]
    return 0


def message_lines(index: DbcIndex, messages: Sequence[Any]) -> list[MessageLine | None]:
    """The ``BO_`` line of each cantools message (cantools keeps the file's order)."""
    written = [m for m in index.messages if m.name != INDEPENDENT_SIGNALS]
    if len(written) == len(messages) and all(
        w.dbc_id == dbc_id(m) for w, m in zip(written, messages, strict=True)
    ):
        return list(written)
    # The index missed a definition cantools read (odd formatting): match by identifier.
    by_id: dict[int, list[MessageLine]] = {}
    for w in reversed(written):
        if w.dbc_id is not None:
            by_id.setdefault(w.dbc_id, []).append(w)
    found: list[MessageLine | None] = []
    for m in messages:
        candidates = by_id.get(dbc_id(m))
        found.append(candidates.pop() if candidates else None)
    return found


def dbc_id(msg: Any) -> int:
    return int(msg.frame_id) | (0x80000000 if msg.is_extended_frame else 0)


def report_log(
    records: list[logging.LogRecord], messages: list[MessageDef], problems: FileProblems
) -> None:
    """cantools' log lines as located warnings (duplicates are reported on their own)."""
    lines = {m.cantools_object.name: m.source_line for m in reversed(messages)}
    for record in records:
        text = record.getMessage()
        if text.startswith("Overwriting message"):
            continue  # two definitions of one name or identifier: see resolve_duplicates
        quoted = re.findall(r"'([^']*)'", text)
        line = next((lines[q] for q in quoted if q in lines), 0)
        problems.add(
            line,
            next((q for q in quoted if q in lines), None),
            f"cantools reports: {text}",
            "cantools",
            strict_refuses=False,
        )
