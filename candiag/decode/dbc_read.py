"""Reading one DBC file's text: cantools parses it, then candiag's checks and conventions.

Apart from :mod:`candiag.decode.dbc` so that a command whose files all come from the DBC
cache (:mod:`candiag.decode.dbc_cache`) imports none of this, nor cantools.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from pathlib import Path

from candiag.decode.dbc_cantools import cantools_load, message_lines, report_log
from candiag.decode.dbc_conventions import (
    attribute_defaults,
    check_definitions,
    mask_usable,
    message_def,
    protocol_info,
)
from candiag.decode.dbc_model import FileProblems, LoadedFile, listed_error
from candiag.decode.dbc_text import index_dbc


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a DBC is read: cantools and candiag create
    objects by the hundred thousand and free none, and each full collection walks them
    all again, which made loading grow faster than the file (bench/bench_dbc.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_dbc_text(path: Path, text: str, strict: bool) -> LoadedFile:
    """What one DBC file's text becomes; DbcError (file:line) when it cannot load."""
    with _gc_paused():
        return _parse_dbc_text(path, text, strict)


def _parse_dbc_text(path: Path, text: str, strict: bool) -> LoadedFile:
    index = index_dbc(text, str(path))
    if index.problems:
        raise listed_error(
            str(path),
            [f"{path}:{line}: {words}" for line, words in index.problems],
            0,
            "no CAN frame can carry these; fix the DBC",
        )
    problems = FileProblems(path, strict)
    db, records = cantools_load(path, text, index, problems)
    problems.raise_errors("cantools refuses them; fix the DBC")
    lines = message_lines(index, db.messages)
    definitions = db.dbc.attribute_definitions if db.dbc else {}
    check_definitions(index, definitions, problems)
    usable = mask_usable(definitions)
    defaults = attribute_defaults(db)
    protocol = protocol_info(path, db, defaults)
    messages = [
        message_def(path, index, msg, line, defaults, usable, problems, protocol)
        for msg, line in zip(db.messages, lines, strict=True)
    ]
    report_log(records, messages, problems)
    problems.raise_errors()
    return LoadedFile(messages, problems)
