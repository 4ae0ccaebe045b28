"""Meters that answer wrongly (issue 13 §1 item 15): a wrong function code or a byte count that
lies is the meter breaking the protocol (``bad_reply``, with what was wrong), not a
``wrong_device``; a meter whose every value is NaN answers, and ``modbus read`` says so.

The peers are real wires: a pseudo-terminal answering RTU (the CLI in a child process opens
it as its serial port) and a Modbus TCP socket on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from candiag.modbus.link import SerialRtuLink, TcpLink, with_crc
from candiag.modbus.sim import SimulatedMeterLine
from tests.adversarial.bounded import run_bounded

Answer = Callable[[bytes], bytes]  # an RTU request (without CRC) -> the reply frame
NAN = 0xFFFF  # two of these make a float32 NaN, as an SDM reports for what it does not measure


@contextmanager
def pty_meter(answer: Answer) -> Iterator[str]:
    """A serial peer on a pseudo-terminal: every 8-byte RTU request gets ``answer(request)``."""
    master, slave = os.openpty()
    stop = threading.Event()

    def serve() -> None:
        pending = b""
        while not stop.is_set():
            if not select.select([master], [], [], 0.02)[0]:
                continue
            try:
                pending += os.read(master, 512)
            except OSError:
                return
            while len(pending) >= 8:
                request, pending = pending[:6], pending[8:]
                reply = answer(request)
                if reply:
                    os.write(master, reply)

    thread = threading.Thread(target=serve, name="pty-meter")
    thread.start()
    try:
        yield os.ttyname(slave)
    finally:
        stop.set()
        thread.join(5.0)
        os.close(master)
        os.close(slave)


@contextmanager
def tcp_meter(answer: Answer) -> Iterator[int]:
    """A Modbus TCP peer on 127.0.0.1: the reply PDU of ``answer``, under the request's MBAP."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5.0)

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            while True:
                try:
                    request = conn.recv(260)
                except OSError:
                    return
                if len(request) < 12:
                    return
                tid, _, _, unit = struct.unpack(">HHHB", request[:7])
                frame = answer(bytes([unit]) + request[7:12])
                pdu = frame[1:-2]
                conn.sendall(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)

    thread = threading.Thread(target=serve, name="tcp-meter")
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        thread.join(5.0)


def registers(request: bytes, fill: Callable[[int], int] = lambda k: k) -> bytes:
    """A correct reply to the read ``request``: its registers hold ``fill(k)``."""
    unit, function, _, count = struct.unpack(">BBHH", request[:6])
    words = struct.pack(f">{count}H", *(fill(k) for k in range(count)))
    return with_crc(bytes([unit, function, 2 * count]) + words)


def wrong_function(request: bytes) -> bytes:
    good = registers(request)
    return with_crc(bytes([good[0], 3 if good[1] == 4 else 4]) + good[2:-2])


def write_echo(request: bytes) -> bytes:
    """A write-multiple-registers echo (FC 16): no read code at all."""
    return with_crc(bytes([request[0], 0x10]) + request[2:6])


def count_says_more(request: bytes) -> bytes:
    good = registers(request)
    return with_crc(good[:2] + bytes([good[2] + 4]) + good[3:-2])


def count_says_less(request: bytes) -> bytes:
    good = registers(request)
    return with_crc(good[:2] + bytes([good[2] - 2]) + good[3:-2])


def fewer_registers(request: bytes) -> bytes:
    """Consistent in itself, but one register short of what was asked."""
    good = registers(request)
    return with_crc(good[:2] + bytes([good[2] - 2]) + good[3:-4])


LIES = {
    "wrong_function": (wrong_function, "function code 3 to a function code 4 request"),
    "write_echo": (write_echo, "function code 16 to a function code 4 request"),
    "count_says_more": (count_says_more, "byte count 8 but 4 data bytes in the frame"),
    "count_says_less": (count_says_less, "byte count 2 but 4 data bytes in the frame"),
    "fewer_registers": (fewer_registers, "2 data bytes for 2 registers (4 bytes asked)"),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_a_lying_rtu_reply_is_a_bad_reply_with_what_was_wrong(lie: str) -> None:
    answer, detail = LIES[lie]
    with pty_meter(answer) as port:
        link = SerialRtuLink(port, 115200)
        try:
            tx = link.transact(1, 4, 0, 2, 0.3)
        finally:
            link.close()
    assert tx.outcome == "bad_reply", tx
    assert detail in tx.detail and "late reply" in tx.detail  # RTU: no transaction id


@pytest.mark.parametrize("lie", ["wrong_function", "count_says_more", "fewer_registers"])
def test_a_lying_modbus_tcp_reply_is_a_bad_reply(lie: str) -> None:
    answer, detail = LIES[lie]
    with tcp_meter(answer) as port:
        link = TcpLink("127.0.0.1", port, rtu=False)
        try:
            tx = link.transact(1, 4, 0, 2, 0.3)
        finally:
            link.close()
    assert tx.outcome == "bad_reply", tx
    assert detail in tx.detail and "late reply" not in tx.detail  # the transaction id matched


def _read(port: str, *extra: str, profile: str = "sdm630") -> dict[str, object]:
    args = ["modbus", "read", "--port", port, "--profile", profile, "--id", "1"]
    result = run_bounded([*args, "--retries", "0", "--timeout", "0.3", "--json", *extra])
    doc: dict[str, object] = json.loads(result.stdout)
    doc["exit"] = result.code
    return doc


def test_modbus_read_counts_a_lying_meter_as_bad_reply_not_wrong_device() -> None:
    with pty_meter(wrong_function) as port:
        doc = _read(port)
    assert doc["exit"] == 1
    failures = doc["device"]["failures"]  # type: ignore[index]
    assert list(failures) == ["bad_reply"] and failures["bad_reply"] >= 1
    assert all(str(e).startswith("bad_reply: the meter broke the protocol") for e in doc["errors"])  # type: ignore[attr-defined]
    assert "errors above" in str(doc["problem"])


def test_modbus_read_of_an_all_nan_meter_says_why_it_has_no_reading() -> None:
    with pty_meter(lambda request: registers(request, lambda k: NAN)) as port:
        doc = _read(port)
        table = run_bounded(
            ["modbus", "read", "--port", port, "--profile", "sdm630", "--retries", "0"]
        )
    assert doc["exit"] == 1 and doc["readings"] == {} and doc["errors"] == []
    assert doc["device"]["up"] is True  # type: ignore[index]
    assert "every value the meter sent is NaN" in str(doc["problem"])
    assert "voltage_l1" in doc["invalid"]  # type: ignore[operator]
    assert table.code == 1
    assert "Every value the meter sent is NaN or infinite" in table.stdout
    assert "register map" in table.stdout and "NaN/inf" in table.stdout


def test_modbus_read_with_some_nan_values_names_them_and_succeeds() -> None:
    def half_nan(request: bytes) -> bytes:
        first = struct.unpack(">H", request[2:4])[0] == 0  # the block holding voltage_l1
        return registers(request, lambda k: (0x4366 if k % 2 == 0 else 0) if first else NAN)

    with pty_meter(half_nan) as port:
        doc = _read(port)
    assert doc["exit"] == 0 and doc["problem"] is None
    assert doc["readings"]["voltage_l1"]["value"] == 230.0  # type: ignore[index]
    invalid = doc["invalid"]
    assert "energy_import_l1" in invalid and not set(invalid) & set(doc["readings"])  # type: ignore[arg-type, call-overload, operator]


def test_a_meter_profile_model_is_never_markup(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[2] / "candiag" / "data" / "meters" / "sdm630.toml"
    text = shipped.read_text()
    model_line = next(ln for ln in text.splitlines() if ln.startswith("model = "))
    profile = tmp_path / "hostile.toml"
    profile.write_text(text.replace(model_line, 'model = "[/] [bold]meter[/bold"'))
    with SimulatedMeterLine([(str(profile), 1)], baudrate=9600) as line:
        result = run_bounded(["modbus", "read", "--port", line.port, "--profile", str(profile)])
    assert result.code == 0, result.stderr
    assert "[/] [bold]meter[/bold at unit id 1" in result.stdout
    assert "Traceback" not in result.stderr


def test_bad_replies_are_their_own_finding_not_duplicate_ids() -> None:
    from candiag.diagnosis.engine import DiagnosisEngine

    meter = {
        "name": "ac_meter",
        "port": "/dev/ttyUSB0",
        "id": 1,
        "profile": "sdm630",
        "up": False,
        "requests": 20,
        "failures": {"bad_reply": 20},
        "exceptions": {},
        "readings": {},
    }
    engine = DiagnosisEngine()
    engine.update(100.0, [], [meter])
    findings = engine.findings()
    assert [f.code for f in findings] == ["MODBUS_BAD_REPLY"]
    assert "break the Modbus protocol (20 of 20 requests)" in findings[0].title
    assert "--port /dev/ttyUSB0 --id 1" in findings[0].fix
