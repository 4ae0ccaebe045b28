"""The HTML report renders in a real headless Chromium, with no external assets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from external_tools import require_tool

from candiag.cli import main

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


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    capture = tmp / "dup.log"
    assert (
        main(["simulate", "-o", str(capture), "-d", "40", "--scenario", "duplicate_address"]) == 0
    )
    html = tmp / "report.html"
    assert main(["analyze", str(capture), "--bitrate", "125000", "--html", str(html)]) == 0
    return html


def test_report_sections_in_order(report_html: Path) -> None:
    page = report_html.read_text()
    order = [
        "<h2>Summary",
        "<h2>Findings",
        "<h2>Over time",
        "<h2>Nodes",
        "<h2>Firmware",
        "<h2>Identifiers",
        "<h2>Signals",
    ]
    positions = [page.index(h) for h in order]
    assert positions == sorted(positions)
    assert "Two power modules share address 2" in page
    assert page.count("<svg") >= 4  # load, presence, at least two signal charts
    assert "src=" not in page and "<link" not in page and "url(" not in page


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
    assert "<svg" in dom.stdout
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
