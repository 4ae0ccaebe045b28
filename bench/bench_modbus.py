"""Modbus polling cost: requests per poll, wire time at 9600 baud, and the poller's own waits.

1. For each shipped profile: requests of one full poll (coalesced blocks) against one
   request per quantity, bytes on the wire and the wire time of one cycle at 9600 baud:

       T = sum over requests of  (8 + 5 + 2 n) x bits / baud  +  2 x t3.5

   8 bytes per read request, 5 + 2n bytes per reply of n registers (id, function,
   byte count, data, CRC), bits per character 11 as the Modbus RTU spec counts it
   (start, 8 data, parity or a second stop, stop; plain 8N1 is 10) and one t3.5
   silence (3.5 characters) before each frame.  The meter's own turnaround time and
   configured gaps come on top.
2. Against the simulated meters on a pty (no baud-rate delay there): one poll of all
   profiles with gap 0 and with gap 50 ms.  Cycle time minus the sum of round trips
   is the poller's own waiting; it must equal the enforced silences (t3.5 at the
   configured baud rate, or the gap when larger) and nothing more.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence

from candiag.modbus.config import DeviceConfig, PortConfig
from candiag.modbus.link import t35_seconds
from candiag.modbus.poller import PortPoller
from candiag.modbus.profile import MeterProfile, find_profile, shipped_profile_names
from candiag.modbus.sim import SimulatedMeterLine

BAUD = 9600
BITS_PER_CHAR = 11


def wire_seconds(
    register_counts: Sequence[int], baud: int = BAUD, bits: int = BITS_PER_CHAR
) -> float:
    """Wire time of reads of the given sizes (requests, replies and their t3.5 silences)."""
    t35 = t35_seconds(baud, bits)
    return sum((8 + 5 + 2 * n) * bits / baud + 2 * t35 for n in register_counts)


def profile_table(profiles: Sequence[MeterProfile]) -> None:
    print(f"{'profile':<13}{'quantities':>11}{'requests':>9}{'bytes':>7}{'wire ms':>9}", end="")
    print(f"{'1 req/quantity':>16}{'wire ms':>9}")
    for p in profiles:
        blocks = [b.count for b in p.blocks]
        singles = [q.span[1] - q.span[0] for q in p.quantities]
        nbytes = sum(8 + 5 + 2 * n for n in blocks)
        print(
            f"{p.name:<13}{len(p.quantities):>11}{len(blocks):>9}{nbytes:>7}"
            f"{wire_seconds(blocks) * 1e3:>9.1f}{len(singles):>16}{wire_seconds(singles) * 1e3:>9.1f}"
        )
    print(
        f"(9600 baud, {BITS_PER_CHAR} bits/char, t3.5 = {t35_seconds(BAUD) * 1e3:.2f} ms; "
        f"8N1 at 10 bits/char is {10 / 11:.0%} of these times)"
    )


def measure_cycles(
    line: SimulatedMeterLine, profiles: Sequence[MeterProfile], gap: float, cycles: int
) -> tuple[float, float, int]:
    """Median (cycle seconds, sum of round trips) and requests per cycle."""
    devices = tuple(
        DeviceConfig(name=p.name, profile=p.name, unit_id=i + 1) for i, p in enumerate(profiles)
    )
    # Same unit id order every cycle; id_switch_pause 0 so only gap/t3.5 apply.
    config = PortConfig(
        name="bench", port=line.port, baudrate=BAUD, timeout=1.0, retries=0, gap=gap,
        id_switch_pause=0.0, devices=devices,
    )  # fmt: skip
    durations: list[float] = []
    poller = PortPoller(config, on_transaction=lambda _d, tx: durations.append(tx.duration))
    totals: list[tuple[float, float]] = []
    requests = 0
    try:
        poller.poll_once()  # warm up: open the port, first replies
        for _ in range(cycles):
            durations.clear()
            start = time.perf_counter()
            poller.poll_once()
            totals.append((time.perf_counter() - start, sum(durations)))
            requests = len(durations)
            failed = [s.name for s in poller.snapshot() if not s.up]
            if failed:
                raise RuntimeError(f"simulated meters did not answer: {failed}")
    finally:
        poller.stop()
    cycle = statistics.median(t for t, _ in totals)
    rtt = statistics.median(r for _, r in totals)
    return cycle, rtt, requests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_modbus", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer measured cycles")
    args, _unknown = parser.parse_known_args(argv)
    cycles = 3 if args.quick else 20
    profiles = [find_profile(n) for n in shipped_profile_names()]

    print("== requests and wire time of one full poll per profile")
    profile_table(profiles)

    print(f"\n== poller waits against simulated meters on a pty ({cycles} cycles, medians)")
    devices = [(p.name, i + 1) for i, p in enumerate(profiles)]
    t35 = t35_seconds(BAUD)
    with SimulatedMeterLine(devices) as line:
        for gap in (0.0, 0.05):
            cycle, rtt, requests = measure_cycles(line, profiles, gap, cycles)
            # Cycles run back to back: every request, the first included, follows one.
            expected = requests * max(gap, t35)
            extra = cycle - rtt - expected
            print(
                f"gap {gap * 1e3:4.0f} ms: {requests} requests, cycle {cycle * 1e3:7.1f} ms = "
                f"round trips {rtt * 1e3:6.1f} ms + enforced silences {expected * 1e3:6.1f} ms "
                f"+ unexplained {extra * 1e3:+5.1f} ms ({extra / requests * 1e3:+.2f} ms/request)"
            )
            verdict = "OK" if extra / requests < 0.002 else "TOO SLOW"
            print(f"  poller adds no waits beyond the configured silences: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
