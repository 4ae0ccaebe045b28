"""The monitor's plain lines: what ``candiag monitor --plain`` (and a monitor without a
terminal) prints per bus, meter and finding, from the same :class:`~candiag.tui.view.ScreenState`
the live view renders."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from candiag.diagnosis.engine import Finding
from candiag.health.nodes import NodeView
from candiag.tui.view import (
    BusView,
    ModuleExchange,
    ScreenState,
    error_counters,
    fmt_age,
    fmt_counter,
    fmt_errors,
    fmt_failures,
    fmt_ms,
    meter_readings_text,
    module_exchanges,
    window_errors,
    window_fps,
    window_load,
    window_of,
)


# -- plain lines (no terminal) ----------------------------------------------------------------
def _node_counts(nodes: Sequence[NodeView]) -> str:
    per_family: dict[str, list[int]] = {}
    for node in nodes:
        counts = per_family.setdefault(node.family, [0, 0])
        counts[0] += 1 if node.status == "online" else 0
        counts[1] += 1
    return ", ".join(f"{fam} {up}/{total}" for fam, (up, total) in sorted(per_family.items()))


def bus_line(bus: BusView) -> str:
    """One summary line per bus, e.g. for a log or a pipe (no escape codes)."""
    report = bus.report
    state = report.state
    w10, w60 = window_of(report, "10s"), window_of(report, "60s")
    tec, rec = error_counters(report)
    nodes = list(report.nodes)
    online = sum(1 for n in nodes if n.status == "online")
    parts = [
        f"bus {bus.name}: {state}",
        f"load {100.0 * window_load(w10):.1f}%",
        f"{window_fps(w10):.0f} fps",
        f"errors 10s: {fmt_errors(window_errors(w10))}",
        f"errors 60s: {fmt_errors(window_errors(w60))}",
        f"TEC/REC {fmt_counter(tec)}/{fmt_counter(rec)}",
        f"dropped {report.dropped_recent}",
        f"nodes {online}/{len(nodes)} online" + (f" ({_node_counts(nodes)})" if nodes else ""),
    ]
    not_ok = [f"{n.family} {n.address} {n.status}" for n in nodes if n.status != "online"]
    if not_ok:
        parts.append("not online: " + ", ".join(not_ok))
    if state == "down" and bus.last_error:
        parts.append(f"down: {bus.last_error}")
    return "; ".join(parts)


def meter_line(dev: Mapping[str, Any], now: float) -> str:
    up = bool(dev.get("up"))
    parts = [
        f"meter {dev.get('port', '')}/{dev.get('name', '')}: {'up' if up else 'down'}",
        f"last success {fmt_age(now, dev.get('last_success'))}",
        f"failures {fmt_failures(dev.get('failures') or {})}",
    ]
    readings = meter_readings_text(dev.get("readings") or {}) if up else ""
    if readings:
        parts.append(readings)
    error = dev.get("port_error") or (None if up else dev.get("last_error"))
    if error:
        parts.append(f"error: {error}")
    return "; ".join(parts)


def module_line(row: ModuleExchange) -> str:
    """One module's requests and replies, e.g. ``module can0/infy_v1.13/4: requests 40, ...``."""
    unanswered = f"unanswered {row.unanswered}" + (
        f" ({row.unanswered_run} in a row now)" if row.unanswered_run else ""
    )
    return "; ".join(
        [
            f"module {row.bus}/{row.protocol}/{row.address}: requests {row.requests}",
            f"replies {row.replies}",
            unanswered,
            f"latency median {fmt_ms(row.median_ms)} ms, p99 {fmt_ms(row.p99_ms)} ms"
            + (" (of earlier answers)" if row.silent == "module" else ""),
            f"error replies {row.errors or 'none'}",
            f"silent end: {row.silent or 'none'} ({row.silent_text})",
        ]
    )


def finding_line(finding: Finding, raised: bool) -> str:
    """``+ CRITICAL CAN_NODE_OFFLINE ...; fix: ...`` when raised, ``- cleared ...`` when cleared."""
    if raised:
        return (
            f"+ {finding.severity.upper()} {finding.code} [{finding.subject}] "
            f"{finding.title}; fix: {finding.fix}"
        )
    return f"- cleared {finding.code} [{finding.subject}] {finding.title}"


def active_finding_line(finding: Finding) -> str:
    """An active finding in the last summary: ``active: CRITICAL CODE [subject] title; fix: ...``."""
    return (
        f"active: {finding.severity.upper()} {finding.code} [{finding.subject}] "
        f"{finding.title}; fix: {finding.fix}"
    )


def plain_summary(state: ScreenState) -> list[str]:
    """The periodic plain lines: one per bus, one per request/response module, one per meter."""
    lines = [bus_line(bus) for bus in state.buses]
    lines.extend(module_line(row) for row in module_exchanges(state.buses))
    for bus in state.buses:  # packs with requests, nothing exchanged yet: said, not hidden
        section = bus.report.liveness or {}
        if section and not section.get("modules"):
            protocols = ", ".join(sorted(section.get("protocols") or {})) or "?"
            lines.append(f"modules {bus.name}: no request or reply seen yet ({protocols})")
    lines.extend(meter_line(dev, state.now) for dev in state.meters)
    return lines
