"""``candiag simulate``: the simulated reference charger, or a power-module protocol
(``--protocol``), live on a bus or into a candump log.

Live (default): sends in real time on a python-can interface until Ctrl-C or
``--duration``.  File (``--output x.log[.gz]``): writes ``--duration`` seconds
of simulated time as candump ``-L`` text without waiting.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from candiag.cli.scenarios import PROTOCOL_CHOICES
from candiag.errors import InputError, SafetyError


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_adapter_arguments, add_command, add_quiet_argument
    from candiag.health.defaults import DEFAULT_BITRATE

    parser = add_command(
        subparsers,
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
            "mode=stuck_open|stuck_closed), cooling_no_flow, meter_reversed. "
            "With --protocol: module_silent, controller_silent, rejected_requests (code, "
            "ratio), duplicate_address, slow_replies (latency ms), error_frames, bus_off; "
            "module=ADDRESS|first|last|all (docs/protocols.md)."
        ),
        example_lines=(
            "candiag simulate -o healthy.log.gz -d 600",
            "candiag simulate -o fault.log -d 120 --scenario module_offline",
            "candiag simulate --protocol infy -o infy.log -d 60 --scenario slow_replies",
            "candiag simulate -i socketcan -c vcan0 --scenario bus_off   # live, on vcan0",
            "candiag simulate --list-scenarios",
        ),
    )
    target = parser.add_argument_group("target")
    add_adapter_arguments(
        target,
        interface_default="virtual",
        channel_default="can0",
        interface_help="python-can interface for live sending (default: virtual; e.g. "
        "socketcan, pcan)",
        channel_help="channel to send on, also the interface name written in a log (default: can0)",
        bitrate_help="bus bitrate in bit/s: frames are spaced on the wire at this rate, it "
        "sizes the overload fault, is set on adapters that take it and is kept in a "
        f"--output log's metadata (default: {DEFAULT_BITRATE}, the reference bus rate; with "
        "--protocol the protocol's)",
        adapter_options=False,
    )
    target.add_argument(
        "-o", "--output", metavar="FILE",
        help="write a candump -L log (.log or .log.gz) in simulated time instead of sending",
    )  # fmt: skip
    target.add_argument(
        "-d", "--duration", type=float, metavar="S",
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
    add_quiet_argument(target)
    charger = parser.add_argument_group("charger")
    charger.add_argument(
        "--protocol", choices=PROTOCOL_CHOICES,
        help="simulate a power-module protocol instead of the reference charger: the "
        "controller polling N modules as the EVerest driver does, the modules answering "
        "(docs/protocols.md)",
    )  # fmt: skip
    charger.add_argument(
        "--modules", type=int,
        help="power modules (default: 8; with --protocol the protocol's typical count)",
    )  # fmt: skip
    charger.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    charger.add_argument(
        "--start-time", type=float, default=1_700_000_000.0,
        help="timestamp of the first frame, epoch seconds (default: 1700000000.0)",
    )  # fmt: skip
    charger.add_argument(
        "--scenario", default="healthy",
        help="named fault scenario (default: healthy): " + _scenario_names()
        + "; with --protocol: " + _protocol_scenario_names() + " (see --list-scenarios)",
    )  # fmt: skip
    charger.add_argument(
        "--fault", action="append", default=[], metavar="SPEC",
        help="add a fault (repeatable), see below",
    )  # fmt: skip
    charger.add_argument(
        "--list-scenarios",
        action="store_true",
        help="list every named scenario (charger, meters, protocols) and where each is "
        "accepted, and exit",
    )
    parser.set_defaults(func=_run)


def _scenario_names() -> str:
    from candiag.sim.scenarios import scenario_names

    return ", ".join(scenario_names())


def _protocol_scenario_names() -> str:
    from candiag.cli.scenarios import protocol_scenario_names

    return ", ".join(protocol_scenario_names())


def _run(args: argparse.Namespace) -> int:
    from candiag.health.bitrate import DEFAULT_BITRATE

    if args.list_scenarios:
        from candiag.cli.scenarios import print_scenarios

        print_scenarios(demo=False)
        return 0
    if args.duration is not None and args.duration <= 0:
        raise InputError(f"--duration must be positive, got {args.duration}")
    if args.bitrate is not None and args.bitrate <= 0:
        raise InputError(f"--bitrate must be positive, got {args.bitrate}")
    sim = _protocol_sim(args) if args.protocol else _charger_sim(args)
    args.bitrate = args.bitrate or getattr(sim, "bitrate", None) or DEFAULT_BITRATE
    if args.output:
        return _to_file(sim, args)
    return _live(sim, args)


def _charger_sim(args: argparse.Namespace) -> Any:
    from candiag.health.bitrate import DEFAULT_BITRATE
    from candiag.sim.charger import ChargerSimulator, SimConfig
    from candiag.sim.faults import PROTOCOL_ONLY_FAULT_KINDS, parse_fault
    from candiag.sim.scenarios import scenario_faults

    if args.modules is None:
        args.modules = 8
    if not 1 <= args.modules <= 255:
        raise InputError(f"--modules must be 1..255 (one address byte), got {args.modules}")
    _refuse_meter_scenario(args.scenario)
    faults = scenario_faults(args.scenario) + [parse_fault(spec) for spec in args.fault]
    for fault in faults:
        if fault.kind in PROTOCOL_ONLY_FAULT_KINDS:
            raise InputError(
                f"fault {fault.kind} needs a request/response protocol: add --protocol NAME "
                f"({', '.join(PROTOCOL_CHOICES)})"
            )
    return ChargerSimulator(
        SimConfig(
            modules=args.modules,
            seed=args.seed,
            start_time=args.start_time,
            bitrate=args.bitrate or DEFAULT_BITRATE,
            channel=args.channel,
            faults=tuple(faults),
        )
    )


def _refuse_meter_scenario(name: str) -> None:
    from candiag.sim.scenarios import meter_scenario_names, scenario_names

    if name in meter_scenario_names() and name not in scenario_names():
        raise InputError(
            f"{name} is a scenario of the simulated Modbus meters; simulate makes CAN traffic "
            f"only: play it with `candiag demo --scenario {name}` or `candiag monitor --demo "
            f"--scenario {name}`"
        )


def _protocol_sim(args: argparse.Namespace) -> Any:
    from candiag.sim.faults import parse_fault
    from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
    from candiag.sim.protocols.scenarios import protocol_scenario_faults

    faults = protocol_scenario_faults(args.scenario) + [parse_fault(spec) for spec in args.fault]
    sim = ProtocolSimulator(
        ProtocolSimConfig(
            protocol=args.protocol,
            modules=args.modules,
            seed=args.seed,
            start_time=args.start_time,
            bitrate=args.bitrate,
            channel=args.channel,
            faults=tuple(faults),
        )
    )
    args.modules = sim.modules
    return sim


def _to_file(sim: Any, args: argparse.Namespace) -> int:
    from candiag.capture import CandumpWriter
    from candiag.capture.metadata import RecordingMetadata
    from candiag.cli.outputs import check_outputs, wrote
    from candiag.cli.progress import progress

    if args.duration is None:
        raise InputError("--output needs --duration SECONDS (simulated time to write)")
    check_outputs([args.output], [])
    # The frames are spaced on the wire at this bitrate, and the log says so.
    metadata = RecordingMetadata.single(
        channel=args.channel, interface="simulator", bitrate=args.bitrate
    )
    writer = CandumpWriter(args.output, fsync=False, metadata=metadata)
    try:
        with progress(f"simulating {args.duration:g} s", quiet=args.quiet, unit="s") as update:
            frames = 0
            for batch in sim.chunks(args.duration):
                writer.write(batch)
                frames += len(batch)
                if len(batch):
                    done = float(batch.timestamp[-1]) - args.start_time
                    update(min(done, args.duration), args.duration, frames)
    finally:
        writer.close()
    what = f"{args.protocol} protocol, " if args.protocol else ""
    print(
        f"{writer.frames_written} frames ({args.duration:g} s simulated, {what}"
        f"{args.modules} modules, scenario {args.scenario}); "
        f"healthy bus load {sim.nominal_bus_load():.1%} at {args.bitrate} bit/s",
        flush=True,
    )
    wrote(args.output)
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
    what = f"{args.protocol} protocol, " if args.protocol else ""
    print(
        f"simulating {what}{args.modules} modules (scenario {args.scenario}) on "
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
