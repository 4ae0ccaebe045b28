"""Bus-health thresholds, read from ``candiag/data/health_thresholds.toml`` (data, not code).

Owns the loading and validation of that file: a user file with the same layout overrides
only the keys it sets; a bad value is a :class:`~candiag.errors.ConfigError` naming the file
and the key path.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from candiag.errors import ConfigError, shown
from candiag.tomlfile import toml_syntax_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "data" / "health_thresholds.toml"


@dataclass(frozen=True)
class CycleThresholds:
    """When a message "keeps its cycle time" (see :meth:`candiag.health.ids.IdStats.check_cycles`)."""

    mean_tolerance: float = 0.10
    p95_factor: float = 1.5
    min_intervals: int = 10


@dataclass(frozen=True)
class HealthThresholds:
    cycle: CycleThresholds = CycleThresholds()


_SCHEMA: dict[str, dict[str, tuple[type, float, float]]] = {
    # key: (type, minimum, maximum)
    "cycle": {
        "mean_tolerance": (float, 0.0, 10.0),
        "p95_factor": (float, 1.0, 100.0),
        "min_intervals": (int, 1, 1_000_000),
    },
}


def _read(path: Path) -> dict[str, Any]:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigError("not a regular file; give a TOML file", str(path))
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read thresholds: {err.strerror}", str(path)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"line {line}: not UTF-8 text, so not a TOML file", str(path)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_syntax_problem(str(path), err)) from None
    except ValueError as err:  # tomllib lets int()'s 4300-digit limit through
        raise ConfigError(f"a TOML value cannot be read ({err}); fix it", str(path)) from None
    return doc


def _validate(doc: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    problems: list[str] = []
    out: dict[str, dict[str, Any]] = {}
    for section, value in doc.items():
        if section not in _SCHEMA or not isinstance(value, dict):
            problems.append(
                f"[{shown(section)[1:-1]}]: unknown section (known: {', '.join(_SCHEMA)})"
            )
            continue
        out[section] = {}
        for key, raw in value.items():
            spec = _SCHEMA[section].get(key)
            if spec is None:
                problems.append(
                    f"{section}.{shown(key)[1:-1]}: unknown key (known: {', '.join(_SCHEMA[section])})"
                )
                continue
            kind, lo, hi = spec
            ok_type = isinstance(raw, (int, float)) and not isinstance(raw, bool)
            if kind is int:
                ok_type = isinstance(raw, int) and not isinstance(raw, bool)
            if not ok_type or not lo <= raw <= hi:  # (NaN fails the range too)
                problems.append(
                    f"{section}.{key}: {shown(raw)} must be a {kind.__name__} in [{lo}, {hi}]"
                )
                continue
            out[section][key] = kind(raw)
    if problems:
        raise ConfigError(problems, str(path))
    return out


def load_thresholds(path: str | os.PathLike[str] | None = None) -> HealthThresholds:
    """The packaged thresholds, overridden by the keys ``path`` sets (when given)."""
    merged = _validate(_read(DEFAULT_PATH), DEFAULT_PATH)
    if path is not None:
        for section, values in _validate(_read(Path(path)), Path(path)).items():
            merged.setdefault(section, {}).update(values)
    return HealthThresholds(cycle=CycleThresholds(**merged.get("cycle", {})))
