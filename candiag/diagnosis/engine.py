"""The diagnosis engine: health reports in, findings with evidence and fixes out.

One engine serves ``candiag analyze`` (evaluated over capture time) and the
daemon/monitor (evaluated over wall-clock time).  Its input is the *health
report* both produce: one :class:`~candiag.health.report.BusReport` per CAN bus
and one dict per Modbus device (the poller's snapshot).

The rules (:mod:`candiag.diagnosis.rules`) are pure functions from a report to
*conditions*; the engine adds time: a condition becomes a finding after
``raise_after_s`` and a finding clears only after its condition has been absent
for ``clear_after_s`` (hysteresis, so a flapping fault does not flap the
finding).  Thresholds, titles, causes and fixes come from
``candiag/data/diagnosis.toml``, which users can override.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candiag.config.problems import KeyPath, Limit, Problems
from candiag.config.toml import loads, read_toml
from candiag.diagnosis.episodes import Episode
from candiag.errors import shown
from candiag.health.jsontypes import JsonObject
from candiag.health.report import BusReport

if TYPE_CHECKING:
    from candiag.diagnosis.timeline import BusTimeline

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
    """A diagnosis a technician reads: what, how sure, evidence, causes, fix.

    One finding per (code, subject): a fault that comes back is the next of its
    ``episodes`` (intervals, :mod:`candiag.diagnosis.episodes`), not a new finding.
    ``consequences``: findings the causal model (``candiag/data/causes.toml``) explains
    by this one, shown under it and not ranked on their own.
    """

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
    episodes: list[Episode] = field(default_factory=list)
    consequences: list[Finding] = field(default_factory=list)
    # Set on a consequence: why the causal model folds it under its cause.
    consequence_of: str | None = None
    # When the evidence first proved it (an interval rule's episode start + its threshold).
    detected_at: float | None = None

    @property
    def start(self) -> float:
        return self.episodes[0].start if self.episodes else self.since

    @property
    def end(self) -> float | None:
        """End of the last episode; None while the fault lasts (or was never seen to end)."""
        if not self.episodes:
            return self.cleared_at
        return self.episodes[-1].end

    def episodes_json(self, now: float | None = None) -> JsonObject:
        """``start``, ``end``, ``duration_s`` (summed over episodes), ``occurrences``."""
        episodes = self.episodes or [Episode(self.since, self.cleared_at)]
        durations = [e.duration(now) for e in episodes]
        known = [d for d in durations if d is not None]
        return {
            "start": episodes[0].start,
            "end": episodes[-1].end,
            "duration_s": round(sum(known), 6) if len(known) == len(durations) else None,
            "occurrences": len(episodes),
            "episodes": [e.to_json(now) for e in episodes],
        }

    def to_json(self, now: float | None = None) -> JsonObject:
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
        out.update(self.episodes_json(now))
        if self.consequence_of is not None:
            out["consequence_of"] = self.consequence_of
        if self.consequences:
            out["consequences"] = [c.to_json(now) for c in self.consequences]
        return out

    def sort_key(self) -> tuple[int, int, int, float, str]:
        """Causes first (a finding that explains others), then severity, rank and time."""
        return (
            0 if self.consequences else 1,
            SEVERITY_ORDER.get(self.severity, 9),
            -self.rank,
            self.start,
            self.subject,
        )


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_rulebook(override_path: str | Path | None = None) -> RuleBook:
    """Load the shipped rule data, merged with a user override file if given.

    The override is validated key by key (:data:`THRESHOLD_LIMITS`, :data:`ENGINE_LIMITS`,
    the rule fields): every problem is listed in one :class:`ConfigError`, each with the
    file, line, key path, what was expected and what was found, so ``check-config`` shows
    what ``analyze`` and ``run`` would trip over.
    """
    text = resources.files("candiag.data").joinpath("diagnosis.toml").read_text("utf-8")
    data: dict[str, Any] = loads(text)
    if override_path is not None:
        path = Path(override_path)
        problems = Problems(str(path))
        override = read_toml(path, problems, hint="fix the path in [diagnosis] thresholds_file")
        if override is None:
            raise problems.error()
        _check_override(problems, override, data)
        problems.raise_if_any()
        data = _merge(data, override)
    return _rulebook_from(data)


# What makes sense for each threshold (units as in candiag/data/diagnosis.toml).
THRESHOLD_LIMITS: dict[str, Limit] = {
    "error_frames_warning_60s": Limit(1, 1e6, "error frames in 60 s", kind="whole"),
    "error_frames_critical_60s": Limit(1, 1e6, "error frames in 60 s", kind="whole"),
    "burst_errors_per_s": Limit(1, 1e6, "protocol errors in one second", kind="whole"),
    "wrong_bitrate_min_bursts": Limit(1, 60, "burst seconds in 60 s", kind="whole"),
    "wrong_bitrate_burst_share": Limit(0.01, 1, "a share, 0-1"),
    "capture_malformed_warning": Limit(1e-6, 1, "a share of lines, 0-1"),
    "capture_malformed_critical": Limit(1e-6, 1, "a share of lines, 0-1"),
    "bus_load_warning": Limit(0.01, 1, "a load ratio, 0-1, not percent"),
    "bus_load_critical": Limit(0.01, 1, "a load ratio, 0-1, not percent"),
    "cycle_violation_jitter_ratio": Limit(0.01, 1, "a share of periods, 0-1"),
    "contactor_feedback_s": Limit(0.001, 60, "seconds"),
    "contactor_weld_s": Limit(0.001, 600, "seconds"),
    "coil_off_a": Limit(0, 100, "amperes"),
    "pump_min_command": Limit(0, 1, "a speed share, 0-1"),
    "min_flow_l_min": Limit(0, 1000, "litres per minute"),
    "coolant_warning_c": Limit(-40, 150, "degrees Celsius"),
    "coolant_critical_c": Limit(-40, 150, "degrees Celsius"),
    "modbus_crc_warning_share": Limit(0.001, 1, "a share of requests, 0-1"),
    "meter_reversed_min_a": Limit(0.1, 10_000, "amperes"),
    # Request/response liveness (candiag/liveness/intervals.py, docs/liveness.md).
    "liveness_unanswered_in_a_row": Limit(1, 1000, "requests in a row", kind="whole"),
    "liveness_not_polled_periods": Limit(1.5, 1000, "poll periods, at least 1.5"),
    "liveness_default_poll_period_s": Limit(0.01, 60, "seconds"),
    "liveness_slow_reply_ms": Limit(1, 60_000, "milliseconds"),
    "liveness_slow_min_answers": Limit(1, 10_000, "answers in 10 s", kind="whole"),
    "liveness_conflict_min_share": Limit(0.01, 1, "a share of answered requests, 0-1"),
}
ENGINE_LIMITS: dict[str, Limit] = {
    "clear_after_s": Limit(0, 86_400, "seconds a condition must be absent"),
    "raise_after_s": Limit(0, 86_400, "seconds a condition must hold"),
}
# (lower, upper): a warning level must not lie above its critical level.
ORDERED_THRESHOLDS = (
    ("error_frames_warning_60s", "error_frames_critical_60s"),
    ("capture_malformed_warning", "capture_malformed_critical"),
    ("bus_load_warning", "bus_load_critical"),
    ("coolant_warning_c", "coolant_critical_c"),
)
_RULE_TEXT_KEYS = ("title", "fix", "mrec")
_RULE_KEYS = ("severity", "rank", "causes", *_RULE_TEXT_KEYS)
_MAX_TEXT = 2000
_RANK = Limit(0, 1000, "order among findings of one severity", kind="whole")
_SECTION = "a section of candiag/data/diagnosis.toml"


def _check_override(
    problems: Problems, override: Mapping[str, Any], base: Mapping[str, Any]
) -> None:
    """Every problem of an override file, added to ``problems``."""
    before = len(problems)
    for section in problems.unknown_keys(override, (), base, what=_SECTION):
        values = problems.table(override[section], (section,))
        what = "a rule code of candiag/data/diagnosis.toml" if section == "rules" else ""
        for key in problems.unknown_keys(values, (section,), base[section], what=what):
            if section in ("thresholds", "engine"):
                limits = THRESHOLD_LIMITS if section == "thresholds" else ENGINE_LIMITS
                limit = limits.get(key)
                if limit is not None:
                    problems.number_in(values, (section,), key, limit)
            elif section == "rules":
                _check_rule(problems, values[key], ("rules", key))
    if len(problems) == before:
        merged = {**base.get("thresholds", {}), **override.get("thresholds", {})}
        for low, high in ORDERED_THRESHOLDS:
            if merged[low] > merged[high]:
                changed = low if low in override.get("thresholds", {}) else high
                problems.add(
                    ("thresholds", changed),
                    f"{low} <= {high}",
                    f"{merged[low]:g} > {merged[high]:g}",
                )


def _check_rule(problems: Problems, rule: object, path: KeyPath) -> None:
    """One ``[rules.CODE]`` table of an override."""
    if not isinstance(rule, Mapping):
        problems.add_value(path, f"a table of {', '.join(_RULE_KEYS)}", rule)
        return
    problems.unknown_keys(rule, path, _RULE_KEYS)
    problems.choice(rule, path, "severity", tuple(SEVERITY_ORDER))
    problems.number_in(rule, path, "rank", _RANK)
    if "causes" in rule:
        causes = rule["causes"]
        if not isinstance(causes, list) or not causes:
            problems.add_value((*path, "causes"), "a list of texts", causes)
        else:
            for i, cause in enumerate(causes):
                _check_text(problems, cause, (*path, "causes", i))
    for key in _RULE_TEXT_KEYS:
        if key in rule:
            _check_text(problems, rule[key], (*path, key))


def _check_text(problems: Problems, value: object, path: KeyPath) -> None:
    """A problem when a rule text cannot be rendered by :func:`render`."""
    if not isinstance(value, str):
        problems.add_value(path, "a text", value)
        return
    if len(value) > _MAX_TEXT:
        problems.add(path, f"a text of at most {_MAX_TEXT} characters", f"{len(value)}")
        return
    plain = "a text with plain {name} placeholders"
    try:
        fields = list(string.Formatter().parse(value))
    except ValueError as err:
        found = f"{shown(value)} ({err})"
        problems.add(path, plain, found, "write a literal brace as {{ or }}")
        return
    for _, name, spec, conversion in fields:
        if name is not None and (not name.isidentifier() or spec or conversion):
            problems.add(
                path,
                plain + " (no index, attribute, format or conversion)",
                f"placeholder {shown('{' + name + '}')}",
                "write it as {bus}, {address}, ...",
            )
            return


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
    """Applies the rules over time, with hysteresis; keeps every finding with its episodes.

    Two kinds of rules feed it.  *Instant* rules (:mod:`candiag.diagnosis.rules`) judge a
    health report at ``now``; their episodes start when the condition was first seen and
    end when it was last seen, once absent for ``clear_after_s``.  *Interval* rules
    (:mod:`candiag.diagnosis.intervals`) read a bus's timeline (exact node gaps, contactor
    command/feedback disagreements) and give episodes exact to the frames
    (:meth:`apply_timelines`); for their codes the timeline is the whole truth.
    """

    book: RuleBook = field(default_factory=load_rulebook)
    active: dict[tuple[str, str], Finding] = field(default_factory=dict)
    history: list[Finding] = field(default_factory=list)
    _pending: dict[tuple[str, str], _Pending] = field(default_factory=dict)
    _modbus_memory: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    # Buses whose interval codes come from their timeline (:meth:`apply_timelines`).
    _timeline_buses: set[str] = field(default_factory=set)

    def update(
        self,
        now: float,
        buses: Sequence[BusReport] = (),
        modbus: Sequence[Mapping[str, Any]] = (),
        timelines: Sequence[BusTimeline] = (),
    ) -> tuple[list[Finding], list[Finding]]:
        """Evaluate at ``now``; return (raised, cleared) findings for logging.

        ``timelines``: each bus's :class:`~candiag.diagnosis.timeline.BusTimeline`
        (:func:`~candiag.diagnosis.timeline.bus_timeline`): the interval rules then run too,
        exactly as ``analyze`` runs them over a capture, so live and offline findings
        agree on the same frames.
        """
        raised, cleared = self._update_instants(now, buses, modbus, {t.bus for t in timelines})
        if timelines:
            more_raised, more_cleared = self.apply_timelines(now, timelines)
            raised += more_raised
            cleared += more_cleared
        return raised, cleared

    def _update_instants(
        self,
        now: float,
        buses: Sequence[BusReport],
        modbus: Sequence[Mapping[str, Any]],
        timeline_buses: set[str],
    ) -> tuple[list[Finding], list[Finding]]:
        from candiag.diagnosis.intervals import INTERVAL_CODES
        from candiag.diagnosis.rules import evaluate

        recent = self._remember_modbus(now, modbus)
        owned = self._timeline_buses | timeline_buses
        conditions = {
            (c.code, c.subject): c
            for c in evaluate(self.book, buses, modbus, recent, owned)
            if c.code not in INTERVAL_CODES or _bus(c.subject) not in self._timeline_buses
        }
        raised = self._raise(now, conditions)
        cleared = self._clear(now, conditions)
        return raised, cleared

    def apply_timelines(
        self, now: float, timelines: Sequence[Any]
    ) -> tuple[list[Finding], list[Finding]]:
        """Findings of the interval rules over each bus's timeline, exact to the frames.

        For the interval codes the timeline replaces what instants said; return (raised,
        cleared) compared with before, as :meth:`update` does.
        """
        from candiag.diagnosis.intervals import INTERVAL_CODES, interval_findings

        before = {k: f.end for k, f in self._every().items() if k[0] in INTERVAL_CODES}
        buses = {t.bus for t in timelines}
        self._timeline_buses |= buses
        for key in [k for k in self._pending if k[0] in INTERVAL_CODES and _bus(k[1]) in buses]:
            del self._pending[key]
        for key in [k for k in self.active if k[0] in INTERVAL_CODES and _bus(k[1]) in buses]:
            del self.active[key]
        self.history = [
            f for f in self.history if not (f.code in INTERVAL_CODES and _bus(f.subject) in buses)
        ]
        raised: list[Finding] = []
        cleared: list[Finding] = []
        for found in interval_findings(self.book, timelines):
            key = (found.code, found.subject)
            finding = self._make(
                Condition(found.code, found.subject, found.fields, found.evidence),
                since=found.episodes[0].start,
            )
            finding.episodes = list(found.episodes)
            finding.detected_at = found.episodes[0].start + found.proof_s
            end = found.episodes[-1].end
            if end is None:
                self.active[key] = finding
                if key not in before or before[key] is not None:
                    raised.append(finding)
            else:
                finding.cleared_at = end
                self.history.append(finding)
                if key in before and before[key] is None:
                    cleared.append(finding)
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
                self.active[key].episodes = [Episode(now, None)]
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
        past: dict[tuple[str, str], Finding] | None = None  # built once, when first needed
        for key, cond in conditions.items():
            pending = self._pending.get(key)
            if pending is None:
                pending = self._pending[key] = _Pending(now, now)
            pending.last_true = now
            finding = self.active.get(key)
            if finding is not None:
                self._refresh(finding, cond)
            elif now - pending.first_seen >= self.book.raise_after_s:
                if past is None:
                    past = {(f.code, f.subject): f for f in self.history}
                finding = self._reopen(key, cond, pending.first_seen, past.pop(key, None))
                self.active[key] = finding
                raised.append(finding)
        return raised

    def _reopen(
        self, key: tuple[str, str], cond: Condition, since: float, old: Finding | None
    ) -> Finding:
        """The finding of ``key`` with a new episode: a fault that comes back is not new.

        ``old``: the cleared finding of ``key`` in :attr:`history`, if any.
        """
        if old is not None:
            self.history.remove(old)
            old.cleared_at = None
            old.episodes.append(Episode(since, None))
            self._refresh(old, cond)
            return old
        finding = self._make(cond, since=since)
        finding.episodes = [Episode(since, None)]
        return finding

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
                if finding.episodes and finding.episodes[-1].end is None:
                    # The episode ends when its condition was last seen, not when the
                    # hysteresis let it go.
                    last = finding.episodes[-1]
                    finding.episodes[-1] = Episode(last.start, max(last.start, pending.last_true))
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

    def _every(self) -> dict[tuple[str, str], Finding]:
        out = {(f.code, f.subject): f for f in self.history}
        out.update(self.active)
        return out

    def all_findings_flat(self) -> list[Finding]:
        """Every finding, active or cleared, consequences included, unranked."""
        return list(self._every().values())

    def findings(self) -> list[Finding]:
        """Active findings, causes first, their consequences folded under them."""
        return fold(list(self.active.values()))

    def all_findings(self) -> list[Finding]:
        """Every finding raised, active or cleared, causes first, consequences folded.

        For an offline report the worst thing that happened leads, even if it had
        cleared by the end of the capture (a bus-off that recovered still matters).
        """
        return fold(list(self._every().values()))


def _bus(subject: str) -> str:
    return subject.split("/", 1)[0]


def fold(findings: list[Finding]) -> list[Finding]:
    """Top-level findings ranked (:meth:`Finding.sort_key`), consequences under their cause."""
    from candiag.diagnosis.causes import fold_consequences, load_causal_model

    return fold_consequences(findings, load_causal_model())
