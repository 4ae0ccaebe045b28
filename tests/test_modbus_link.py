"""RTU/TCP framing: CRC, read-only requests, classification of scripted replies."""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from candiag.errors import PortUnavailableError, SafetyError
from candiag.modbus.link import (
    TcpLink,
    crc_ok,
    make_link,
    read_pdu,
    read_request,
    t35_seconds,
    with_crc,
)

REPO = Path(__file__).resolve().parents[1]


def test_crc_matches_frames_captured_from_a_real_djsf1352() -> None:
    # docs/meters.md §1.4: request 01 03 00 00 00 06 C5 C8 and its reply.
    assert read_request(1, 3, 0, 6) == bytes.fromhex("010300000006C5C8")
    reply = bytes.fromhex("01030C000000030000000200000 14D3FE5".replace(" ", ""))
    assert crc_ok(reply)
    assert not crc_ok(reply[:-1] + b"\x00")


@pytest.mark.parametrize("function", [0, 5, 6, 7, 15, 16, 22, 23, 43])
def test_only_read_function_codes_can_be_built(function: int) -> None:
    with pytest.raises(SafetyError, match="only reads"):
        read_pdu(function, 0, 1)


def test_read_limits_are_enforced() -> None:
    assert read_pdu(4, 0, 125) == bytes([4, 0, 0, 0, 125])
    with pytest.raises(ValueError):
        read_pdu(4, 0, 126)
    with pytest.raises(ValueError):
        read_pdu(3, 0xFFFF, 2)


def test_no_write_call_exists_outside_the_simulator() -> None:
    write_api = re.compile(
        r"\b(write_coils?|write_registers?|mask_write_register|readwrite_registers|"
        r"write_file_record|ModbusSerialClient|ModbusTcpClient)\b"
    )
    offenders = []
    for path in (REPO / "candiag").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if rel == "candiag/modbus/sim.py" or rel.startswith("candiag/sim/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if write_api.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


def test_t35_silence() -> None:
    assert t35_seconds(9600) == pytest.approx(3.5 * 11 / 9600)
    assert t35_seconds(2400) == pytest.approx(0.016041, rel=1e-3)
    assert t35_seconds(38400) == 0.00175


def test_port_strings() -> None:
    assert make_link("/dev/ttyUSB0").description == "/dev/ttyUSB0 9600 8N1"
    assert make_link("rtu+tcp://127.0.0.1:5020").description == "rtu+tcp://127.0.0.1:5020"
    assert make_link("tcp://[::1]:502").description == "tcp://::1:502"
    with pytest.raises(PortUnavailableError, match="expected a tty path"):
        make_link("udp://127.0.0.1:502")


class ScriptedGateway:
    """A TCP server on 127.0.0.1 answering each request with the next scripted bytes."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.requests: list[bytes] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="test-gateway")
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn:
            for reply in self.replies:
                request = conn.recv(256)
                if not request:
                    return
                self.requests.append(request)
                if reply:
                    conn.sendall(reply)
            conn.recv(256)  # until the client closes

    def close(self) -> None:
        self.server.close()
        self.thread.join(5)


@pytest.fixture
def gateway(request: pytest.FixtureRequest) -> Iterator[ScriptedGateway]:
    gw = ScriptedGateway(request.param)
    yield gw
    gw.close()


def _regs(unit: int, fc: int, *values: int) -> bytes:
    return with_crc(bytes([unit, fc, 2 * len(values)]) + struct.pack(f">{len(values)}H", *values))


REPLIES = [
    _regs(1, 4, 0x4366, 0x0000),  # ok
    b"",  # no answer
    _regs(1, 4, 1, 2)[:-1] + b"\x00",  # bad CRC
    _regs(1, 4, 1)[:4],  # truncated
    with_crc(bytes([1, 0x84, 0x02])),  # exception 2
    _regs(7, 4, 1, 2),  # another slave
    _regs(1, 3, 1, 2),  # answers another function (a late reply)
    _regs(1, 4, 1),  # wrong byte count
]
EXPECTED = [
    "ok",
    "timeout",
    "crc",
    "crc",
    "exception",
    "wrong_device",
    "bad_reply",  # the asked unit broke the protocol (or, on RTU, replied late)
    "bad_reply",
]


@pytest.mark.parametrize("gateway", [REPLIES], indirect=True)
def test_rtu_replies_are_classified(gateway: ScriptedGateway) -> None:
    link = TcpLink("127.0.0.1", gateway.port, rtu=True)
    try:
        outcomes = [link.transact(1, 4, 0, 2, 0.15) for _ in REPLIES]
    finally:
        link.close()
    assert [t.outcome for t in outcomes] == EXPECTED
    assert outcomes[0].registers == [0x4366, 0] and outcomes[0].duration < 0.15
    assert outcomes[4].exception_code == 2 and "illegal data address" in outcomes[4].detail
    assert "unit id 7" in outcomes[5].detail
    assert "function code 3 to a function code 4 request" in outcomes[6].detail
    assert "2 data bytes for 2 registers (4 bytes asked)" in outcomes[7].detail
    assert all(r == read_request(1, 4, 0, 2) for r in gateway.requests)


def _mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@pytest.mark.parametrize(
    "gateway",
    [[_mbap(1, 1, bytes([4, 2, 0, 9])), _mbap(9, 1, bytes([4, 2, 0, 9])), b""]],
    indirect=True,
)
def test_modbus_tcp_replies_are_classified(gateway: ScriptedGateway) -> None:
    link = TcpLink("127.0.0.1", gateway.port, rtu=False)
    try:
        outcomes = [link.transact(1, 4, 0, 1, 0.15) for _ in range(3)]
    finally:
        link.close()
    assert [t.outcome for t in outcomes] == ["ok", "wrong_device", "timeout"]
    assert outcomes[0].registers == [9]


def test_a_closed_connection_is_an_io_failure_and_closes_the_link() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    link = TcpLink("127.0.0.1", server.getsockname()[1], rtu=True)
    link.open()
    conn, _ = server.accept()
    conn.close()
    server.close()
    tx = link.transact(1, 3, 0, 1, 0.5)
    assert tx.outcome == "io" and not link.is_open
    with pytest.raises(PortUnavailableError, match="cannot connect"):
        link.open()
