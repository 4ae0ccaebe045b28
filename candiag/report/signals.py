"""The signals table of the report, grouped as a technician looks for a value: by node
(``power module 3``), then by message, with counters and status bits folded away.

A signal is a **counter** when its DBC role says so (``counter``: a rolling message
counter, useful only to spot lost frames) and a **status bit** when it has no unit and
only ever took the values 0 and 1, or its role is an alarm, a contactor command, feedback
or weld flag.  Both are folded into a ``<details>`` whose summary names the bits that were
set at some point, so folding never hides an alarm.  Everything else is a measurement,
shown with its unit as a technician writes it (:mod:`candiag.report.units`).

A value whose message stopped coming (``stale`` in the analysis report) is history, not the
present: its *last* figure is greyed and marked ``stale`` with the time it was received, and
a node whose every value is stale says so in its heading.  Whether a value is still current
cannot be told when its message declares no cycle time; the group says that in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from candiag.report import access
from candiag.report.evidence import utc_text
from candiag.report.units import number, scale

STATUS_ROLE_PREFIXES = ("alarm:", "contactor:")


@dataclass(frozen=True)
class SignalRow:
    message: str
    signal: str
    unit: str
    role: str
    minimum: float | None
    maximum: float | None
    mean: float | None
    last: float | None
    # True: its message stopped coming, ``last`` is history; None: cannot be told.
    stale: bool | None = False
    last_ts: float | None = None

    @property
    def kind(self) -> str:
        """``counter``, ``status`` or ``measurement``."""
        if self.role == "counter":
            return "counter"
        if self.role.startswith(STATUS_ROLE_PREFIXES):
            return "status"
        if not self.unit.strip() and self.minimum in (0.0, 1.0) and self.maximum in (0.0, 1.0):
            return "status"
        return "measurement"

    def cells(self) -> str:
        divisor, unit = scale([self.minimum, self.maximum, self.mean, self.last], self.unit)
        figures = "".join(
            f"<td class='num'>{number(v, divisor)}</td>"
            for v in (self.minimum, self.maximum, self.mean)
        )
        return (
            f"<td>{escape(self.signal)}</td>{figures}{self._last_cell(divisor)}"
            f"<td>{escape(unit)}</td>"
        )

    def _last_cell(self, divisor: float) -> str:
        figure = number(self.last, divisor)
        if self.stale is not True:
            return f"<td class='num last'>{figure}</td>"
        when = "" if self.last_ts is None else f" at {utc_text(self.last_ts)}"
        tip = f"stale: the last value received{when}; its message stopped coming"
        return (
            f"<td class='num last stale' title='{escape(tip)}'>{figure}"
            "<span class='stale-mark'>stale</span></td>"
        )


@dataclass
class SignalGroup:
    """The signals of one node (or of the messages addressed to no node)."""

    label: str
    rows: list[SignalRow] = field(default_factory=list)

    def html(self) -> str:
        shown = [r for r in self.rows if r.kind == "measurement"]
        folded = [r for r in self.rows if r.kind != "measurement"]
        out = [f"<h3>{escape(self.label)}{self._stale_heading()}</h3>"]
        if any(r.stale is None for r in self.rows):
            out.append(
                "<p class='chart-note'>Whether the last values of this group are still "
                "current cannot be told: their messages declare no cycle time.</p>"
            )
        if shown:
            out.append(_table(shown))
        if folded:
            counters = sum(1 for r in folded if r.kind == "counter")
            bits = len(folded) - counters
            set_bits = [r.signal for r in folded if r.kind == "status" and r.maximum == 1.0]
            what = ", ".join(
                p
                for p in (
                    f"{bits} status bit{'s' if bits != 1 else ''}" if bits else "",
                    f"{counters} counter{'s' if counters != 1 else ''}" if counters else "",
                )
                if p
            )
            if set_bits:
                names = ", ".join(set_bits[:6]) + (
                    f" and {len(set_bits) - 6} more" if len(set_bits) > 6 else ""
                )
                state = f"; set at some time: {escape(names)}"
            else:
                state = "; none set" if bits else ""
            out.append(
                f"<details class='folded'><summary>{escape(what)}{state}</summary>"
                f"{_table(folded)}</details>"
            )
        return "".join(out)

    def _stale_heading(self) -> str:
        """``stale: silent since ...`` when every value of the group stopped coming."""
        if not self.rows or not all(r.stale is True for r in self.rows):
            return ""
        stamps = [r.last_ts for r in self.rows if r.last_ts is not None]
        since = f": last value at {utc_text(max(stamps))}" if stamps else ""
        return f"<span class='stale-mark'>stale{escape(since)}</span>"


def _table(rows: list[SignalRow]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("signal", "min", "max", "mean", "last", "unit"))
    body = []
    message = None
    for row in rows:
        if row.message != message:
            message = row.message
            body.append(f"<tr class='msg'><th colspan='6'>{escape(message)}</th></tr>")
        body.append(f"<tr>{row.cells()}</tr>")
    return f"<table class='signals'><tr>{head}</tr>{''.join(body)}</table>"


def signal_groups(signals: Mapping[str, Any], families: Mapping[str, str]) -> list[SignalGroup]:
    """Groups by (bus, node family, address), in a stable order: family, then address."""
    groups: dict[tuple[str, str, int], SignalGroup] = {}
    for key, s in signals.items():
        message = str(access.field(s, "message", ""))
        node = access.field(s, "node")
        bus = _bus_of(str(key), message)
        family = families.get(message, "")
        if family:
            label = family.replace("_", " ") + ("" if node is None else f" {node}")
        else:
            label = "other messages" if node is None else f"node {node}"
        if bus:
            label = f"{bus}: {label}"
        order = (bus, family or "~", -1 if node is None else int(node))
        group = groups.setdefault(order, SignalGroup(label))
        group.rows.append(
            SignalRow(
                message=message,
                signal=str(access.field(s, "signal", key)),
                unit=str(access.field(s, "unit", "")),
                role=str(access.field(s, "role", "")),
                minimum=_num(access.field(s, "min")),
                maximum=_num(access.field(s, "max")),
                mean=_num(access.field(s, "mean")),
                last=_num(access.field(s, "last")),
                stale=_stale(s),
                last_ts=_num(access.field(s, "last_ts")),
            )
        )
    out = [groups[k] for k in sorted(groups)]
    for group in out:
        group.rows.sort(key=lambda r: (r.message, r.signal))
    return out


def _bus_of(key: str, message: str) -> str:
    """Several buses key their signals ``"<bus> <message>.<signal>"``; one bus has no prefix."""
    head, sep, rest = key.partition(" ")
    return head if sep and rest.startswith(f"{message}.") else ""


def _stale(signal: Any) -> bool | None:
    """The report's ``stale`` (a report without the key: None, not known)."""
    value = access.field(signal, "stale")
    return None if value is None else bool(value)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)
