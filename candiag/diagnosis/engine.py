"""The diagnosis engine: health reports in, findings with evidence and fixes out.

One engine serves ``candiag analyze`` (evaluated over capture time) and the
daemon/monitor (evaluated over wall-clock time).  Its input is the JSON-shaped
*health report* both produce: one dict per CAN bus (the keys of ``analyze``'s
JSON: ``error_frames``, ``windows``, ``nodes``, ``ids``, ...) and one dict per
Modbus device (the poller's snapshot).

The rules (:mod:`candiag.diagnosis.rules`) are pure functions from a report to
*conditions*; the engine adds time: a condition becomes a finding after
``raise_after_s`` and a finding clears only after its condition has been absent
for ``clear_after_s`` (hysteresis, so a flapping fault does not flap the
finding).  Thresholds, titles, causes and fixes come from
``candiag/data/diagnosis.toml``, which users can override.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from candiag.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class RuleText:
    """The data-file side of a rule: how bad, how to say it, how to fix it."""

    code: str
    severity: str
    rank: int
    title: str
    causes: tuple[str, ...]
    fix: str
    mrec: str


@dataclass(frozen=True)
class RuleBook:
    """Thresholds and rule texts loaded from the data file (plus user overrides)."""

    thresholds: Mapping[str, float]
    rules: Mapping[str, RuleText]
    clear_after_s: float
    raise_after_s: float

    def t(self, name: str) -> float:
        return float(self.thresholds[name])


@dataclass(frozen=True)
class Condition:
    """A rule's verdict for one subject at one instant."""

    code: str
    subject: str
    fields: Mapping[str, Any]
    evidence: Mapping[str, Any]


@dataclass
class Finding:
    """A diagnosis a technician reads: what, how sure, evidence, causes, fix."""

    code: str
    severity: str
    rank: int
    subject: str
    title: str
    evidence: dict[str, Any]
    causes: list[str]
    fix: str
    mrec: str | None
    since: float
    cleared_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": self.severity,
            "title": self.title,
            "evidence": self.evidence,
            "causes": self.causes,
            "fix": self.fix,
            "mrec": self.mrec,
            "since": self.since,
            "subject": self.subject,
        }
        if self.cleared_at is not None:
            out["cleared_at"] = self.cleared_at
        return out

    def sort_key(self) -> tuple[int, int, float, str]:
        return (SEVERITY_ORDER.get(self.severity, 9), -self.rank, self.since, self.subject)


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_rulebook(override_path: str | Path | None = None) -> RuleBook:
    """Load the shipped rule data, merged with a user override file if given."""
    text = resources.files("candiag.data").joinpath("diagnosis.toml").read_text("utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    if override_path is not None:
        path = Path(override_path)
        try:
            override = tomllib.loads(path.read_text("utf-8"))
        except OSError as err:
            raise ConfigError(
                f"cannot read diagnosis thresholds file: {err.strerror}; "
                "fix the path in [diagnosis] thresholds_file",
                str(path),
            ) from err
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"invalid TOML: {err}", str(path)) from err
        problems = _check_override(override, data)
        if problems:
            raise ConfigError(problems, str(path))
        data = _merge(data, override)
    return _rulebook_from(data)


def _check_override(override: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    problems = []
    for section, values in override.items():
        if section not in base:
            problems.append(f"{section}: unknown section (expected engine, thresholds or rules)")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"{section}: expected a table, found {type(values).__name__}")
            continue
        for key, value in values.items():
            if key not in base[section]:
                problems.append(f"{section}.{key}: unknown key")
            elif section == "thresholds" and not isinstance(value, int | float):
                problems.append(f"{section}.{key}: expected a number, found {value!r}")
    return problems


def _rulebook_from(data: Mapping[str, Any]) -> RuleBook:
    rules = {
        code: RuleText(
            code=code,
            severity=str(r["severity"]),
            rank=int(r.get("rank", 0)),
            title=str(r["title"]),
            causes=tuple(str(c) for c in r.get("causes", ())),
            fix=str(r.get("fix", "")),
            mrec=str(r.get("mrec", "")),
        )
        for code, r in data["rules"].items()
    }
    engine = data.get("engine", {})
    return RuleBook(
        thresholds=dict(data["thresholds"]),
        rules=rules,
        clear_after_s=float(engine.get("clear_after_s", 30.0)),
        raise_after_s=float(engine.get("raise_after_s", 0.0)),
    )


class _SafeFields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, fields: Mapping[str, Any]) -> str:
    """Fill ``{name}`` placeholders; unknown ones stay visible rather than failing."""
    return template.format_map(_SafeFields(fields))


@dataclass
class _Pending:
    first_seen: float
    last_true: float


@dataclass
class DiagnosisEngine:
    """Applies the rules over time, with hysteresis; keeps active and past findings."""

    book: RuleBook = field(default_factory=load_rulebook)
    active: dict[tuple[str, str], Finding] = field(default_factory=dict)
    history: list[Finding] = field(default_factory=list)
    _pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    _modbus_memory: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)

    def update(
        self,
        now: float,
        buses: Sequence[Mapping[str, Any]] = (),
        modbus: Sequence[Mapping[str, Any]] = (),
    ) -> tuple[list[Finding], list[Finding]]:
        """Evaluate at ``now``; return (raised, cleared) findings for logging."""
        from candiag.diagnosis.rules import evaluate

        recent = self._remember_modbus(now, modbus)
        conditions = {(c.code, c.subject): c for c in evaluate(self.book, buses, modbus, recent)}
        raised = self._raise(now, conditions)
        cleared = self._clear(now, conditions)
        return raised, cleared

    def add_conditions(self, now: float, conditions: Sequence[Condition]) -> list[Finding]:
        """Findings about something judged once (e.g. the capture file), raised at ``now``.

        No hysteresis: such a condition does not come and go over time.
        """
        raised = []
        for cond in conditions:
            key = (cond.code, cond.subject)
            if key not in self.active:
                self.active[key] = self._make(cond, since=now)
                raised.append(self.active[key])
        return raised

    def _remember_modbus(
        self, now: float, devices: Sequence[Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """Counters of each device about 60 s ago, so rules judge recent rates, not lifetime."""
        past: dict[str, Mapping[str, Any]] = {}
        for dev in devices:
            name = str(dev.get("name", ""))
            memory = self._modbus_memory.setdefault(name, [])
            memory.append((now, dict(dev)))
            while len(memory) > 2 and memory[1][0] <= now - 60.0:
                memory.pop(0)
            # With no earlier snapshot, everything so far counts as recent.
            past[name] = memory[0][1] if len(memory) > 1 else {}
        return past

    def _raise(self, now: float, conditions: Mapping[tuple[str, str], Condition]) -> list[Finding]:
        raised = []
        for key, cond in conditions.items():
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(now, now)
            pending.last_true = now
            finding = self.active.get(key)
            if finding is not None:
                self._refresh(finding, cond)
            elif now - pending.first_seen >= self.book.raise_after_s:
                finding = self._make(cond, since=pending.first_seen)
                self.active[key] = finding
                raised.append(finding)
        return raised

    def _clear(self, now: float, conditions: Mapping[tuple[str, str], Condition]) -> list[Finding]:
        cleared = []
        for key in list(self._pending):
            if key in conditions:
                continue
            pending = self._pending[key]
            if now - pending.last_true < self.book.clear_after_s:
                continue
            del self._pending[key]
            finding = self.active.pop(key, None)
            if finding is not None:
                finding.cleared_at = now
                self.history.append(finding)
                cleared.append(finding)
        return cleared

    def _make(self, cond: Condition, since: float) -> Finding:
        text = self.book.rules[cond.code]
        finding = Finding(
            code=cond.code,
            severity=text.severity,
            rank=text.rank,
            subject=cond.subject,
            title="",
            evidence={},
            causes=[render(c, cond.fields) for c in text.causes],
            fix=render(text.fix, cond.fields),
            mrec=text.mrec or None,
            since=since,
        )
        self._refresh(finding, cond)
        return finding

    def _refresh(self, finding: Finding, cond: Condition) -> None:
        text = self.book.rules[cond.code]
        finding.title = render(text.title, cond.fields)
        finding.evidence = dict(cond.evidence)
        finding.fix = render(text.fix, cond.fields)

    def findings(self) -> list[Finding]:
        """Active findings, most severe first."""
        return sorted(self.active.values(), key=Finding.sort_key)

    def all_findings(self) -> list[Finding]:
        """Every finding raised, active or cleared, most severe first.

        For an offline report the worst thing that happened leads, even if it had
        cleared by the end of the capture (a bus-off that recovered still matters).
        """
        return sorted([*self.active.values(), *self.history], key=Finding.sort_key)
