"""A finding's evidence in words: ``silent_s: 0.011`` becomes ``Silent for: 0.011 s``.

The words are data (``candiag/data/report_words.toml``); a key the file does not know is
still shown in words made from the key (``error_frames_60s`` -> ``Error frames (last 60
s)``), so a new rule never puts a raw key in front of a reader.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from candiag.config.toml import loads
from candiag.report.units import number


@cache
def _words() -> Mapping[str, Mapping[str, str]]:
    text = resources.files("candiag").joinpath("data", "report_words.toml").read_text("utf-8")
    table: Mapping[str, Mapping[str, str]] = loads(text)["evidence"]
    return table


_WINDOW = re.compile(r"_(\d+)(s|min|h)$")
_SUFFIX_UNITS = {"_s": "s", "_ms": "ms", "_a": "A", "_v": "V", "_ratio": "ratio"}


def label(key: str) -> tuple[str, str]:
    """(words, unit) for an evidence key."""
    known = _words().get(key)
    if known is not None:
        return known["words"], known.get("unit", "")
    words, unit = key, ""
    window = _WINDOW.search(words)
    suffix = ""
    if window:
        suffix = f" (last {window.group(1)} {window.group(2)})"
        words = words[: window.start()]
    for end, end_unit in _SUFFIX_UNITS.items():
        if words.endswith(end):
            words, unit = words[: -len(end)], end_unit
            break
    words = words.replace("_", " ").strip() or key
    return words[:1].upper() + words[1:] + suffix, unit


def value_text(value: Any, unit: str) -> str:
    """The value shown in ``unit`` (see the data file's header for the kinds)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {value_text(v, '')}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(value_text(v, "") for v in value) or "-"
    if not isinstance(value, int | float):
        return str(value)
    if unit == "time":
        return utc_text(float(value))
    if unit == "ratio":
        return f"{100 * float(value):.1f} %"
    if unit == "x":
        return f"{float(value):.2f}×"
    if unit == "bit/s":
        return f"{int(value):,} bit/s"
    shown = f"{value:,}" if isinstance(value, int) else number(float(value))
    if unit == "s" and float(value) >= 120:
        return f"{shown} s ({_long_duration(float(value))})"
    return f"{shown} {unit}" if unit else shown


def _long_duration(seconds: float) -> str:
    """``2.0 h``, ``3.5 min``, ``1.2 days``."""
    for size, name in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if seconds >= size:
            return f"{seconds / size:.1f} {name}"
    return f"{seconds:.0f} s"


def utc_text(ts: float) -> str:
    """``2023-11-14 22:13:59 UTC`` (the raw number when it is no time at all)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        return str(ts)


def evidence_rows(evidence: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(words, value) for each item of a finding's evidence, in the rule's order."""
    rows = []
    for key, value in evidence.items():
        words, unit = label(str(key))
        rows.append((words, value_text(value, unit)))
    return rows
