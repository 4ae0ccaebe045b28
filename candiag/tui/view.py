"""What the live view shows, as pure functions of the analysis state.

Inputs are the typed bus reports (:class:`~candiag.health.report.BusReport`) of
:meth:`LiveBus.report <candiag.live.bus.LiveBus.report>`, the per-node key signals (fresh values
only), the Modbus poller's device dicts (:meth:`DeviceSnapshot.as_dict
<candiag.modbus.poller.DeviceSnapshot.as_dict>`) and the diagnosis findings.  Outputs
are rich renderables for the terminal and plain one-line texts for pipes and logs,
so everything here is tested with a recording ``Console`` and no terminal.

Names in the view come from files (DBC node families, firmware strings and alarm roles,
meter profiles, capture channel names, configured ports): every cell and line is a
:class:`~rich.text.Text`, never a string rich would read as markup (``[/]`` in a family
name is shown as it is, it does not end the view).

Why one file of ~900 lines: every part of one screen (buses, findings, request/response
liveness, nodes, meters, the raw view, fitting and scrolling) shares the same styles and widths; the plain lines are
:mod:`candiag.tui.plain`.
"""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import (
    Console,
    ConsoleOptions,
    Group,
    JustifyMethod,
    RenderableType,
    RenderResult,
)
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from candiag.diagnosis.engine import Finding
from candiag.health.errorframes import ERROR_CLASSES
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
    mode: str = "health"  # "health" (buses, findings, nodes, meters) or "raw" (per id)
    compact: bool | None = None  # None: chosen from the terminal size
    raw: Sequence[RawBusView] = ()  # the raw per-id view's buses
    filter_text: str = ""  # the --filter of the raw view, if any
    scroll: ScrollState | None = None  # where the body is scrolled to (the app's)
    program: str = "candiag monitor"
    keys: str = ""  # the key help, when not the monitor's (KEY_HELP)


@dataclass
class ScrollState:
    """The body's scroll position; the renderer clamps it and says how far it can go."""

    offset: int = 0
    max_offset: int = 0
    page: int = 10
    compact_shown: bool = False  # what the last frame used (the c key toggles from it)

    def move(self, lines: int) -> None:
        self.offset = max(0, min(self.max_offset, self.offset + lines))


@dataclass(frozen=True)
class RawRow:
    """One identifier of the raw view: the tracker's figures and what the DBC makes of it."""

    id_text: str
    name: str  # message name ("" when no DBC knows the id)
    node: int  # node address (-1: not addressed)
    count: int
    period_s: float  # mean period (nan after one frame)
    last_interval_s: float
    age_s: float
    stale: bool
    data: bytes
    changed: tuple[bool, ...]
    remote: bool
    values: str  # decoded signals, e.g. ``OutputVoltage 767.8 V, OutputCurrent 40.0 A``


@dataclass(frozen=True)
class RawBusView:
    name: str
    rows: Sequence[RawRow]
    error_frames: int = 0
    untracked: int = 0  # frames of ids past the tracker's cap
    filtered_out: int = 0


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
    if text.startswith("-") and float(text) == 0:
        text = text[1:]  # -0.02 A is "0.0 A", not "-0.0 A"
    return f"{text} {unit}".rstrip()


def fmt_errors(by_class: Mapping[str, int]) -> str:
    """Non-zero error classes in the agreed order, ``0`` when there are none."""
    parts = [f"{cls} {int(by_class[cls])}" for cls in ERROR_CLASSES if by_class.get(cls)]
    return ", ".join(parts) or "0"


def fmt_counter(value: Any) -> str:
    return "?" if value is None else str(int(value))


def window_of(report: BusReport, label: str) -> WindowReport | None:
    return report.window(label)


def window_load(window: WindowReport | None) -> float:
    return 0.0 if window is None else window.load_ratio


def window_fps(window: WindowReport | None) -> float:
    return 0.0 if window is None else window.frames_per_second


def window_errors(window: WindowReport | None) -> Mapping[str, int]:
    return {} if window is None else window.error_frames


def error_counters(report: BusReport) -> tuple[int | None, int | None]:
    errors = report.error_frames
    if errors.counters_source == "none":  # nothing read TEC/REC: not known, not 0
        return None, None
    return errors.tec_last, errors.rec_last


def _styled(text: str, style: str | None) -> Text:
    return Text(text, style=style or "")


def _plain(*cells: str | Text) -> list[Text]:
    """Table cells as text, never as markup."""
    return [cell if isinstance(cell, Text) else Text(cell) for cell in cells]


# -- layout ---------------------------------------------------------------------------------
#: Below these sizes the view is compact: tables without boxes, one line per bus.
COMPACT_BELOW_COLUMNS = 120
COMPACT_BELOW_LINES = 40
UNLIMITED_LINES = 1 << 30


def is_compact(state: ScreenState, width: int, height: int) -> bool:
    if state.compact is not None:
        return state.compact
    return width < COMPACT_BELOW_COLUMNS or height < COMPACT_BELOW_LINES


def _table(title: str, compact: bool) -> Table:
    if compact:
        return Table(
            title=title,
            title_justify="left",
            title_style="bold",
            expand=True,
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
        )
    return Table(title=title, title_justify="left", expand=True)


# -- buses ---------------------------------------------------------------------------------
def bus_table(buses: Sequence[BusView], compact: bool = False) -> Table:
    """Per bus: state, 10 s load and frame rate, error frames per class, TEC/REC, drops."""
    title = "CAN buses"
    if compact:  # the source goes into the title: one line per bus
        sources = "; ".join(f"{b.name}: {b.source}" for b in buses if b.source)
        title += f"  ({sources})" if sources else ""
    table = _table(title, compact)
    table.add_column("bus", no_wrap=compact, overflow="ellipsis", ratio=2)
    table.add_column("state", no_wrap=True)
    for column in ("load 10s", "frames/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for column in ("errors 10s", "errors 60s"):
        header = column.replace("errors", "err") if compact else column
        table.add_column(header, overflow="fold", ratio=1)
    table.add_column("TEC/REC", justify="right", no_wrap=True)
    table.add_column("dropped", justify="right", no_wrap=True)
    for bus in buses:
        report = bus.report
        state = report.state
        w10, w60 = window_of(report, "10s"), window_of(report, "60s")
        tec, rec = error_counters(report)
        state_cell = _styled(state, STATE_STYLE.get(state))
        if state == "down" and bus.last_error:
            state_cell.append(f"\n{bus.last_error}", style="red")
        name = bus.name if compact or not bus.source else f"{bus.name}\n{bus.source}"
        table.add_row(
            *_plain(
                name,
                state_cell,
                f"{100.0 * window_load(w10):.1f} %",
                f"{window_fps(w10):.0f}",
                fmt_errors(window_errors(w10)),
                fmt_errors(window_errors(w60)),
                f"{fmt_counter(tec)}/{fmt_counter(rec)}",
                str(report.dropped_recent),
            )
        )
    return table


# -- firmware -------------------------------------------------------------------------------
_VERSION_PART = re.compile(
    r"^(?P<component>.*?)_?(?:Version|Ver|Vers)?_?(?P<part>Major|Minor|Revision|Patch|Build)"
    r"(?:_?[A-Z]{1,3})?$",
    re.IGNORECASE,
)
_VERSION_WHOLE = re.compile(r"^(?P<component>.*?)_?(?:Version|Ver|Vers|FW|SW|Firmware)$", re.I)
_PART_ORDER = {"major": 0, "minor": 1, "revision": 2, "patch": 2, "build": 3}


def firmware_versions(text: str) -> str:
    """``DCDC_Major=1 DCDC_Minor=4 PFC_Major=2 PFC_Minor=0`` as ``DCDC 1.4 / PFC 2.0``.

    The firmware string is the node's firmware-role signals (DBC ``CandiagRole``
    ``firmware``) as ``Name=value`` pairs; signals named ``<X>[_][Version]Major``/
    ``Minor``/``Revision``/``Patch``/``Build`` become one dotted version of component X,
    ``<X>Version`` one number; anything else is shown as ``Name value``.  Any protocol's
    DBC renders the same way.
    """
    components: dict[str, dict[int, str]] = {}
    plain: list[str] = []
    for pair in text.split():
        name, sep, value = pair.partition("=")
        if not sep:
            plain.append(pair)
            continue
        value = _version_number(value)
        part = _VERSION_PART.match(name)
        if part is not None:
            component = part.group("component").rstrip("_") or "fw"
            order = _PART_ORDER[part.group("part").lower()]
            components.setdefault(component, {})[order] = value
            continue
        whole = _VERSION_WHOLE.match(name)
        if whole is not None:
            component = whole.group("component").rstrip("_") or name
            components.setdefault(component, {})[0] = value
            continue
        plain.append(f"{name} {value}")
    shown = [
        f"{component} {'.'.join(parts[k] for k in sorted(parts))}"
        for component, parts in components.items()
    ]
    return " / ".join([*shown, *plain])


def _version_number(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else value


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
                firmware_versions(node.firmware or ""),
                *(
                    fmt_quantity(s.value, s.unit) if (s := signals.get(col)) else ""
                    for col in KEY_COLUMNS
                ),
                alarms,
            ]
        )
    return rows


NODE_HEADERS = {"temperature": "temp", "last seen": "seen", "addr": "#"}


def nodes_table(buses: Sequence[BusView], now: float, compact: bool = False) -> Table:
    """Family, address, status (coloured), last seen, firmware, key signals, alarms."""
    table = _table("Nodes", compact)
    show_bus = len(buses) > 1
    if show_bus:
        table.add_column("bus", no_wrap=True, overflow="ellipsis", max_width=10)
    for column in ("family", "addr", "status", "last seen", "firmware", *KEY_COLUMNS, "alarms"):
        header = NODE_HEADERS.get(column, column) if compact else column
        table.add_column(
            header,
            justify="right" if column in (*KEY_COLUMNS, "addr") else "left",
            no_wrap=column != "alarms",
            overflow="fold" if column == "alarms" else "ellipsis",
            min_width=len(header),
            ratio=1 if column == "alarms" else None,
        )
    for bus in buses:
        for row in node_rows(bus, now):
            if compact:
                row[4] = (
                    row[4].replace(" s ago", "s").replace(" min ago", "m").replace(" h ago", "h")
                )
            cells: list[str | Text] = list(row if show_bus else row[1:])
            status_at = 3 if show_bus else 2
            status = row[3]
            cells[status_at] = _styled(status, NODE_STYLE.get(status))
            if row[-1]:
                cells[-1] = _styled(row[-1], "yellow")
            table.add_row(*_plain(*cells))
    return table


# -- meters ---------------------------------------------------------------------------------
def meter_readings_text(
    readings: Mapping[str, Mapping[str, Any]], limit: int = MAX_METER_READINGS
) -> str:
    """Up to a few key readings, e.g. ``voltage_l1 230.1 V, power_total 11.1 kW``."""
    shown = [
        f"{name} {fmt_quantity(float(r['value']), str(r.get('unit', '')))}"
        for name in METER_KEY_READINGS
        if (r := readings.get(name)) is not None
    ]
    return ", ".join(shown[:limit])


def fmt_failures(failures: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {int(n)}" for reason, n in failures.items() if n) or "0"


def meters_table(meters: Sequence[Mapping[str, Any]], now: float, compact: bool = False) -> Table:
    """Per Modbus device: up/down, last success, requests, failures by reason, readings."""
    table = _table("Modbus meters", compact)
    columns = (
        ("device", "link", "last ok", "req", "failures", "readings")
        if compact
        else ("port", "device", "link", "last success", "requests", "failures", "readings")
    )
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in ("requests", "req") else "left",
            no_wrap=column not in ("readings", "failures"),
            overflow="fold" if column in ("readings", "failures") else "ellipsis",
            ratio=3 if column == "readings" else None,
        )
    for dev in meters:
        up = bool(dev.get("up"))
        link = _styled("up" if up else "down", "green" if up else "bold red")
        error = dev.get("port_error") or (None if up else dev.get("last_error"))
        if error:
            link.append(f"\n{error}", style="red")
        age = fmt_age(now, dev.get("last_success"))
        cells: list[str | Text] = [
            str(dev.get("name", "")),
            link,
            age.replace(" s ago", "s") if compact else age,
            str(int(dev.get("requests", 0) or 0)),
            fmt_failures(dev.get("failures") or {}),
            meter_readings_text(dev.get("readings") or {}, 4 if compact else MAX_METER_READINGS)
            if up
            else "",
        ]
        if not compact:
            cells.insert(0, str(dev.get("port", "")))
        table.add_row(*_plain(*cells))
    return table


# -- request/response liveness --------------------------------------------------------------
@dataclass(frozen=True)
class ModuleExchange:
    """One module's row of the liveness table, from a bus report's ``liveness`` section."""

    bus: str
    protocol: str
    address: int
    requests: int
    replies: int
    unanswered: int
    unanswered_run: int
    median_ms: float | None
    p99_ms: float | None
    errors: str  # error replies by code with the pack's meaning, "" when none
    last_request_age_s: float | None
    last_reply_age_s: float | None
    silent: str  # "module", "controller" or "" (both ends talk)
    silent_text: str  # which end is silent, in words


@functools.cache
def _liveness_thresholds() -> Any:
    """The shipped ``liveness_*`` thresholds (``data/diagnosis.toml``): the table's words.

    The findings use the engine's rule book, a user's ``thresholds_file`` included; the
    table reads the defaults (the view has no rule book), so with an override the two can
    word a borderline case differently.  The findings are the verdict.
    """
    from candiag.diagnosis.engine import load_rulebook
    from candiag.liveness.rules import LivenessThresholds

    return LivenessThresholds.from_book(load_rulebook())


def _silent_end(section: Mapping[str, Any], mod: Mapping[str, Any]) -> tuple[str, str]:
    """Which end of a module's exchange is silent, as the liveness rules judge it.

    The same facts and thresholds as :mod:`candiag.liveness.rules`: requests going on without
    answers (``unanswered_in_a_row``) are the module; no request for ``not_polled_periods``
    poll periods is the controller; answers that keep coming after the next request are slow,
    not silent.  ("", text) when both ends talk.
    """
    th = _liveness_thresholds()
    proto = (section.get("protocols") or {}).get(mod.get("protocol"), {})
    period_ms = proto.get("poll_period_ms")
    period = period_ms / 1000.0 if period_ms else th.default_poll_period_s
    limit = th.not_polled_periods * period
    run = int(mod.get("unanswered_run") or 0)
    ask_age, reply_age = mod.get("last_request_age_s"), mod.get("last_reply_age_s")
    since, now = mod.get("unanswered_since"), section.get("now")
    answers_go_on = (
        since is not None
        and reply_age is not None
        and now is not None
        and float(now) - float(reply_age) > float(since)
    )
    asked_ago = None if ask_age is None else float(ask_age)
    not_asked = asked_ago is not None and asked_ago > limit
    if run >= th.unanswered_in_a_row and not answers_go_on:
        text = f"module: {run} unanswered in a row"
        return "module", text + (", no longer asked" if not_asked else "")
    if not_asked:
        return "controller", f"controller: not asked for {asked_ago:.1f} s"
    if not mod.get("requests"):
        return "", "not asked yet"
    return "", "both talk"


def module_exchanges(buses: Sequence[BusView]) -> list[ModuleExchange]:
    """The liveness table's rows: every module of every bus with request/response packs."""
    rows = []
    for bus in buses:
        section = bus.report.liveness or {}
        for mod in section.get("modules") or ():
            latency = mod.get("latency_ms") or {}
            errors = mod.get("errors") or {}
            silent, words = _silent_end(section, mod)
            rows.append(
                ModuleExchange(
                    bus=bus.name,
                    protocol=str(mod.get("protocol", "")),
                    address=int(mod.get("address", -1)),
                    requests=int(mod.get("requests") or 0),
                    replies=int(mod.get("replies") or 0),
                    unanswered=int(mod.get("unanswered") or 0),
                    unanswered_run=int(mod.get("unanswered_run") or 0),
                    median_ms=latency.get("median"),
                    p99_ms=latency.get("p99"),
                    errors=", ".join(
                        f"{int(code):#04x} {e.get('meaning', 'unknown code')} ({e.get('count')}x)"
                        for code, e in errors.items()
                    ),
                    last_request_age_s=mod.get("last_request_age_s"),
                    last_reply_age_s=mod.get("last_reply_age_s"),
                    silent=silent,
                    silent_text=words,
                )
            )
    return rows


def fmt_ms(value: float | None) -> str:
    """A latency: ``-`` when there is none (no answer yet), never 0."""
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def fmt_ago(age_s: float | None) -> str:
    return "never" if age_s is None else f"{max(0.0, float(age_s)):.1f}s"


def _liveness_title(buses: Sequence[BusView]) -> str:
    protocols: dict[str, Any] = {}
    for bus in buses:
        protocols.update((bus.report.liveness or {}).get("protocols") or {})
    polls = [
        f"{name}, poll {p['poll_period_ms'] / 1000:g} s"
        if p.get("poll_period_ms")
        else f"{name}, poll period not declared"
        for name, p in sorted(protocols.items())
    ]
    return "Requests/replies" + (f" ({'; '.join(polls)})" if polls else "")


def has_liveness(buses: Sequence[BusView]) -> bool:
    """Any bus whose packs have requests (its report has a non-empty liveness section)."""
    return any(bus.report.liveness for bus in buses)


LIVENESS_SILENT_STYLE = {"module": "bold red", "controller": "bold red"}


def liveness_renderable(buses: Sequence[BusView], compact: bool = False) -> RenderableType:
    """Per module: requests, replies, unanswered, latency median/p99, error replies with their
    meaning, when last asked and answered, and which end is silent.  Latencies are over the
    last answers kept (the tracker's 4096); a silent module's are dimmed (earlier answers)."""
    rows = module_exchanges(buses)
    title = _liveness_title(buses)
    if not rows:
        waiting = [b.name for b in buses if b.report.liveness]
        text = Text(
            f"no request or reply of a protocol pack seen yet on {', '.join(waiting)}",
            style="dim",
        )
        return Group(Text(title, style="bold"), text) if compact else Panel(text, title=title)
    table = _table(title, compact)
    show_bus = len({r.bus for r in rows}) > 1
    show_protocol = len({r.protocol for r in rows}) > 1
    columns: list[tuple[str, JustifyMethod]] = []
    if show_bus:
        columns.append(("bus", "left"))
    if show_protocol:
        columns.append(("protocol", "left"))
    columns += [
        ("mod" if compact else "module", "right"),
        ("req" if compact else "requests", "right"),
        ("rep" if compact else "replies", "right"),
        ("unans" if compact else "unanswered", "right"),
        ("med ms" if compact else "median ms", "right"),
        ("p99 ms", "right"),
    ]
    if not compact:
        columns += [("last ask", "right"), ("last reply", "right")]
    columns += [("error replies", "left"), ("silent end", "left")]
    for header, justify in columns:
        wraps = header in ("error replies", "silent end")
        table.add_column(
            header,
            justify=justify,
            no_wrap=not wraps,
            overflow="fold" if wraps else "ellipsis",
            ratio=1 if wraps else None,
            max_width=12 if header in ("bus", "protocol") else None,
        )
    for r in rows:
        unanswered = str(r.unanswered)
        if r.unanswered_run:
            unanswered += f" ({r.unanswered_run} now)"
        cells: list[str | Text] = []
        if show_bus:
            cells.append(r.bus)
        if show_protocol:
            cells.append(r.protocol)
        cells += [
            str(r.address),
            str(r.requests),
            str(r.replies),
            _styled(unanswered, "yellow" if r.unanswered_run else None),
            # A silent module's latencies are of its earlier answers: dimmed, not fresh.
            _styled(fmt_ms(r.median_ms), "dim" if r.silent == "module" else None),
            _styled(fmt_ms(r.p99_ms), "dim" if r.silent == "module" else None),
        ]
        if not compact:
            cells += [fmt_ago(r.last_request_age_s), fmt_ago(r.last_reply_age_s)]
        cells += [
            _styled(r.errors or "none", "yellow" if r.errors else "dim"),
            _styled(r.silent_text, LIVENESS_SILENT_STYLE.get(r.silent, "green")),
        ]
        table.add_row(*_plain(*cells))
    return table


# -- findings -------------------------------------------------------------------------------
#: Bus-wide findings whose cause is usually one node: the pointer names the nodes that
#: are not online on that bus (or says that none is missing, and what that means).
NODE_POINTER_CODES = frozenset(
    {"CAN_WRONG_BITRATE", "CAN_ERR_ACK", "CAN_BUS_SILENT", "CAN_ERROR_PASSIVE", "CAN_BUS_OFF"}
)


def screen_pointer(finding: Finding, buses: Sequence[BusView]) -> str:
    """Where on the screen the finding's fix starts: a node row, or what none missing means."""
    bus_name = finding.subject.split("/", 1)[0]
    bus = next((b for b in buses if b.name == bus_name), None)
    if bus is None:
        return ""
    if finding.code.startswith("CAN_NODE_") or finding.code.startswith("MODULE_"):
        parts = finding.subject.split("/")
        if len(parts) >= 3:
            return f"on screen: Nodes, row {parts[1]} {parts[2]}"
        return ""
    if finding.code not in NODE_POINTER_CODES:
        return ""
    nodes = list(bus.report.nodes)
    missing = [
        f"{n.family} {n.address} ({n.status})"
        for n in nodes
        if n.status in ("offline", "intermittent")
    ]
    if missing:
        return (
            "on screen: not online on "
            + bus.name
            + ": "
            + ", ".join(missing[:6])
            + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        )
    if not nodes:
        return f"on screen: no node is known on {bus.name} (no DBC family matched the traffic)"
    return (
        f"on screen: all {len(nodes)} known nodes on {bus.name} are online: the sender at "
        "the wrong bitrate is a device with no DBC entry (a new or replaced unit) or the "
        "adapter itself (check its --bitrate)"
    )


def findings_renderable(
    findings: Sequence[Finding],
    now: float,
    diagnosing: bool,
    buses: Sequence[BusView] = (),
    compact: bool = False,
) -> RenderableType:
    """The active findings, most severe first, each with its fix and where to look."""
    ordered = sorted(findings, key=Finding.sort_key)
    body = Text()
    if not ordered:
        body.append(
            "no findings" if diagnosing else "waiting for the first diagnosis (warm-up)",
            style="green" if diagnosing else "dim",
        )
    indent = "  " if compact else "         "
    for i, f in enumerate(ordered):
        if i:
            body.append("\n")
        style = SEVERITY_STYLE.get(f.severity, "")
        body.append(f"{f.severity.upper():<8} ", style=style)
        body.append(f"{f.title}", style="bold")
        body.append(f"  [{f.code}, since {fmt_age(now, f.since)}]\n", style="dim")
        body.append(f"{indent}fix: {f.fix}")
        pointer = screen_pointer(f, buses)
        if pointer:
            body.append(f"\n{indent}{pointer}", style="cyan")
    title = f"Findings ({len(ordered)})"
    if compact:
        head = Text(title, style="bold")
        return Group(head, body)
    return Panel(body, title=title, title_align="left")


# -- the raw per-id view --------------------------------------------------------------------
def fmt_period(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.0f} s"


def data_text(row: RawRow) -> Text:
    """Payload bytes in hex, the ones changed within the hold time highlighted."""
    text = Text()
    if row.remote:
        text.append("remote", style="dim")
        return text
    for i, byte in enumerate(row.data):
        if i:
            text.append(" ")
        changed = i < len(row.changed) and row.changed[i]
        text.append(f"{byte:02X}", style="bold black on yellow" if changed else "")
    return text


def raw_table(bus: RawBusView, now: float, compact: bool = False, multi: bool = False) -> Table:
    """id, message, node, count, period, age, data (changed bytes highlighted), values."""
    title = f"Raw ids on {bus.name}" if multi else "Raw ids"
    extra = [f"{len(bus.rows)} ids"]
    if bus.error_frames:
        extra.append(f"{bus.error_frames} error frames")
    if bus.untracked:
        extra.append(f"{bus.untracked} frames of ids past the table's cap")
    if bus.filtered_out:
        extra.append(f"{bus.filtered_out} frames filtered out")
    table = _table(f"{title} ({', '.join(extra)})", compact)
    table.add_column("id", no_wrap=True)
    table.add_column("message", no_wrap=True, overflow="ellipsis", max_width=18 if compact else 24)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("period", justify="right", no_wrap=True)
    if not compact:  # compact: a stale id is dimmed and its values say so
        table.add_column("age", justify="right", no_wrap=True)
    table.add_column("data", no_wrap=True)
    table.add_column("values", overflow="ellipsis", no_wrap=compact, ratio=1)
    for row in bus.rows:
        name = row.name + (f" #{row.node}" if row.node >= 0 else "")
        style = "dim" if row.stale else ""
        cells = [
            Text(row.id_text, style=style),
            Text(name or "?", style=style or ("" if name else "dim")),
            Text(str(row.count), style=style),
            Text(fmt_period(row.period_s), style=style),
            data_text(row),
            Text(row.values if not row.stale else f"(stale) {row.values}", style=style),
        ]
        if not compact:
            age = f"{row.age_s:.1f} s" + (" stale" if row.stale else "")
            cells.insert(4, Text(age, style="yellow" if row.stale else ""))
        table.add_row(*cells)
    return table


# -- the whole screen -----------------------------------------------------------------------
KEY_HELP = "p pause  r reset  w record  q quit  v raw/health  c compact  ↑↓ PgUp PgDn scroll"
KEY_HELP_SHORT = "p pause r reset w rec q quit v raw c compact ↑↓ scroll"


def header(state: ScreenState, width: int = 200) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(state.program, style="bold")
    text.append(f"  {state.title}  ")
    text.append(time.strftime("%H:%M:%S", time.localtime(state.now)), style="dim")
    if state.mode == "raw":
        text.append("  RAW", style="bold cyan")
        if state.filter_text:
            text.append(f" filter {state.filter_text}", style="cyan")
    if state.paused:
        text.append("  PAUSED", style="bold yellow")
    if state.recording:
        text.append(f"  ● REC {state.recording}", style="bold red")
    text.append("\n")
    if state.keys:
        text.append(state.keys, style="dim")
    else:
        text.append(KEY_HELP if width >= len(KEY_HELP) + 20 else KEY_HELP_SHORT, style="dim")
    if state.message:
        text.append(f"   {state.message}", style="cyan")
    return text


def body_parts(state: ScreenState, compact: bool) -> list[RenderableType]:
    if state.mode == "raw":
        multi = len(state.raw) > 1
        parts: list[RenderableType] = [raw_table(b, state.now, compact, multi) for b in state.raw]
        return parts or [Text("no frames yet", style="dim")]
    # Findings right under the buses: what a technician reads first stays at the top.
    parts = [
        bus_table(state.buses, compact),
        findings_renderable(state.findings, state.now, state.diagnosing, state.buses, compact),
    ]
    if has_liveness(state.buses):
        parts.append(liveness_renderable(state.buses, compact))
    if any(bus.report.nodes for bus in state.buses):
        parts.append(nodes_table(state.buses, state.now, compact))
    if state.meters:
        parts.append(meters_table(state.meters, state.now, compact))
    return parts


class Screen:
    """The header, then as much of the body as fits, scrolled; a footer says what is hidden.

    Rendered at the console's size, so the same state fits 100x30 (compact, scrolling)
    and 160x50; the body is laid out once at the full width and cut into lines, so
    scrolling moves whole lines of tables and never re-wraps them.
    """

    def __init__(self, state: ScreenState) -> None:
        self.state = state

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        # On a terminal the screen is its height (rich's full-screen Live renders through
        # a Group, which drops options.height); printed elsewhere without a height (a log,
        # a recording console), the whole body is shown and only the width counts.
        height = options.height or (console.size.height if console.is_terminal else UNLIMITED_LINES)
        state = self.state
        compact = is_compact(state, width, height)
        head = console.render_lines(header(state, width), options.update(height=None), pad=False)
        body_options = options.update(height=None)
        lines = console.render_lines(Group(*body_parts(state, compact)), body_options, pad=False)
        room = max(1, height - len(head) - 1)
        scroll = state.scroll or ScrollState()
        scroll.compact_shown = compact
        if len(lines) <= room:
            scroll.max_offset, scroll.offset, scroll.page = 0, 0, room
            shown, footer = lines, None
        else:
            scroll.max_offset = len(lines) - room
            scroll.page = max(1, room - 1)
            scroll.offset = max(0, min(scroll.offset, scroll.max_offset))
            shown = lines[scroll.offset : scroll.offset + room]
            below = len(lines) - scroll.offset - room
            footer = Text(
                f"lines {scroll.offset + 1}-{scroll.offset + room} of {len(lines)}"
                + (f", {below} more below" if below else "")
                + ": ↑↓ j k PgUp PgDn Home End scroll",
                style="reverse",
                no_wrap=True,
                overflow="ellipsis",
            )
        for line in (*head, *shown):
            yield from line
            yield Segment.line()
        if footer is not None:
            yield from console.render(footer, options.update(height=1))


def render_screen(state: ScreenState) -> RenderableType:
    """One frame of the live view, fitted to the terminal when rendered."""
    return Screen(state)
