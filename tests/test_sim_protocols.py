"""The protocol simulators (candiag simulate --protocol): every frame is what the protocol's
pack describes, the controller polls at the driver's period, modules answer in milliseconds,
and each fault does what docs/protocols.md says.  Frames are judged by resolving them with
the packs (tests/pack_resolver.py, written from the spec) and decoding them with cantools.
"""

from __future__ import annotations

import gzip
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can
import numpy as np
import pytest

from candiag.capture import read_capture
from candiag.cli import main
from candiag.decode.dbc import load_dbc_paths
from candiag.decode.decoder import BatchDecoder
from candiag.errors import InputError
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch
from candiag.sim.faults import parse_fault
from candiag.sim.protocols import PROTOCOL_NAMES
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path
from candiag.sim.protocols.scenarios import protocol_scenario_faults, protocol_scenario_names
from candiag.sim.runner import SimulatorRunner, open_sim_bus
from tests.dbc_oracle import compare
from tests.pack_resolver import PackResolver, attr

T0 = 1_700_000_000.0
# Requests a module is not expected to answer: DPM1000's on/off request (EVerest does not wait
# for it) and Sinexcel's global-broadcast on/off (modelled).
UNANSWERED = {("dpm1000", "DPM1000_Request", None), ("sinexcel", "Sinexcel_Request", 0x0230)}


@dataclass
class Frame:
    t: float
    can_id: int
    message: str
    node: int
    direction: str
    error: int
    command: Any
    values: dict[str, Any]


def simulate(protocol: str, seconds: float, *specs: str, **config: Any) -> FrameBatch:
    faults = tuple(parse_fault(s) for s in specs)
    sim = ProtocolSimulator(ProtocolSimConfig(protocol, faults=faults, **config))
    return FrameBatch.concat(list(sim.chunks(seconds)))


def resolve(protocol: str, batch: FrameBatch) -> list[Frame]:
    """Every data frame resolved by the pack (fails on a frame the pack does not know)."""
    resolver = _resolver(protocol)
    out = []
    for i in np.flatnonzero(batch.is_data).tolist():
        can_id = int(batch.can_id[i])
        payload = bytes(batch.data[i, : batch.dlc[i]])
        found = resolver.resolve(can_id, payload, bool(batch.flags[i] & FLAG_EXTENDED))
        assert found is not None, f"{protocol}: frame {can_id:08X}#{payload.hex()} not in the pack"
        values = found.message.decode(payload, decode_choices=False)
        command = next(
            (values[s.name] for s in found.message.signals
             if attr(s, "CandiagRole") == "command" and s.name in values),
            None,
        )  # fmt: skip
        out.append(
            Frame(float(batch.timestamp[i]), can_id, found.message.name, found.node,
                  found.direction, found.error, command, values)
        )  # fmt: skip
    return out


_RESOLVERS: dict[str, PackResolver] = {}


def _resolver(protocol: str) -> PackResolver:
    if protocol not in _RESOLVERS:
        _RESOLVERS[protocol] = PackResolver(pack_path(protocol))
    return _RESOLVERS[protocol]


def error_of(frame: Frame) -> int:
    """The error a reply carries: identifier code, error byte or nibble (0 / 0xF0: none)."""
    if frame.error:
        return frame.error
    msg = _any_message(frame.message)
    for sig in msg.signals:
        if attr(sig, "CandiagRole") == "reply_error" and sig.name in frame.values:
            ok = int(attr(sig, "CandiagOkValue", 0))
            value = int(frame.values[sig.name])
            return 0 if value == ok else value
    return 0


def _any_message(name: str) -> Any:
    for resolver in _RESOLVERS.values():
        try:
            return resolver.db.get_message_by_name(name)
        except KeyError:
            continue
    raise KeyError(name)


def pair(
    protocol: str, frames: list[Frame]
) -> tuple[list[tuple[Frame, Frame | None]], list[Frame]]:
    """Each request a module should answer with the first later reply of its node (any node
    for a broadcast) and reply message, of the same command where both carry one; the
    replies left over (further frames of an answer, a twin's answers)."""
    db = _resolver(protocol).db
    modules = set(ProtocolSimulator(ProtocolSimConfig(protocol)).ctx.addresses)
    replies: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        if f.direction == "reply":
            replies[f.message].append(f)
    used: set[int] = set()
    pairs = []
    for f in frames:
        if f.direction != "request" or not expected_answer(protocol, f):
            continue
        reply_name = attr(db.get_message_by_name(f.message), "CandiagReply")
        broadcast = f.node not in modules
        match = None
        for r in replies.get(reply_name, []):
            if r.t <= f.t or id(r) in used or (not broadcast and r.node != f.node):
                continue
            if r.t - f.t > 1.0:
                break
            same_command = protocol in ("huawei", "sinexcel") or None in (r.command, f.command)
            if same_command or r.command == f.command:
                match = r
                break
        if match is not None:
            used.add(id(match))
        pairs.append((f, match))
    leftover = [f for f in frames if f.direction == "reply" and id(f) not in used]
    return pairs, leftover


def expected_answer(protocol: str, request: Frame) -> bool:
    key = (protocol, request.message, request.command)
    if protocol == "dpm1000" and request.values.get("MessageType") == 0x00:
        return False
    return key not in UNANSWERED


@pytest.fixture(scope="module")
def healthy() -> dict[str, tuple[FrameBatch, list[Frame]]]:
    out = {}
    for protocol in PROTOCOL_NAMES:
        batch = simulate(protocol, 40.0)
        out[protocol] = (batch, resolve(protocol, batch))
    return out


# -- healthy traffic -------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_every_frame_is_a_pack_message_sent_on_a_wire(
    protocol: str, healthy: dict[str, Any]
) -> None:
    batch, frames = healthy[protocol]
    assert len(frames) == len(batch) > 100
    assert np.all(np.diff(batch.timestamp) > 0), "one frame at a time on the wire"
    assert {f.direction for f in frames} <= {"request", "reply"}
    requests = [f for f in frames if f.direction == "request"]
    replies = [f for f in frames if f.direction == "reply"]
    assert requests and replies
    # The controller's frames carry its address; the modules' their own.
    modules = set(ProtocolSimulator(ProtocolSimConfig(protocol)).ctx.addresses)
    assert {f.node for f in replies} == modules
    assert {f.node for f in requests if f.node >= 0} <= modules | {0}


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_every_request_is_answered_within_milliseconds(
    protocol: str, healthy: dict[str, Any]
) -> None:
    _, frames = healthy[protocol]
    pairs, _ = pair(protocol, frames)
    answered = [(q, r) for q, r in pairs if expected_answer(protocol, q)]
    assert answered
    missing = [q for q, r in answered if r is None]
    assert not missing, f"{len(missing)} requests unanswered, first {missing[0]}"
    latency = np.array([r.t - q.t for q, r in answered if r is not None])
    # A reply ends its own frame (> 1 ms at 125 kbit/s) plus the module's 1-4 ms after its
    # request; on a busy cycle it queues behind the controller's burst of requests.
    assert latency.min() > 0.0019
    assert np.median(latency) < 0.05
    assert all(error_of(r) == 0 for _, r in answered if r is not None)


# The driver's poll period of the main telemetry request, seconds (docs/protocols.md), how
# much shorter a gap may be (the wire delays a frame behind a busier cycle; Huawei's 8-bit
# loop counter wraps at 256, not a multiple of 5, so one query in a while comes 150 ms early),
# and how much longer the median may be (DPM1000 adds its exchanges to the 250 ms sleep,
# BEG1K075G has 9 steps of 50 ms while a voltage is set).
POLL = {
    "infy": ("Infy_ReadVI_Request", None, 1.0, 0.03, 0.001),
    "winline": ("Winline_Request", 0x0040, 1.0, 0.03, 0.001),
    "uugreen": ("UUGreen_Frame", 0, 0.1, 0.01, 0.001),
    "huawei": ("Huawei_QueryAllRealtimeData_Request", None, 0.25, 0.15, 0.001),
    "sinexcel": ("Sinexcel_Request", 0x0202, 1.0, 0.03, 0.001),
    "dpm1000": ("DPM1000_Request", 0x0001, 0.25, 0.01, 0.03),
    "beg1k075g": ("BEG_ReadBroadcast_Request", 0x1001, 0.35, 0.01, 0.11),
}


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_controller_polls_at_the_drivers_period(protocol: str, healthy: dict[str, Any]) -> None:
    _, frames = healthy[protocol]
    name, command, period, early, slack = POLL[protocol]
    by_node: dict[int, list[float]] = defaultdict(list)
    for f in frames:
        if (
            f.message == name
            and f.direction == "request"
            and (command is None or f.command == command)
        ):
            by_node[f.node].append(f.t)
    assert by_node
    for node, times in by_node.items():
        gaps = np.diff(np.array(times))
        assert gaps.min() >= period - early, (node, gaps.min())
        assert np.median(gaps) <= period + slack + 0.01, (node, np.median(gaps))


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_values_follow_the_charging_session(protocol: str, healthy: dict[str, Any]) -> None:
    _, frames = healthy[protocol]
    volts, amps = [], []
    for f in frames:
        if f.direction != "reply":
            continue
        msg = _any_message(f.message)
        for sig in msg.signals:
            role = attr(sig, "CandiagRole")
            if role == "output_voltage" and sig.name in f.values:
                volts.append((f.t - T0, f.values[sig.name]))
            if role == "output_current" and sig.name in f.values:
                amps.append((f.t - T0, f.values[sig.name]))
    assert volts and amps
    v = np.array(volts)
    a = np.array(amps)
    # Modules off before the session (2 s), then 750-800 V; current ramps up after 8.5 s.
    assert np.all(v[v[:, 0] < 1.5, 1] == 0)
    assert np.all((v[v[:, 0] > 9, 1] > 740) & (v[v[:, 0] > 9, 1] < 820))
    assert a[a[:, 0] > 38, 1].max() > 10 and np.all(a[:, 1] >= 0)


def test_chunking_does_not_change_the_frames() -> None:
    for protocol in ("infy", "dpm1000", "huawei", "beg1k075g"):
        specs = ("slow_replies@3+5:latency=40", "module_silent@9+4")
        a = simulate(protocol, 20.0, *specs)
        sim = ProtocolSimulator(
            ProtocolSimConfig(protocol, faults=tuple(parse_fault(s) for s in specs))
        )
        b = FrameBatch.concat(
            [sim.generate(T0 + k * 3.0, T0 + min(20.0, (k + 1) * 3.0)) for k in range(7)]
        )
        assert len(a) == len(b), protocol
        assert np.array_equal(a.can_id, b.can_id) and np.array_equal(a.data, b.data)
        assert np.allclose(a.timestamp, b.timestamp, atol=1e-9)


@pytest.mark.parametrize("protocol", ("uugreen", "winline", "huawei"))
def test_candiag_decoder_equals_cantools_on_simulated_frames(
    protocol: str, healthy: dict[str, Any]
) -> None:
    # Nested multiplexers (UUGreen, Winline, Huawei) through candiag's vectorized decoder.
    batch, _ = healthy[protocol]
    db = load_dbc_paths([pack_path(protocol)])
    result = BatchDecoder(db).decode(batch)
    counts = compare(db, batch, result)
    assert counts["cantools_frames"] > 100


# -- faults --------------------------------------------------------------------------------


def _replies(frames: list[Frame], node: int, lo: float, hi: float) -> list[Frame]:
    return [f for f in frames if f.direction == "reply" and f.node == node and lo <= f.t - T0 < hi]


def _requests(frames: list[Frame], node: int, lo: float, hi: float) -> list[Frame]:
    """Requests to ``node`` (BEG1K075G's broadcast and group requests reach its one module)."""
    return [
        f for f in frames
        if f.direction == "request" and (f.node == node or f.message.startswith("BEG_"))
        and lo <= f.t - T0 < hi
    ]  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_module_not_answering(protocol: str) -> None:
    sim = ProtocolSimulator(ProtocolSimConfig(protocol))
    last = sim.ctx.addresses[-1]
    frames = resolve(protocol, simulate(protocol, 30.0, "module_silent@10+10"))
    assert not _replies(frames, last, 10.01, 20.0)
    assert _replies(frames, last, 21.0, 30.0), "answers again afterwards"
    assert _requests(frames, last, 10.0, 20.0), "the controller keeps asking"
    if sim.modules > 1:
        assert _replies(frames, sim.ctx.addresses[0], 10.0, 20.0), "the others answer"


def test_infy_drops_a_silent_module_after_15_s_and_never_asks_again() -> None:
    frames = resolve("infy", simulate("infy", 60.0, "module_silent@10+30:module=2"))
    asked = [
        f.t - T0
        for f in frames
        if f.direction == "request" and f.node == 2 and f.message == "Infy_ReadVI_Request"
    ]
    assert max(asked) == pytest.approx(25.0, abs=1.2)  # last answered ~10 s, dropped 15 s later
    # Never polled again: 10 s later the module switches itself off (V1.13), and stays off.
    assert not _requests(frames, 2, 26.0, 60.0)
    others = [
        f for f in frames if f.message == "Infy_ReadVI_Reply" and f.node == 1 and f.t - T0 > 45
    ]
    assert others and all(f.values["OutputCurrent"] > 0 for f in others)


def test_winline_drops_a_silent_module_from_the_status_poll_and_readds_it() -> None:
    frames = resolve("winline", simulate("winline", 60.0, "module_silent@10+20:module=2"))
    status = np.array(
        sorted(
            f.t - T0
            for f in frames
            if f.direction == "request" and f.node == 2 and f.command == 0x0040
        )
    )
    # Still asked while silent, dropped at the first poll 15 s after its last answer (~10 s),
    # re-added at the poll after its first answer again (~30 s + 1 poll).
    gap = np.argmax(np.diff(status))
    assert status[gap] == pytest.approx(24.0, abs=1.2) and status[gap + 1] == pytest.approx(
        31.0, abs=1.2
    )
    # V and I of configured modules are read throughout (so the module can come back).
    volts = [
        f.t - T0 for f in frames if f.direction == "request" and f.node == 2 and f.command == 1
    ]
    assert np.diff(volts).max() < 1.1


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_controller_not_polling_one_module(protocol: str) -> None:
    sim = ProtocolSimulator(ProtocolSimConfig(protocol))
    last = sim.ctx.addresses[-1]
    frames = resolve(protocol, simulate(protocol, 30.0, "controller_silent@10+10:module=last"))
    assert not _requests(frames, last, 10.0, 20.0)
    # Nobody asks, nobody answers (but Huawei's broadcast information query, which still
    # reaches every module).
    answers = [
        f
        for f in _replies(frames, last, 10.1, 20.0)
        if f.message != "Huawei_QueryInherentInfo_Reply"
    ]
    assert not answers
    assert _requests(frames, last, 20.5, 30.0)
    if sim.modules > 1:
        assert _requests(frames, sim.ctx.addresses[0], 10.0, 20.0)


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_controller_not_polling_at_all(protocol: str) -> None:
    frames = resolve(protocol, simulate(protocol, 30.0, "controller_silent@10+10"))
    window = [f for f in frames if 10.1 <= f.t - T0 < 20.0]
    assert not window
    assert [f for f in frames if 21.0 <= f.t - T0 < 30.0 and f.direction == "request"]


def test_infy_module_switches_itself_off_after_10_s_without_requests() -> None:
    frames = resolve("infy", simulate("infy", 45.0, "controller_silent@12+15:module=2"))
    status = [
        f for f in frames if f.message == "Infy_ReadStatus_Reply" and f.node == 2 and f.t - T0 > 27
    ]
    first = status[0]
    # Off since 22 s (12 + 10): it answers again with its DC side off and the comm alarm...
    assert first.values["dc_side_off"] == 1 and first.values["communication_interrupt_alarm"] == 1
    # ... the alarm clears 2 s after it is asked again (modelled), the output stays off until
    # the next session.
    assert (
        status[2].values["communication_interrupt_alarm"] == 0
        and status[-1].values["dc_side_off"] == 1
    )
    vi = [f for f in frames if f.message == "Infy_ReadVI_Reply" and f.node == 2 and f.t - T0 > 27]
    assert all(f.values["OutputCurrent"] == 0 for f in vi)
    others = [
        f for f in frames if f.message == "Infy_ReadVI_Reply" and f.node == 1 and f.t - T0 > 27
    ]
    assert all(f.values["OutputCurrent"] > 0 for f in others)
    # A silence shorter than 10 s leaves the module on.
    frames = resolve("infy", simulate("infy", 30.0, "controller_silent@12+8:module=2"))
    status = [
        f for f in frames if f.message == "Infy_ReadStatus_Reply" and f.node == 2 and f.t - T0 > 21
    ]
    assert all(
        f.values["dc_side_off"] == 0 and f.values["communication_interrupt_alarm"] == 0
        for f in status
    )


REJECT = {
    "infy": 2,
    "beg1k075g": 2,
    "winline": 0xF2,
    "dpm1000": 0xF2,
    "huawei": 2,
    "sinexcel": 0xF2,
}


@pytest.mark.parametrize("protocol", sorted(REJECT))
def test_rejected_requests_carry_the_protocols_error(protocol: str) -> None:
    sim = ProtocolSimulator(ProtocolSimConfig(protocol))
    last = sim.ctx.addresses[-1]
    frames = resolve(protocol, simulate(protocol, 25.0, "rejected_requests@10+8:module=last"))
    inside = _replies(frames, last, 10.01, 18.0)
    assert inside and {error_of(f) for f in inside} == {REJECT[protocol]}
    after = _replies(frames, last, 19.0, 25.0)
    assert after and {error_of(f) for f in after} == {0}
    other = 0xF1 if REJECT[protocol] == 0xF2 else 3  # invalid address / data invalid
    spec = f"rejected_requests@5+5:module=last,code={other},ratio=0.5"
    codes = [
        error_of(f)
        for f in _replies(resolve(protocol, simulate(protocol, 15.0, spec)), last, 5.01, 10.0)
    ]
    assert other in codes and 0 in codes
    with pytest.raises(InputError, match="does not fit"):
        simulate(protocol, 5.0, "rejected_requests@1+1:code=0x100")


def test_uugreen_cannot_reject_a_request() -> None:
    with pytest.raises(InputError, match="no error reply"):
        simulate("uugreen", 5.0, "rejected_requests@1+1")


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_address_conflict_doubles_the_answers(protocol: str) -> None:
    sim = ProtocolSimulator(ProtocolSimConfig(protocol))
    last = sim.ctx.addresses[-1]
    frames = resolve(protocol, simulate(protocol, 25.0, "duplicate_address@10+10"))
    before = len(_replies(frames, last, 2.0, 10.0))
    during = len(_replies(frames, last, 11.0, 19.0))
    assert during == pytest.approx(2 * before, rel=0.1)
    if protocol == "uugreen":  # two modules, two serial numbers in the identifier
        assert len({f.can_id for f in _replies(frames, last, 11.0, 19.0)}) == 2
    alarm = {
        "infy": "id_repeat_alarm",
        "dpm1000": "id_number_repetition",
        "sinexcel": "ModuleAddressConflict",
    }
    if protocol in alarm:
        flags = [
            f.values[alarm[protocol]]
            for f in _replies(frames, last, 11.0, 19.0)
            if alarm[protocol] in f.values
        ]
        assert flags and all(flags)


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_slow_replies(protocol: str) -> None:
    sim = ProtocolSimulator(ProtocolSimConfig(protocol))
    last = sim.ctx.addresses[-1]
    frames = resolve(protocol, simulate(protocol, 30.0, "slow_replies@10+10:latency=150"))
    pairs, _ = pair(protocol, frames)
    to_last = [(q, r) for q, r in pairs if r is not None and r.node == last]
    slow = [r.t - q.t for q, r in to_last if 10.5 < q.t - T0 < 19.5]
    fast = [r.t - q.t for q, r in to_last if 21 < q.t - T0]
    assert slow and min(slow) > 0.15 and fast and max(fast) < 0.1


def test_dpm1000_times_out_after_250_ms_and_skips_the_cycle() -> None:
    frames = resolve("dpm1000", simulate("dpm1000", 20.0, "slow_replies@5+10:latency=300"))
    reqs = [f for f in frames if f.direction == "request" and 6 < f.t - T0 < 14]
    gaps = np.diff([f.t for f in reqs])
    # Each request waits its 250 ms ACCESS_TIMEOUT; a failed voltage read skips the current and
    # alarm reads (the driver's 'continue').
    assert np.median(gaps) == pytest.approx(0.25, abs=0.01)
    assert not [f for f in reqs if f.command == 0x0040]
    late = [f for f in frames if f.direction == "reply" and 6 < f.t - T0 < 14]
    assert late, "the late answers still arrive"


# -- configuration errors ------------------------------------------------------------------


def test_faults_of_the_reference_charger_and_unknown_modules_are_refused() -> None:
    with pytest.raises(InputError, match="reference charger"):
        ProtocolSimulator(ProtocolSimConfig("infy", faults=(parse_fault("cooling_no_flow@1"),)))
    with pytest.raises(InputError, match="module=9"):
        ProtocolSimulator(
            ProtocolSimConfig("infy", faults=(parse_fault("module_silent@1:module=9"),))
        )
    with pytest.raises(InputError, match=r"1\.\.1 for --protocol"):
        ProtocolSimulator(ProtocolSimConfig("beg1k075g", modules=2))
    with pytest.raises(InputError, match="unknown protocol"):
        ProtocolSimulator(ProtocolSimConfig("infinity"))


@pytest.mark.parametrize("scenario", protocol_scenario_names())
def test_every_scenario_runs_on_every_protocol(scenario: str) -> None:
    faults = tuple(protocol_scenario_faults(scenario))
    for protocol in PROTOCOL_NAMES:
        if protocol == "uugreen" and scenario == "rejected_requests":
            continue
        sim = ProtocolSimulator(ProtocolSimConfig(protocol, faults=faults))
        assert len(FrameBatch.concat(list(sim.chunks(15.0)))) > 50


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_simulate_protocol_writes_a_capture(
    protocol: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"{protocol}.log.gz"
    assert (
        main(
            [
                "simulate",
                "--protocol",
                protocol,
                "-o",
                str(out),
                "-d",
                "20",
                "--scenario",
                "module_not_answering",
            ]
        )
        == 0
    )
    assert f"{protocol} protocol" in capsys.readouterr().out
    with gzip.open(out, "rt") as fh:
        assert fh.readline().startswith("(")
    batch, stats = read_capture(out)
    assert stats.frames == len(batch)
    assert len(batch) > 100
    frames = resolve(protocol, batch)
    assert {f.direction for f in frames} == {"request", "reply"}


def test_list_scenarios_names_the_protocol_scenarios_and_faults(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--protocol", "infy", "--list-scenarios"]) == 0
    text = capsys.readouterr().out
    for name in protocol_scenario_names():
        assert name in text
    for kind in (
        "controller_silent",
        "rejected_requests",
        "slow_replies",
        "module_silent",
        "duplicate_address",
    ):
        assert kind in text
    assert main(["simulate", "--list-scenarios"]) == 0
    text = capsys.readouterr().out
    assert "healthy" in text and "controller_not_polling" in text and "cooling_flow" in text


def test_protocol_faults_need_a_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.log"
    assert main(["simulate", "-o", str(out), "-d", "2", "--fault", "controller_silent@1"]) != 0
    assert "--protocol" in capsys.readouterr().err
    assert (
        main(
            [
                "simulate",
                "--protocol",
                "winline",
                "-o",
                str(out),
                "-d",
                "2",
                "--scenario",
                "module_offline",
            ]
        )
        != 0
    )
    assert "unknown protocol scenario" in capsys.readouterr().err


def test_simulate_protocol_refuses_a_real_interface_without_transmit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["simulate", "--protocol", "huawei", "-i", "pcan", "-c", "PCAN_USBBUS1", "-d", "1"])
        != 0
    )
    assert "--transmit" in capsys.readouterr().err


def test_protocol_simulator_live_on_a_virtual_bus() -> None:
    sender = open_sim_bus("virtual", "proto-live")
    receiver = can.Bus(interface="virtual", channel="proto-live", ignore_config=True)
    try:
        sim = ProtocolSimulator(ProtocolSimConfig("uugreen"))
        runner = SimulatorRunner(sender, sim, speed=4.0, duration=2.0)
        runner.start()
        deadline = time.monotonic() + 5.0
        received: list[can.Message] = []
        while time.monotonic() < deadline and runner.running:
            msg = receiver.recv(timeout=0.05)
            if msg is not None:
                received.append(msg)
        runner.stop()
        while (msg := receiver.recv(timeout=0.05)) is not None:
            received.append(msg)
        assert runner.error is None and runner.frames_sent == len(received) > 50
        assert all(m.is_extended_id for m in received)
        modules = {(m.arbitration_id >> 14) & 0x7F for m in received}
        assert modules == {1, 2}
        assert not math.isnan(received[-1].timestamp)
    finally:
        sender.shutdown()
        receiver.shutdown()


def test_the_scalar_exchange_agrees_with_the_vectorized_fault_checks() -> None:
    # DPM1000's dependency chain asks one request at a time (Context.exchange); the answers
    # the engine then builds use the vectorized checks: both must say the same.
    specs = (
        "module_silent@3+2:module=1",
        "controller_silent@6+1",
        "slow_replies@8+3:module=0,latency=120",
        "rejected_requests@9+3:module=1,ratio=0.5",
    )
    sim = ProtocolSimulator(
        ProtocolSimConfig("dpm1000", modules=2, faults=tuple(parse_fault(s) for s in specs))
    )
    ctx = sim.ctx
    rng = np.random.default_rng(5)
    t = T0 + rng.uniform(0.0, 14.0, 400)
    module = rng.integers(0, 2, 400)
    kind = rng.choice([0x0001, 0x0007, 0x0040, 0x0021], 400)
    twin = np.zeros(400, bool)
    latency = ctx.latency(t, module, kind, twin)
    answered = ~ctx.silent(t, module) & ~ctx.not_asked(t, module)
    error = ctx.error_code(t, module, kind, 0xF2)
    for i in range(400):
        ok, lat, code = ctx.exchange(float(t[i]), int(module[i]), int(kind[i]), 0xF2)
        assert (
            ok == answered[i] and lat == pytest.approx(latency[i], abs=1e-12) and code == error[i]
        )
    assert not answered.all() and (error != 0).any() and (latency > 0.1).any()


@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_faults_without_an_end_from_the_start(protocol: str) -> None:
    # A module that never answers (or is never asked) from the first second to the last:
    # the schedule reasons per fault window, never poll by poll to a far horizon.
    frames = resolve(protocol, simulate(protocol, 20.0, "module_silent@0:module=all"))
    assert frames and not [f for f in frames if f.direction == "reply"]
    assert not len(simulate(protocol, 20.0, "controller_silent@0"))


# -- what today's analyze makes of a simulated protocol bus with its pack ------------------


def _analyze(tmp_path: Path, protocol: str, *args: str) -> dict[str, Any]:
    import json

    capture = tmp_path / f"{protocol}.log.gz"
    report = tmp_path / f"{protocol}.json"
    assert main(["simulate", "--protocol", protocol, "-o", str(capture), "-d", "60", *args]) == 0
    assert (
        main(["analyze", str(capture), "--dbc", str(pack_path(protocol)), "--json", str(report)])
        == 0
    )
    data: dict[str, Any] = json.loads(report.read_text())
    return data


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOL_NAMES)
def test_analyze_finds_nothing_on_a_healthy_protocol_bus(protocol: str, tmp_path: Path) -> None:
    report = _analyze(tmp_path, protocol)
    serious = [f for f in report["findings"] if f["severity"] in ("warning", "critical")]
    assert not serious, serious


@pytest.mark.slow
def test_analyze_tells_a_silent_module_from_the_polls_that_go_on(tmp_path: Path) -> None:
    # Requests are the controller's frames (family power_module_poll, node = the module
    # asked); the module's presence is its answers (power_module) alone.
    report = _analyze(tmp_path, "winline", "--scenario", "module_not_answering")
    nodes = {(n["family"], n["address"]): n for n in report["nodes"]}
    assert nodes[("power_module", 4)]["dropouts"] >= 1 or not nodes[("power_module", 4)]["online"]
    assert (
        nodes[("power_module_poll", 4)]["online"]
        and nodes[("power_module_poll", 4)]["dropouts"] == 0
    )
    assert all(nodes[("power_module", k)]["dropouts"] == 0 for k in (1, 2, 3))
    # The module's silence as a node is found, folded under the liveness cause
    # (candiag/data/causes.toml): the module does not answer the requests.
    top = {f["code"]: f for f in report["findings"]}
    assert "CAN_MODULE_NOT_ANSWERING" in top
    folded = {c["code"] for c in top["CAN_MODULE_NOT_ANSWERING"].get("consequences", [])}
    assert folded & {"CAN_NODE_OFFLINE", "CAN_NODE_INTERMITTENT"}
