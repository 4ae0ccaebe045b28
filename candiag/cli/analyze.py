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
from typing import TYPE_CHECKING, Any

from candiag.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from candiag.config.model import BusConfig

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {
    "online": "green",
    "offline": "bold red",
    "duplicate": "bold red",
    "intermittent": "yellow",
}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "analyze",
        help="bus health, nodes, firmware and findings of a capture file",
        description=(
            "Analyze a capture (candump -L .log/.log.gz, ASC, BLF, TRC, CSV): error frames by "
            "class, bus state and bus-off events, exact bus load, per-id periods, node presence, "
            "firmware consistency, decoded signal ranges, and findings with their fixes."
        ),
    )
    parser.add_argument("capture", help="the capture file, or - to read it from standard input")
    parser.add_argument(
        "--dbc",
        action="append",
        metavar="PATH",
        help="DBC file or folder (repeatable; default: the reference DBCs, or the config's)",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="candiag config: bitrate, DBCs, node families"
    )
    parser.add_argument(
        "--bus", metavar="NAME", help="which [[can.buses]] entry of --config (default: the first)"
    )
    parser.add_argument(
        "--bitrate",
        type=int,
        metavar="N",
        help="nominal bitrate in bit/s (default: the config's, else the one recorded with "
        "the capture, else inferred from frame spacing, else assumed and marked so)",
    )
    parser.add_argument("--data-bitrate", type=int, metavar="N", help="CAN FD data-phase bitrate")
    parser.add_argument(
        "--json", metavar="FILE", help="write the full report as JSON ('-' for stdout)"
    )
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
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
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.analysis import analyze_capture
    from candiag.cli.outputs import check_outputs, write_text
    from candiag.decode.dbc import load_dbc_paths
    from candiag.diagnosis.engine import load_rulebook
    from candiag.health.nodes import FamilyPolicy

    check_outputs([args.json, args.html], [args.capture])
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
    result = analyze_capture(
        args.capture,
        db,
        bitrate=args.bitrate,
        config_bitrate=config_bitrate,
        data_bitrate=data_bitrate,
        policies=policies,
        book=load_rulebook(thresholds_file),
        keep_history=bool(args.html),
    )
    report = result.report
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1, default=_json_default)
        sys.stdout.write("\n")
    else:
        print_summary(report)
        if args.json:
            write_text(args.json, json.dumps(report, indent=1, default=_json_default) + "\n")
    if args.html:
        from candiag.report.html import render_report

        write_text(args.html, render_report(report, result.timeline))
    return _exit_status(report, args.fail_on)


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


def _exit_status(report: dict[str, Any], fail_on: str | None) -> int:
    if fail_on is None:
        return 0
    worst = {"critical": ("critical",), "warning": ("critical", "warning")}[fail_on]
    return 1 if any(f["severity"] in worst for f in report["findings"]) else 0


def print_summary(report: dict[str, Any]) -> None:
    """The readable summary: capture, health figures, findings with fixes, nodes."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from candiag.analysis import all_clear_sentence

    console = Console(highlight=False)
    cap = report["capture"]
    frames = report["frames"]
    load = report["bus_load"]
    ef = report["error_frames"]
    console.print(
        f"[bold]{escape(str(cap['path']))}[/]: {frames['total']:,} frames over "
        f"{cap['duration_s']:.1f} s ({frames['data']:,} data, {frames['remote']:,} remote, "
        f"{frames['error']:,} error); {cap['malformed_lines']:,} malformed lines; "
        f"read as {escape(str(cap.get('format') or '?'))}"
    )
    classes = ", ".join(f"{k} {v}" for k, v in ef["by_class"].items() if v) or "none"
    console.print(
        f"Bus load {escape(_load_text(load))}; error frames: {escape(classes)}; bus-off events "
        f"{report['bus_off_events']:,}; TEC/REC max "
        f"{escape(str(ef['tec_max']))}/{escape(str(ef['rec_max']))}"
    )
    findings = report["findings"]
    if not findings:
        console.print(f"[green]{escape(all_clear_sentence(report))}[/]")
    for f in findings:
        style = SEVERITY_STYLE.get(f["severity"], "")
        cleared = " (cleared)" if f.get("cleared_at") is not None else ""
        console.print(
            f"[{style}]{escape(f['severity'].upper())}[/] {escape(f['title'])}{escape(cleared)} "
            f"[dim]{escape(f['code'])}[/]"
        )
        console.print(f"    fix: {escape(f['fix'])}")
        if f.get("occurrences", 1) > 1:
            episodes = f"{f['occurrences']} episodes ({f.get('duration_s') or 0:.1f} s in all)"
            console.print(f"    {escape(episodes)}")
        for c in f.get("consequences", []):  # folded under their cause (docs/diagnosis.md)
            console.print(f"    [dim]consequence: {escape(c['title'])} {escape(c['code'])}[/]")
    nodes = report["nodes"]
    if nodes:
        table = Table("family", "address", "status", "frames", "firmware", "alarms", box=None)
        for n in nodes:
            status = n["status"]
            table.add_row(
                escape(str(n["family"])),
                str(n["address"]),
                f"[{STATUS_STYLE.get(status, '')}]{escape(status)}[/]",
                f"{n['frames']:,}",
                escape(n["firmware"] or "-"),
                escape(", ".join(n["alarms"]) or "-"),
            )
        console.print(table)
    for note in report.get("notes") or []:
        console.print(f"[yellow]note:[/] {escape(note)}")


def _load_text(load: dict[str, Any]) -> str:
    """The load figures with the bitrate they rest on and how that bitrate is known."""
    source = load.get("bitrate_source", "flag")
    how = {
        "flag": "given",
        "config": "from the config",
        "recording": "recorded with the capture",
        "inferred": "inferred from frame spacing",
        "assumed": "ASSUMED, not known",
    }.get(source, source)
    at = f"at {load['bitrate']:,} bit/s ({how})"
    if load.get("mean_ratio") is None:
        return f"not measurable ({load.get('note') or 'no load figure'}) {at}"
    return f"{load['mean_ratio']:.1%} mean, {load['max_ratio_1s']:.1%} max (1 s) {at}"
