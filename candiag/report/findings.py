"""The findings of the HTML report: causes first, consequences folded under them as evidence,
each finding's episodes in words and on a strip of the capture's time axis (issue 15).

The order is the analysis report's own (``analyze --json``: causes first, then severity,
rank and time), never re-sorted here, so the HTML and the JSON lead with the same finding.
A finding the causal model explains (``consequences`` in the JSON, ``candiag/data/
causes.toml``) is not a finding of its own here: it is shown inside its cause's block, in
groups of one code ("11 nodes silent since 22:14:29.4 UTC (+1:09), still silent at the end
of the capture — consequence of ..."), with one strip row per subject.

Times are UTC clock times (to a tenth of a second: episode bounds are exact to the frames
that prove them) with the time since the capture start (``+1:10``), like the charts; a
capture whose clock was never set is told in its own seconds.  An episode still present
at the end of the capture is said to be so, with "at least" before its duration, never
given an end it did not have.  Every text from a file or a rule (titles, subjects, the
causal model's words) is escaped.  What each part holds and why: docs/report.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from candiag.config.toml import loads
from candiag.report import access
from candiag.report.access import EpisodeLine
from candiag.report.evidence import evidence_rows
from candiag.report.svg import StripEpisode, TimeAxis, episode_strip
from candiag.report.units import number

# A group of more consequences than this is folded (its summary line stays visible).
FOLD_ABOVE = 12
# Subjects drawn on a group's strip (the table below it lists every one).
MAX_STRIP_ROWS = 40
# Rows of the episodes table shown before the rest is counted ("and 40 more").
MAX_EPISODE_ROWS = 50
OPEN_WORDS = "still present at the end of the capture"

CSS = """
.when{font-size:13px;margin:4px 0}
table.episodes td,table.consequence-list td{font-size:12px}
svg.strip{margin:2px 0 4px}
.consequences{margin:8px 0 4px;padding:4px 0 0 12px;border-left:2px solid #e2e2e2}
.consequences h4{font-size:13px;margin:2px 0 4px;color:#444}
.consequence-group{margin:4px 0 8px}
.consequence-line{font-size:13px;margin:2px 0}
.stale-mark{font-size:11px;color:#8a6d00;background:#fff4cc;border-radius:3px;padding:0 4px;margin-left:4px}
td.stale,span.stale{color:#888}
"""


# -- times and durations ----------------------------------------------------------------------


def instant(ts: float, axis: TimeAxis) -> str:
    """``22:14:29.9 UTC (+1:10)``; ``t=69.97 s (+1:10)`` without wall-clock time; the date
    in front when the capture spans more than one day."""
    if not axis.wall_clock:
        return f"t={number(ts)} s ({axis.elapsed(ts)})"
    tenths = math.floor(ts * 10)
    whole, frac = divmod(tenths, 10)
    first, last = (time.strftime("%Y-%m-%d", time.gmtime(t)) for t in (axis.start, axis.end))
    fmt = "%H:%M:%S" if first == last else "%Y-%m-%d %H:%M:%S"
    return f"{time.strftime(fmt, time.gmtime(whole))}.{frac} UTC ({axis.elapsed(ts)})"


def span_words(seconds: float) -> str:
    """``5.1 s``, ``2 min 10 s``, ``1 h 05 min``, ``2 days 3 h``."""
    if seconds < 60:
        return f"{number(seconds)} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} days {whole % 86400 // 3600} h"


def duration_text(episode: EpisodeLine, axis: TimeAxis) -> str:
    """Its duration; an open episode lasted at least until the end of the capture."""
    if episode.end is None:
        return f"at least {span_words(max(0.0, axis.end - episode.start))}"
    return span_words(max(0.0, episode.end - episode.start))


def total_text(episodes: Sequence[EpisodeLine], axis: TimeAxis) -> str:
    total = sum(e.end_or(axis.end) - e.start for e in episodes)
    prefix = "at least " if any(e.end is None for e in episodes) else ""
    return f"{prefix}{span_words(max(0.0, total))}"


def when_text(episodes: Sequence[EpisodeLine], axis: TimeAxis) -> str:
    """One sentence: when the finding held, how often and how long."""
    if not episodes:
        return ""
    first, last = episodes[0], episodes[-1]
    if len(episodes) == 1:
        if first.end is None:
            return (
                f"From {instant(first.start, axis)}, {OPEN_WORDS} ({duration_text(first, axis)})."
            )
        return (
            f"From {instant(first.start, axis)} to {instant(first.end, axis)} "
            f"({duration_text(first, axis)})."
        )
    tail = (
        f"the last {OPEN_WORDS}"
        if last.end is None
        else f"the last ended {instant(last.end, axis)}"
    )
    return (
        f"{len(episodes)} episodes, {total_text(episodes, axis)} in all: the first from "
        f"{instant(first.start, axis)}, {tail}."
    )


def strip_episodes(
    episodes: Sequence[EpisodeLine], axis: TimeAxis, name: str
) -> list[StripEpisode]:
    out = []
    for i, e in enumerate(episodes, 1):
        end = OPEN_WORDS if e.end is None else f"to {instant(e.end, axis)}"
        tip = f"{name}: episode {i} from {instant(e.start, axis)} {end} ({duration_text(e, axis)})"
        out.append(StripEpisode(e.start, e.end, tip))
    return out


# -- one finding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What every part of the section needs: the capture's axis (None without a frame), a
    page for print (folded parts open) and the buses, whose names subjects start with."""

    axis: TimeAxis | None
    for_print: bool = False
    buses: tuple[str, ...] = ()

    def short(self, subject: str) -> str:
        """``can0/power_module/3`` -> ``power module 3``: the bus is the cause's (a bus name
        may itself hold a ``/``, so only a known bus is cut off)."""
        for bus in sorted(self.buses, key=len, reverse=True):
            rest = subject.removeprefix(bus)
            if rest != subject and rest.startswith("/"):  # a subject, not a path
                return rest[1:].replace("/", " ").replace("_", " ")
        return subject


def findings_html(findings: Sequence[Any], layout: Layout) -> str:
    """The findings, in the report's order, each with its consequences inside it."""
    folded = sum(_count_consequences(f) for f in findings)
    causes = sum(1 for f in findings if access.consequences(f))
    note = (
        "<p class='chart-note' id='findings-order'>Root causes first, then by severity and "
        f"time. {folded} further finding{'' if folded == 1 else 's'} explained by "
        f"{'a cause' if causes == 1 else 'the causes'} {'is' if folded == 1 else 'are'} "
        f"shown under {'it' if causes == 1 else 'them'} as evidence, not on "
        f"{'its' if folded == 1 else 'their'} own.</p>"
        if folded
        else ""
    )
    return note + "".join(finding_html(f, layout) for f in findings)


def _count_consequences(finding: Any) -> int:
    return sum(1 + _count_consequences(c) for c in access.consequences(finding))


def finding_html(f: Any, layout: Layout) -> str:
    sev = escape(str(access.field(f, "severity", "info")))
    code = str(access.field(f, "code", ""))
    subject = str(access.field(f, "subject", ""))
    evidence = "".join(
        f"<tr><th>{escape(words)}</th><td>{escape(value)}</td></tr>"
        for words, value in evidence_rows(access.field(f, "evidence", {}))
    )
    causes = "".join(f"<li>{escape(str(c))}</li>" for c in access.field(f, "causes", []))
    mrec = access.field(f, "mrec")
    mrec_text = f" · MREC {escape(str(mrec))}" if mrec else ""
    consequences = access.consequences(f)
    role = "cause" if consequences else "finding"
    return (
        f"<div class='finding {sev} {role}' data-code='{escape(code)}' "
        f"data-subject='{escape(subject)}'><span class='sev'>{sev}</span> "
        f"<b class='title'>{escape(str(access.field(f, 'title', '')))}</b>"
        f"<div class='code'>{escape(code)} · {escape(subject)}{mrec_text}</div>"
        f"{_episodes_block(f, layout.axis, subject, sev)}"
        f"<p><b>Fix / next check:</b> {escape(str(access.field(f, 'fix', '')))}</p>"
        f"<details open><summary>Evidence</summary><table class='facts'>{evidence}</table>"
        f"{_consequences_block(consequences, layout)}</details>"
        f"<details{' open' if layout.for_print else ''}><summary>Likely causes, most likely first"
        f"</summary><ol>{causes}</ol></details>"
        "</div>"
    )


def _episodes_block(f: Any, axis: TimeAxis | None, name: str, severity: str) -> str:
    episodes = access.episodes(f)
    if not episodes or axis is None:
        return ""
    open_ = any(e.end is None for e in episodes)
    parts = [
        f"<div class='episodes' data-occurrences='{len(episodes)}' "
        f"data-open='{'yes' if open_ else 'no'}'>",
        f"<p class='when'>{escape(when_text(episodes, axis))}</p>",
        episode_strip(
            axis,
            [("episodes", strip_episodes(episodes, axis, name))],
            title=f"Episodes of {name} on the capture's time axis",
            severity=severity,
        ),
    ]
    if len(episodes) > 1:
        parts.append(_episode_table(episodes, axis))
    parts.append("</div>")
    return "".join(parts)


def _episode_table(episodes: Sequence[EpisodeLine], axis: TimeAxis) -> str:
    rows = []
    for i, e in enumerate(episodes[:MAX_EPISODE_ROWS], 1):
        end = (
            f"<td class='open'>{escape(OPEN_WORDS)}</td>"
            if e.end is None
            else f"<td class='end'>{escape(instant(e.end, axis))}</td>"
        )
        rows.append(
            f"<tr class='episode'><td class='num'>{i}</td>"
            f"<td class='start'>{escape(instant(e.start, axis))}</td>{end}"
            f"<td class='num duration'>{escape(duration_text(e, axis))}</td></tr>"
        )
    more = len(episodes) - MAX_EPISODE_ROWS
    if more > 0:
        rows.append(f"<tr><td colspan='4' class='empty'>and {more:,} more</td></tr>")
    head = "<tr><th>#</th><th>start</th><th>end</th><th>duration</th></tr>"
    return f"<table class='episodes'>{head}{''.join(rows)}</table>"


# -- consequences -----------------------------------------------------------------------------


@cache
def _group_words() -> Mapping[str, Mapping[str, str]]:
    text = resources.files("candiag").joinpath("data", "report_words.toml").read_text("utf-8")
    table: Mapping[str, Mapping[str, str]] = loads(text).get("consequence", {})
    return table


def group_words(code: str, n: int) -> str:
    """``11 nodes silent`` (``candiag/data/report_words.toml``, ``[consequence]``); a code
    the file does not name is counted by its code (``2 findings CAN_X``)."""
    known = _group_words().get(code)
    if known is None:
        return f"{n} finding{'' if n == 1 else 's'} {code}"
    return f"{n} {known['one'] if n == 1 else known['many']}"


def _consequences_block(consequences: Sequence[Any], layout: Layout) -> str:
    if not consequences:
        return ""
    groups: dict[tuple[str, str], list[Any]] = {}
    for c in consequences:  # the report's order (by start) within each group
        key = (str(access.field(c, "code", "")), access.consequence_of(c))
        groups.setdefault(key, []).append(c)
    body = "".join(
        _group_html(code, why, members, layout) for (code, why), members in groups.items()
    )
    n = len(consequences)
    return (
        f"<div class='consequences'><h4>Consequences of this cause ({n}), shown as its "
        f"evidence</h4>{body}</div>"
    )


def _group_html(code: str, why: str, members: list[Any], layout: Layout) -> str:
    axis = layout.axis
    severity = str(access.field(members[0], "severity", "info"))
    line = _group_line(code, why, members, axis)
    strip = ""
    if axis is not None:
        rows = [
            (
                layout.short(str(access.field(c, "subject", ""))),
                strip_episodes(access.episodes(c), axis, str(access.field(c, "subject", ""))),
            )
            for c in members[:MAX_STRIP_ROWS]
        ]
        strip = episode_strip(
            axis, rows, title=f"Episodes of the {code} consequences", severity=severity
        )
        if len(members) > MAX_STRIP_ROWS:
            strip += (
                f"<p class='chart-note'>The first {MAX_STRIP_ROWS} of {len(members):,} are "
                "drawn; the table lists each.</p>"
            )
    table = _consequence_table(members, axis, layout.for_print)
    nested = "".join(_consequences_block(access.consequences(c), layout) for c in members)
    return (
        f"<div class='consequence-group' data-code='{escape(code)}' "
        f"data-count='{len(members)}'><p class='consequence-line'>"
        f"<span class='sev {escape(severity)}'>{escape(severity)}</span> {escape(line)}</p>"
        f"{strip}{table}{nested}</div>"
    )


def _group_line(code: str, why: str, members: list[Any], axis: TimeAxis | None) -> str:
    """``11 nodes silent since 22:14:29.4 UTC (+1:09), still present at the end of the
    capture — consequence of CAN_ERR_ACK can0: ...``."""
    text = group_words(code, len(members))
    episodes = [e for c in members for e in access.episodes(c)]
    if episodes and axis is not None:
        text += f" since {instant(min(e.start for e in episodes), axis)}"
        still = sum(1 for c in members if any(e.end is None for e in access.episodes(c)))
        if still == len(members):
            text += f", {OPEN_WORDS}"
        elif still:
            text += f"; {still} of them {OPEN_WORDS}"
        else:
            last = max(e.end for e in episodes if e.end is not None)
            text += f", the last until {instant(last, axis)}"
    return f"{text} — consequence of {why}" if why else text


def _consequence_table(members: list[Any], axis: TimeAxis | None, for_print: bool) -> str:
    rows = []
    for c in members:
        episodes = access.episodes(c)
        if episodes and axis is not None:
            first = instant(episodes[0].start, axis)
            last = episodes[-1]
            end = OPEN_WORDS if last.end is None else instant(last.end, axis)
            total = total_text(episodes, axis)
        else:
            first = end = total = "-"
        end_cls = "open" if episodes and episodes[-1].end is None else "end"
        rows.append(
            f"<tr class='consequence' data-code='{escape(str(access.field(c, 'code', '')))}' "
            f"data-occurrences='{len(episodes)}'>"
            f"<td class='subject'>{escape(str(access.field(c, 'subject', '')))}</td>"
            f"<td>{escape(str(access.field(c, 'title', '')))}</td>"
            f"<td class='num'>{len(episodes)}</td><td class='start'>{escape(first)}</td>"
            f"<td class='{end_cls}'>{escape(end)}</td><td class='num'>{escape(total)}</td></tr>"
        )
    head = (
        "<tr><th>subject</th><th>finding</th><th>episodes</th><th>first start</th>"
        "<th>last end</th><th>duration</th></tr>"
    )
    table = f"<table class='consequence-list'>{head}{''.join(rows)}</table>"
    if len(members) <= FOLD_ABOVE:
        return table
    opened = " open" if for_print else ""
    return (
        f"<details class='folded'{opened}><summary>each of the {len(members)}</summary>"
        f"{table}</details>"
    )
