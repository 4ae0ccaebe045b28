"""Live ingest on python-can's virtual bus: batches flow, loss and reconnect, never a send."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path
from typing import Any

import can
import pytest

from candiag.errors import BusUnavailableError, SafetyError
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FrameBatch
from candiag.ingest.live import BusReader, open_listen_only_bus
from tests.waiting import wait_for


class NoSendBus(can.BusABC):
    """A virtual bus wrapper that fails the test on any transmit attempt."""

    sends = 0

    def __init__(self, channel: str, fail_after: int | None = None) -> None:
        self._inner = can.Bus(interface="virtual", channel=channel, ignore_config=True)
        self._fail_after = fail_after
        self._received = 0
        super().__init__(channel=channel)

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if self._fail_after is not None and self._received >= self._fail_after:
            raise can.CanOperationError("adapter unplugged (simulated)")
        msg = self._inner.recv(timeout)
        if msg is not None:
            self._received += 1
        return msg, False

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        NoSendBus.sends += 1
        raise AssertionError("candiag tried to transmit")

    def shutdown(self) -> None:
        self._inner.shutdown()
        super().shutdown()


def sender(channel: str) -> can.BusABC:
    return can.Bus(interface="virtual", channel=channel, ignore_config=True)


def test_open_listen_only_virtual_refuses_send() -> None:
    bus = open_listen_only_bus("virtual", "live-refuse", None)
    try:
        with pytest.raises(SafetyError):
            bus.send(can.Message(arbitration_id=1))
        with pytest.raises(SafetyError):
            bus.send_periodic(can.Message(arbitration_id=1), 0.1)
    finally:
        bus.shutdown()


@pytest.mark.parametrize(
    ("interface", "channel", "message"),
    [
        ("socketcan", "can0", "ip -details link show can0"),  # no AF_CAN on this kernel
        ("no-such-interface", "x", "unknown python-can interface"),
    ],
)
def test_missing_interface_is_a_clear_error(interface: str, channel: str, message: str) -> None:
    with pytest.raises(BusUnavailableError, match=message) as info:
        open_listen_only_bus(interface, channel, 500_000)
    assert repr(interface) in str(info.value)


def test_listen_only_switch_is_passed_and_not_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real_bus = can.Bus

    def fake_bus(**kwargs: Any) -> can.BusABC:
        seen.update(kwargs)
        return real_bus(interface="virtual", channel="live-kwargs", ignore_config=True)

    monkeypatch.setattr(can, "Bus", fake_bus)
    bus = open_listen_only_bus("pcan", "PCAN_USBBUS1", 250_000, state=can.BusState.ACTIVE)
    bus.shutdown()
    assert seen["state"] == can.BusState.PASSIVE and seen["ignore_config"] is True
    assert seen["bitrate"] == 250_000 and seen["auto_reset"] is True
    assert seen["receive_own_messages"] is False


def test_frames_flow_in_batches_via_callback() -> None:
    got: list[FrameBatch] = []
    lock = threading.Lock()

    def on_batch(batch: FrameBatch) -> None:
        with lock:
            got.append(batch)

    tx = sender("live-cb")
    reader = BusReader(
        "virtual", "live-cb", on_batch=on_batch, batch_interval=0.05, max_batch=50
    ).start()
    try:
        wait_for(lambda: reader.up)
        for i in range(120):
            tx.send(can.Message(arbitration_id=0x18FF5000 + i, data=bytes([i]) * 8))
        tx.send(can.Message(is_error_frame=True, arbitration_id=0x40, data=bytes(8)))
        wait_for(lambda: reader.frames_received == 121)
    finally:
        reader.stop()
        tx.shutdown()
    assert not reader.running and not reader.up
    batch = FrameBatch.concat(got)
    assert len(batch) == 121 and all(len(b) <= 50 for b in got) and len(got) >= 3
    assert batch.can_id[:120].tolist() == [0x18FF5000 + i for i in range(120)]
    assert (batch.flags[:120] == FLAG_EXTENDED).all()
    assert batch.flags[120] == FLAG_ERROR and batch.can_id[120] == 0x40
    assert batch.channels == ["live-cb"]


def test_drain_mode_and_stop_joins_quickly() -> None:
    tx = sender("live-drain")
    reader = BusReader("virtual", "live-drain", batch_interval=0.02).start()
    try:
        wait_for(lambda: reader.up)
        for i in range(10):
            tx.send(can.Message(arbitration_id=i, is_extended_id=False, data=[i]))
        wait_for(lambda: reader.frames_received == 10)
        wait_for(lambda: len(reader.drain()) == 10 or reader.frames_received == 10)
    finally:
        started = time.monotonic()
        reader.stop()
        stopped_in = time.monotonic() - started
        tx.shutdown()
    assert stopped_in < 1.0 and not reader.running


def test_drain_returns_all_frames_in_order() -> None:
    tx = sender("live-order")
    reader = BusReader("virtual", "live-order", batch_interval=0.01, max_batch=7).start()
    drained: list[FrameBatch] = []
    try:
        wait_for(lambda: reader.up)
        for i in range(100):
            tx.send(can.Message(arbitration_id=i, is_extended_id=False))
        wait_for(lambda: reader.frames_received == 100)
        time.sleep(0.05)
        drained.append(reader.drain())
    finally:
        reader.stop()
        tx.shutdown()
    drained.append(reader.drain())
    assert FrameBatch.concat(drained).can_id.tolist() == list(range(100))


def test_lost_bus_is_reported_and_reconnected() -> None:
    NoSendBus.sends = 0
    opened: list[NoSendBus] = []

    def factory() -> can.BusABC:
        bus = NoSendBus("live-lost", fail_after=5 if not opened else None)
        opened.append(bus)
        return bus

    tx = sender("live-lost")
    reader = BusReader(
        "virtual", "live-lost", bus_factory=factory, backoff_min=0.05, batch_interval=0.02
    ).start()
    try:
        wait_for(lambda: reader.up)
        for i in range(6):
            tx.send(can.Message(arbitration_id=i, is_extended_id=False))
        wait_for(lambda: reader.reconnects == 1 and reader.up)
        assert "adapter unplugged" in reader.last_error
        assert reader.down_since is None
        tx.send(can.Message(arbitration_id=0x55, is_extended_id=False))
        wait_for(lambda: reader.frames_received == 6)
    finally:
        reader.stop()
        tx.shutdown()
    assert len(opened) == 2 and NoSendBus.sends == 0
    assert reader.drain().can_id.tolist() == [0, 1, 2, 3, 4, 0x55]


def test_missing_at_start_then_appears_with_backoff() -> None:
    attempts: list[float] = []

    def factory() -> can.BusABC:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise BusUnavailableError("CAN interface 'virtual' channel 'live-late': not there")
        return NoSendBus("live-late")

    reader = BusReader(
        "virtual", "live-late", bus_factory=factory, backoff_min=0.1, backoff_max=1.0
    ).start()
    try:
        wait_for(lambda: len(attempts) >= 2)
        status = reader.status()
        assert not status.up and status.down_since is not None and "not there" in status.last_error
        wait_for(lambda: reader.up)
    finally:
        reader.stop()
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Waits are never shorter than the backoff, which doubles: 0.1, 0.2, 0.4 s.
    assert len(gaps) == 3
    assert gaps[0] >= 0.095 and gaps[1] >= 0.195 and gaps[2] >= 0.395
    assert reader.reconnects == 1


def test_callback_exception_does_not_stop_reception() -> None:
    calls: list[int] = []

    def on_batch(batch: FrameBatch) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("consumer bug")

    tx = sender("live-cbfail")
    reader = BusReader("virtual", "live-cbfail", on_batch=on_batch, batch_interval=0.02).start()
    try:
        wait_for(lambda: reader.up)
        tx.send(can.Message(arbitration_id=1))
        wait_for(lambda: len(calls) == 1)
        tx.send(can.Message(arbitration_id=2))
        wait_for(lambda: len(calls) == 2)
    finally:
        reader.stop()
        tx.shutdown()
    assert reader.callback_errors == 1 and reader.up is False


def test_link_is_down_reads_the_interface_flags(tmp_path: Path) -> None:
    from candiag.ingest.live import link_is_down

    (tmp_path / "can0").mkdir()
    (tmp_path / "can0" / "flags").write_text("0x1002\n")  # IFF_UP clear: administratively down
    (tmp_path / "can1").mkdir()
    (tmp_path / "can1" / "flags").write_text("0x10c1\n")  # IFF_UP set
    assert link_is_down("socketcan", "can0", tmp_path)
    assert not link_is_down("socketcan", "can1", tmp_path)
    # Unknown interface, unreadable flags or another python-can interface: the socket decides.
    assert not link_is_down("socketcan", "can9", tmp_path)
    assert not link_is_down("virtual", "can0", tmp_path)
