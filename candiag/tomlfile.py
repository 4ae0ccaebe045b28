"""TOML details every candiag data file shares (configs, meter profiles).

``tomllib`` parses; what it leaves to the caller lives here once: a syntax error as
``file:line:col`` (tomllib puts the position inside its message) and the integers TOML
does not allow (beyond 64 bits: tomllib reads them at any size, and they break every later
range check and message).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

_TOML_POS_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def toml_syntax_problem(source: str, err: Exception) -> str:
    """A tomllib error as ``source:line:col: TOML syntax error: what; fix ...``."""
    message = str(err)
    pos = _TOML_POS_RE.search(message)
    if pos is None:
        return f"{source}: TOML syntax error: {message}; fix the TOML syntax"
    what = message[: pos.start()].strip()
    return f"{source}:{pos.group(1)}:{pos.group(2)}: TOML syntax error: {what}; fix the TOML syntax"


def oversized_integers(node: Any, path: str = "") -> Iterator[str]:
    """Key paths of integers beyond TOML's 64 bits."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from oversized_integers(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from oversized_integers(value, f"{path}[{i}]")
    elif isinstance(node, int) and not isinstance(node, bool) and not -(1 << 63) <= node < 1 << 63:
        yield path or "<top level>"
