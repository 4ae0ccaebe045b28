"""``candiag probe``: the first minute on an unknown charger: which bitrate, which protocol.

Live: a listen-only bitrate scan (:mod:`candiag.ingest.scan`), then listening at the rate
found and scoring every protocol pack on the traffic (:mod:`candiag.liveness.protocol_id`).
``--capture FILE`` does the second part on a recording.  Output: a short verdict, ``--json``
and a ``candiag.toml`` bus section (``--config-snippet FILE``) that ``check-config`` accepts.
Never transmits (docs/probe.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from candiag.errors import InputError

#: Seconds listened at the chosen rate for identification (several 1 s poll periods).
DEFAULT_LISTEN_S = 5.0


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_command

    parser = add_command(
        subparsers,
        "probe",
        help="find an unknown bus's bitrate (listen-only scan) and protocol pack",
        description=(
            "Listen-only bitrate scan, then protocol identification: every shipped protocol "
            "pack (and any --dbc) is scored on the traffic; the best match is reported with "
            "its confidence, the controller address, the modules answering and those asked "
            "but silent, and the identifiers no pack explains. candiag never transmits: "
            "adapters without a listen-only switch are refused for the scan, and on SocketCAN "
            "the link's rate is used (probe says how to set another with ip link)."
        ),
        example_lines=(
            "candiag probe -i pcan -c PCAN_USBBUS1",
            "candiag probe -i pcan -c PCAN_USBBUS1 --bitrates 125k,250k --json probe.json",
            "candiag probe --capture charger.log --config-snippet bus.toml",
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-i", "--interface", help="python-can interface: pcan, kvaser, ...")
    source.add_argument("--capture", metavar="FILE", help="identify the protocol of a recording")
    parser.add_argument("-c", "--channel", help="e.g. PCAN_USBBUS1 or can0 (with -i)")
    parser.add_argument(
        "--bitrates",
        help="candidate rates, comma-separated, k/M allowed (default: "
        "125k,250k,500k,1M,50k,100k,800k)",
    )
    parser.add_argument(
        "--dwell", type=float, default=1.0, metavar="S", help="seconds per rate (default 1; "
        "a silent rate is listened to longer, up to 4 s)"
    )  # fmt: skip
    parser.add_argument(
        "--listen",
        type=float,
        default=DEFAULT_LISTEN_S,
        metavar="S",
        help=f"seconds of traffic for identification (default {DEFAULT_LISTEN_S:g})",
    )
    parser.add_argument(
        "--dbc", action="append", default=[], metavar="FILE", help="also score this DBC"
    )
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON (- for stdout)")
    parser.add_argument(
        "--config-snippet", metavar="FILE", help="write the candiag.toml bus section to FILE"
    )
    parser.add_argument("--name", default="can0", help="bus name in the config snippet")
    parser.set_defaults(func=_run)


def parse_rates(text: str) -> list[int]:
    """``"125k,250000,1M"`` as bit/s; InputError naming a bad item."""
    rates = []
    for item in text.split(","):
        raw = item.strip().lower()
        scale = 1_000 if raw.endswith("k") else 1_000_000 if raw.endswith("m") else 1
        try:
            rate = int(float(raw.rstrip("km")) * scale)
        except ValueError:
            raise InputError(f"--bitrates: {item.strip()!r} is not a bitrate (e.g. 250k)") from None
        if not 5_000 <= rate <= 8_000_000:
            raise InputError(f"--bitrates: {rate} bit/s is outside 5 kbit/s .. 8 Mbit/s")
        rates.append(rate)
    return rates


def _run(args: argparse.Namespace) -> int:
    from candiag.cli.outputs import check_outputs

    check_outputs([args.json, args.config_snippet], [args.capture])
    if args.interface and not args.channel:
        raise InputError("probe: -i needs -c CHANNEL (e.g. -i pcan -c PCAN_USBBUS1)")
    if args.capture:
        result = _probe_capture(args)
    else:
        result = _probe_live(args)
    _emit(args, result)
    link = result.get("link")
    # A SocketCAN link that cannot be heard (missing, down, not CAN): said, and exit status 3
    # like any bus candiag cannot open.
    return 3 if link and not link["listenable"] else 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _probe_live(args: argparse.Namespace) -> dict[str, Any]:
    from candiag.ingest.scan import DEFAULT_CANDIDATES, choose, scan_bitrates, scan_refusal
    from candiag.liveness.protocol_id import identify, pack_files

    candidates = parse_rates(args.bitrates) if args.bitrates else list(DEFAULT_CANDIDATES)
    result: dict[str, Any] = {"source": f"{args.interface} {args.channel}", "scan": []}
    refusal = scan_refusal(args.interface)
    bitrate: int | None
    if args.interface == "socketcan":
        # The rate is the link's (candiag does not change it): read it, never scan.
        link = _socketcan_link(args.channel)
        result["link"] = link.to_json()
        result["bitrate_note"] = refusal
        _say(f"probe: SocketCAN link: {link.text}")
        if link.kind in ("vcan", "vxcan"):
            result["bitrate_note"] = None  # a virtual link has no rate to set
        bitrate = link.bitrate
        how = (
            f"set on the link {args.channel} (ip link); candiag does not change it"
            if bitrate
            else f"the link {args.channel} reports no rate"
        )
        if not link.listenable:
            result["bitrate"], result["bitrate_reason"] = bitrate, how
            result["identification"] = None
            result["identification_note"] = f"not listened: {link.text}"
            return result
    elif refusal is not None:
        raise InputError(f"probe: refused on {args.interface}: {refusal}")
    else:

        def progress(stage: str, rate: int, got: Any) -> None:
            if stage == "start":
                _say(f"probe: listening at {rate:,} bit/s (listen-only) ...")
            elif got.error:
                _say(f"probe:   {rate:,} bit/s: cannot open ({got.error})")
            else:
                _say(
                    f"probe:   {rate:,} bit/s: {got.valid_frames} valid, {got.error_frames} "
                    f"error frames ({got.protocol_errors} protocol errors) in {got.dwell_s:.1f} s"
                )

        scanned = scan_bitrates(
            args.interface, args.channel, candidates, dwell_s=args.dwell, progress=progress
        )
        result["scan"] = [r.to_json() for r in scanned]
        best = choose(scanned)
        bitrate = best.bitrate if best else None
        how = "valid traffic and no protocol error" if best else ""
    result["bitrate"] = bitrate
    result["bitrate_reason"] = how if bitrate or args.interface == "socketcan" else (
        "no candidate showed valid traffic without protocol errors: the bitrate is unknown"
    )  # fmt: skip
    if bitrate is None and args.interface != "socketcan":
        result["identification"] = None
        return result
    _say(f"probe: listening {args.listen:g} s for protocol identification ...")
    # SocketCAN: the link's rate is used as set (python-can sets none there).
    open_rate = None if args.interface == "socketcan" else bitrate
    sample = _listen(args.interface, args.channel, open_rate, args.listen)
    ident = identify(sample, pack_files(args.dbc))
    result["identification"] = ident.to_json()
    return result


def _socketcan_link(channel: str) -> Any:
    from candiag.health.linkstats import link_rate, read_link

    return link_rate(read_link(channel, timeout=5.0))


def _listen(interface: str, channel: str, bitrate: int | None, seconds: float) -> Any:
    from candiag.ingest.frames import BatchBuilder
    from candiag.ingest.live import open_listen_only_bus

    bus = open_listen_only_bus(interface, channel, bitrate)
    builder = BatchBuilder(default_channel=channel)
    try:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            msg = bus.recv(timeout=min(0.2, left))
            if msg is not None:
                builder.add(msg)
    finally:
        bus.shutdown()
    return builder.build()


def _probe_capture(args: argparse.Namespace) -> dict[str, Any]:
    from candiag.capture import read_capture
    from candiag.capture.metadata import read_recording_metadata
    from candiag.health.bitrate import BitrateEvidence
    from candiag.liveness.protocol_id import identify, pack_files

    batch, _stats = read_capture(args.capture)
    meta = read_recording_metadata(args.capture).metadata
    recorded = meta.bitrate if meta is not None else None
    result: dict[str, Any] = {"source": args.capture, "scan": []}
    if recorded:
        result["bitrate"], result["bitrate_reason"] = recorded, "from the recording's metadata"
    else:
        evidence = BitrateEvidence()
        evidence.update(batch)
        inferred = evidence.result()
        result["bitrate"] = inferred.bitrate
        result["bitrate_reason"] = inferred.reason
    result["identification"] = identify(batch, pack_files(args.dbc)).to_json()
    return result


def config_snippet(args: argparse.Namespace, result: dict[str, Any]) -> str:
    """A ``[[can.buses]]`` section to start ``monitor``/``run`` with (check-config accepts it)."""
    ident = result.get("identification") or {}
    best = ident.get("best") or {}
    interface = args.interface or "socketcan"
    channel = args.channel or args.name
    lines = ["# candiag probe: paste into candiag.toml (check with candiag check-config)"]
    lines += ["[[can.buses]]", f'name = "{args.name}"', f'interface = "{interface}"']
    lines.append(f'channel = "{channel}"')
    if result.get("bitrate"):
        lines.append(f"bitrate = {int(result['bitrate'])}")
    else:
        lines.append(
            "# bitrate unknown: the link reports none; set it here"
            if result.get("link")
            else "# bitrate unknown: probe found no rate with clean traffic; set it here"
        )
    if best:
        lines.append(f"dbc = [{json.dumps(str(Path(best['file']).resolve()))}]")
        expected = sorted(
            set(best.get("modules_answering") or [])
            | set(best.get("modules_asked_but_silent") or [])
        )
        lines += ["", "[[can.buses.families]]", 'name = "power_module"']
        if expected:
            lines.append(f"expected = [{', '.join(str(a) for a in expected)}]")
    else:
        lines.append("# no protocol pack matched: the reference DBCs are used; give dbc = [...]")
    return "\n".join(lines) + "\n"


def verdict(result: dict[str, Any]) -> list[str]:
    """The short text a technician acts on."""
    lines = [f"candiag probe: {result['source']}"]
    rate = result.get("bitrate")
    why = result.get("bitrate_reason") or ""
    lines.append(f"Bitrate: {rate:,} bit/s ({why})" if rate else f"Bitrate: unknown ({why})")
    for r in result.get("scan") or []:
        mark = "ok " if r["valid_frames"] and not r["protocol_errors"] and not r["error"] else "   "
        what = r["error"] or f"{r['valid_frames']} valid / {r['error_frames']} error frames"
        lines.append(f"  {mark}{r['bitrate']:>9,} bit/s: {what}")
    link = result.get("link")
    if link:
        lines.append(f"Link: {link['text']}")
        if result.get("bitrate_note"):
            lines.append(f"  {result['bitrate_note']}")
    ident = result.get("identification")
    if ident is None:
        why = result.get("identification_note") or "no clean bitrate to listen at"
        lines.append(f"Protocol: not identified ({why})")
        return lines
    best = ident.get("best")
    if best is None:
        top = (ident.get("candidates") or [{}])[0]
        lines.append(
            f"Protocol: no pack matches ({ident['frames']} frames; best "
            f"{top.get('pack')}: {top.get('reason')})"
        )
    else:
        lines.append(
            f"Protocol: {best['protocol']} ({best['pack']}), confidence {best['confidence']:.0%}"
        )
        ctrl = best.get("controller_address")
        lines.append(
            "  controller address: "
            + (f"0x{ctrl:02X}" if isinstance(ctrl, int) else "none in the identifiers")
        )
        lines.append(f"  modules answering: {_list(best.get('modules_answering'))}")
        lines.append(f"  modules asked but silent: {_list(best.get('modules_asked_but_silent'))}")
        if best.get("measured_poll_period_ms"):
            declared = best.get("poll_period_ms")
            lines.append(
                f"  poll period: {best['measured_poll_period_ms']:.0f} ms measured"
                + (f" (pack: {declared} ms)" if declared else " (pack: not declared)")
            )
    unexplained = ident.get("unexplained_ids") or []
    if unexplained:
        top_ids = ", ".join(f"{u['id']} ({u['frames']})" for u in unexplained[:5])
        lines.append(f"Unexplained identifiers (frames): {top_ids}")
    return lines


def _list(items: Any) -> str:
    return ", ".join(str(i) for i in items) if items else "none"


def _emit(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from candiag.cli.outputs import write_text

    snippet = config_snippet(args, result)
    result["config_snippet"] = snippet
    if args.json == "-":
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(verdict(result)))
        print()
        print(snippet, end="")
        if args.json:
            write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.config_snippet:
        write_text(args.config_snippet, snippet)
