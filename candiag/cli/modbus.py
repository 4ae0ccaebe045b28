"""``candiag modbus read|scan``: field tools for the RS-485 meter line (read only).

``read`` polls one device once with a profile and prints its readings (a table, or
JSON with ``--json``); it exits 0 with at least one valid reading, 1 without one (no
answer, replies that are no use, or every value NaN: the last line, JSON ``problem``, says
which), 3 when the port cannot be opened.  ``scan`` finds which unit ids answer at which serial settings and
which shipped profile fits each, within a bounded time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from candiag.modbus.scan import ScanResult

PARITIES = ("N", "E", "O")
DEFAULT_SCAN_BAUDRATES = (9600, 19200, 2400, 4800, 38400)


def register(subparsers: Any) -> None:
    from candiag.cli.args import HelpFormatter, add_command, examples

    parser = add_command(
        subparsers,
        "modbus",
        help="read or scan Modbus RS-485/TCP meters (read only)",
        description="Field tools for the Modbus meter line. candiag only reads (FC 1-4).",
        example_lines=(
            "candiag modbus read --port /dev/ttyUSB0 --profile sdm630",
            "candiag modbus scan --port /dev/ttyUSB0 --ids 1-10",
        ),
    )
    sub = parser.add_subparsers(dest="modbus_command", metavar="ACTION")
    sub.required = True

    read = sub.add_parser(
        "read",
        help="poll one device once and print its readings",
        description="Poll one meter once with a profile (config/meters/) and print its "
        "readings: a table, or JSON with --json. Exit status 0 with at least one valid "
        "reading, 1 without one (the last line says why), 3 when the port cannot be opened.",
        epilog=examples(
            "candiag modbus read --port /dev/ttyUSB0 --profile sdm630 --id 1",
            "candiag modbus read --port tcp://192.0.2.10:502 --profile djsf1352 --json",
        ),
        formatter_class=HelpFormatter,
    )
    _port_arguments(read)
    read.add_argument("--profile", required=True, help="profile name (config/meters/) or path")
    read.add_argument("--id", type=int, default=None, help="unit id (default: the profile's)")
    read.add_argument("--baudrate", type=int, default=None, help="default: the profile's")
    read.add_argument("--parity", choices=PARITIES, default=None, help="default: the profile's")
    read.add_argument(
        "--stopbits", type=int, choices=(1, 2), default=None, help="default: the profile's"
    )
    read.add_argument("--timeout", type=float, default=0.5, help="seconds per request")
    read.add_argument("--retries", type=int, default=1, help="retries of a failed request")
    read.add_argument("--json", action="store_true", help="print JSON instead of a table")
    read.set_defaults(func=_read)

    scan = sub.add_parser(
        "scan",
        help="find which unit ids answer at which serial settings",
        description="Probe unit ids at each baud rate, parity and stop bits given, within "
        "--max-time, and name the shipped profiles that fit each device that answers.",
        epilog=examples(
            "candiag modbus scan --port /dev/ttyUSB0",
            "candiag modbus scan --port /dev/ttyUSB0 --baudrates 9600 --ids 1-10 --json",
        ),
        formatter_class=HelpFormatter,
    )
    _port_arguments(scan)
    scan.add_argument(
        "--baudrates",
        type=int,
        nargs="+",
        default=list(DEFAULT_SCAN_BAUDRATES),
        help="baud rates to try",
    )
    scan.add_argument("--parities", nargs="+", choices=PARITIES, default=["N", "E"])
    scan.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    scan.add_argument("--ids", default="1-247", help="unit ids, e.g. 1-247 or 1-10,20")
    scan.add_argument("--timeout", type=float, default=0.2, help="seconds per probe")
    scan.add_argument("--max-time", type=float, default=600.0, help="stop after this many s")
    scan.add_argument("--profiles", nargs="+", default=None, help="default: all shipped")
    scan.add_argument("--json", action="store_true", help="print JSON instead of a table")
    scan.set_defaults(func=_scan)


def _port_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        required=True,
        help="serial port (/dev/ttyUSB0, COM5 on Windows), tcp://HOST:PORT or rtu+tcp://HOST:PORT",
    )


# -- read -------------------------------------------------------------------------------
def _read(args: argparse.Namespace) -> int:
    from candiag.errors import InputError, PortUnavailableError
    from candiag.modbus.config import DeviceConfig, PortConfig
    from candiag.modbus.link import Transaction
    from candiag.modbus.poller import PortPoller
    from candiag.modbus.profile import find_profile

    profile = find_profile(args.profile)
    unit_id = profile.unit_id if args.id is None else args.id
    if not 1 <= unit_id <= 247:
        raise InputError(f"--id {unit_id}: unit ids are 1..247")
    port_table: dict[str, Any] = {
        "name": "cli",
        "port": args.port,
        "baudrate": args.baudrate or profile.baudrate,
        "parity": args.parity or profile.parity,
        "stopbits": args.stopbits or profile.stopbits,
        "timeout": args.timeout,
        "retries": args.retries,
        "gap": 0.0,
        "id_switch_pause": 0.0,
        "devices": [{"name": profile.name, "profile": args.profile, "unit_id": unit_id}],
    }
    config = PortConfig.from_mapping(port_table, "the command line")
    errors: list[str] = []
    answered_blocks: set[tuple[int, int, int]] = set()

    def note(_device: DeviceConfig, tx: Transaction) -> None:
        if tx.outcome == "ok":
            answered_blocks.add((tx.function, tx.address, tx.count))
        else:
            errors.append(
                f"{tx.outcome}: {tx.detail} (FC{tx.function} {tx.count} registers at {tx.address})"
            )

    poller = PortPoller(config, on_transaction=note)
    try:
        poller.poll_once()
        snap = poller.snapshot()[0]
    finally:
        poller.stop()
    if snap.port_error is not None:
        raise PortUnavailableError(snap.port_error)
    device = {
        "name": snap.name,
        "port": args.port,
        "profile": profile.name,
        "model": profile.model,
        "unit_id": unit_id,
        "baudrate": config.baudrate,
        "parity": config.parity,
        "stopbits": config.stopbits,
        "up": snap.up,
        "requests": snap.requests,
        "failures": {k: v for k, v in snap.failures_by_reason.items() if v},
        "latency_s": snap.latency_last,
    }
    readings = {k: {"value": r.value, "unit": r.unit} for k, r in snap.readings.items()}
    # Quantities of blocks that were answered but not kept: NaN or infinite on the meter.
    invalid = [
        name
        for block in profile.blocks
        if (block.function, block.address, block.count) in answered_blocks
        for name in block.quantities
        if name not in readings
    ]
    problem = _read_problem(snap.up, bool(readings), invalid, snap.failures_by_reason)
    if args.json:
        doc = {
            "device": device,
            "readings": readings,
            "invalid": invalid,
            "errors": errors,
            "problem": problem or None,
        }
        print(json.dumps(doc, indent=2))
    else:
        _print_read_table(profile, device, snap.readings, invalid, errors, problem)
    # 0: readings; 1: none (no answer, or answers without one valid value: `problem` says).
    return 0 if readings else 1


def _read_problem(
    up: bool, has_readings: bool, invalid: list[str], failures: Mapping[str, int]
) -> str:
    """Why ``modbus read`` has no reading (empty when it has some)."""
    if has_readings:
        return ""
    if invalid and up:
        return (
            f"every value the meter sent is NaN or infinite ({len(invalid)} quantities): it "
            "answers, but has no valid reading. Check the register map (is the profile the "
            "installed model?) and the meter's state (measuring, not in a menu or self-test)"
        )
    if failures.get("timeout") and not any(
        n for reason, n in failures.items() if reason not in ("timeout", "io")
    ):
        return (
            "no answer: check the unit id, baud rate and parity (try `candiag modbus scan`), "
            "A/B wiring, termination and bias"
        )
    return "no usable reply: the errors above say what came back instead"


def _print_read_table(
    profile: Any,
    device: dict[str, Any],
    readings: Any,
    invalid: list[str],
    errors: list[str],
    problem: str,
) -> None:
    from rich.table import Table
    from rich.text import Text

    from candiag.cli.outputs import text_console

    console = text_console()  # redirected: lines kept whole
    settings = f"{device['baudrate']} 8{device['parity']}{device['stopbits']}"
    # Text from files (the profile's model, its quantity names) is never markup.
    head = Text(
        f"{profile.model} at unit id {device['unit_id']} on {device['port']} ({settings}): "
    )
    head.append(*(("answers", "green") if device["up"] else ("does not answer", "red")))
    console.print(head)
    table = Table("quantity", "value", "unit", "as on the meter")
    for q in profile.quantities:
        reading = readings.get(q.name)
        if reading is None:
            missing = "NaN/inf" if q.name in invalid else "-"
            table.add_row(Text(q.name), Text(missing, "dim"), Text(q.base_unit), "")
            continue
        on_meter = f"{reading.value / q.factor:.6g} {q.unit}" if q.factor != 1 else ""
        flag = " (uncertain, see profile)" if q.uncertain else ""
        table.add_row(
            Text(q.name), f"{reading.value:.6g}", Text(reading.unit), Text(on_meter + flag)
        )
    console.print(table)
    for error in errors:
        console.print(Text(error, "yellow"))
    if invalid and readings:
        console.print(
            Text(
                f"{len(invalid)} values are NaN or infinite (not measured by this meter, or "
                f"not valid now): {', '.join(invalid)}",
                "yellow",
            )
        )
    if problem:
        console.print(Text(problem[0].upper() + problem[1:] + ".", "bold"))


# -- scan -------------------------------------------------------------------------------
def _scan(args: argparse.Namespace) -> int:
    from candiag.errors import InputError
    from candiag.modbus.profile import find_profile, shipped_profile_names
    from candiag.modbus.scan import parse_ids, scan

    try:
        ids = parse_ids(args.ids)
    except ValueError as err:
        raise InputError(f"--ids: {err}") from None
    names = args.profiles or shipped_profile_names()
    profiles = [find_profile(n) for n in names]
    kwargs: dict[str, Any] = {
        "ids": ids,
        "profiles": profiles,
        "baudrates": args.baudrates,
        "parities": args.parities,
        "stopbits": args.stopbits,
        "timeout": args.timeout,
        "max_time": args.max_time,
    }
    if sys.stderr.isatty() and not args.json:
        from rich.progress import Progress
        from rich.text import Text

        with Progress(transient=True) as bar:
            task = bar.add_task("scanning", total=None)
            result = scan(
                args.port,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                on_hit=lambda hit: bar.console.print(Text(f"found: {_describe_hit(hit)}")),
                **kwargs,
            )
    else:
        result = scan(args.port, **kwargs)
    hits = [
        {
            "baudrate": h.baudrate,
            "parity": h.parity,
            "stopbits": h.stopbits,
            "unit_id": h.unit_id,
            "answer": h.outcome,
            "fits": list(h.fits),
            "latency_s": round(h.latency, 4),
        }
        for h in result.hits
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "port": args.port,
                    "hits": hits,
                    "garbled": result.garbled,
                    "skipped": result.skipped,
                    "complete": result.complete,
                    "elapsed_s": round(result.elapsed, 2),
                    "requests": result.requests,
                },
                indent=2,
            )
        )
    else:
        _print_scan(args.port, hits, result, len(args.baudrates) * len(args.parities))
    return 0 if hits else 1


def _describe_hit(hit: Any) -> str:
    settings = "tcp" if hit.baudrate is None else f"{hit.baudrate} 8{hit.parity}{hit.stopbits}"
    fits = ", ".join(hit.fits) or "no shipped profile"
    return f"unit id {hit.unit_id} at {settings} ({hit.outcome}; fits: {fits})"


def _print_scan(
    port: str, hits: list[dict[str, Any]], result: ScanResult, settings_asked: int
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    table = Table("settings", "unit id", "answer", "profiles that fit")
    for h in hits:
        settings = (
            "tcp" if h["baudrate"] is None else f"{h['baudrate']} 8{h['parity']}{h['stopbits']}"
        )
        fits = Text(", ".join(h["fits"]) or "none")  # profile names come from files
        table.add_row(settings, str(h["unit_id"]), Text(h["answer"]), fits)
    console.print(Text(f"scan of {port} in {result.elapsed:.1f} s: {len(hits)} device(s) answer"))
    if hits:
        console.print(table)
    for label, count in result.garbled.items():
        console.print(
            Text(
                f"{count} garbled repl{'y' if count == 1 else 'ies'} at {label}: something "
                "answers at another baud rate/parity, or two devices share an id",
                "yellow",
            )
        )
    for label, reason in result.skipped.items():  # the reason holds the OS's text: no markup
        console.print(Text(f"skipped {label}: the port refuses it ({reason})", "yellow"))
    if result.skipped and "://" not in port:
        console.print(
            Text(
                f"{len(result.skipped)} of {settings_asked} settings could not be tried on "
                "this port; a device using one of them was not looked for",
                "yellow",
            )
        )
    if not result.complete:
        console.print(Text("scan stopped at --max-time; not every id/setting was probed", "yellow"))
