"""The HTML report a technician attaches to a ticket, and its PDF.

Unit tests of the parts (units, evidence words, the time axis, the charts, the signal
groups, the summary, the provenance), then the report of a real simulated capture through
the real CLI, then (slow) the same report rendered by a real headless Chromium: the DOM
it builds, a screenshot, and ``analyze --pdf`` read back with pypdf.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from external_tools import require_tool

from candiag import __version__
from candiag.cli import main
from candiag.decode.dbc import reference_dbc_dir
from candiag.errors import InputError
from candiag.report.evidence import evidence_rows, label
from candiag.report.html import summary_text
from candiag.report.pdf import find_browser
from candiag.report.provenance import FileFacts, Provenance, file_facts
from candiag.report.signals import signal_groups
from candiag.report.svg import Threshold, TimeAxis, line_chart, nice_ticks, presence_timeline
from candiag.report.units import quantity, scale, symbol

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START = 1_700_000_000.0  # the simulator's default start: 2023-11-14 22:13:20 UTC


# -- units and words ---------------------------------------------------------------------------


def test_units_as_a_technician_writes_them() -> None:
    assert quantity(3_445_000, "Ohm") == "3.445 MΩ"
    assert quantity(47_000, "Ohm") == "47 kΩ"
    assert quantity(820, "ohm") == "820 Ω"
    assert quantity(25.1, "degC") == "25.1 °C"
    assert quantity(245_549, "W") == "245.5 kW"
    assert quantity(767.397, "V") == "767.4 V", "volts of a DC charger stay in V"
    assert quantity(None, "V") == "-"
    assert symbol("<b>") == "<b>", "unknown units pass unchanged (escaped by the caller)"
    # One divisor per row, chosen by its largest figure.
    assert scale([999.0, 1_500_000.0, None], "Ohm") == (1e6, "MΩ")


def test_evidence_keys_are_shown_in_words() -> None:
    assert label("silent_s") == ("Silent for", "s")
    assert label("rate_ratio")[0] == "Frame rate against the declared cycle"
    # A key no one described yet is still words, with its window and unit understood.
    assert label("stuffed_frames_60s") == ("Stuffed frames (last 60 s)", "")
    assert label("gap_s") == ("Gap", "s")
    rows = dict(
        evidence_rows(
            {
                "last_seen": START + 39,
                "silent_s": 0.011,
                "load_ratio_10s": 0.734,
                "by_class_60s": {"ack": 3, "form": 1},
                "tec": 128,
                "timeout_s": 7190,
            }
        )
    )
    assert rows == {
        "Last frame seen": "2023-11-14 22:13:59 UTC",
        "Silent for": "0.011 s",
        "Bus load (last 10 s)": "73.4 %",
        "Error frames by class (last 60 s)": "ack: 3, form: 1",
        "Transmit error counter (TEC)": "128",
        "Timeout": "7,190 s (2.0 h)",
    }


# -- the time axis and the charts ----------------------------------------------------------------


def test_time_axis_ticks_fall_on_round_utc_times() -> None:
    axis = TimeAxis(START + 0.4, START + 40.0)
    ticks = axis.ticks()
    assert 3 <= len(ticks) <= 7
    assert all(t % 10 == 0 for t in ticks), ticks  # 40 s: a tick every 10 s
    assert [axis.clock(t) for t in ticks[:2]] == ["22:13:30", "22:13:40"]
    assert axis.elapsed(START + 70.4) == "+1:10"
    assert "UTC (2023-11-14)" in axis.caption()
    hour = TimeAxis(START, START + 7200)
    assert {round(b - a) for a, b in zip(hour.ticks(), hour.ticks()[1:], strict=False)} == {1800}
    # Whole-minute ticks drop the seconds; a span over midnight names both dates.
    assert [hour.clock(t) for t in hour.ticks()] == ["22:30", "23:00", "23:30", "00:00"]
    assert "UTC (2023-11-14 to 2023-11-15)" in hour.caption()
    assert TimeAxis(START, START + 2 * 86400).clock(START) == "11-14 22:13"


def test_a_capture_whose_clock_was_never_set_is_labelled_in_its_own_seconds() -> None:
    axis = TimeAxis(12.5, 300.0)
    assert not axis.wall_clock
    assert axis.clock(60.0) == "t=60 s"
    assert "not wall-clock time" in axis.caption()
    assert "UTC" not in axis.moment(60.0)


def test_nice_ticks() -> None:
    assert nice_ticks(0, 100, 6) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(24.94, 30.34) == [24, 26, 28, 30, 32]


class _Svg(HTMLParser):
    """Texts of an SVG fragment by element class, and its <title>s."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str]] = []
        self.texts: dict[str, list[str]] = {}
        self.titles: list[str] = []
        self.lines: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack.append((tag, dict(attrs).get("class") or ""))
        if tag in ("line", "polyline"):
            self.lines.append(dict(attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("line", "polyline"):
            self.lines.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        if not self.stack:
            return
        tag, cls = self.stack[-1]
        if tag == "title":
            self.titles.append(data)
        elif tag == "text":
            self.texts.setdefault(cls, []).append(data)


def _parse(fragment: str) -> _Svg:
    parser = _Svg()
    parser.feed(fragment)
    return parser


def test_bus_load_is_drawn_on_0_to_100_percent_with_its_warning_line() -> None:
    t = [START + i for i in range(40)]
    svg = line_chart(
        TimeAxis(t[0], t[-1] + 1),
        t,
        {"bus load": [26.0] * 40},
        title="Bus load",
        unit="%",
        y_range=(0.0, 100.0),
        thresholds=[Threshold(70.0, "warning 70%")],
    )
    parsed = _parse(svg)
    assert parsed.texts["ytick"] == ["0%", "20%", "40%", "60%", "80%", "100%"]
    assert parsed.texts["xtick"][:3] == ["22:13:20", "22:13:30", "22:13:40"]
    assert "warning 70%" in svg
    (threshold,) = [line for line in parsed.lines if line.get("class") == "threshold"]
    # y of 70 % on a 0-100 scale: 30 % down the plot area.
    from candiag.report.svg import BOTTOM, TOP, H

    assert float(threshold["y1"] or 0) == pytest.approx(TOP + 0.3 * (H - TOP - BOTTOM), abs=0.1)


def test_overlapping_series_differ_in_dash_and_say_so_and_hover_gives_every_value() -> None:
    t = [START + i for i in range(30)]
    # A ramp 0..87 A where the four modules differ by hundredths: one line to the eye.
    series = {f"power module {n}": [3.0 * i + 0.01 * n for i in range(30)] for n in range(1, 5)}
    svg = line_chart(TimeAxis(t[0], t[-1] + 1), t, series, title="Output current (A)", unit="A")
    parsed = _parse(svg)
    lines = [x for x in parsed.lines if x.get("class") == "series"]
    assert len({(x["stroke"], x.get("stroke-dasharray")) for x in lines}) == 4
    assert len({x.get("stroke-dasharray") for x in lines}) == 4, "colour alone is not enough"
    assert "The 4 lines lie on top of each other" in svg
    hover = [title for title in parsed.titles if title.startswith("22:13:")]
    assert len(hover) == 30  # one column per second here
    assert hover[5].splitlines() == [
        f"22:13:25 UTC (+0:05, capture t={START + 5:.0f})",
        "power module 1: 15.01 A",
        "power module 2: 15.02 A",
        "power module 3: 15.03 A",
        "power module 4: 15.04 A",
    ]


def test_distinct_series_get_no_overlap_note_and_names_are_escaped() -> None:
    t = [START + i for i in range(10)]
    svg = line_chart(
        TimeAxis(t[0], t[-1] + 1),
        t,
        {"<script>x</script>": list(range(10)), "b": [5.0] * 10},
        title="<b>t</b>",
    )
    assert "lie on top" not in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg


def test_presence_timeline_has_hover_runs_and_utc_ticks() -> None:
    t = [START + i for i in range(20)]
    counts = [10] * 8 + [0] * 4 + [10] * 8
    svg = presence_timeline(
        TimeAxis(t[0], t[-1] + 1), t, {"power module 3": counts}, title="presence"
    )
    parsed = _parse(svg)
    runs = [x for x in parsed.titles if "transmitting from" in x]
    assert runs == [
        f"power module 3: transmitting from 22:13:20 UTC (+0:00, capture t={START:.0f}) to "
        "22:13:28 (8 s, 80 frames)",
        f"power module 3: transmitting from 22:13:32 UTC (+0:12, capture t={START + 12:.0f}) to "
        "22:13:40 (8 s, 80 frames)",
    ]
    assert "22:13:30" in parsed.texts["xtick"]


# -- the signals table ------------------------------------------------------------------------


def _sig(message: str, signal: str, node: int | None, unit: str, role: str | None, lo: float, hi: float) -> dict[str, Any]:  # fmt: skip
    return {"message": message, "signal": signal, "node": node, "unit": unit, "role": role,
            "min": lo, "max": hi, "mean": (lo + hi) / 2, "last": hi}  # fmt: skip


def test_signals_grouped_by_node_and_message_with_counters_and_bits_folded() -> None:
    signals = {
        "ModuleStatus.ModuleTemperature[2]": _sig(
            "ModuleStatus", "ModuleTemperature", 2, "degC", "temperature", 25, 29
        ),
        "ModuleStatus.fault_alarm[2]": _sig(
            "ModuleStatus", "fault_alarm", 2, "", "alarm:fault", 0, 1
        ),
        "ModuleStatus.fan_fault_alarm[2]": _sig(
            "ModuleStatus", "fan_fault_alarm", 2, "", "alarm:fan", 0, 0
        ),
        "ModuleStatus.Counter[2]": _sig("ModuleStatus", "Counter", 2, "", "counter", 0, 15),
        "ModuleStatus.dc_side_off[2]": _sig("ModuleStatus", "dc_side_off", 2, "", None, 0, 1),
        "ModuleStatus.ModuleTemperature[1]": _sig(
            "ModuleStatus", "ModuleTemperature", 1, "degC", "temperature", 25, 28
        ),
        "IMD_Info.IMD_R_ISO": _sig(
            "IMD_Info", "IMD_R_ISO", None, "Ohm", None, 3_445_000, 3_599_000
        ),
    }
    families = {"ModuleStatus": "power_module", "IMD_Info": "imd"}
    groups = signal_groups(signals, families)
    assert [g.label for g in groups] == ["imd", "power module 1", "power module 2"]
    html = groups[2].html()
    shown, _, folded = html.partition("<details")
    assert "ModuleTemperature" in shown and "°C" in shown
    assert "fault_alarm" not in shown and "Counter" not in shown and "dc_side_off" not in shown
    summary = re.search(r"<summary>(.*?)</summary>", folded)
    assert summary is not None
    assert summary[1] == "3 status bits, 1 counter; set at some time: dc_side_off, fault_alarm"
    assert "<tr class='msg'><th colspan='6'>ModuleStatus</th></tr>" in shown
    imd = groups[0].html()
    assert "<td class='num'>3.445</td><td class='num'>3.599</td>" in imd and "MΩ" in imd


# -- summary and provenance -------------------------------------------------------------------


def _report(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "capture": {
            "path": "x.log",
            "channels": ["can0"],
            "start": START,
            "end": START + 600,
            "duration_s": 600.0,
            "malformed_lines": 0,
        },
        "frames": {"total": 120_000, "error": 0},
        "bus_off_events": 0,
        "bus_load": {"mean_ratio": 0.26, "max_ratio_1s": 0.31},
        "bitrate": {"bitrate": 125000, "source": "recording", "known": True, "detail": ""},
        "nodes": [
            {"family": "power_module", "address": 1, "status": "online"},
            {"family": "power_module", "address": 3, "status": "offline"},
        ],
        "findings": [],
        "decode": {"decoded_frames": 120_000, "dbc": {"files": []}},
        "signals": {},
        "ids": {},
        "firmware_mismatches": [],
        "notes": [],
    }
    report.update(changes)
    return report


PROV = Provenance(
    capture=FileFacts("x.log"), adapter="pcan, channel PCAN_USBBUS1", load_warning=0.7
)


def test_summary_reads_as_one_paragraph_for_a_service_manager() -> None:
    finding = {"severity": "critical", "title": "power module 3 stopped transmitting",
               "fix": "Check the CAN connector of module 3."}  # fmt: skip
    text = summary_text(_report(findings=[finding]), PROV)
    assert text == (
        "A 10.0 min recording of the CAN bus can0 starting 2023-11-14 22:13:20 UTC "
        "(120,000 frames). candiag found 1 critical problem: power module 3 stopped "
        "transmitting. First step: Check the CAN connector of module 3. On the bus: 1 of 2 "
        "known nodes silent (power module 3); no error frames; bus load 26% on average (peak "
        "31%, warning level 70%)."
    )


def test_summary_says_what_is_not_known() -> None:
    assumed = {"bitrate": 125000, "source": "assumed", "known": False, "detail": "assumed"}
    text = summary_text(_report(bitrate=assumed, findings=[]), PROV)
    assert "bitrate was not known but assumed" in text
    assert "No findings in 120,000 frames" in text


def test_file_facts_hash_the_file_and_never_invent_one(tmp_path: Path) -> None:
    capture = tmp_path / "c.log"
    capture.write_bytes(b"(1.0) can0 123#00\n" * 1000)
    facts = file_facts(str(capture))
    assert facts.size == 18_000
    assert facts.sha256 == hashlib.sha256(capture.read_bytes()).hexdigest()
    assert file_facts("-").sha256 is None and "standard input" in file_facts("-").problem
    gone = file_facts(str(tmp_path / "gone.log"))
    assert gone.sha256 is None and gone.size is None and "not readable" in gone.problem


def test_a_report_of_dict_or_object_reads_the_same() -> None:
    from types import SimpleNamespace

    report = _report()
    as_object = SimpleNamespace(**dict(report.items()))
    as_object.capture = SimpleNamespace(**report["capture"])
    assert summary_text(as_object, PROV) == summary_text(report, PROV)


# -- the report of a real capture, through the CLI --------------------------------------------


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("capture") / "dup.log"
    assert main(["simulate", "-o", str(path), "-d", "40", "--scenario", "duplicate_address"]) == 0
    return path


@pytest.fixture(scope="module")
def report_html(capture: Path) -> Path:
    html = capture.with_name("report.html")
    assert main(["analyze", str(capture), "--bitrate", "125000", "--html", str(html)]) == 0
    return html


def _positions(page: str, markers: list[str]) -> list[int]:
    return [page.index(m) for m in markers]


def test_report_sections_in_order(report_html: Path) -> None:
    page = report_html.read_text()
    order = [
        "id='header'",
        "id='summary'",
        "<h2 id='findings'>Findings",
        "<h2 id='figures'>",
        "<h2 id='charts'>Over time",
        "<h2 id='nodes'>Nodes",
        "<h2 id='firmware'>Firmware",
        "<h2 id='ids'>Identifiers",
        "<h2 id='signals'>Signals",
    ]
    positions = _positions(page, order)
    assert positions == sorted(positions)
    assert "Two power modules share address 2" in page
    assert page.count("<svg") >= 4  # load, presence, at least two signal charts
    assert "src=" not in page and "<link" not in page and "url(" not in page
    assert "<script" not in page


def test_report_header_names_what_a_manufacturer_needs(report_html: Path, capture: Path) -> None:
    page = report_html.read_text()
    header = page[page.index("id='header'") : page.index("id='summary'")]
    digest = hashlib.sha256(capture.read_bytes()).hexdigest()
    assert f"{capture.stat().st_size:,} bytes" in header and digest in header
    assert "2023-11-14 22:13:20 UTC to 2023-11-14 22:13:59 UTC (40.0 s" in header
    assert "simulator, channel can0" in header  # from the recording's metadata
    assert "125,000 bit/s, <span>given on the command line</span>" in header
    assert f"candiag {__version__}" in header
    for dbc in sorted(reference_dbc_dir().glob("*.dbc")):
        assert (
            f"{dbc.name} · <span class='hash'>{hashlib.sha256(dbc.read_bytes()).hexdigest()}"
            in header
        )


def test_report_charts_use_utc_ticks_a_fixed_load_scale_and_words(report_html: Path) -> None:
    page = report_html.read_text()
    charts = _parse(page[page.index("<h2 id='charts'>") : page.index("<h2 id='nodes'>")])
    assert {"22:13:30", "22:13:40", "22:13:50"} <= set(charts.texts["xtick"])
    assert "+0:10" in charts.texts["xtick-elapsed"]
    assert charts.texts["ytick"][:6] == ["0%", "20%", "40%", "60%", "80%", "100%"]
    assert "warning 70%" in page  # the shipped rule book's bus_load_warning
    assert "Coolant temperature (°C)" in page and "degC" not in page.split("id='signals'")[0]
    assert sum(1 for t in charts.titles if t.startswith("22:13:")) > 100  # hover columns
    findings = page[page.index("id='findings'") : page.index("id='figures'")]
    assert "Frame rate against the declared cycle" in findings and "rate_ratio" not in findings
    signals = page[page.index("<h2 id='signals'>") :]
    assert "<h3>power module 1</h3>" in signals and "<details class='folded'>" in signals
    assert "MΩ" in signals  # the IMD's insulation resistance, scaled


def test_a_relative_time_capture_is_not_dressed_up_as_utc(tmp_path: Path) -> None:
    capture = tmp_path / "rel.log"
    assert main(["simulate", "-o", str(capture), "-d", "15", "--start-time", "0"]) == 0
    html = tmp_path / "rel.html"
    assert main(["analyze", str(capture), "--html", str(html)]) == 0
    page = html.read_text()
    assert "not wall-clock time" in page
    charts = _parse(page[page.index("<h2 id='charts'>") : page.index("<h2 id='nodes'>")])
    assert all(t.startswith("t=") for t in charts.texts["xtick"]), charts.texts["xtick"]
    assert "1970-01-01" not in page.split("id='findings'")[0]


def test_pdf_to_standard_output_is_refused(
    capture: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(capture), "--pdf", "-"]) == 2
    assert "not written to standard output" in capsys.readouterr().err


@pytest.mark.slow
def test_pdf_without_a_browser_is_refused_before_the_analysis(
    capture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CANDIAG_CHROMIUM", raising=False)
    with pytest.raises(InputError, match="apt install chromium"):
        find_browser()
    proc = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(capture), "--pdf", str(tmp_path / "r.pdf")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "--pdf needs a headless Chromium" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.pdf").exists()
    assert "frames over" not in proc.stdout, "refused before the analysis ran"


# -- a real headless Chromium ------------------------------------------------------------------


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--dump-dom",
            report_html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Two power modules share address 2" in dom.stdout
    # The DOM Chromium built has the elements, in the order the reader needs them.
    positions = _positions(
        dom.stdout,
        ['id="header"', 'id="summary"', 'id="findings"', 'id="charts"', 'id="signals"'],
    )
    assert positions == sorted(positions)
    charts = _parse(dom.stdout[dom.stdout.index('id="charts"') :])
    assert {"22:13:30", "22:13:40"} <= set(charts.texts["xtick"])
    assert "Size and SHA-256" in dom.stdout and "given on the command line" in dom.stdout
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            report_html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


@pytest.mark.slow
def test_analyze_pdf_prints_the_same_report(capture: Path, tmp_path: Path) -> None:
    require_tool("chromium")
    from pypdf import PdfReader

    pdf = tmp_path / "report.pdf"
    proc = subprocess.run(
        [sys.executable, "-m", "candiag", "analyze", str(capture), "--pdf", str(pdf)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert pdf.read_bytes()[:5] == b"%PDF-"
    reader = PdfReader(pdf)
    assert len(reader.pages) >= 3
    # NFKC: Chromium's PDF text uses ligatures ("ﬁ").
    first = unicodedata.normalize("NFKC", reader.pages[0].extract_text())
    flat = " ".join(first.split())
    digest = hashlib.sha256(capture.read_bytes()).hexdigest()
    for expected in (
        "CAN bus report: dup.log",
        f"{capture.stat().st_size:,} bytes",
        digest,
        "2023-11-14 22:13:20 UTC to 2023-11-14 22:13:59 UTC",
        "125,000 bit/s, recorded with the capture",
        f"candiag {__version__}",
        "power_module.dbc",
        "A 40.0 s recording of the CAN bus can0",
        "candiag found 1 critical problem: Two power modules share address 2",
    ):
        assert expected in flat, expected
    # The first page leads with the summary and the findings (with their episodes, the key
    # figures may follow on the next page).
    assert flat.index("A 40.0 s recording") < flat.index("Findings")
    assert "still present at the end of the capture" in flat  # the finding's episode
    # Printed, the likely causes are unfolded (a PDF cannot be clicked open).
    assert "Likely causes, most likely first 1." in flat
    text = " ".join(
        " ".join(unicodedata.normalize("NFKC", p.extract_text()).split()) for p in reader.pages
    )
    assert text.index("Findings") < text.index("Key figures") < text.index("Over time")
    assert text.index("Over time") < text.index("Signals")
    assert "22:13:30" in text and "22:13:40" in text, "chart ticks in UTC"
    assert "time: UTC (2023-11-14)" in text


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"nodes": []},
        {"nodes": [{"family": "imd", "address": 0, "status": "online"}]},
        {"frames": {"total": 10, "error": 3}, "firmware_mismatches": [{"family": "x"}]},
    ],
)
def test_all_clear_text_says_only_what_is_true(changes: dict[str, Any]) -> None:
    from candiag.report.allclear import all_clear_text

    report = _report(**changes)
    text = all_clear_text(report)
    frames = report["frames"]
    nodes = report.get("nodes") or []
    assert text.startswith(f"No findings in {frames['total']:,} frames")
    assert ("zero error frames" in text) is (frames.get("error") == 0)
    assert ("nodes present" in text) is bool(nodes and all(n["status"] == "online" for n in nodes))
    assert ("firmware consistent" in text) is bool(nodes and not report.get("firmware_mismatches"))
