"""``candiag simulate``: the simulated reference charger, live on a bus or into a candump log.

Live (default): sends in real time on a python-can interface until Ctrl-C or
``--duration``.  File (``--output x.log[.gz]``): writes ``--duration`` seconds
of simulated time as candump ``-L`` text without waiting.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from candiag.errors import InputError, SafetyError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run the simulated reference charger (live on a bus, or into a candump log)",
        description=(
            "Simulate the internal CAN bus of the reference DC fast charger (dbc/): N power "
            "modules, contactors, DC meter, cooling and IMD during a charging session, with "
            "optional faults. Sends live on a python-can interface (the only candiag command "
            "that transmits), or writes a candump -L log in simulated time with --output."
        ),
        epilog=(
            "fault syntax: KIND[@START[+DURATION]][:key=value,...], times in seconds after "
            "the start, e.g. --fault error_frames@10+5:class=ack,rate=20 "
            "--fault module_silent@30:module=3. Kinds: error_frames (class=ack|stuff|form|bit|"
            "bit0|bit1|crc|overload|lost_arbitration|transceiver|tx_timeout, rate, tec, rec), "
            "controller (state=warning|passive, tec, rec), bus_off, module_silent (module), "
            "duplicate_address (module), firmware_mismatch (module, dcdc_major, dcdc_minor, "
            "pfc_major, pfc_minor), wrong_bitrate (interval, burst), overload (load, id), "
            "jitter (module, ratio), contactor_mismatch (contactor=dc_plus|dc_minus|precharge, "
            "mode=stuck_open|stuck_closed), cooling_no_flow, meter_reversed."
        ),
    )
    target = parser.add_argument_group("target")
    target.add_argument(
        "-i", "--interface", default="virtual",
        help="python-can interface for live sending (default: virtual; e.g. socketcan, pcan)",
    )  # fmt: skip
    target.add_argument(
        "-c", "--channel", default="can0",
        help="channel to send on, also the interface name written in a log (default: can0)",
    )  # fmt: skip
    target.add_argument(
        "-b", "--bitrate", type=int,
        help="bus bitrate in bit/s: frames are spaced on the wire at this rate, it sizes the "
        "overload fault, is set on adapters that take it and is kept in a --output log's "
        "metadata (default: 125000, the reference bus rate)",
    )  # fmt: skip
    target.add_argument(
        "-o", "--output", metavar="FILE",
        help="write a candump -L log (.log or .log.gz) in simulated time instead of sending",
    )  # fmt: skip
    target.add_argument(
        "-d", "--duration", type=float, metavar="SECONDS",
        help="simulated seconds to produce (required with --output; live: stop after this)",
    )  # fmt: skip
    target.add_argument(
        "--transmit", action="store_true",
        help="required to send on a real interface (anything but the virtual interface and "
        "SocketCAN vcan*/vxcan* channels): never point the simulator at a live charger",
    )  # fmt: skip
    target.add_argument(
        "--speed", type=float, default=1.0,
        help="live only: simulated seconds per wall-clock second (default: 1)",
    )  # fmt: skip
    charger = parser.add_argument_group("charger")
    charger.add_argument("--modules", type=int, default=8, help="power modules (default: 8)")
    charger.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    charger.add_argument(
        "--start-time", type=float, default=1_700_000_000.0,
        help="timestamp of the first frame, epoch seconds (default: 1700000000.0)",
    )  # fmt: skip
    charger.add_argument(
        "--scenario", default="healthy",
        help="named fault scenario (default: healthy; see --list-scenarios)",
    )  # fmt: skip
    charger.add_argument(
        "--fault", action="append", default=[], metavar="SPEC",
        help="add a fault (repeatable), see below",
    )  # fmt: skip
    charger.add_argument(
        "--list-scenarios", action="store_true", help="list the named scenarios and exit"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.health.bitrate import DEFAULT_BITRATE
    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.faults import parse_fault
    from candiag.sim.scenarios import scenario_description, scenario_faults, scenario_names

    if args.list_scenarios:
        for name in scenario_names():
            print(f"{name:20s} {scenario_description(name)}")
        return 0
    if args.duration is not None and args.duration <= 0:
        raise InputError(f"--duration must be positive, got {args.duration}")
    if not 1 <= args.modules <= 255:
        raise InputError(f"--modules must be 1..255 (one address byte), got {args.modules}")
    if args.bitrate is None:
        args.bitrate = DEFAULT_BITRATE
    if args.bitrate <= 0:
        raise InputError(f"--bitrate must be positive, got {args.bitrate}")
    faults = scenario_faults(args.scenario) + [parse_fault(spec) for spec in args.fault]
    sim = ChargerSimulator(
        SimConfig(
            modules=args.modules,
            seed=args.seed,
            start_time=args.start_time,
            bitrate=args.bitrate,
            channel=args.channel,
            faults=tuple(faults),
        )
    )
    if args.output:
        return _to_file(sim, args)
    return _live(sim, args)


def _to_file(sim: Any, args: argparse.Namespace) -> int:
    from candiag.capture import CandumpWriter
    from candiag.capture.metadata import RecordingMetadata
    from candiag.cli.outputs import check_outputs

    if args.duration is None:
        raise InputError("--output needs --duration SECONDS (simulated time to write)")
    check_outputs([args.output], [])
    # The frames are spaced on the wire at this bitrate, and the log says so.
    metadata = RecordingMetadata.single(
        channel=args.channel, interface="simulator", bitrate=args.bitrate
    )
    writer = CandumpWriter(args.output, fsync=False, metadata=metadata)
    try:
        for batch in sim.chunks(args.duration):
            writer.write(batch)
    finally:
        writer.close()
    print(
        f"wrote {writer.frames_written} frames ({args.duration:g} s simulated, "
        f"{args.modules} modules, scenario {args.scenario}) to {args.output}; "
        f"healthy bus load {sim.nominal_bus_load():.1%} at {args.bitrate} bit/s"
    )
    return 0


def is_virtual_target(interface: str, channel: str) -> bool:
    """A bus that exists only in software: python-can ``virtual``, or SocketCAN vcan/vxcan."""
    return interface == "virtual" or (
        interface == "socketcan" and re.fullmatch(r"vx?can\d*", channel) is not None
    )


def _live(sim: Any, args: argparse.Namespace) -> int:
    from candiag.sim.runner import SimulatorRunner, open_sim_bus

    if not args.transmit and not is_virtual_target(args.interface, args.channel):
        raise SafetyError(
            f"candiag simulate would transmit on {args.interface}:{args.channel}, a real bus. "
            "The simulator must never be pointed at a live charger; on a test bench add "
            "--transmit (virtual, vcan* and vxcan* channels need no flag)"
        )

    bus = open_sim_bus(args.interface, args.channel, args.bitrate)
    runner = SimulatorRunner(bus, sim, speed=args.speed, duration=args.duration)
    print(
        f"simulating {args.modules} modules (scenario {args.scenario}) on "
        f"{args.interface}:{args.channel}, bus load {sim.nominal_bus_load():.1%} at "
        f"{args.bitrate} bit/s; Ctrl-C to stop"
    )
    try:
        runner.start()
        while not runner.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
        bus.shutdown()
    print(f"sent {runner.frames_sent} frames ({runner.send_errors} refused by the interface)")
    if runner.error is not None:
        raise runner.error
    return 0
