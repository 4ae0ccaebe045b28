"""The simulator drives vcan0; ``candiag record`` and ``candiag monitor`` only listen.

A raw socket subscribed to every frame and error class is the witness: it sees
whatever anyone puts on vcan0.  While only the sniffers run it must see nothing;
while the simulator runs it must see exactly the frames the simulator says it
sent, and the recording must hold exactly what the witness saw.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from candiag.capture import read_capture
from candiag.decode.dbc import load_dbc_paths, reference_dbc_dir

from .vcanlib import (
    CAN_ERR_MASK,
    Frame,
    RawSocket,
    candiag_cmd,
    run_candiag,
    start,
    stop,
    wait_for_text,
)

CHANNEL = "vcan0"
MODULES = 4
SIM_SECONDS = 5
END = Frame(0x7E1, b"\xee")


@dataclass
class Session:
    quiet: list[Frame]  # what the witness saw while only the sniffers ran
    witnessed: list[Frame]  # what the witness saw while the simulator ran (marker removed)
    sent: int  # what the simulator says it sent
    simulate_output: str
    recording: Path
    monitor_output: str


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    tmp = tmp_path_factory.mktemp("sim")
    recording = tmp / "sniffed.log"
    with RawSocket(CHANNEL, err_mask=CAN_ERR_MASK) as witness:
        rec = start(
            candiag_cmd("record", "-i", "socketcan", "-c", CHANNEL, "-o", str(recording)),
            tmp / "record.out",
        )
        mon = start(
            candiag_cmd("monitor", "-i", "socketcan", "-c", CHANNEL, "--plain", "--interval", "1"),
            tmp / "monitor.out",
        )
        try:
            wait_for_text(tmp / "record.out", "recording", 90, rec)
            wait_for_text(tmp / "monitor.out", "candiag monitor:", 90, mon)
            time.sleep(2.0)  # both sniffers are open and reading; nobody transmits
            quiet = witness.receive(0.2)
            sim = run_candiag(
                "simulate", "-i", "socketcan", "-c", CHANNEL,
                "-d", str(SIM_SECONDS), "--modules", str(MODULES),
                timeout=180,
            )  # fmt: skip
            assert sim.returncode == 0, sim.stdout + sim.stderr
            time.sleep(1.5)  # let the monitor print a line with the nodes now offline
            with RawSocket(CHANNEL) as marker:
                marker.send([END])
            wait_for_text(recording, f"{END.can_id:03X}#", 30)
            witnessed = witness.receive(1.0)
        finally:
            rc_rec = stop(rec)
            stop(mon)
    assert rc_rec == 0, (tmp / "record.out").read_text()
    match = re.search(r"sent (\d+) frames \((\d+) refused", sim.stdout)
    assert match, sim.stdout
    assert match.group(2) == "0", sim.stdout
    assert witnessed[-1] == END
    return Session(
        quiet=quiet,
        witnessed=witnessed[:-1],
        sent=int(match.group(1)),
        simulate_output=sim.stdout,
        recording=recording,
        monitor_output=(tmp / "monitor.out").read_text(),
    )


def test_sniffers_alone_put_nothing_on_the_bus(session: Session) -> None:
    assert session.quiet == []


def test_the_bus_carries_exactly_the_simulators_frames(session: Session) -> None:
    assert session.sent > MODULES * SIM_SECONDS  # at least one frame per module per second
    assert len(session.witnessed) == session.sent
    db = load_dbc_paths([reference_dbc_dir()])
    ids = np.array([f.can_id for f in session.witnessed if not f.error], np.uint32)
    ext = np.array([f.extended for f in session.witnessed if not f.error], bool)
    message, node = db.match(ids, ext)
    unknown = sorted({hex(i) for i in ids[message < 0]})
    assert not unknown, f"frames no reference DBC message explains: {unknown}"
    modules = db.families["power_module"]
    pm_rows = np.isin(message, [db.messages.index(m) for m in modules])
    assert sorted(set(node[pm_rows].tolist())) == list(range(1, MODULES + 1))


def test_recording_holds_exactly_what_the_witness_saw(session: Session) -> None:
    batch, stats = read_capture(session.recording)
    assert stats.malformed == 0
    recorded: list[Frame] = []
    for i in range(len(batch)):
        n = int(batch.dlc[i])
        recorded.append(
            Frame(
                int(batch.can_id[i]),
                b"" if batch.is_remote[i] else bytes(batch.data[i, :n]),
                extended=bool(batch.is_extended[i]),
                remote=bool(batch.is_remote[i]),
                error=bool(batch.is_error[i]),
                dlc=n if batch.is_remote[i] else None,
            )
        )
    assert recorded[-1] == END
    assert recorded[:-1] == session.witnessed


def test_monitor_shows_the_simulated_nodes(session: Session) -> None:
    """Every simulated node is listed by family and address.

    Online/intermittent is not asserted: under the VM's emulated CPUs the simulator cannot
    keep the DBC cycle times while three Python processes share two CPUs, and the monitor
    rightly calls such nodes intermittent.
    """
    out = session.monitor_output
    total = MODULES + 4  # power modules + contactor, cooling, DC meter, IMD
    assert re.search(rf"nodes \d+/{total} online", out), out
    assert re.search(rf"power_module \d+/{MODULES}\b", out), out
    for family in ("contactor", "dc_meter", "cooling", "imd"):
        assert re.search(rf"{family} \d+/1\b", out), out
    assert "duplicate" not in out, out
    assert "socketcan vcan0 (listen-only)" in out
