"""``candiag analyze CAPTURE``: bus health, nodes, firmware and findings of a capture.

Prints a readable summary (findings and their fixes first) and optionally writes
the full JSON (``--json``) and a self-contained HTML report (``--html``) to attach
to a ticket.  Bitrate: ``--bitrate``, else the config's bus, else what the capture
says (candiag recordings carry it) or its frame spacing shows, else an assumption that
every output marks as such.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from candiag.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from candiag.analysis_report import AnalysisReport
    from candiag.config.model import BusConfig
    from candiag.health.report import LoadReport, TimelineReport

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {
    "online": "green",
    "offline": "bold red",
    "duplicate": "bold red",
    "intermittent": "yellow",
}


def register(subparsers: Any) -> None:
    from candiag.cli.args import (
        add_command,
        add_config_argument,
        add_dbc_argument,
        add_quiet_argument,
    )
    from candiag.health.defaults import DEFAULT_BITRATE

    parser = add_command(
        subparsers,
        "analyze",
        help="bus health, nodes, firmware and findings of a capture file",
        description=(
            "Analyze a capture (candump -L .log/.log.gz, ASC, BLF, TRC, CSV, candump screen "
            "output, MF4; the format is told from the content, so standard input works too): "
            "error frames by class, bus state and bus-off events, exact bus load, per-id "
            "periods, node presence, firmware consistency, decoded signal ranges, and "
            "findings with their fixes. A summary goes to stdout; --json and --html write "
            "the full report, and each file written is named on stderr."
        ),
        example_lines=(
            "candiag analyze can0-2026-11-21.log.gz",
            "candiag analyze trace.asc --html report.html --json report.json",
            "candump -L can0 | candiag analyze -",
            "candiag analyze can0.log --json - | jq .findings",
            "candiag analyze can0.log --config /etc/candiag/candiag.toml --fail-on critical",
        ),
    )
    parser.add_argument("capture", help="the capture file, or - to read it from standard input")
    add_dbc_argument(
        parser, "DBC file or folder (repeatable; default: the reference DBCs, or the config's)"
    )
    add_config_argument(parser, "candiag config: bitrate, DBCs, node families")
    parser.add_argument(
        "--bus", metavar="NAME", help="which [[can.buses]] entry of --config (default: the first)"
    )
    parser.add_argument(
        "-b",
        "--bitrate",
        type=int,
        metavar="N",
        help="nominal bitrate in bit/s (default: the config's, else the one recorded with "
        "the capture, else inferred from frame spacing, else assumed "
        f"{DEFAULT_BITRATE} and marked so)",
    )
    parser.add_argument("--data-bitrate", type=int, metavar="N", help="CAN FD data-phase bitrate")
    parser.add_argument(
        "--json", metavar="FILE", help="write the full report as JSON ('-' for stdout)"
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument(
        "--pdf",
        metavar="FILE",
        help="write the same report as PDF (needs a headless Chromium or Chrome on PATH)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse DBCs cantools' strict mode refuses (default: load them, with warnings; "
        "also the config's dbc_strict)",
    )
    parser.add_argument(
        "--fail-on",
        choices=("critical", "warning"),
        help="exit with status 1 when a finding of this severity (or worse) was found",
    )
    add_quiet_argument(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.analysis import analyze_capture
    from candiag.cli.outputs import check_outputs, write_text, wrote
    from candiag.cli.progress import capture_batches, progress
    from candiag.decode.dbc import load_dbc_paths
    from candiag.diagnosis.engine import load_rulebook
    from candiag.health.nodes import FamilyPolicy

    if args.pdf == "-":
        raise InputError("--pdf -: a PDF is not written to standard output; give a file name")
    check_outputs([args.json, args.html, args.pdf], [args.capture])
    browser = _pdf_browser() if args.pdf else None
    if args.bitrate is not None and not 1_000 <= args.bitrate <= 1_000_000:
        raise InputError(
            f"--bitrate {args.bitrate} is not a classic CAN bitrate (1000..1000000 bit/s)"
        )
    dbc_paths: list[Any] = list(args.dbc or [])
    strict: bool = args.strict
    policies: list[FamilyPolicy] = []
    thresholds_file = None
    config_bitrate: int | None = None
    data_bitrate: int | None = args.data_bitrate
    if args.config:
        bus, thresholds_file = _config_bus(args.config, args.bus)
        config_bitrate = bus.bitrate if bus.bitrate_set else None
        data_bitrate = data_bitrate or bus.data_bitrate
        dbc_paths = dbc_paths or list(bus.dbc)
        strict = strict or bus.dbc_strict
        policies = [
            FamilyPolicy(
                f.name,
                expected=frozenset(f.expected),
                timeout_s=f.timeout_s,
                allowed_firmware=frozenset(f.allowed_firmware),
            )
            for f in bus.families
        ]
    # Without --dbc or a config, the reference DBCs are applied only where the traffic
    # matches them (candiag.decode.identify); given DBCs are applied as given.
    db = load_dbc_paths(dbc_paths, strict=strict) if dbc_paths else None
    book = load_rulebook(thresholds_file)
    with progress(f"analyzing {_short_name(args.capture)}", quiet=args.quiet) as update:
        result = analyze_capture(
            args.capture,
            db,
            bitrate=args.bitrate,
            config_bitrate=config_bitrate,
            data_bitrate=data_bitrate,
            policies=policies,
            book=book,
            keep_history=bool(args.html or args.pdf),
            progress=lambda reader, batches: capture_batches(reader, batches, update),
        )
    report = result.report
    if args.json == "-":
        json.dump(report.to_json(), sys.stdout, indent=1, default=_json_default)
        sys.stdout.write("\n")
        sys.stdout.flush()
    else:
        print_summary(report)
        if args.json:
            text = json.dumps(report.to_json(), indent=1, default=_json_default)
            write_text(args.json, text + "\n")
            wrote(args.json)
    if args.html or args.pdf:
        _write_report(args, result.report, result.timeline, book.t("bus_load_warning"), browser)
    return _exit_status(report, args.fail_on)


def _short_name(path: str) -> str:
    """A capture's name for the progress line: the file name, or ``<stdin>``."""
    from candiag.capture.source import capture_name

    return Path(capture_name(path)).name if path != "-" else capture_name(path)


def _pdf_browser() -> str:
    """The browser --pdf prints with, found before the analysis starts."""
    from candiag.report.pdf import find_browser

    return find_browser()


def _write_report(
    args: argparse.Namespace,
    report: AnalysisReport,
    timeline: TimelineReport | None,
    load_warning: float,
    browser: str | None,
) -> None:
    from candiag.cli.outputs import write_text, wrote
    from candiag.report.html import render_report
    from candiag.report.provenance import gather

    # The HTML renders the document --json writes (the same keys, golden-tested), so the two
    # outputs of one analysis cannot disagree.
    document = report.to_json()
    series = None if timeline is None else timeline.columns()
    provenance = gather(document, load_warning=load_warning)
    if args.html:
        write_text(args.html, render_report(document, series, provenance))
        wrote(args.html)
    if args.pdf:
        from candiag.report.pdf import print_pdf

        print_pdf(render_report(document, series, provenance, for_print=True), args.pdf, browser)
        wrote(args.pdf)


def _config_bus(path: str, name: str | None) -> tuple[BusConfig, Path | None]:
    from candiag.config.load import load_config

    config = load_config(path)
    if not config.buses:
        raise InputError(f"{path}: no [[can.buses]] configured; add one or use --bitrate/--dbc")
    if name is None:
        return config.buses[0], config.diagnosis.thresholds_file
    for bus in config.buses:
        if bus.name == name:
            return bus, config.diagnosis.thresholds_file
    names = ", ".join(b.name for b in config.buses)
    raise InputError(f"--bus {name}: no such bus in {path} (configured: {names})")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _exit_status(report: AnalysisReport, fail_on: str | None) -> int:
    if fail_on is None:
        return 0
    worst = {"critical": ("critical",), "warning": ("critical", "warning")}[fail_on]
    return 1 if any(f.severity in worst for f in report.findings) else 0


def print_summary(report: AnalysisReport) -> None:
    """The readable summary: capture, health figures, findings with fixes, nodes."""
    from rich.markup import escape
    from rich.table import Table

    from candiag.cli.outputs import text_console
    from candiag.report.allclear import all_clear_text

    console = text_console()
    cap = report.capture
    frames = report.frames
    load = report.bus_load
    ef = report.error_frames
    console.print(
        f"[bold]{escape(str(cap.path))}[/]: {frames.total:,} frames over "
        f"{cap.duration_s:.1f} s ({frames.data:,} data, {frames.remote:,} remote, "
        f"{frames.error:,} error); {cap.malformed_lines:,} malformed lines; "
        f"read as {escape(str(cap.format or '?'))}"
    )
    classes = ", ".join(f"{k} {v}" for k, v in ef.by_class.items() if v) or "none"
    console.print(
        f"Bus load {escape(_load_text(load))}; error frames: {escape(classes)}; bus-off events "
        f"{report.bus_off_events:,}; TEC/REC max "
        f"{escape(str(ef.tec_max))}/{escape(str(ef.rec_max))}"
    )
    findings = report.findings
    if not findings:
        console.print(f"[green]{escape(all_clear_text(report.to_json()))}[/]")
    for f in findings:
        style = SEVERITY_STYLE.get(f.severity, "")
        cleared = " (cleared)" if f.cleared_at is not None else ""
        console.print(
            f"[{style}]{escape(f.severity.upper())}[/] {escape(f.title)}{escape(cleared)} "
            f"[dim]{escape(f.code)}[/]"
        )
        console.print(f"    fix: {escape(f.fix)}")
        if len(f.episodes) > 1:
            total = f.episodes_json().get("duration_s") or 0.0
            episodes = f"{len(f.episodes)} episodes ({total:.1f} s in all)"
            console.print(f"    {escape(episodes)}")
        for c in f.consequences:  # folded under their cause (docs/diagnosis.md)
            console.print(f"    [dim]consequence: {escape(c.title)} {escape(c.code)}[/]")
    nodes = report.nodes
    if nodes:
        table = Table("family", "address", "status", "frames", "firmware", "alarms", box=None)
        for n in nodes:
            status = n.status
            table.add_row(
                escape(n.family),
                str(n.address),
                f"[{STATUS_STYLE.get(status, '')}]{escape(status)}[/]",
                f"{n.frames:,}",
                escape(n.firmware or "-"),
                escape(", ".join(n.alarms) or "-"),
            )
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")


def _load_text(load: LoadReport) -> str:
    """The load figures with the bitrate they rest on and how that bitrate is known."""
    source = load.bitrate_source or "flag"
    how = {
        "flag": "given",
        "config": "from the config",
        "recording": "recorded with the capture",
        "inferred": "inferred from frame spacing",
        "assumed": "ASSUMED, not known",
    }.get(source, source)
    at = f"at {load.bitrate:,} bit/s ({how})"
    if load.mean_ratio is None:
        return f"not measurable ({load.note or 'no load figure'}) {at}"
    return f"{load.mean_ratio:.1%} mean, {load.max_ratio_1s:.1%} max (1 s) {at}"
