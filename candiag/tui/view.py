"""What the live view shows, as pure functions of the analysis state.

Inputs are the typed bus reports (:class:`~candiag.health.report.BusReport`) of
:meth:`BusMonitor.report <candiag.daemon.monitor.BusMonitor.report>`, the per-node key signals (fresh values
only), the Modbus poller's device dicts (:meth:`DeviceSnapshot.as_dict
<candiag.modbus.poller.DeviceSnapshot.as_dict>`) and the diagnosis findings.  Outputs
are rich renderables for the terminal and plain one-line texts for pipes and logs,
so everything here is tested with a recording ``Console`` and no terminal.

Names in the view come from files (DBC node families, firmware strings and alarm roles,
meter profiles, capture channel names, configured ports): every cell and line is a
:class:`~rich.text.Text`, never a string rich would read as markup (``[/]`` in a family
name is shown as it is, it does not end the view).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from candiag.diagnosis.engine import Finding
from candiag.health.errorframes import ERROR_CLASSES
from candiag.health.nodes import NodeView
from candiag.health.report import BusReport, WindowReport

STATE_STYLE = {
    "error_active": "green",
    "error_warning": "yellow",
    "error_passive": "bold dark_orange",
    "bus_off": "bold red",
    "down": "bold red",
}
NODE_STYLE = {
    "online": "green",
    "intermittent": "yellow",
    "duplicate": "bold magenta",
    "offline": "bold red",
}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}

# The node table's signal columns and the DBC roles (CandiagRole) feeding each.
KEY_COLUMNS = ("voltage", "current", "temperature")
KEY_ROLES: Mapping[str, str] = {
    "output_voltage": "voltage",
    "meter:voltage": "voltage",
    "output_current": "current",
    "meter:current": "current",
    "temperature": "temperature",
    "cooling:coolant_temperature": "temperature",
}

# Meter readings worth a glance, in display order (profile quantity names).
METER_KEY_READINGS = (
    "voltage",
    "voltage_l1",
    "current",
    "current_l1",
    "power",
    "power_total",
    "frequency",
    "insulation_resistance",
    "temperature",
    "energy_import",
)
MAX_METER_READINGS = 5
UNIT_TEXT = {"degC": "°C", "deg C": "°C", "Ohm": "Ω", "ohm": "Ω"}
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class KeySignal:
    """A fresh decoded value shown next to its node (e.g. a module's output voltage)."""

    value: float
    unit: str


NodeKey = tuple[str, int]  # (family, address)


@dataclass(frozen=True)
class BusView:
    """One bus as the view needs it: the monitor's report plus display extras."""

    name: str
    source: str  # e.g. "pcan PCAN_USBBUS1 @ 250 kbit/s"
    report: BusReport
    key_signals: Mapping[NodeKey, Mapping[str, KeySignal]] = field(default_factory=dict)
    last_error: str | None = None  # why the interface is down, while it is


@dataclass(frozen=True)
class ScreenState:
    """Everything one frame of the live view shows."""

    now: float
    title: str
    buses: Sequence[BusView]
    meters: Sequence[Mapping[str, Any]] = ()
    findings: Sequence[Finding] = ()
    paused: bool = False
    recording: str | None = None  # path of the open recording
    diagnosing: bool = True  # False during the warm-up after a (re)start
    message: str = ""  # the last key action's outcome


# -- small formatters --------------------------------------------------------------------
def fmt_age(now: float, ts: float | None) -> str:
    """``0.3 s ago``, ``2 min ago``; ``never`` for None."""
    if ts is None or not math.isfinite(ts):
        return "never"
    age = max(0.0, now - ts)
    if age < 60:
        return f"{age:.1f} s ago"
    if age < 3600:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.1f} h ago"


def fmt_quantity(value: float, unit: str) -> str:
    """A reading with a readable unit: J as kWh, large values with k/M prefixes."""
    unit = UNIT_TEXT.get(unit.strip(), unit.strip())
    if unit == "J":
        return f"{value / JOULES_PER_KWH:.1f} kWh"
    magnitude = abs(value)
    if unit in ("Ω", "W", "VA", "var") and magnitude >= 1e6:
        return f"{value / 1e6:.2f} M{unit}"
    if unit in ("Ω", "W", "VA", "var") and magnitude >= 1e3:
        return f"{value / 1e3:.1f} k{unit}"
    text = f"{value:.1f}" if magnitude < 1e4 else f"{value:.0f}"
    return f"{text} {unit}".rstrip()


def fmt_errors(by_class: Mapping[str, int]) -> str:
    """Non-zero error classes in the agreed order, ``0`` when there are none."""
    parts = [f"{cls} {int(by_class[cls])}" for cls in ERROR_CLASSES if by_class.get(cls)]
    return ", ".join(parts) or "0"


def fmt_counter(value: Any) -> str:
    return "?" if value is None else str(int(value))


def _window(report: BusReport, label: str) -> WindowReport | None:
    return report.window(label)


def _load(window: WindowReport | None) -> float:
    return 0.0 if window is None else window.load_ratio


def _fps(window: WindowReport | None) -> float:
    return 0.0 if window is None else window.frames_per_second


def _errors(window: WindowReport | None) -> Mapping[str, int]:
    return {} if window is None else window.error_frames


def _error_counters(report: BusReport) -> tuple[int | None, int | None]:
    errors = report.error_frames
    if errors.counters_source == "none":  # nothing read TEC/REC: not known, not 0
        return None, None
    return errors.tec_last, errors.rec_last


def _styled(text: str, style: str | None) -> Text:
    return Text(text, style=style or "")


def _plain(*cells: str | Text) -> list[Text]:
    """Table cells as text, never as markup."""
    return [cell if isinstance(cell, Text) else Text(cell) for cell in cells]


# -- buses ---------------------------------------------------------------------------------
def bus_table(buses: Sequence[BusView]) -> Table:
    """Per bus: state, 10 s load and frame rate, error frames per class, TEC/REC, drops."""
    table = Table(title="CAN buses", title_justify="left", expand=True)
    for column in ("bus", "state", "load 10s", "frames/s", "errors 10s", "errors 60s"):
        table.add_column(column)
    table.add_column("TEC/REC", justify="right")
    table.add_column("dropped", justify="right")
    for bus in buses:
        report = bus.report
        state = report.state
        w10, w60 = _window(report, "10s"), _window(report, "60s")
        tec, rec = _error_counters(report)
        state_cell = _styled(state, STATE_STYLE.get(state))
        if state == "down" and bus.last_error:
            state_cell.append(f"\n{bus.last_error}", style="red")
        table.add_row(
            *_plain(
                f"{bus.name}\n{bus.source}" if bus.source else bus.name,
                state_cell,
                f"{100.0 * _load(w10):.1f} %",
                f"{_fps(w10):.0f}",
                fmt_errors(_errors(w10)),
                fmt_errors(_errors(w60)),
                f"{fmt_counter(tec)}/{fmt_counter(rec)}",
                str(report.dropped_recent),
            )
        )
    return table


# -- nodes ----------------------------------------------------------------------------------
def node_rows(bus: BusView, now: float) -> list[list[str]]:
    """The nodes table rows of one bus, as plain cell texts (family, address order)."""
    rows = []
    for node in bus.report.nodes:
        family, address = node.family, node.address
        signals = bus.key_signals.get((family, address), {})
        alarms = ", ".join(node.alarms)
        rows.append(
            [
                bus.name,
                family,
                str(address),
                node.status,
                fmt_age(now, node.last_seen),
                node.firmware or "",
                *(
                    fmt_quantity(s.value, s.unit) if (s := signals.get(col)) else ""
                    for col in KEY_COLUMNS
                ),
                alarms,
            ]
        )
    return rows


def nodes_table(buses: Sequence[BusView], now: float) -> Table:
    """Family, address, status (coloured), last seen, firmware, key signals, alarms."""
    table = Table(title="Nodes", title_justify="left", expand=True)
    show_bus = len(buses) > 1
    if show_bus:
        table.add_column("bus")
    for column in ("family", "addr", "status", "last seen", "firmware", *KEY_COLUMNS, "alarms"):
        table.add_column(column, justify="right" if column in KEY_COLUMNS else "left")
    for bus in buses:
        for row in node_rows(bus, now):
            cells: list[str | Text] = list(row if show_bus else row[1:])
            status_at = 3 if show_bus else 2
            status = row[3]
            cells[status_at] = _styled(status, NODE_STYLE.get(status))
            if row[-1]:
                cells[-1] = _styled(row[-1], "yellow")
            table.add_row(*_plain(*cells))
    return table


# -- meters ---------------------------------------------------------------------------------
def meter_readings_text(readings: Mapping[str, Mapping[str, Any]]) -> str:
    """Up to a few key readings, e.g. ``voltage_l1 230.1 V, power_total 11.1 kW``."""
    shown = [
        f"{name} {fmt_quantity(float(r['value']), str(r.get('unit', '')))}"
        for name in METER_KEY_READINGS
        if (r := readings.get(name)) is not None
    ]
    return ", ".join(shown[:MAX_METER_READINGS])


def fmt_failures(failures: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {int(n)}" for reason, n in failures.items() if n) or "0"


def meters_table(meters: Sequence[Mapping[str, Any]], now: float) -> Table:
    """Per Modbus device: up/down, last success, requests, failures by reason, readings."""
    table = Table(title="Modbus meters", title_justify="left", expand=True)
    for column in ("port", "device", "link", "last success", "requests", "failures", "readings"):
        table.add_column(column, justify="right" if column == "requests" else "left")
    for dev in meters:
        up = bool(dev.get("up"))
        link = _styled("up" if up else "down", "green" if up else "bold red")
        error = dev.get("port_error") or (None if up else dev.get("last_error"))
        if error:
            link.append(f"\n{error}", style="red")
        table.add_row(
            *_plain(
                str(dev.get("port", "")),
                str(dev.get("name", "")),
                link,
                fmt_age(now, dev.get("last_success")),
                str(int(dev.get("requests", 0) or 0)),
                fmt_failures(dev.get("failures") or {}),
                meter_readings_text(dev.get("readings") or {}) if up else "",
            )
        )
    return table


# -- findings -------------------------------------------------------------------------------
def findings_renderable(findings: Sequence[Finding], now: float, diagnosing: bool) -> Panel:
    """The active findings, most severe first, each with its fix."""
    ordered = sorted(findings, key=Finding.sort_key)
    body = Text()
    if not ordered:
        body.append(
            "no findings" if diagnosing else "waiting for the first diagnosis (warm-up)",
            style="green" if diagnosing else "dim",
        )
    for i, f in enumerate(ordered):
        if i:
            body.append("\n")
        style = SEVERITY_STYLE.get(f.severity, "")
        body.append(f"{f.severity.upper():<8} ", style=style)
        body.append(f"{f.title}", style="bold")
        body.append(f"  [{f.code}, since {fmt_age(now, f.since)}]\n", style="dim")
        body.append(f"         fix: {f.fix}")
    return Panel(body, title=f"Findings ({len(ordered)})", title_align="left")


# -- the whole screen -----------------------------------------------------------------------
KEY_HELP = "p pause  r reset  w record  q quit"


def header(state: ScreenState) -> Text:
    text = Text()
    text.append("candiag monitor", style="bold")
    text.append(f"  {state.title}  ")
    text.append(time.strftime("%H:%M:%S", time.localtime(state.now)), style="dim")
    if state.paused:
        text.append("  PAUSED", style="bold yellow")
    if state.recording:
        text.append(f"  ● REC {state.recording}", style="bold red")
    text.append(f"\n{KEY_HELP}", style="dim")
    if state.message:
        text.append(f"   {state.message}", style="cyan")
    return text


def render_screen(state: ScreenState) -> RenderableType:
    """One frame of the live view."""
    # Findings right under the buses: on a small terminal the bottom is what gets cut.
    parts: list[RenderableType] = [
        header(state),
        bus_table(state.buses),
        findings_renderable(state.findings, state.now, state.diagnosing),
    ]
    if any(bus.report.nodes for bus in state.buses):
        parts.append(nodes_table(state.buses, state.now))
    if state.meters:
        parts.append(meters_table(state.meters, state.now))
    return Group(*parts)


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
    w10, w60 = _window(report, "10s"), _window(report, "60s")
    tec, rec = _error_counters(report)
    nodes = list(report.nodes)
    online = sum(1 for n in nodes if n.status == "online")
    parts = [
        f"bus {bus.name}: {state}",
        f"load {100.0 * _load(w10):.1f}%",
        f"{_fps(w10):.0f} fps",
        f"errors 10s: {fmt_errors(_errors(w10))}",
        f"errors 60s: {fmt_errors(_errors(w60))}",
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
    """The periodic plain lines: one per bus, one per meter."""
    lines = [bus_line(bus) for bus in state.buses]
    lines.extend(meter_line(dev, state.now) for dev in state.meters)
    return lines
