"""The HTML report's "Power modules (request/response)" section, from the analyze JSON's
``liveness`` key (one bus's report, or a mapping bus -> report).  Every text is escaped."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any


def liveness_section(liveness: Mapping[str, Any] | None) -> str:
    """An ``<h2>`` and one table of modules per bus; empty when there is no exchange."""
    if not liveness:
        return ""
    per_bus = {"": liveness} if "modules" in liveness else dict(liveness)
    parts = ["<h2>Power modules (request/response)</h2>"]
    for bus, report in per_bus.items():
        modules = (report or {}).get("modules") or []
        if bus:
            parts.append(f"<h3>{escape(str(bus))}</h3>")
        if not modules:
            parts.append("<p class='empty'>No request or reply of a protocol pack seen.</p>")
            continue
        rows = "".join(_row(m) for m in modules)
        head = "".join(
            f"<th>{h}</th>"
            for h in ("protocol", "module", "requests", "replies", "unanswered",
                      "latency median / p99 (ms)", "error replies", "second answers", "state")
        )  # fmt: skip
        parts.append(f"<table><tr>{head}</tr>{rows}</table>")
    return "".join(parts)


def _row(m: Mapping[str, Any]) -> str:
    lat = m.get("latency_ms") or {}
    latency = (
        "-" if lat.get("median") is None else f"{lat['median']:.1f} / {lat.get('p99') or 0:.1f}"
    )
    errors = ", ".join(
        f"{escape(str(code))} {escape(str(e.get('meaning')))} ({e.get('count')})"
        for code, e in (m.get("errors") or {}).items()
    )
    if int(m.get("unanswered_run") or 0) >= 2:
        state = "<span class='bad'>not answering</span>"
    elif m.get("replies"):
        state = "<span class='ok'>answering</span>"
    else:
        state = "<span class='warn'>never answered</span>"
    cells = (
        escape(str(m.get("protocol"))),
        escape(str(m.get("address"))),
        f"{int(m.get('requests') or 0):,}",
        f"{int(m.get('replies') or 0):,}",
        f"{int(m.get('unanswered') or 0):,}",
        latency,
        errors or "-",
        str(int(m.get("second_answers") or 0)),
        state,
    )
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
