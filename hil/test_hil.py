"""Hardware-in-the-loop checks: the SocketCAN suite's checks on real adapters and a real bus.

Two adapters on one terminated bus: SIM plays the charger (``candiag simulate``, the only
candiag command that transmits), DUT is candiag as a technician or a controller runs it.
Name them with environment variables, then run ``pytest hil/test_hil.py -v``:

    CANDIAG_HIL_SIM_IFACE=socketcan CANDIAG_HIL_SIM_CHANNEL=can1 \\
    CANDIAG_HIL_DUT_IFACE=pcan CANDIAG_HIL_DUT_CHANNEL=PCAN_USBBUS1 \\
    CANDIAG_HIL_BITRATE=125000 pytest hil/test_hil.py -v

Without them every test is skipped with the reason.  The bus must ACK the simulator's
frames: a SocketCAN DUT brought up without ``--listen-only`` does (in hardware; candiag
still never sends), a PCAN DUT is always opened listen-only by candiag, so a bench with a
PCAN DUT needs a third ACKing node (any adapter up in normal mode).  See hil/README.md.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ENV = (
    "CANDIAG_HIL_SIM_IFACE",
    "CANDIAG_HIL_SIM_CHANNEL",
    "CANDIAG_HIL_DUT_IFACE",
    "CANDIAG_HIL_DUT_CHANNEL",
)
MODULES = 4
HEALTHY_SECONDS = 10
# How long `candiag record` may take to open the bus and say so: a second on a laptop, but
# tens of seconds in the microVM under TCG emulation on a busy machine (tests/socketcan).
START_TIMEOUT_S = 90


@dataclass(frozen=True)
class Bench:
    sim_iface: str
    sim_channel: str
    dut_iface: str
    dut_channel: str
    bitrate: int

    def bitrate_args(self, iface: str) -> list[str]:
        # SocketCAN's bitrate belongs to the link (hil/bringup-socketcan.sh), not the app.
        return [] if iface == "socketcan" else ["-b", str(self.bitrate)]


def bench_from_env(env: dict[str, str]) -> Bench | str:
    """The bench named by the environment, or the reason the HIL suite cannot run."""
    missing = [name for name in ENV if not env.get(name)]
    if missing:
        return (
            "no HIL bench named: set " + ", ".join(missing) + " (and CANDIAG_HIL_BITRATE, "
            "default 125000), e.g. CANDIAG_HIL_SIM_IFACE=socketcan CANDIAG_HIL_SIM_CHANNEL=can1 "
            "CANDIAG_HIL_DUT_IFACE=socketcan CANDIAG_HIL_DUT_CHANNEL=can0; see hil/README.md"
        )
    rate = env.get("CANDIAG_HIL_BITRATE", "125000")
    if not rate.isdigit() or not 10_000 <= int(rate) <= 1_000_000:
        return f"CANDIAG_HIL_BITRATE={rate!r} must be 10000..1000000 bit/s"
    if (env["CANDIAG_HIL_SIM_IFACE"], env["CANDIAG_HIL_SIM_CHANNEL"]) == (
        env["CANDIAG_HIL_DUT_IFACE"],
        env["CANDIAG_HIL_DUT_CHANNEL"],
    ):
        return "SIM and DUT name the same adapter channel; the bench needs two adapters"
    return Bench(
        env["CANDIAG_HIL_SIM_IFACE"],
        env["CANDIAG_HIL_SIM_CHANNEL"],
        env["CANDIAG_HIL_DUT_IFACE"],
        env["CANDIAG_HIL_DUT_CHANNEL"],
        int(rate),
    )


@pytest.fixture(scope="module")
def bench() -> Bench:
    found = bench_from_env(dict(os.environ))
    if isinstance(found, str):
        pytest.skip(found)
    return found


def candiag(*args: str) -> list[str]:
    return [sys.executable, "-m", "candiag", *args]


class Recorder:
    """``candiag record`` on the DUT in the background."""

    def __init__(self, bench: Bench, path: Path) -> None:
        self.path = path
        self.err = path.with_suffix(".txt")
        cmd = candiag(
            "record", "-i", bench.dut_iface, "-c", bench.dut_channel,
            *bench.bitrate_args(bench.dut_iface), "-o", str(path),
        )  # fmt: skip
        with self.err.open("wb") as fh:
            self.proc = subprocess.Popen(cmd, stderr=fh, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "recording" not in self.err.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"candiag record did not start: {self.err.read_text()}")
            time.sleep(0.1)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.err.read_text(errors="replace")


def simulate(bench: Bench, seconds: float, *extra: str) -> int:
    done = subprocess.run(
        candiag(
            "simulate", "--transmit", "-i", bench.sim_iface, "-c", bench.sim_channel,
            *bench.bitrate_args(bench.sim_iface), "-d", str(seconds),
            "--modules", str(MODULES), *extra,
        ),
        capture_output=True, text=True, timeout=seconds + 120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"sent (\d+) frames \((\d+) refused", done.stdout)
    assert match, done.stdout
    assert match.group(2) == "0", f"the SIM adapter refused frames: {done.stdout}"
    return int(match.group(1))


def analyze(bench: Bench, capture: Path) -> dict[str, Any]:
    report = capture.with_suffix(".json")
    done = subprocess.run(
        candiag("analyze", str(capture), "--bitrate", str(bench.bitrate), "--json", str(report)),
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(report.read_text())
    return doc


@dataclass
class HealthyRun:
    sent: int
    report: dict[str, Any]
    record_summary: str


@pytest.fixture(scope="module")
def healthy(bench: Bench, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HealthyRun]:
    capture = tmp_path_factory.mktemp("hil") / "healthy.log"
    rec = Recorder(bench, capture)
    try:
        sent = simulate(bench, HEALTHY_SECONDS)
        time.sleep(1.5)  # the recorder flushes at least every second
    finally:
        summary = rec.stop()
    yield HealthyRun(sent, analyze(bench, capture), summary)


def test_dut_transmits_nothing(bench: Bench, tmp_path: Path) -> None:
    """With the simulator silent, the SIM adapter (as a witness) hears nothing from candiag."""
    import can

    extra: dict[str, Any] = {} if bench.sim_iface == "socketcan" else {"bitrate": bench.bitrate}
    witness = can.Bus(
        interface=bench.sim_iface, channel=bench.sim_channel, ignore_config=True, **extra
    )
    try:
        rec = Recorder(bench, tmp_path / "quiet.log")
        try:
            heard = list(iter(lambda: witness.recv(3.0), None))  # until 3 s of silence
        finally:
            rec.stop()
    finally:
        witness.shutdown()
    assert heard == [], f"frames on an idle bench while only candiag listened: {heard[:5]}"


def test_dut_hears_exactly_what_the_simulator_sent(healthy: HealthyRun) -> None:
    frames = healthy.report["frames"]
    assert frames["data"] == healthy.sent, (
        f"sent {healthy.sent}, heard {frames['data']}: more means retransmissions (nobody ACKs"
        " the simulator: a listen-only DUT needs a third node), fewer means lost frames"
    )
    assert frames["remote"] == 0


def test_healthy_bench_has_zero_error_frames(healthy: HealthyRun) -> None:
    errors = healthy.report["error_frames"]
    assert errors["error_frames"] == 0, (
        f"error frames on the bench: {errors['by_class']}; check termination (60 ohm between "
        "CAN_H and CAN_L with power off) and that both adapters use the same bitrate"
    )


def test_every_simulated_node_is_present_with_consistent_firmware(healthy: HealthyRun) -> None:
    nodes = healthy.report["nodes"]
    modules = sorted(n["address"] for n in nodes if n["family"] == "power_module")
    assert modules == list(range(1, MODULES + 1))
    assert {n["family"] for n in nodes} >= {"power_module", "contactor", "dc_meter", "cooling"}
    assert all(n["online"] for n in nodes if n["family"] != "imd"), nodes
    assert healthy.report["firmware_mismatches"] == []
    assert not [f for f in healthy.report["findings"] if f["severity"] == "critical"]


def test_dut_link_is_error_active(bench: Bench, healthy: HealthyRun) -> None:
    if bench.dut_iface != "socketcan":
        pytest.skip("netlink link statistics exist on SocketCAN DUTs only")
    from candiag.health.linkstats import read_link_stats

    stats = read_link_stats(bench.dut_channel)
    assert stats is not None and stats.up
    assert stats.state == "error_active", stats
    assert stats.bitrate == bench.bitrate, f"link bitrate {stats.bitrate}, bench {bench.bitrate}"


def test_offline_module_is_diagnosed(bench: Bench, tmp_path: Path) -> None:
    capture = tmp_path / "module_offline.log"
    rec = Recorder(bench, capture)
    try:
        simulate(bench, 15, "--scenario", "module_offline")  # module 3 stops at 10 s
        time.sleep(1.5)
    finally:
        rec.stop()
    report = analyze(bench, capture)
    codes = {f["code"] for f in report["findings"]}
    assert "CAN_NODE_OFFLINE" in codes, report["findings"]


def test_monitor_shows_the_nodes(bench: Bench, tmp_path: Path) -> None:
    out = tmp_path / "monitor.txt"
    with out.open("wb") as fh:
        mon = subprocess.Popen(
            candiag(
                "monitor", "-i", bench.dut_iface, "-c", bench.dut_channel,
                *bench.bitrate_args(bench.dut_iface), "--plain", "--interval", "1",
                "--duration", "12",
            ),
            stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            time.sleep(3)
            simulate(bench, 6)
        finally:
            mon.wait(60)
    text = out.read_text()
    assert f"power_module {MODULES}/{MODULES}" in text, text
