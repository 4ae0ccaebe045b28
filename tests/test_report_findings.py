"""Issue 15 §3/§4 in the HTML report: causes first, consequences under their cause, episodes,
stale values marked.

The end-to-end tests analyze simulated captures once through the real CLI with ``--json``
and ``--html`` together, parse the HTML into elements and compare its structure with the
JSON of the same analysis: the same top-level findings in the same order, each cause's
consequences inside its block and nowhere at the top level, the episodes' bounds in words,
open episodes worded as open, and every stale value of the JSON marked stale in the page.
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from external_tools import require_tool

from candiag.cli import main
from candiag.diagnosis.causes import load_causal_model
from candiag.report.access import EpisodeLine
from candiag.report.findings import (
    FOLD_ABOVE,
    MAX_STRIP_ROWS,
    OPEN_WORDS,
    Layout,
    findings_html,
    group_words,
    instant,
    span_words,
    when_text,
)
from candiag.report.html import render_report
from candiag.report.provenance import gather
from candiag.report.signals import signal_groups
from candiag.report.svg import StripEpisode, TimeAxis, episode_strip

T0 = 1_700_000_000.0
VOID = frozenset({"br", "meta", "hr", "img", "input", "link", "col", "wbr"})


# -- a small DOM: the page as elements, so tests assert on structure -------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    def iter(self) -> Iterator[Element]:
        for child in self.children:
            yield child
            yield from child.iter()

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
        ]

    def find(self, tag: str | None = None, cls: str | None = None) -> Element:
        found = self.find_all(tag, cls)
        assert found, f"no <{tag} class={cls}> under <{self.tag}>"
        return found[0]

    def ancestors(self) -> Iterator[Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.node = self.root

    def _open(self, tag: str, attrs: list[tuple[str, str | None]]) -> Element:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.node)
        self.node.children.append(element)
        self.node.parts.append(element)
        return element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = self._open(tag, attrs)
        if tag not in VOID:
            self.node = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.node
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"</{tag}> closes nothing"
        self.node = node.parent

    def handle_data(self, data: str) -> None:
        self.node.parts.append(data)


def parse(page: str) -> Element:
    builder = _Builder()
    builder.feed(page)
    builder.close()
    return builder.root


def findings_section(doc: Element) -> list[Element]:
    """The elements between the Findings heading and the next heading, in order."""
    return section(doc, "findings")


def top_findings(doc: Element) -> list[Element]:
    return [e for e in findings_section(doc) if "finding" in e.classes]


def section(doc: Element, heading_id: str) -> list[Element]:
    body = doc.find("body")
    out: list[Element] = []
    inside = False
    for child in body.children:
        if child.tag == "h2":
            if inside:
                break
            inside = child.attrs.get("id") == heading_id
            continue
        if inside:
            out.append(child)
    return out


def words(text: str) -> str:
    return " ".join(text.split())


# -- unit tests: words, strips, folding ------------------------------------------------------


def test_episode_times_are_utc_to_a_tenth_with_the_time_since_the_start() -> None:
    axis = TimeAxis(T0, T0 + 240)
    assert instant(T0 + 69.968, axis) == "22:14:29.9 UTC (+1:10)"
    assert instant(T0 + 5, TimeAxis(5.0, 100.0)).startswith("t=")
    days = TimeAxis(T0, T0 + 2 * 86400)
    assert instant(T0 + 86400.25, days) == "2023-11-15 22:13:20.2 UTC (+24:00:00)"
    assert [span_words(s) for s in (5.099992, 130.0, 3725.0)] == ["5.1 s", "2 min 10 s", "1 h 02 min"]  # fmt: skip


def test_an_open_episode_is_said_to_last_to_the_end_and_at_least_so_long() -> None:
    axis = TimeAxis(T0, T0 + 200)
    open_ = when_text([EpisodeLine(T0 + 70, None)], axis)
    assert OPEN_WORDS in open_ and "at least 2 min 10 s" in open_ and " to " not in open_
    closed = when_text([EpisodeLine(T0 + 70, T0 + 75.1)], axis)
    assert closed == "From 22:14:30.0 UTC (+1:10) to 22:14:35.1 UTC (+1:15) (5.1 s)."
    many = when_text([EpisodeLine(T0 + 10, T0 + 15), EpisodeLine(T0 + 70, None)], axis)
    assert many.startswith("2 episodes, at least 2 min 15 s in all") and "the last still" in many


def test_the_strip_draws_each_episode_and_an_open_one_to_the_edge_with_an_arrow() -> None:
    from candiag.report.svg import RIGHT, STRIP_LEFT, W

    axis = TimeAxis(T0, T0 + 3600)
    rows = [
        (
            "<b>a</b>",
            [StripEpisode(T0 + 60, T0 + 60.05, "tip <i>"), StripEpisode(T0 + 1800, None, "o")],
        ),
        ("b", []),
    ]
    doc = parse(episode_strip(axis, rows, title="t<script>", severity="critical"))
    bars = doc.find_all("rect", "episode")
    assert len(bars) == 2
    short, open_ = bars
    assert float(short.attrs["width"]) >= 2.0  # 50 ms on an hour: still visible
    assert "open" in open_.classes and "open" not in short.classes
    right = float(open_.attrs["x"]) + float(open_.attrs["width"])
    assert right == pytest.approx(W - RIGHT)
    assert float(short.attrs["x"]) == pytest.approx(float(axis.x(T0 + 60, STRIP_LEFT, W - RIGHT)), abs=0.1)  # fmt: skip
    assert len(doc.find_all("polygon", "open-mark")) == 1
    labels = [e.text for e in doc.find_all("text", "strip-label")]
    assert labels == ["<b>a</b>", "b"]  # text, not markup
    assert not doc.find_all("b") and not doc.find_all("i") and not doc.find_all("script")


def test_every_effect_of_the_causal_model_is_counted_in_words() -> None:
    effects = {code for link in load_causal_model() for code in link.effects}
    for code in effects:
        assert code not in group_words(code, 2), f"{code}: add it to [consequence]"
    assert group_words("CAN_NODE_OFFLINE", 11) == "11 nodes silent"
    assert group_words("CAN_NODE_OFFLINE", 1) == "1 node silent"
    assert group_words("CAN_SOMETHING_NEW", 2) == "2 findings CAN_SOMETHING_NEW"


def _finding(code: str, subject: str, episodes: list[tuple[float, float | None]], **kw: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "code": code,
        "severity": kw.pop("severity", "warning"),
        "title": kw.pop("title", f"{code} on {subject}"),
        "subject": subject,
        "since": T0 + episodes[0][0],
        "evidence": {},
        "causes": [],
        "fix": "fix it",
        "episodes": [{"start": T0 + a, "end": None if b is None else T0 + b} for a, b in episodes],
        **kw,
    }


def test_many_consequences_are_folded_on_screen_and_unfolded_in_print_and_nested_ones_kept() -> None:  # fmt: skip
    n = max(FOLD_ABOVE, MAX_STRIP_ROWS) + 3
    effects = [
        _finding("CAN_CYCLE_VIOLATION", f"can0/0x{i:03X}", [(70, None)], consequence_of="C why")
        for i in range(n)
    ]
    grandchild = _finding("CAN_NODE_INTERMITTENT", "can0/power_module/3", [(80, 90)])
    child = _finding(
        "CAN_NODE_OFFLINE", "can0/power_module/3", [(70, 75)], consequences=[grandchild]
    )
    cause = _finding(
        "CAN_BUS_OFF", "can0", [(69, 80)], severity="critical", consequences=[*effects, child]
    )
    axis = TimeAxis(T0, T0 + 200)
    for for_print in (False, True):
        doc = parse(findings_html([cause], Layout(axis, for_print, ("can0",))))
        (block,) = [e for e in doc.children if "finding" in e.classes]
        groups = block.find_all("div", "consequence-group")
        assert [g.attrs["data-code"] for g in groups] == [
            "CAN_CYCLE_VIOLATION",
            "CAN_NODE_OFFLINE",
            "CAN_NODE_INTERMITTENT",
        ]
        assert groups[0].attrs["data-count"] == str(n)
        assert len(groups[0].find("svg", "strip").find_all("text", "strip-label")) == min(
            n, MAX_STRIP_ROWS
        )
        assert f"The first {MAX_STRIP_ROWS} of {n} are drawn" in groups[0].text
        folded = groups[0].find("details", "folded")
        assert ("open" in folded.attrs) is for_print
        assert len(folded.find_all("tr", "consequence")) == n
        # the grandchild sits inside its parent's group, not beside the cause
        assert groups[1] in list(groups[2].ancestors())
        assert "1 node intermittent since 22:14:40.0 UTC (+1:20), the last until" in words(
            groups[2].text
        )


def test_stale_signals_are_marked_and_a_node_all_stale_says_so_in_its_heading() -> None:
    def sig(node: int, stale: bool | None) -> dict[str, Any]:
        return {"message": "ModuleTelemetry", "signal": "Voltage", "node": node, "unit": "V",
                "role": None, "min": 1.0, "max": 2.0, "mean": 1.5, "last": 2.0,
                "last_ts": T0 + 69.9, "stale": stale}  # fmt: skip

    signals = {"a[1]": sig(1, False), "a[2]": sig(2, True), "a[3]": sig(3, None)}
    groups = signal_groups(signals, {"ModuleTelemetry": "power_module"})
    fresh, stale, unknown = (parse(g.html()) for g in groups)
    assert not fresh.find_all(cls="stale") and not fresh.find_all(cls="stale-mark")
    cell = stale.find("td", "stale")
    assert "last" in cell.classes and words(cell.text) == "2stale"
    assert "2023-11-14 22:14:29 UTC" in cell.attrs["title"]
    heading = stale.find("h3")
    assert words(heading.find(cls="stale-mark").text) == "stale: last value at 2023-11-14 22:14:29 UTC"  # fmt: skip
    assert not unknown.find_all(cls="stale")
    assert "cannot be told" in unknown.find("p", "chart-note").text


# -- end to end: real scenario captures through the CLI ---------------------------------------


def simulate(path: Path, seconds: float, *faults: str, channel: str = "can0") -> Path:
    args = ["simulate", "-o", str(path), "-d", str(seconds), "-q", "-c", channel]
    for fault in faults:
        args += ["--fault", fault]
    assert main(args) == 0
    return path


def analyze(capture: Path, *extra: str) -> tuple[dict[str, Any], Element, str]:
    """One analysis, its JSON and its HTML (parsed, and as text)."""
    out, page = capture.with_suffix(".json"), capture.with_suffix(".html")
    args = ["analyze", str(capture), "--bitrate", "125000", "--json", str(out), "--html", str(page)]
    assert main([*args, *extra]) in (0, 1)
    text = page.read_text()
    return json.loads(out.read_text()), parse(text), text


def only_controller_after(capture: Path, after_s: float, out: Path) -> Path:
    """Every data frame but the controller's (0x200) removed ``after_s`` into the capture."""
    lines = capture.read_text().splitlines(keepends=True)
    t0 = float(lines[0].split(")")[0].strip("("))
    kept = []
    for line in lines:
        stamp, _, frame = line.split(" ", 2)
        ident = frame.split("#")[0]
        error = len(ident) == 8 and int(ident, 16) & 0x20000000
        late = float(stamp.strip("()")) - t0 >= after_s
        if not late or error or int(ident, 16) == 0x200:
            kept.append(line)
    out.write_text("".join(kept))
    return out


@pytest.fixture(scope="module")
def ack_storm(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Element, str]:
    """Every node but the controller unpowered after 70 s: its frames go unacknowledged."""
    folder = tmp_path_factory.mktemp("ack")
    raw = simulate(folder / "raw.log", 200, "error_frames@70:class=ack,rate=100")
    return analyze(only_controller_after(raw, 70.0, folder / "ack.log"))


@pytest.fixture(scope="module")
def dropouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Element, str]:
    """Power module 3 silent three times for 5 s, late in the capture."""
    folder = tmp_path_factory.mktemp("drops")
    faults = [f"module_silent@{t}+5:module=3" for t in (70, 130, 190)]
    return analyze(simulate(folder / "drops.log", 240, *faults))


def _axis(report: dict[str, Any]) -> TimeAxis:
    return TimeAxis(report["capture"]["start"], report["capture"]["end"])


def _codes(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f["code"], f["subject"]) for f in items]


def _blocks(blocks: list[Element]) -> list[tuple[str, str]]:
    return [(b.attrs["data-code"], b.attrs["data-subject"]) for b in blocks]


@pytest.mark.slow
def test_the_cause_leads_and_its_consequences_are_inside_it_not_beside_it(
    ack_storm: tuple[dict[str, Any], Element, str],
) -> None:
    report, doc, _ = ack_storm
    blocks = top_findings(doc)
    assert _blocks(blocks) == _codes(report["findings"])  # the JSON's ranking, unchanged
    top, cause = blocks[0], report["findings"][0]
    assert cause["code"] == "CAN_ERR_ACK" and "cause" in top.classes
    folded = _codes(cause["consequences"])
    assert len([c for c in folded if c[0] == "CAN_NODE_OFFLINE"]) == 11
    assert not set(folded) & set(_blocks(blocks)), "a consequence at the top level"
    rows = top.find_all("tr", "consequence")
    assert [(r.attrs["data-code"], r.find("td", "subject").text) for r in rows] == folded
    (group,) = top.find_all("div", "consequence-group")
    line = words(group.find("p", "consequence-line").text)
    first = min(c["start"] for c in cause["consequences"])
    assert line.startswith(f"critical 11 nodes silent since {instant(first, _axis(report))}")
    assert f"{OPEN_WORDS} — consequence of CAN_ERR_ACK can0: no node acknowledges" in line
    # each node never came back: its episode is open, in the table and on the strip
    assert all(words(r.find("td", "open").text) == OPEN_WORDS for r in rows)
    strip = group.find("svg", "strip")
    assert len(strip.find_all("rect", "episode")) == 11
    assert len(strip.find_all("rect", "open")) == len(strip.find_all("polygon", "open-mark")) == 11
    # the summary counts causes, and says the rest are under them
    summary = words(doc.find("p", "summary").text)
    assert "candiag found 1 critical problem: ACK errors" in summary
    assert "11 further findings are shown under the cause that explains them." in summary
    cards = {c.find("span").text: c.find("b").text for c in doc.find_all("div", "card")}
    assert cards["Findings"] == "1 critical, 0 warning"  # causes: the consequences apart
    assert cards["Consequences folded under their cause"] == "11"


@pytest.mark.slow
def test_an_open_cause_is_worded_open_with_its_start(
    ack_storm: tuple[dict[str, Any], Element, str],
) -> None:
    report, doc, _ = ack_storm
    cause = report["findings"][0]
    (episode,) = cause["episodes"]
    assert episode["end"] is None
    box = top_findings(doc)[0].find("div", "episodes")
    assert (box.attrs["data-occurrences"], box.attrs["data-open"]) == ("1", "yes")
    when = words(box.find("p", "when").text)
    assert when.startswith(f"From {instant(episode['start'], _axis(report))}, {OPEN_WORDS}")
    assert not box.find_all("table")  # one episode: the sentence says it all


@pytest.mark.slow
def test_values_of_the_silent_nodes_are_marked_stale_everywhere_they_are_shown(
    ack_storm: tuple[dict[str, Any], Element, str],
) -> None:
    report, doc, _ = ack_storm
    stale = [s for s in report["signals"].values() if s["stale"]]
    fresh = [s for s in report["signals"].values() if s["stale"] is False]
    assert stale and fresh
    signals = section(doc, "signals")
    cells = [c for e in signals for c in e.find_all("td", "last")]
    assert len(cells) == len(report["signals"])  # one row per signal of the JSON
    marked = [c for c in cells if "stale" in c.classes]
    assert len(marked) == len(stale)
    assert all(c.find("span", "stale-mark").text == "stale" for c in marked)
    headings = [e for e in signals if e.tag == "h3"]
    module1 = next(h for h in headings if h.text.startswith("power module 1"))
    assert module1.find_all(cls="stale-mark")
    assert all(c["stale"] for c in report["contactors"])
    table = section(doc, "contactors")[0]
    rows = table.find_all("tr")[1:]
    assert len(rows) == len(report["contactors"])
    for row in rows:
        cells = row.find_all("td")
        assert cells[1].find_all(cls="stale") and cells[2].find_all(cls="stale")
        assert "the values are history" in cells[-1].text
    nodes = section(doc, "nodes")[0].find_all("tr")[1:]
    offline = [r for r in nodes if r.find_all("td")[2].text == "offline"]
    assert len(offline) == 11
    assert all(r.find_all("td")[-1].find_all(cls="stale-mark") for r in offline)


@pytest.mark.slow
def test_a_fault_that_comes_back_is_one_finding_with_its_episodes_in_order(
    dropouts: tuple[dict[str, Any], Element, str],
) -> None:
    report, doc, _ = dropouts
    axis = _axis(report)
    (block,) = top_findings(doc)
    (top,) = report["findings"]
    assert (top["code"], top["occurrences"]) == ("CAN_NODE_OFFLINE", 3)
    box = block.find("div", "episodes")
    assert (box.attrs["data-occurrences"], box.attrs["data-open"]) == ("3", "no")
    rows = box.find("table", "episodes").find_all("tr", "episode")
    assert [(r.find("td", "start").text, r.find("td", "end").text) for r in rows] == [
        (instant(e["start"], axis), instant(e["end"], axis)) for e in top["episodes"]
    ]
    assert [r.find("td", "duration").text for r in rows] == ["5.1 s"] * 3
    assert not box.find_all("td", "open")
    # a consequence is worded open exactly when its last episode is open in the JSON
    still = [c["subject"] for c in top["consequences"] if c["episodes"][-1]["end"] is None]
    rows = block.find_all("tr", "consequence")
    assert [r.find("td", "subject").text for r in rows if r.find_all("td", "open")] == still
    bars = box.find("svg", "strip").find_all("rect", "episode")
    xs = [float(b.attrs["x"]) for b in bars]
    assert len(bars) == 3 and xs == sorted(xs) and not box.find_all("rect", "open")
    assert words(box.find("p", "when").text).startswith("3 episodes, 15.3 s in all")
    # its intermittent status is the same silences: under it; its periods broken by the
    # silences are no cycle violation at all (suppressed while the node is offline)
    folded = {g.attrs["data-code"] for g in block.find_all("div", "consequence-group")}
    assert folded == {c["code"] for c in top["consequences"]} == {"CAN_NODE_INTERMITTENT"}
    assert "CAN_CYCLE_VIOLATION" not in doc.text
    # the module came back: nothing is stale
    assert not doc.find_all(cls="stale-mark")
    contactors = section(doc, "contactors")[0]
    assert all(r.find_all("td")[-1].text == "current" for r in contactors.find_all("tr")[1:])


@pytest.mark.slow
def test_a_hostile_channel_in_a_finding_subject_stays_text(tmp_path: Path) -> None:
    channel = "X<img/src=x/onerror=alert(1)>"
    faults = [f"module_silent@{t}+5:module=3" for t in (20, 40, 60)]
    capture = simulate(tmp_path / "h.log", 90, *faults, channel=channel)
    report, doc, page = analyze(capture)
    subjects = [f["subject"] for f in report["findings"]] + [
        c["subject"] for f in report["findings"] for c in f.get("consequences", [])
    ]
    hostile = [s for s in subjects if "<img" in s]
    assert hostile, subjects
    assert not doc.find_all("img") and not doc.find_all("script")
    assert "<img" not in page
    blocks = top_findings(doc)
    assert {b.attrs["data-subject"] for b in blocks} & set(hostile)
    code_lines = [b.find("div", "code").text for b in blocks]
    assert any(h in line for h in hostile for line in code_lines)
    titles = [t.text for b in blocks for t in b.find_all("title")]
    assert any("<img" in t for t in titles)  # the strip's hover text, as text
    folded = [c["subject"] for f in report["findings"] for c in f.get("consequences", [])]
    cells = [r.find("td", "subject").text for r in doc.find_all("tr", "consequence")]
    assert folded and cells == folded  # each read back as the very text, markup and all


@pytest.mark.slow
def test_the_pdf_prints_the_consequences_and_open_episodes(
    ack_storm: tuple[dict[str, Any], Element, str], tmp_path: Path
) -> None:
    require_tool("chromium")
    from pypdf import PdfReader

    report, _, _ = ack_storm
    capture = Path(report["capture"]["path"])
    pdf = tmp_path / "ack.pdf"
    proc = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(capture), "--bitrate", "125000",
         "--pdf", str(pdf)],
        capture_output=True, text=True, timeout=180, cwd=capture.parent,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    text = " ".join(
        " ".join(unicodedata.normalize("NFKC", p.extract_text()).split())
        for p in PdfReader(pdf).pages
    )
    assert text.index("ACK errors on can0") < text.index("Consequences of this cause (11)")
    assert "11 nodes silent since" in text and OPEN_WORDS in text
    assert text.index("Consequences of this cause") < text.index("Key figures")


def test_render_report_of_a_dict_with_consequences_has_no_top_level_effects() -> None:
    effect = _finding("CAN_NODE_OFFLINE", "can0/imd/0", [(70, None)], consequence_of="X can0")
    cause = _finding("CAN_ERR_ACK", "can0", [(70, None)], consequences=[effect])
    report = {
        "capture": {"path": "x.log", "start": T0, "end": T0 + 200, "duration_s": 200.0,
                    "channels": ["can0"]},
        "frames": {"total": 10, "error": 5},
        "findings": [cause],
    }  # fmt: skip
    page = render_report(report, None, gather(report))
    doc = parse(page)
    assert _blocks(top_findings(doc)) == [("CAN_ERR_ACK", "can0")]
    assert [r.attrs["data-code"] for r in doc.find_all("tr", "consequence")] == ["CAN_NODE_OFFLINE"]


def test_a_subject_is_shortened_only_by_a_bus_name_the_capture_has() -> None:
    layout = Layout(None, buses=("X<img/src=x>", "can0"))
    assert layout.short("X<img/src=x>/power_module/3") == "power module 3"
    assert layout.short("can0/0x0283F003") == "0x0283F003"
    assert layout.short("can1/imd/0") == "can1/imd/0"  # not a bus of this capture: as it is
    assert layout.short("can0") == "can0"


PYCAN = Path(__file__).resolve().parent / "data" / "pycan"  # python-can's logs (MIT)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_CanErrorFrames.asc", "logfile_errorframes.asc"])
def test_python_cans_logs_render_the_findings_the_json_has(name: str, tmp_path: Path) -> None:
    """Captures candiag did not write, on their own clock: the same findings, in order, with
    their episodes told in the capture's seconds."""
    capture = tmp_path / name
    capture.write_bytes((PYCAN / name).read_bytes())
    report, doc, _ = analyze(capture)
    blocks = top_findings(doc)
    assert report["findings"] and _blocks(blocks) == _codes(report["findings"])
    for block, finding in zip(blocks, report["findings"], strict=True):
        box = block.find("div", "episodes")
        assert box.attrs["data-occurrences"] == str(finding["occurrences"])
        open_ = finding["episodes"][-1]["end"] is None
        assert box.attrs["data-open"] == ("yes" if open_ else "no")
        when = box.find("p", "when").text
        assert "t=" in when and "UTC" not in when  # not wall-clock time: not dressed as UTC
        assert (OPEN_WORDS in when) is open_


def test_thousands_of_episodes_draw_a_bounded_strip_that_still_names_the_first_and_last() -> None:
    axis = TimeAxis(T0, T0 + 3600)
    episodes = [
        StripEpisode(T0 + i * 0.36, T0 + i * 0.36 + 0.1, f"episode {i + 1}") for i in range(10_000)
    ]
    doc = parse(episode_strip(axis, [("x", episodes)], title="t"))
    bars = doc.find_all("rect", "episode")
    assert 1 <= len(bars) <= 400
    tips = [b.find("title").text for b in bars]
    assert "the first: episode 1;" in tips[0] and tips[-1].endswith("the last: episode 10000")
    apart = [StripEpisode(T0 + 600 * i, T0 + 600 * i + 1, str(i)) for i in range(5)]
    assert len(parse(episode_strip(axis, [("y", apart)], title="t")).find_all("rect", "episode")) == 5  # fmt: skip
