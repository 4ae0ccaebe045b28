"""The wall clock steps while the daemon runs: live windows, findings and exports stay right.

Issue 13 §1 item 13: with the wall clock stepped back 1 h the 10 s bus load read 0.0 and
CAN_BUS_SILENT (critical) was raised while frames kept arriving.  Here the daemon runs on
injected clocks (a monotonic one the test advances, a wall clock it steps by an hour)
and a simulated charger whose frames are stamped the way real adapters stamp them: with
the wall clock (SocketCAN: the kernel's receive time), or with a clock fixed when the
adapter was opened (PCAN, the simulator).  Power module 3 falls silent 5 s after the
step: it must be reported offline (fresh facts after a step, not frozen ones), and nothing
else.  Everything runs in simulated time, so a minute of traffic takes about a second.
"""

from __future__ import annotations

import numpy as np
import pytest

from candiag.config.load import parse_config_text
from candiag.config.model import BusConfig
from candiag.daemon.service import Daemon, prepare
from candiag.ingest.frames import FrameBatch
from candiag.live.clock import FUTURE_S, FrameTimes, LiveClock
from candiag.sim.charger import ChargerSimulator, SimConfig
from candiag.sim.faults import Fault

HOUR = 3600.0
BOOT = 1_700_000_000.0
STEP_AT_S = 20.0  # simulated seconds after start
SILENT_AT_S = 25.0  # power module 3 stops transmitting


class Clocks:
    """A monotonic clock the test advances and a wall clock it can step."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.step_at: float | None = None  # monotonic time of the step
        self.step_s = 0.0

    def monotonic(self) -> float:
        return self.mono

    def wall_at(self, mono: float) -> float:
        stepped = self.step_at is not None and mono >= self.step_at
        return BOOT + (mono - 1000.0) + (self.step_s if stepped else 0.0)

    def wall(self) -> float:
        return self.wall_at(self.mono)


class SimulatedAdapter:
    """A daemon frame source: the simulated charger's frames, stamped like an adapter does.

    ``stamps="wall"``: each frame carries the wall clock at its (simulated) reception, as
    the SocketCAN kernel stamps it; ``"fixed"``: the wall clock of when the adapter was
    opened plus elapsed time, as python-can's PCAN driver and the simulator do.
    """

    def __init__(self, clocks: Clocks, bus: BusConfig, stamps: str) -> None:
        self.clocks = clocks
        self.stamps = stamps
        silent = Fault("module_silent", SILENT_AT_S, None, {"module": 3})
        self.sim = ChargerSimulator(
            SimConfig(start_time=BOOT, bitrate=bus.bitrate, channel=bus.channel, faults=(silent,))
        )
        self.sent_until = clocks.mono
        self.up = False
        self.last_error: str | None = None
        self.dropped = {"socket": 0, "interface": 0}
        self.link_stats = None  # no kernel link statistics (not SocketCAN)

    def start(self) -> None:
        self.up = True

    def stop(self, timeout: float = 0.0) -> None:
        self.up = False

    def drain(self) -> FrameBatch:
        t0, t1 = self.sent_until, self.clocks.mono
        self.sent_until = t1
        # Simulated time runs on the monotonic clock: sim time = BOOT + (mono - 1000).
        batch = self.sim.generate(BOOT + t0 - 1000.0, BOOT + t1 - 1000.0)
        if self.stamps == "wall" and len(batch):
            mono = batch.timestamp - BOOT + 1000.0
            walls = np.array([self.clocks.wall_at(m) for m in mono.tolist()])
            batch.timestamp = walls
        return batch


def run_daemon_through_a_step(stamps: str, step_s: float) -> dict[str, list[float]]:
    """35 s of a charger, the wall clock stepping by ``step_s`` at 20 s, module 3 silent at 25 s."""
    clocks = Clocks()
    config = parse_config_text(
        '[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "clk"\n'
        "bitrate = 500000\n"
        '[[can.buses.families]]\nname = "power_module"\nexpected = ["1-8"]\n'
    )
    adapters: list[SimulatedAdapter] = []

    def factory(bus: BusConfig) -> SimulatedAdapter:
        adapters.append(SimulatedAdapter(clocks, bus, stamps))
        return adapters[-1]

    clock = LiveClock(wall=clocks.wall, monotonic=clocks.monotonic)
    daemon = Daemon(
        config,
        prepared=prepare(config),
        reader_factory=factory,  # type: ignore[arg-type]
        serve_metrics=False,
        clock=clock,
    )
    daemon.start()
    seen: dict[str, list[float]] = {"load": [], "fps": [], "last_seen_age": [], "after": []}
    findings: set[tuple[str, str]] = set()
    try:
        for k in range(140):  # 35 s in the daemon's quarter-second steps
            if k == STEP_AT_S * 4:
                clocks.step_at, clocks.step_s = clocks.mono, step_s
            clocks.mono += 0.25
            daemon.step()
            snapshot = daemon.snapshot()
            findings |= {(f.code, f.subject) for f in snapshot.findings}
            if k >= 48:  # the 10 s window is full, the modules known
                bus = snapshot.buses[0]
                seen["load"].append(bus.load_ratio["10s"])
                seen["fps"].append(bus.frames_per_second)
                seen["after"].append(float(k >= STEP_AT_S * 4))
                newest = max(n.last_seen or 0.0 for n in bus.nodes)
                seen["last_seen_age"].append(clocks.wall() - newest)
    finally:
        daemon.stop()
    seen["findings"] = sorted(findings)  # type: ignore[assignment]
    seen["steps"] = [daemon.monitors["can0"].frame_times.steps] if daemon.monitors else []
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("step_s", [-HOUR, HOUR], ids=["back-1h", "forward-1h"])
@pytest.mark.parametrize("stamps", ["wall", "fixed"])
def test_a_wall_clock_step_changes_no_window_and_raises_no_finding(
    stamps: str, step_s: float
) -> None:
    seen = run_daemon_through_a_step(stamps, step_s)
    # The module that really fell silent is found, after the step; nothing else is.
    silent = {
        (code, subject)
        for code, subject in seen["findings"]
        if "SILENT" in code or "OFFLINE" in code
    }  # type: ignore[misc]
    assert silent == {("CAN_NODE_OFFLINE", "can0/power_module/3")}, seen["findings"]
    load = np.array(seen["load"])
    after = np.array(seen["after"]) == 1.0
    before_load = float(np.median(load[~after]))
    assert 0.05 < before_load < 1.0
    # The 10 s load stays what it was (one module of 8 less at the end), every quarter second.
    assert np.all(np.abs(load[after] - before_load) < 0.15 * before_load), load[after]
    assert min(seen["fps"]) > 0.8 * float(np.median(seen["fps"]))
    # Exported last-seen times are wall-clock times: a fraction of a second old, always.
    ages = np.array(seen["last_seen_age"])
    assert np.all((ages > -FUTURE_S) & (ages < 2.0)), ages


def test_live_clock_never_steps_and_exports_wall_time() -> None:
    clocks = Clocks()
    clock = LiveClock(wall=clocks.wall, monotonic=clocks.monotonic)
    assert clock.now() == BOOT and clock.wall_offset() == 0.0
    clocks.mono += 10.0
    clocks.step_at, clocks.step_s = clocks.mono, -HOUR
    assert clock.now() == BOOT + 10.0  # the live clock did not follow
    assert clock.wall_offset() == HOUR
    assert clock.to_wall(clock.now() - 2.0) == clocks.wall() - 2.0  # ages kept


def _stamps(start: float, n: int, period: float = 0.01) -> np.ndarray:
    return start + period * np.arange(n, dtype=np.float64)


def test_frames_stamped_with_a_wall_clock_that_steps_mid_batch() -> None:
    """Half a batch before a step back of an hour, half after: one continuous live timeline."""
    times = FrameTimes()
    first = times.to_live(_stamps(BOOT, 25), BOOT + 0.25, 0.0)
    stamped = np.concatenate([_stamps(BOOT + 0.25, 10), _stamps(BOOT + 0.35 - HOUR, 15)])
    live = times.to_live(stamped, BOOT + 0.5, HOUR)
    assert np.allclose(np.diff(np.concatenate([first, live])), 0.01, atol=1e-6)
    assert times.steps == 1 and times.last_step_s == HOUR
    # Later batches keep the new offset without re-anchoring.
    more = times.to_live(_stamps(BOOT + 0.5 - HOUR, 25), BOOT + 0.75, HOUR)
    assert np.allclose(more, _stamps(BOOT + 0.5, 25), atol=1e-6) and times.steps == 1


def test_frames_on_a_clock_fixed_at_open_ignore_a_wall_step() -> None:
    times = FrameTimes()
    times.to_live(_stamps(BOOT, 25), BOOT + 0.25, 0.0)
    live = times.to_live(_stamps(BOOT + 0.25, 25), BOOT + 0.5, -HOUR)  # wall stepped +1 h
    assert np.allclose(live, _stamps(BOOT + 0.25, 25), atol=1e-6) and times.steps == 0


def test_frames_on_an_adapter_counter_are_placed_at_their_arrival() -> None:
    """Seconds since the adapter powered up: spacing kept, the newest frame at the drain."""
    times = FrameTimes()
    live = times.to_live(_stamps(812.0, 25), BOOT, 0.0)
    assert live[-1] == BOOT and np.allclose(np.diff(live), 0.01, atol=1e-6)
    again = times.to_live(_stamps(812.25, 25), BOOT + 0.25, 0.0)
    assert np.allclose(again, _stamps(BOOT + 0.01, 25), atol=1e-6) and times.steps == 1


def test_one_zero_timestamp_among_good_ones_moves_only_that_frame() -> None:
    times = FrameTimes()
    stamped = _stamps(BOOT, 25)
    stamped[10] = 0.0
    live = times.to_live(stamped, BOOT + 0.25, 0.0)
    assert live[10] == BOOT + 0.25
    assert np.array_equal(np.delete(live, 10), np.delete(stamped, 10))
    assert times.steps == 0 and times.offset == 0.0
