"""``candiag analyze CAPTURE --html report.html``: one self-contained file for a ticket.

Order follows what the reader needs first: a summary and the findings with
their fixes, then plots (bus load, error frames by class, node presence, key
signals per module), then the tables (ids, nodes, firmware, signals).  No
external assets: styles are inline and charts are inline SVG
(:mod:`candiag.report.svg`), so the file opens anywhere, offline.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from candiag import __version__
from candiag.analysis_report import AnalysisReport, CaptureReport
from candiag.health.nodes import NodeView
from candiag.health.report import IdEntry, SignalReport, TimelineReport
from candiag.report.svg import line_chart, presence_timeline

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin-bottom:4px} h3{font-size:14px;margin:14px 0 0} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:20px}
.finding{border-left:6px solid #999;padding:8px 12px;margin:10px 0;background:#fcfcfc}
.finding.critical{border-color:#c62828}.finding.warning{border-color:#ef8f00}.finding.info{border-color:#1565c0}
.sev{font-weight:bold;text-transform:uppercase;font-size:12px}
.critical .sev{color:#c62828}.warning .sev{color:#ef8f00}.info .sev{color:#1565c0}
.code{font-family:monospace;color:#555;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}.warn{color:#ef8f00}
svg.chart{width:100%;height:auto;margin:6px 0}
.empty{color:#888}
"""


def render_report(report: AnalysisReport, timeline: TimelineReport | None = None) -> str:
    """The whole HTML document for an analyze report (and its per-second timeline)."""
    body = [
        _header(report),
        _summary(report),
        _findings(report),
        _plots(timeline or TimelineReport()),
        _nodes_table(report.nodes),
        _firmware_table(report.nodes),
        _ids_table(report.ids),
        _signals_table(report.signals),
        _capture_notes(report),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>candiag report: {escape(report.capture.path)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def _capture(report: AnalysisReport) -> CaptureReport:
    return report.capture


def _header(report: AnalysisReport) -> str:
    cap = _capture(report)
    start = cap.start
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)) if start else "?"
    return (
        "<h1>candiag bus report</h1>"
        f"<div class='meta'>Capture <b>{escape(cap.path)}</b>, "
        f"from {when}, {cap.duration_s:.1f} s, "
        f"{cap.frames:,} frames. "
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by candiag "
        f"{escape(__version__)}.</div>"
    )


def _card(label: str, value: str, cls: str = "") -> str:
    return f"<div class='card'><span>{escape(label)}</span><b class='{cls}'>{value}</b></div>"


def _summary(report: AnalysisReport) -> str:
    load = report.bus_load
    ef = report.error_frames
    nodes = report.nodes
    online = sum(1 for n in nodes if n.status != "offline")
    findings = report.findings
    crit = sum(1 for f in findings if f.severity == "critical")
    warn = sum(1 for f in findings if f.severity == "warning")
    errors = report.frames.error
    bus_off = report.bus_off_events
    cards = [
        _card(
            "Findings",
            f"{crit} critical, {warn} warning",
            "bad" if crit else ("warn" if warn else "ok"),
        ),
        _card("Error frames", f"{errors:,}", "bad" if errors else "ok"),
        _card("Bus-off events", str(bus_off), "bad" if bus_off else "ok"),
        _card("Nodes present", f"{online}/{len(nodes)}", "ok" if online == len(nodes) else "bad"),
        _card("Bus load mean", _pct(load.mean_ratio)),
        _card("Bus load max (1 s)", _pct(load.max_ratio_1s)),
        _card("TEC / REC max", f"{ef.tec_max} / {ef.rec_max}"),
        _card(
            f"Bitrate ({_BITRATE_SOURCE.get(str(load.bitrate_source), 'given')})",
            f"{load.bitrate:,} bit/s",
            "warn" if load.bitrate_source == "assumed" else "",
        ),
    ]
    return "<h2>Summary</h2><div class='cards'>" + "".join(cards) + "</div>"


_BITRATE_SOURCE = {
    "flag": "given",
    "config": "from config",
    "recording": "recorded",
    "inferred": "inferred",
    "assumed": "assumed, not known",
}


def _pct(value: Any) -> str:
    return "?" if value is None else f"{float(value):.1%}"


def _findings(report: AnalysisReport) -> str:
    from candiag.analysis import all_clear_sentence

    findings = report.findings
    if not findings:
        return f"<h2>Findings</h2><p class='ok'>{escape(all_clear_sentence(report))}</p>"
    items = []
    for f in findings:
        sev = escape(f.severity)
        evidence = "".join(
            f"<li>{escape(str(k))}: {escape(_compact(v))}</li>" for k, v in f.evidence.items()
        )
        causes = "".join(f"<li>{escape(str(c))}</li>" for c in f.causes)
        mrec = f" · MREC {escape(str(f.mrec))}" if f.mrec else ""
        since = f.since
        cleared = f.cleared_at
        when = "" if since is None else f" · since {_clock(since)}"
        if cleared is not None:
            when += f", cleared {_clock(cleared)}"
        items.append(
            f"<div class='finding {sev}'><span class='sev'>{sev}</span> "
            f"<b>{escape(f.title)}</b>"
            f"<div class='code'>{escape(f.code)} · "
            f"{escape(f.subject)}{mrec}{when}</div>"
            f"<p><b>Fix / next check:</b> {escape(f.fix)}</p>"
            f"<details open><summary>Evidence</summary><ul>{evidence}</ul></details>"
            f"<details><summary>Likely causes, most likely first</summary><ol>{causes}</ol></details>"
            "</div>"
        )
    return "<h2>Findings</h2>" + "".join(items)


def _clock(ts: Any) -> str:
    try:
        return time.strftime("%H:%M:%S", time.gmtime(float(ts)))
    except (TypeError, ValueError):
        return str(ts)


def _compact(value: Any) -> str:
    if isinstance(value, float) and value > 1e9:  # a Unix timestamp
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_compact(v) for v in value) or "-"
    return str(value)


def _plots(timeline: TimelineReport) -> str:
    t = list(timeline.t)
    parts = ["<h2>Over time</h2>"]
    parts.append(
        line_chart(
            t,
            {"bus load": [100 * x for x in timeline.load_ratio]},
            title="Bus load per second",
            unit="%",
            y_min=0.0,
        )
    )
    errors = {k: v for k, v in (timeline.errors or {}).items() if any(v)}
    parts.append(
        line_chart(t, errors, title="Error frames per second by class", y_min=0.0)
        if errors
        else "<p class='ok'>No error frames in the capture.</p>"
    )
    parts.append(
        presence_timeline(t, timeline.nodes or {}, title="Node presence (frames per second)")
    )
    for name, per_node in (timeline.signals or {}).items():
        parts.append(line_chart(t, per_node, title=name))
    return "".join(parts)


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


def _nodes_table(nodes: Sequence[NodeView]) -> str:
    rows = [
        (
            escape(n.family),
            n.address,
            _status_cell(n.status),
            "never" if n.last_seen is None else _clock(n.last_seen),
            f"{n.frames:,}",
            n.dropouts,
            escape(", ".join(n.alarms)) or "-",
        )
        for n in nodes
    ]
    return "<h2>Nodes</h2>" + _table(
        ("family", "address", "status", "last seen", "frames", "dropouts", "alarms"),
        rows,
        {1, 4, 5},
    )


def _firmware_table(nodes: Sequence[NodeView]) -> str:
    rows = [(escape(n.family), n.address, escape(str(n.firmware))) for n in nodes if n.firmware]
    if not rows:
        return "<h2>Firmware</h2><p class='empty'>No firmware-version messages seen.</p>"
    return "<h2>Firmware</h2>" + _table(("family", "address", "version"), rows, {1})


def _ids_table(ids: Mapping[str, IdEntry]) -> str:
    rows = []
    for key, s in sorted(ids.items()):
        ok = s.cycle_ok
        verdict = (
            "-"
            if ok is None
            else ("<span class='ok'>ok</span>" if ok else "<span class='bad'>violated</span>")
        )
        rows.append(
            (
                escape(key),
                escape(s.name or "unknown"),
                f"{s.count:,}",
                _ms(s.mean_period_s),
                _ms(s.jitter_s),
                "-" if s.cycle_ms is None else f"{s.cycle_ms} ms",
                verdict,
            )
        )
    return "<h2>Identifiers</h2>" + _table(
        ("id", "message", "frames", "mean period", "jitter", "declared cycle", "cycle"),
        rows,
        {2, 3, 4, 5},
    )


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{1000 * float(seconds):.2f} ms"


def _signals_table(signals: Mapping[str, SignalReport]) -> str:
    rows = [
        (
            escape(key),
            _num(s.min),
            _num(s.max),
            _num(s.mean),
            _num(s.last),
            escape(s.unit or ""),
        )
        for key, s in sorted(signals.items())
    ]
    return "<h2>Signals</h2>" + _table(
        ("signal", "min", "max", "mean", "last", "unit"), rows, {1, 2, 3, 4}
    )


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.6g}"


def _capture_notes(report: AnalysisReport) -> str:
    cap = _capture(report)
    notes = []
    if cap.malformed_lines:
        notes.append(f"{cap.malformed_lines:,} malformed lines were skipped.")
        for ex in cap.malformed_examples:
            notes.append(
                f"line {ex.line}: {escape(ex.reason)}: <code>{escape(ex.text[:120])}</code>"
            )
    for note in report.notes:
        notes.append(escape(str(note)))
    if not notes:
        return ""
    return "<h2>Capture notes</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"
