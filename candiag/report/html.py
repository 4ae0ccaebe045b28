"""``candiag analyze CAPTURE --html report.html``: one self-contained file for a ticket.

Order follows who reads it: the header a manufacturer needs (capture file with size and
SHA-256, span, adapter and channel, bitrate and how it is known, DBCs with their hashes,
candiag version), a one-paragraph summary a service manager can read, the findings with
their fixes, then the figures, the charts over wall-clock time and the tables.  No
external assets: styles are inline and charts are inline SVG (:mod:`candiag.report.svg`),
so the file opens anywhere, offline, and prints as it shows (``--pdf``).

Every field of the analysis report is read through :mod:`candiag.report.access`; every
text that comes from a file (paths, DBC names and units, channel names) is escaped.
What each part holds and why: docs/report.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from candiag import __version__
from candiag.analysis import bus_name
from candiag.liveness.html import liveness_section
from candiag.report import access
from candiag.report.allclear import all_clear_text
from candiag.report.evidence import utc_text
from candiag.report.findings import CSS as FINDINGS_CSS
from candiag.report.findings import Layout, findings_html, instant
from candiag.report.provenance import FileFacts, Provenance
from candiag.report.signals import signal_groups
from candiag.report.svg import Threshold, TimeAxis, line_chart, presence_timeline
from candiag.report.units import number, symbol

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin-bottom:8px} h3{font-size:14px;margin:14px 0 0}
h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.summary{font-size:15px;line-height:1.5;background:#f6f8fa;border:1px solid #dde3ea;border-radius:6px;padding:10px 14px}
table.facts{border:none;font-size:13px;margin:4px 0 8px}
table.facts th{background:none;border:none;text-align:right;color:#555;font-weight:normal;padding:1px 10px 1px 0;vertical-align:top;white-space:nowrap}
table.facts td{border:none;padding:1px 0}
.hash{font-family:monospace;font-size:11px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:20px}
.finding{border-left:6px solid #999;padding:8px 12px;margin:10px 0;background:#fcfcfc;break-inside:avoid}
.finding.critical{border-color:#c62828}.finding.warning{border-color:#ef8f00}.finding.info{border-color:#1565c0}
.sev{font-weight:bold;text-transform:uppercase;font-size:12px}
.critical .sev{color:#c62828}.warning .sev{color:#ef8f00}.info .sev{color:#1565c0}
.code{font-family:monospace;color:#555;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.msg th{background:#eef2f6;font-weight:600}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}.warn{color:#ef8f00;font-weight:bold}
svg.chart{width:100%;height:auto;margin:6px 0;break-inside:avoid}
svg.chart rect.hover:hover{fill:rgba(0,0,0,.06)}
.chart-note{font-size:12px;color:#555;margin:0 0 8px}
.empty{color:#888}
details.folded{margin:4px 0 12px}
details.folded summary{cursor:pointer;color:#444;font-size:13px}
@media print{body{margin:0;max-width:none} h2{break-after:avoid}}
"""

SOURCE_WORDS = {
    "flag": "given on the command line",
    "config": "from the configuration",
    "recording": "recorded with the capture",
    "inferred": "inferred from the frame spacing",
    "assumed": "assumed, not known",
}


def render_report(
    report: Any,
    timeline: Mapping[str, Any] | None = None,
    provenance: Provenance | None = None,
    *,
    for_print: bool = False,
) -> str:
    """The whole HTML document for an analyze report (and its per-second timeline).

    ``for_print``: a page that cannot be clicked (PDF) shows each finding's likely causes
    unfolded; the folded signal tables stay folded (their summary names what was set).
    """
    from candiag.report.provenance import gather

    prov = provenance or gather(report)
    path = access.capture_path(report)
    body = [
        f"<h1>CAN bus report: {escape(prov.capture.name)}</h1>",
        _header(report, prov),
        _summary(report, prov),
        _findings(report, for_print),
        _capture_notes(report),
        _figures(report),
        _plots(report, timeline or {}, prov),
        _nodes_table(access.nodes(report)),
        _contactors_table(report),
        liveness_section(access.field(report, "liveness")),  # candiag/liveness: polled modules
        _firmware_table(access.nodes(report)),
        _ids_table(access.ids(report)),
        _signals(report, prov),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>candiag report: {escape(path)}</title>"
        f"<style>{CSS}{FINDINGS_CSS}</style></head><body>{''.join(body)}</body></html>"
    )


# -- header -----------------------------------------------------------------------------------


def _header(report: Any, prov: Provenance) -> str:
    rows = [
        ("Capture file", escape(access.capture_path(report))),
        ("Size and SHA-256", _file_cell(prov.capture)),
        ("Format", escape(access.capture_format(report))),
        ("Span", escape(_span_text(report))),
        ("Adapter and channel", escape(prov.adapter)),
        ("Bitrate", _bitrate_cell(report)),
        ("DBCs", _dbcs_cell(report, prov)),
        (
            "Generated",
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by candiag "
            f"{escape(__version__)}",
        ),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='facts' id='header'>{body}</table>"


def _file_cell(facts: FileFacts) -> str:
    if facts.sha256 is None:
        return f"<span class='warn'>{escape(facts.problem)}</span>"
    return f"{facts.size:,} bytes · SHA-256 <span class='hash'>{escape(facts.sha256)}</span>"


def _span_text(report: Any) -> str:
    start, end = access.capture_start(report), access.capture_end(report)
    if start is None or end is None:
        return "no frame in the capture"
    duration = _duration_words(access.capture_duration(report))
    axis = TimeAxis(start, end)
    if not axis.wall_clock:
        return (
            f"{duration}, capture clock t={start:.3f} s to {end:.3f} s (its timestamps are "
            "not wall-clock time)"
        )
    return (
        f"{utc_text(start)} to {utc_text(end)} ({duration}; capture timestamps "
        f"{start:.6f} to {end:.6f})"
    )


def _duration_words(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _bitrate_cell(report: Any) -> str:
    lines = []
    for line in access.bitrates(report):
        source = SOURCE_WORDS.get(line.source, line.source)
        cls = "" if line.known else " class='warn'"
        bus = f"{escape(line.bus)}: " if len(access.bitrates(report)) > 1 else ""
        lines.append(
            f"{bus}{line.bitrate:,} bit/s, <span{cls}>{escape(source)}</span>"
            + (f" ({escape(line.detail)})" if line.detail and line.source == "inferred" else "")
        )
    return "<br>".join(lines) or "-"


def _dbcs_cell(report: Any, prov: Provenance) -> str:
    if not prov.dbcs:
        return "<span class='warn'>none: nothing was decoded</span>"
    items = []
    for dbc in prov.dbcs:
        if dbc.sha256 is None:
            tail = f"<span class='warn'>{escape(dbc.problem)}</span>"
        else:
            tail = f"<span class='hash'>{escape(dbc.sha256)}</span>"
        items.append(f"{escape(dbc.name)} · {tail}")
    how = access.dbc_selection(report)
    return "<br>".join(items) + (f"<br><i>{escape(how)}</i>" if how else "")


# -- summary ----------------------------------------------------------------------------------


def _summary(report: Any, prov: Provenance) -> str:
    return f"<p class='summary' id='summary'>{escape(summary_text(report, prov))}</p>"


def summary_text(report: Any, prov: Provenance) -> str:
    """One paragraph a service manager reads: what was recorded, the verdict, what to do."""
    sentences = [_what_was_recorded(report)]
    findings = access.findings(report)
    serious = [f for f in findings if access.field(f, "severity") in ("critical", "warning")]
    if serious:
        crit = sum(1 for f in serious if access.field(f, "severity") == "critical")
        warn = len(serious) - crit
        counts = " and ".join(
            p for p in (_count(crit, "critical problem"), _count(warn, "warning")) if p
        )
        titles = [_finding_title(f) for f in serious[:3]]
        more = f" and {len(serious) - 3} more" if len(serious) > 3 else ""
        sentences.append(f"candiag found {counts}: {'; '.join(titles)}{more}.")
        folded = sum(len(access.consequences(f)) for f in serious)
        if folded:
            causes = sum(1 for f in serious if access.consequences(f))
            sentences.append(
                f"{_count(folded, 'further finding')} {'is' if folded == 1 else 'are'} shown "
                f"under the {'cause' if causes == 1 else 'causes'} that "
                f"{'explains' if causes == 1 else 'explain'} {'it' if folded == 1 else 'them'}."
            )
        first_fix = str(access.field(serious[0], "fix", "")).strip()
        if first_fix:
            sentences.append(f"First step: {first_fix.rstrip('.')}.")
    else:
        sentences.append(all_clear_text(report))
    sentences.append(_health_sentence(report, prov))
    unknowns = _unknowns(report)
    if unknowns:
        sentences.append(unknowns)
    return " ".join(s for s in sentences if s)


def _what_was_recorded(report: Any) -> str:
    start = access.capture_start(report)
    frames = access.frames_total(report)
    names = [bus_name(c) for c in access.capture_channels(report)]
    buses = (
        f"the CAN bus {names[0]}"
        if len(names) == 1
        else f"{len(names)} CAN buses ({', '.join(names)})"
    )
    if start is None:
        return f"The capture of {buses} holds no CAN frame, so nothing on the bus was judged."
    duration = _duration_words(access.capture_duration(report))
    axis = TimeAxis(start, access.capture_end(report) or start)
    when = f" starting {utc_text(start)}" if axis.wall_clock else ""
    return f"A {duration} recording of {buses}{when} ({frames:,} frames)."


def _count(n: int, what: str) -> str:
    return "" if n == 0 else f"{n} {what}{'' if n == 1 else 's'}"


def _finding_title(finding: Any) -> str:
    title = str(access.field(finding, "title", ""))
    episodes = access.episodes(finding)
    if episodes and episodes[-1].end is not None:
        title += " (cleared during the capture)"
    return title


def _health_sentence(report: Any, prov: Provenance) -> str:
    parts = []
    nodes = access.nodes(report)
    if nodes:
        absent = [n for n in nodes if access.field(n, "status") == "offline"]
        if absent:
            names = ", ".join(_node_name(n) for n in absent[:4])
            parts.append(f"{len(absent)} of {len(nodes)} known nodes silent ({names})")
        else:
            parts.append(f"all {len(nodes)} known nodes transmitting")
    errors = access.error_frame_count(report)
    parts.append(f"{errors:,} error frames" if errors else "no error frames")
    if access.bus_off_events(report):
        parts.append(f"{access.bus_off_events(report)} bus-off events")
    mean, peak = access.load_mean(report), access.load_max_1s(report)
    if mean is not None and peak is not None:
        level = f", warning level {prov.load_warning:.0%}" if prov.load_warning is not None else ""
        parts.append(f"bus load {mean:.0%} on average (peak {peak:.0%}{level})")
    return ("On the bus: " + "; ".join(parts) + ".") if parts else ""


def _node_name(node: Any) -> str:
    family = str(access.field(node, "family", "node")).replace("_", " ")
    return f"{family} {access.field(node, 'address', '')}".strip()


def _unknowns(report: Any) -> str:
    said = []
    if any(not b.known for b in access.bitrates(report)):
        said.append("the bitrate was not known but assumed, so load figures are approximate")
    if access.malformed_lines(report):
        said.append(f"{access.malformed_lines(report):,} unreadable lines were skipped")
    if access.frames_total(report) and not access.decoded_frames(report):
        said.append("no frame matched the DBCs, so no node or signal was judged")
    if not said:
        return ""
    return "Note: " + "; ".join(said) + " (see the capture notes)."


# -- findings ---------------------------------------------------------------------------------


def _findings(report: Any, for_print: bool = False) -> str:
    findings = access.findings(report)
    if not findings:
        text = all_clear_text(report)
        return f"<h2 id='findings'>Findings</h2><p class='ok'>{escape(text)}</p>"
    layout = Layout(_axis(report), for_print, tuple(access.capture_channels(report)))
    return "<h2 id='findings'>Findings</h2>" + findings_html(findings, layout)


def _axis(report: Any) -> TimeAxis | None:
    """The capture's time axis (None without a frame): episodes are drawn on it."""
    start, end = access.capture_start(report), access.capture_end(report)
    return None if start is None or end is None else TimeAxis(start, end)


# -- figures and charts -----------------------------------------------------------------------


def _card(label: str, value: str, cls: str = "") -> str:
    return f"<div class='card'><span>{escape(label)}</span><b class='{cls}'>{value}</b></div>"


def _figures(report: Any) -> str:
    nodes = access.nodes(report)
    online = sum(1 for n in nodes if access.field(n, "status") != "offline")
    findings = access.findings(report)
    crit = sum(1 for f in findings if access.field(f, "severity") == "critical")
    warn = sum(1 for f in findings if access.field(f, "severity") == "warning")
    errors = access.error_frame_count(report)
    bus_off = access.bus_off_events(report)
    tec, rec = access.tec_rec_max(report)
    cards = [
        _card(
            "Findings",
            f"{crit} critical, {warn} warning",
            "bad" if crit else ("warn" if warn else "ok"),
        ),
        *(
            [_card("Consequences folded under their cause", f"{folded:,}")]
            if (folded := sum(len(access.consequences(f)) for f in findings))
            else []
        ),
        _card("Error frames", f"{errors:,}", "bad" if errors else "ok"),
        _card("Bus-off events", str(bus_off), "bad" if bus_off else "ok"),
        _card("Nodes present", f"{online}/{len(nodes)}", "ok" if online == len(nodes) else "bad"),
        _card("Bus load mean", _pct(access.load_mean(report))),
        _card("Bus load max (1 s)", _pct(access.load_max_1s(report))),
        _card("TEC / REC max", f"{escape(str(tec))} / {escape(str(rec))}"),
    ]
    return "<h2 id='figures'>Key figures</h2><div class='cards'>" + "".join(cards) + "</div>"


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.1%}"


_UNIT_IN_TITLE = re.compile(r"^(?P<name>.*?)\s*\((?P<unit>[^()]*)\)$")


def _plots(report: Any, timeline: Mapping[str, Any], prov: Provenance) -> str:
    t = timeline.get("t") or []
    parts = ["<h2 id='charts'>Over time</h2>"]
    if not t:
        return parts[0] + "<p class='empty'>No per-second series were kept.</p>"
    axis = TimeAxis(float(t[0]), float(t[-1]) + 1.0)
    bus = timeline.get("bus")
    on = f" on {bus}" if bus else ""
    thresholds = []
    if prov.load_warning is not None:
        thresholds.append(Threshold(100 * prov.load_warning, f"warning {prov.load_warning:.0%}"))
    unknown = any(not b.known for b in access.bitrates(report))
    parts.append(
        line_chart(
            axis,
            t,
            {"bus load": [100 * x for x in timeline.get("load_ratio") or []]},
            title=f"Bus load per second{on}" + (" (bitrate assumed)" if unknown else ""),
            unit="%",
            y_range=(0.0, 100.0),
            thresholds=thresholds,
        )
    )
    errors = {k: v for k, v in (timeline.get("errors") or {}).items() if any(v)}
    parts.append(
        line_chart(axis, t, errors, title=f"Error frames per second by class{on}")
        if errors
        else "<p class='ok'>No error frames in the capture.</p>"
    )
    parts.append(
        presence_timeline(
            axis, t, timeline.get("nodes") or {}, title="Node presence (frames per second)"
        )
    )
    for title, per_node in (timeline.get("signals") or {}).items():
        match = _UNIT_IN_TITLE.match(str(title))
        name, unit = (match["name"], symbol(match["unit"])) if match else (str(title), "")
        shown = f"{name} ({unit})" if unit else name
        parts.append(line_chart(axis, t, per_node, title=shown, unit=unit))
    return "".join(parts)


# -- tables -----------------------------------------------------------------------------------


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], numeric: set[int]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = " class='num'" if i in numeric else ""
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _status_cell(status: str) -> str:
    cls = {"online": "ok", "offline": "bad", "duplicate": "bad", "intermittent": "warn"}
    return f"<span class='{cls.get(status, '')}'>{escape(status)}</span>"


STALE_MARK = "<span class='stale-mark'>stale</span>"


def _silent(node: Any) -> bool:
    """An offline node's last values are history: they are marked stale, not shown as now."""
    return bool(access.field(node, "status") == "offline")


def _nodes_table(nodes: Sequence[Any]) -> str:
    rows = [
        (
            escape(str(access.field(n, "family")).replace("_", " ")),
            escape(str(access.field(n, "address", ""))),
            _status_cell(str(access.field(n, "status"))),
            "never"
            if access.field(n, "last_seen") is None
            else escape(utc_text(float(access.field(n, "last_seen")))),
            f"{int(access.field(n, 'frames', 0)):,}",
            escape(str(access.field(n, "dropouts", 0))),
            _maybe_stale(escape(", ".join(access.field(n, "alarms", []))) or "-", _silent(n)),
        )
        for n in nodes
    ]
    return "<h2 id='nodes'>Nodes</h2>" + _table(
        ("family", "address", "status", "last seen", "frames", "dropouts", "alarms"),
        rows,
        {1, 4, 5},
    )


def _maybe_stale(cell: str, stale: bool) -> str:
    return f"<span class='stale'>{cell}</span>{STALE_MARK}" if stale else cell


def _contactors_table(report: Any) -> str:
    """Command and feedback of each contactor as last seen; stale when its frames stopped."""
    contactors = access.contactors(report)
    if not contactors:
        return ""
    axis = _axis(report)
    rows = []
    for c in contactors:
        stale = bool(access.field(c, "stale", False))
        last_seen = access.field(c, "last_seen")
        if not stale:
            state = "<span class='ok'>current</span>"
        else:
            seen = (
                "never seen"
                if last_seen is None
                else f"last frames at {utc_text(float(last_seen))}"
                if axis is None
                else f"last frames at {instant(float(last_seen), axis)}"
            )
            state = f"{STALE_MARK} {escape(seen)}: the values are history"
        rows.append(
            (
                escape(str(access.field(c, "name", ""))),
                _maybe_stale(_value(access.field(c, "command")), stale),
                _maybe_stale(_value(access.field(c, "feedback")), stale),
                _maybe_stale("yes" if access.field(c, "weld") else "no", stale),
                escape(f"{float(access.field(c, 'mismatch_s', 0.0)):.1f} s"),
                state,
            )
        )
    return "<h2 id='contactors'>Contactors</h2>" + _table(
        ("contactor", "command", "feedback", "weld flag", "disagreeing for", "as of the end"),
        rows,
        {1, 2, 4},
    )


def _value(value: Any) -> str:
    return "-" if value is None else escape(number(float(value)))


def _firmware_table(nodes: Sequence[Any]) -> str:
    rows = [
        (
            escape(str(access.field(n, "family"))),
            escape(str(access.field(n, "address", ""))),
            _maybe_stale(escape(str(access.field(n, "firmware"))), _silent(n)),
        )
        for n in nodes
        if access.field(n, "firmware")
    ]
    if not rows:
        return (
            "<h2 id='firmware'>Firmware</h2><p class='empty'>No firmware-version messages seen.</p>"
        )
    return "<h2 id='firmware'>Firmware</h2>" + _table(("family", "address", "version"), rows, {1})


def _ids_table(ids: Mapping[str, Any]) -> str:
    rows = []
    for key, s in sorted(ids.items()):
        ok = access.field(s, "cycle_ok")
        verdict = (
            "-"
            if ok is None
            else ("<span class='ok'>ok</span>" if ok else "<span class='bad'>violated</span>")
        )
        cycle = access.field(s, "cycle_ms")
        rows.append(
            (
                escape(key),
                escape(str(access.field(s, "name", "unknown"))),
                f"{int(access.field(s, 'count', 0)):,}",
                _ms(access.field(s, "mean_period_s")),
                _ms(access.field(s, "jitter_s")),
                "-" if cycle is None else f"{escape(str(cycle))} ms",
                verdict,
            )
        )
    return "<h2 id='ids'>Identifiers</h2>" + _table(
        ("id", "message", "frames", "mean period", "jitter", "declared cycle", "cycle"),
        rows,
        {2, 3, 4, 5},
    )


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{1000 * float(seconds):.2f} ms"


def _signals(report: Any, prov: Provenance) -> str:
    groups = signal_groups(access.signals(report), prov.families)
    if not groups:
        return "<h2 id='signals'>Signals</h2><p class='empty'>No signal was decoded.</p>"
    intro = (
        "<p class='chart-note'>Minimum, maximum, mean and last value over the capture, per node "
        "and message. Counters and status bits are folded; open them to see each.</p>"
    )
    return "<h2 id='signals'>Signals</h2>" + intro + "".join(g.html() for g in groups)


def _capture_notes(report: Any) -> str:
    notes = []
    if access.malformed_lines(report):
        notes.append(f"{access.malformed_lines(report):,} malformed lines were skipped.")
        for ex in access.malformed_examples(report):
            notes.append(
                f"line {escape(str(access.field(ex, 'line')))}: "
                f"{escape(str(access.field(ex, 'reason')))}: "
                f"<code>{escape(str(access.field(ex, 'text'))[:120])}</code>"
            )
    notes.extend(escape(note) for note in access.notes(report))
    if not notes:
        return ""
    items = "".join(f"<li>{n}</li>" for n in notes)
    return f"<h2 id='notes'>Capture notes</h2><ul>{items}</ul>"
