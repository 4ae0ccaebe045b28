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
from candiag.liveness.html import liveness_section
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


def render_report(report: Mapping[str, Any], timeline: Mapping[str, Any] | None = None) -> str:
    """The whole HTML document for an analyze report (and its per-second timeline)."""
    body = [
        _header(report),
        _summary(report),
        _findings(report),
        _plots(timeline or {}),
        _nodes_table(report.get("nodes") or []),
        liveness_section(report.get("liveness")),  # candiag/liveness: polled modules
        _firmware_table(report.get("nodes") or []),
        _ids_table(report.get("ids") or {}),
        _signals_table(report.get("signals") or {}),
        _capture_notes(report),
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>candiag report: {escape(str(_capture(report).get('path', '')))}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    )


def _capture(report: Mapping[str, Any]) -> Mapping[str, Any]:
    capture: Mapping[str, Any] = report.get("capture") or {}
    return capture


def _header(report: Mapping[str, Any]) -> str:
    cap = _capture(report)
    start = cap.get("start")
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start)) if start else "?"
    return (
        "<h1>candiag bus report</h1>"
        f"<div class='meta'>Capture <b>{escape(str(cap.get('path', '?')))}</b>, "
        f"from {when}, {float(cap.get('duration_s') or 0):.1f} s, "
        f"{int(cap.get('frames') or 0):,} frames. "
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by candiag "
        f"{escape(__version__)}.</div>"
    )


def _card(label: str, value: str, cls: str = "") -> str:
    return f"<div class='card'><span>{escape(label)}</span><b class='{cls}'>{value}</b></div>"


def _summary(report: Mapping[str, Any]) -> str:
    frames = report.get("frames") or {}
    load = report.get("bus_load") or {}
    ef = report.get("error_frames") or {}
    nodes = report.get("nodes") or []
    online = sum(1 for n in nodes if n.get("status") != "offline")
    findings = report.get("findings") or []
    crit = sum(1 for f in findings if f.get("severity") == "critical")
    warn = sum(1 for f in findings if f.get("severity") == "warning")
    errors = int(frames.get("error") or 0)
    bus_off = int(report.get("bus_off_events") or 0)
    cards = [
        _card(
            "Findings",
            f"{crit} critical, {warn} warning",
            "bad" if crit else ("warn" if warn else "ok"),
        ),
        _card("Error frames", f"{errors:,}", "bad" if errors else "ok"),
        _card("Bus-off events", str(bus_off), "bad" if bus_off else "ok"),
        _card("Nodes present", f"{online}/{len(nodes)}", "ok" if online == len(nodes) else "bad"),
        _card("Bus load mean", _pct(load.get("mean_ratio"))),
        _card("Bus load max (1 s)", _pct(load.get("max_ratio_1s"))),
        _card("TEC / REC max", f"{ef.get('tec_max', 0)} / {ef.get('rec_max', 0)}"),
        _card(
            f"Bitrate ({_BITRATE_SOURCE.get(str(load.get('bitrate_source')), 'given')})",
            f"{int(load.get('bitrate') or 0):,} bit/s",
            "warn" if load.get("bitrate_source") == "assumed" else "",
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


def _findings(report: Mapping[str, Any]) -> str:
    from candiag.analysis import all_clear_sentence

    findings: Sequence[Mapping[str, Any]] = report.get("findings") or []
    if not findings:
        return f"<h2>Findings</h2><p class='ok'>{escape(all_clear_sentence(dict(report)))}</p>"
    items = []
    for f in findings:
        sev = escape(str(f.get("severity", "info")))
        evidence = "".join(
            f"<li>{escape(str(k))}: {escape(_compact(v))}</li>"
            for k, v in (f.get("evidence") or {}).items()
        )
        causes = "".join(f"<li>{escape(str(c))}</li>" for c in f.get("causes") or [])
        mrec = f" · MREC {escape(str(f['mrec']))}" if f.get("mrec") else ""
        since = f.get("since")
        cleared = f.get("cleared_at")
        when = "" if since is None else f" · since {_clock(since)}"
        if cleared is not None:
            when += f", cleared {_clock(cleared)}"
        items.append(
            f"<div class='finding {sev}'><span class='sev'>{sev}</span> "
            f"<b>{escape(str(f.get('title', '')))}</b>"
            f"<div class='code'>{escape(str(f.get('code', '')))} · "
            f"{escape(str(f.get('subject', '')))}{mrec}{when}</div>"
            f"<p><b>Fix / next check:</b> {escape(str(f.get('fix', '')))}</p>"
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


def _plots(timeline: Mapping[str, Any]) -> str:
    t = timeline.get("t") or []
    parts = ["<h2>Over time</h2>"]
    parts.append(
        line_chart(
            t,
            {"bus load": [100 * x for x in timeline.get("load_ratio") or []]},
            title="Bus load per second",
            unit="%",
            y_min=0.0,
        )
    )
    errors = {k: v for k, v in (timeline.get("errors") or {}).items() if any(v)}
    parts.append(
        line_chart(t, errors, title="Error frames per second by class", y_min=0.0)
        if errors
        else "<p class='ok'>No error frames in the capture.</p>"
    )
    parts.append(
        presence_timeline(t, timeline.get("nodes") or {}, title="Node presence (frames per second)")
    )
    for name, per_node in (timeline.get("signals") or {}).items():
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


def _nodes_table(nodes: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            escape(str(n.get("family"))),
            n.get("address"),
            _status_cell(str(n.get("status"))),
            "never" if n.get("last_seen") is None else _clock(n["last_seen"]),
            f"{int(n.get('frames') or 0):,}",
            n.get("dropouts", 0),
            escape(", ".join(n.get("alarms") or [])) or "-",
        )
        for n in nodes
    ]
    return "<h2>Nodes</h2>" + _table(
        ("family", "address", "status", "last seen", "frames", "dropouts", "alarms"),
        rows,
        {1, 4, 5},
    )


def _firmware_table(nodes: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (escape(str(n.get("family"))), n.get("address"), escape(str(n.get("firmware"))))
        for n in nodes
        if n.get("firmware")
    ]
    if not rows:
        return "<h2>Firmware</h2><p class='empty'>No firmware-version messages seen.</p>"
    return "<h2>Firmware</h2>" + _table(("family", "address", "version"), rows, {1})


def _ids_table(ids: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for key, s in sorted(ids.items()):
        ok = s.get("cycle_ok")
        verdict = (
            "-"
            if ok is None
            else ("<span class='ok'>ok</span>" if ok else "<span class='bad'>violated</span>")
        )
        rows.append(
            (
                escape(key),
                escape(str(s.get("name") or "unknown")),
                f"{int(s.get('count') or 0):,}",
                _ms(s.get("mean_period_s")),
                _ms(s.get("jitter_s")),
                "-" if s.get("cycle_ms") is None else f"{s['cycle_ms']} ms",
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


def _signals_table(signals: Mapping[str, Mapping[str, Any]]) -> str:
    rows = [
        (
            escape(key),
            _num(s.get("min")),
            _num(s.get("max")),
            _num(s.get("mean")),
            _num(s.get("last")),
            escape(str(s.get("unit") or "")),
        )
        for key, s in sorted(signals.items())
    ]
    return "<h2>Signals</h2>" + _table(
        ("signal", "min", "max", "mean", "last", "unit"), rows, {1, 2, 3, 4}
    )


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.6g}"


def _capture_notes(report: Mapping[str, Any]) -> str:
    cap = _capture(report)
    notes = []
    if cap.get("malformed_lines"):
        notes.append(f"{int(cap['malformed_lines']):,} malformed lines were skipped.")
        for ex in cap.get("malformed_examples") or []:
            notes.append(
                f"line {ex.get('line')}: {escape(str(ex.get('reason')))}: "
                f"<code>{escape(str(ex.get('text'))[:120])}</code>"
            )
    for note in report.get("notes") or []:
        notes.append(escape(str(note)))
    if not notes:
        return ""
    return "<h2>Capture notes</h2><ul>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"
