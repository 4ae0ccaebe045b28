"""Liveness findings live: a protocol simulator sends on python-can's virtual bus in real time
(a separate sender, as a charger would), candiag reads it listen-only through BusReader, and
the pipeline and the diagnosis engine run on wall time as the daemon's loop does.  A module
that stops answering and a controller that stops asking it are told apart, with the right
module named, within the protocol's timeout plus one poll period of the fault."""

from __future__ import annotations

import time

import pytest

from candiag.decode.dbc import load_dbc_paths
from candiag.diagnosis.engine import DiagnosisEngine
from candiag.diagnosis.timeline import bus_timeline
from candiag.health.pipeline import BusPipeline
from candiag.ingest.live import BusReader
from candiag.sim.faults import parse_fault
from candiag.sim.protocols import PROTOCOL_NAMES
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path
from candiag.sim.runner import SimulatorRunner, open_sim_bus
from tests.test_liveness import LAST, LIVENESS_CODES, budget_s

FAULT_AT = 3.0
CASES = {
    "module_silent": ("module_silent@{at}+60", "CAN_MODULE_NOT_ANSWERING"),
    "controller_silent": ("controller_silent@{at}+60:module=last", "CAN_CONTROLLER_NOT_POLLING"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_live_detection_within_timeout_plus_one_poll(protocol: str, case: str) -> None:
    spec, expected = CASES[case]
    channel = f"live-{protocol}-{case}"
    config = ProtocolSimConfig(protocol, faults=(parse_fault(spec.format(at=FAULT_AT)),))
    sender = open_sim_bus("virtual", channel)
    pipeline = BusPipeline("can0", load_dbc_paths([pack_path(protocol)]))
    engine = DiagnosisEngine()
    reader = BusReader("virtual", channel, batch_interval=0.05)
    raised: dict[tuple[str, str], float] = {}
    reader.start()
    runner = SimulatorRunner(sender, ProtocolSimulator(config), speed=1.0, step=0.01)
    try:
        runner.start()
        started = time.time()
        deadline = started + FAULT_AT + budget_s(protocol) + 1.0
        while time.time() < deadline:
            time.sleep(0.05)
            batch = reader.drain()
            if len(batch):
                pipeline.process(batch)
            now = time.time()
            pipeline.advance(now)
            timeline = bus_timeline(pipeline, now)  # the interval rules, as the daemon runs them
            report = pipeline.report(now, detail=False)
            for f in engine.update(now, [report], timelines=[timeline])[0]:
                raised.setdefault((f.code, f.subject), now - started - FAULT_AT)
            if any(code == expected for code, _ in raised):
                break
    finally:
        runner.stop()
        reader.stop()
        sender.shutdown()
    mine = {k: v for k, v in raised.items() if k[0] in LIVENESS_CODES}
    key = (expected, f"can0/power_module/{LAST[protocol]}")
    assert set(mine) == {key}, mine
    print(f"detected {protocol} {case} after {mine[key]:.2f} s (budget {budget_s(protocol):.2f} s)")
    assert 0 < mine[key] <= budget_s(protocol), mine
