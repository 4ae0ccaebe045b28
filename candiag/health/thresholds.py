"""Bus-health thresholds, read from ``candiag/data/health_thresholds.toml`` (data, not code).

Owns the loading and validation of that file: a user file with the same layout overrides
only the keys it sets; a bad value is a :class:`~candiag.errors.ConfigError` in the one
format of :mod:`candiag.config.problems` (file, line, key path, expected and found).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from candiag.config.problems import Limit, Problems
from candiag.config.toml import read_toml

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


# section -> key -> the values it may take (each key's meaning: the data file's comments)
_SCHEMA: dict[str, dict[str, Limit]] = {
    "cycle": {
        "mean_tolerance": Limit(0.0, 10.0, "a fraction of the declared period"),
        "p95_factor": Limit(1.0, 100.0, "a multiple of the declared period"),
        "min_intervals": Limit(1, 1_000_000, "measured periods", kind="integer"),
    },
}
_HINT = "give a TOML file with the layout of candiag/data/health_thresholds.toml"


def _load(path: Path) -> dict[str, dict[str, float]]:
    """The keys ``path`` sets, validated; one ConfigError lists every problem."""
    problems = Problems(str(path))
    doc = read_toml(path, problems, hint=_HINT)
    if doc is None:
        raise problems.error()
    out: dict[str, dict[str, float]] = {}
    for section in problems.unknown_keys(doc, (), _SCHEMA, what="a section"):
        values = problems.table(doc[section], (section,), _SCHEMA[section])
        out[section] = {}
        for key in values:
            limit = _SCHEMA[section].get(key)
            if limit is None:
                continue  # (reported as unknown)
            value = problems.number_in(values, (section,), key, limit)
            if value is not None:
                out[section][key] = value
    problems.raise_if_any()
    return out


def load_thresholds(path: str | os.PathLike[str] | None = None) -> HealthThresholds:
    """The packaged thresholds, overridden by the keys ``path`` sets (when given)."""
    merged = _load(DEFAULT_PATH)
    if path is not None:
        for section, values in _load(Path(path)).items():
            merged.setdefault(section, {}).update(values)
    cycle = merged.get("cycle", {})
    return HealthThresholds(
        cycle=CycleThresholds(
            mean_tolerance=float(cycle.get("mean_tolerance", 0.10)),
            p95_factor=float(cycle.get("p95_factor", 1.5)),
            min_intervals=int(cycle.get("min_intervals", 10)),
        )
    )
