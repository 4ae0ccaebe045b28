"""A live bus judges a request (answered or not) no later than the frames its reader has handed
over: a reader behind wall time (``candump -L can0 | candiag monitor -`` read late while
candiag starts) must not turn a reply still queued into an unanswered request."""

from __future__ import annotations

import numpy as np

from candiag.config.model import BusConfig
from candiag.decode.dbc import load_dbc_paths
from candiag.ingest.frames import FrameBatch
from candiag.live.bus import LiveBus
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path
from tests.test_live_engine import ScriptedSource


def _modules(bus: LiveBus, now: float) -> dict[int, dict[str, object]]:
    section = bus.report(now).liveness or {}
    return {int(m["address"]): m for m in section.get("modules") or ()}


def _scripted_infy_bus() -> tuple[ScriptedSource, LiveBus]:
    """A live bus on the Infy pack whose source hands over what the test appends."""
    source = ScriptedSource()
    source.start()
    bus = LiveBus(
        BusConfig(name="can0", interface="stdin", channel="can0"),
        load_dbc_paths([pack_path("infy")]),
        source=source,
    )
    return source, bus


def test_a_reader_behind_wall_time_does_not_make_requests_unanswered() -> None:
    sim = ProtocolSimulator(ProtocolSimConfig("infy"))
    frames = FrameBatch.concat(list(sim.chunks(6.0)))
    t1 = float(frames.timestamp[0])
    source, bus = _scripted_infy_bus()
    first = np.flatnonzero(frames.timestamp <= t1)
    rest = np.flatnonzero((frames.timestamp > t1) & (frames.timestamp <= t1 + 5.0))
    # The first line alone, handed over 3 s late (its reply is still in the pipe) ...
    source.pending.append(frames.take(first))
    bus.poll(t1 + 3.0, t1 + 2.9)
    # ... then everything the pipe held.
    source.pending.append(frames.take(rest))
    bus.poll(t1 + 5.2, t1 + 5.1)
    modules = _modules(bus, t1 + 5.2)
    assert sorted(modules) == [1, 2, 3, 4]
    for address, mod in modules.items():
        assert mod["unanswered"] == 0, (address, mod)
        assert mod["answered"] == mod["requests"] and int(str(mod["requests"])) > 0


def test_a_module_silent_while_the_controller_asks_is_still_judged_live() -> None:
    """The bound is the newest frame, so requests going on without answers are judged."""
    from candiag.sim.faults import parse_fault

    sim = ProtocolSimulator(
        ProtocolSimConfig("infy", faults=(parse_fault("module_silent@1:module=4"),))
    )
    frames = FrameBatch.concat(list(sim.chunks(8.0)))
    t1 = float(frames.timestamp[0])
    source, bus = _scripted_infy_bus()
    for k in range(16):  # polls every 0.5 s, each with the frames of its half second
        lo, hi = t1 + 0.5 * k, t1 + 0.5 * (k + 1)
        rows = np.flatnonzero((frames.timestamp >= lo) & (frames.timestamp < hi))
        source.pending.append(frames.take(rows))
        bus.poll(hi + 0.05, hi - 0.05)
    modules = _modules(bus, t1 + 8.05)
    assert int(str(modules[4]["unanswered_run"])) >= 10
    assert modules[1]["unanswered"] == 0
