"""``--pdf``: the HTML report printed to PDF by a headless Chromium, when one is installed.

Tickets often take only PDFs.  A PDF library in Python (weasyprint, reportlab) would add
a large dependency tree for one output and lay out the SVG charts differently from the
HTML; a Chromium or Chrome the machine already has prints exactly what the HTML shows,
with no new Python dependency.  It is looked for on ``PATH`` (``chromium``,
``chromium-browser``, ``google-chrome``, ``google-chrome-stable``, ``microsoft-edge``) or
given as ``CANDIAG_CHROMIUM``; when none is found the error names what to install, before
any analysis starts (:func:`find_browser`).

The browser runs headless on a local file with a throw-away profile, no network access
of its own beyond what a local file asks for (the report asks for none).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from candiag.errors import InputError

BROWSERS = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "microsoft-edge",
)
ENV = "CANDIAG_CHROMIUM"
TIMEOUT_S = 120.0
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-pdf-header-footer",
)


def find_browser() -> str:
    """The Chromium-family browser to print with, or an error saying what to install."""
    given = os.environ.get(ENV)
    if given:
        found = shutil.which(given)
        if found is None:
            raise InputError(
                f"--pdf: {ENV}={given} is not an executable; point it at a Chromium or Chrome "
                "binary, or unset it"
            )
        return found
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise InputError(
        "--pdf needs a headless Chromium or Google Chrome to print the report, and none is on "
        f"PATH (looked for {', '.join(BROWSERS)}). Install one (Debian/Ubuntu: "
        "apt install chromium; Windows/macOS: Google Chrome), or set "
        f"{ENV} to its path; or write --html and print that from any browser"
    )


def print_pdf(html: str, pdf_path: str, browser: str | None = None) -> None:
    """Print the HTML document ``html`` to ``pdf_path`` (written whole or not at all)."""
    browser = browser or find_browser()
    target = Path(pdf_path)
    with tempfile.TemporaryDirectory(prefix="candiag-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(html, "utf-8", newline="\n")
        out = Path(tmp) / "report.pdf"
        command = [
            browser,
            *FLAGS,
            *(["--no-sandbox"] if _is_root() else []),
            f"--user-data-dir={Path(tmp) / 'profile'}",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ]
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise InputError(
                f"--pdf: {browser} did not print the report within {TIMEOUT_S:.0f} s; "
                "write --html and print it from a browser"
            ) from err
        except OSError as err:
            raise InputError(f"--pdf: cannot start {browser}: {err.strerror}") from err
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            tail = " ".join(proc.stderr.split()[-40:])
            raise InputError(
                f"--pdf: {browser} could not print the report (exit {proc.returncode}): {tail}"
            )
        tmp_target = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            shutil.copyfile(out, tmp_target)
            os.replace(tmp_target, target)
        except OSError as err:
            tmp_target.unlink(missing_ok=True)
            raise InputError(
                f"cannot write {pdf_path}: {err.strerror}; choose another path"
            ) from err


def _is_root() -> bool:
    """Chromium refuses to run as root with its sandbox (containers, CI)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0
