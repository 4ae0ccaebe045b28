"""Read-only Modbus transactions over serial RTU, RTU over TCP, and Modbus TCP.

Owns the wire: building read requests (function codes 1-4 only), reading the reply,
and classifying every transaction as ``ok``, ``timeout``, ``crc``, ``exception``,
``wrong_device``, ``bad_reply`` or ``io``.

Why our own thin framing instead of pymodbus' client: the classification is the
point of this module, and pymodbus hides it.  Its RTU framer drops a reply with a bad
CRC silently and keeps waiting, so a CRC error looks exactly like a timeout
(docs/meters.md §2); it retries internally, and its client has write methods.
Here a request is 8 bytes we build, the reply is read with one deadline, and the raw
bytes decide: nothing received is ``timeout``; bytes that do not form a frame with a
valid CRC (corrupt, truncated, two slaves talking at once) are ``crc``; a valid frame
from another slave id (Modbus TCP: for another transaction, a late reply) is
``wrong_device``; function code | 0x80 is ``exception`` with its code; a valid frame from
the asked slave that breaks the protocol (a function code that is neither the one asked
nor its exception, a byte count that disagrees with the frame, a reply of another size
than asked) is ``bad_reply``, with what was wrong in its detail; an OS/serial error is
``io``.  A frame whose length fields lie is read to its end and judged by its CRC, so a
lying byte count is a ``bad_reply``, never a ``crc``.  There is no code path that can write: :func:`read_request`
refuses any function code outside 1-4 with :class:`SafetyError`.  pymodbus is still
what the simulated meters run (a real, independent implementation to test against).

Stale input is flushed before each request (RTU has no transaction id, a late reply
would otherwise be taken for the next one, docs/meters.md §3).

Serial ports go through pyserial's own API only (``read`` with a fixed short timeout, set
once when the port opens), never ``select`` on a file descriptor or termios, so the same
code runs on a Linux tty and a Windows COM port (pyserial: serialposix or serialwin32).
pyserial is imported when a serial port is opened: Modbus TCP needs none of it.  A port
that opens but refuses the asked setting (a parity a pty or adapter cannot do) raises
:class:`~candiag.errors.SettingUnsupportedError`, so a scan can skip that setting.

Why one file of ~620 lines: the framing, the failure classes and the two transports
(serial, TCP) share one read loop with its deadline.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from candiag.errors import PortUnavailableError, SafetyError, SettingUnsupportedError

if TYPE_CHECKING:
    import serial

READ_FUNCTION_CODES = frozenset({1, 2, 3, 4})
OUTCOMES = ("ok", "timeout", "crc", "exception", "wrong_device", "bad_reply", "io")
FAILURE_REASONS = OUTCOMES[1:]
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}
MAX_RTU_FRAME = 256


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus RTU CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + struct.pack("<H", crc16(frame))


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == struct.unpack("<H", frame[-2:])[0]


def read_pdu(function: int, address: int, count: int) -> bytes:
    """The PDU of a read request; the only kind of request candiag can build."""
    if function not in READ_FUNCTION_CODES:
        raise SafetyError(
            f"Modbus function code {function} is not a read; candiag only reads "
            "(function codes 1-4) and never writes to a meter"
        )
    limit = 2000 if function in (1, 2) else 125
    if not 1 <= count <= limit or not 0 <= address <= 0xFFFF or address + count > 0x10000:
        raise ValueError(f"read of {count} items at {address} is outside the Modbus limits")
    return struct.pack(">BHH", function, address, count)


def read_request(unit_id: int, function: int, address: int, count: int) -> bytes:
    """An RTU read request frame (8 bytes with CRC)."""
    return with_crc(bytes([unit_id]) + read_pdu(function, address, count))


def t35_seconds(baudrate: int, bits_per_char: int = 11) -> float:
    """The RTU inter-frame silence: 3.5 characters, fixed 1.75 ms above 19200 baud."""
    if baudrate > 19200:
        return 0.00175
    return 3.5 * bits_per_char / baudrate


@dataclass(frozen=True)
class Transaction:
    """One request and what came back, classified."""

    outcome: str  # one of OUTCOMES
    function: int
    address: int
    count: int
    unit_id: int
    duration: float  # seconds from sending to the end of the reply (or the timeout)
    data: bytes = b""  # the reply's data bytes when ok
    exception_code: int | None = None
    detail: str = ""
    request: bytes = b""
    reply: bytes = b""

    @property
    def registers(self) -> list[int]:
        """Big-endian 16-bit registers of an ok FC3/FC4 reply."""
        return list(struct.unpack(f">{len(self.data) // 2}H", self.data))


class Link(Protocol):
    """An open-able line to one or more slaves; one transaction at a time."""

    description: str

    def open(self) -> None: ...
    def close(self) -> None: ...
    @property
    def is_open(self) -> bool: ...
    def transact(
        self, unit_id: int, function: int, address: int, count: int, timeout: float
    ) -> Transaction: ...


# -- the byte streams -----------------------------------------------------------------
class _Stream(Protocol):
    def write(self, data: bytes) -> None: ...
    def read(self, n: int, deadline: float) -> bytes: ...
    def flush_input(self) -> None: ...
    def close(self) -> None: ...


def _read_until(n: int, deadline: float, chunk: Callable[[int, float], bytes | None]) -> bytes:
    """Up to ``n`` bytes before ``deadline``; ``chunk(missing, wait)`` gives what arrives
    within ``wait`` seconds, ``None`` when nothing does (then the read ends)."""
    out = b""
    while len(out) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        got = chunk(n - len(out), remaining)
        if got is None:
            break
        out += got
    return out


# pyserial's read timeout, set once when the port opens: a read returns as soon as the bytes
# asked for are in, or after this long with what came; the reply's deadline is checked
# between reads, so it is overshot by at most this much.
SERIAL_READ_SLICE_S = 0.01


def port_errors() -> tuple[type[BaseException], ...]:
    """What a serial port raises when it fails: OSError (pyserial's SerialException is one),
    and on POSIX termios.error, which serialposix lets through when a setting is refused.
    termios is looked up, not imported: it is loaded only if serialposix loaded it."""
    termios = sys.modules.get("termios")
    error: type[BaseException] | None = getattr(termios, "error", None)
    return (OSError,) if error is None else (OSError, error)


def _open_errors() -> tuple[type[BaseException], ...]:
    """What opening a serial port raises: :func:`port_errors`, and ValueError for a
    setting pyserial itself refuses."""
    return (*port_errors(), ValueError)


class _SerialStream:
    """pyserial reads with a short fixed timeout (:data:`SERIAL_READ_SLICE_S`)."""

    def __init__(self, ser: serial.Serial) -> None:
        self.ser = ser

    def write(self, data: bytes) -> None:
        self.ser.write(data)
        self.ser.flush()

    def read(self, n: int, deadline: float) -> bytes:
        return _read_until(n, deadline, self._chunk)

    def _chunk(self, n: int, wait: float) -> bytes | None:
        # Empty after the slice: _read_until asks again until its deadline.  A device gone
        # away raises SerialException (an OSError) from read.
        data: bytes = self.ser.read(n)
        return data

    def flush_input(self) -> None:
        self.ser.reset_input_buffer()

    def close(self) -> None:
        self.ser.close()


class _SocketStream:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, n: int, deadline: float) -> bytes:
        return _read_until(n, deadline, self._chunk)

    def _chunk(self, n: int, wait: float) -> bytes | None:
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(n)
        except TimeoutError:
            return None
        if not chunk:
            raise ConnectionResetError("the peer closed the connection")
        return chunk

    def flush_input(self) -> None:
        while select.select([self.sock], [], [], 0)[0]:
            if not self.sock.recv(4096):
                raise ConnectionResetError("the peer closed the connection")

    def close(self) -> None:
        self.sock.close()


# -- framings -----------------------------------------------------------------------
@dataclass
class _Exchange:
    """One request on the wire; builds the :class:`Transaction` for its outcome."""

    function: int
    address: int
    count: int
    unit_id: int
    request: bytes
    start: float = field(default_factory=time.monotonic)
    reply: bytes = b""

    def done(self, outcome: str, **kw: object) -> Transaction:
        return Transaction(
            outcome,
            self.function,
            self.address,
            self.count,
            self.unit_id,
            time.monotonic() - self.start,
            request=self.request,
            reply=self.reply,
            **kw,  # type: ignore[arg-type]
        )


def _send(stream: _Stream, ex: _Exchange) -> None:
    """Drop stale input (a late reply must not answer this request), then send."""
    stream.flush_input()
    ex.start = time.monotonic()
    stream.write(ex.request)


def _rtu_transaction(
    stream: _Stream, unit_id: int, function: int, address: int, count: int, timeout: float
) -> Transaction:
    ex = _Exchange(
        function, address, count, unit_id, read_request(unit_id, function, address, count)
    )
    _send(stream, ex)
    deadline = ex.start + timeout
    ex.reply = reply = stream.read(3, deadline)
    if not reply:
        return ex.done("timeout", detail=f"no answer within {timeout:g} s")
    if len(reply) == 3:
        if reply[1] & 0x80:
            remaining = 2
        elif reply[1] in READ_FUNCTION_CODES:
            remaining = reply[2] + 2
        else:
            remaining = 0
        if remaining:
            ex.reply = reply = reply + stream.read(remaining, deadline)
    if len(reply) < 5 or not crc_ok(reply):
        # Wait out the rest of a garbled frame so its tail is not taken for the next reply;
        # a frame that ends later than its byte count said is whole once that rest is in.
        ex.reply = reply = reply + stream.read(
            MAX_RTU_FRAME, min(deadline, time.monotonic() + 0.02)
        )
        if len(reply) < 4 or not crc_ok(reply):
            return ex.done(
                "crc", detail=f"garbled or truncated reply ({len(reply)} bytes, bad CRC)"
            )
    return _classify_pdu(ex.done, unit_id, reply[0], function, count, reply[1:-2], rtu=True)


def _classify_pdu(
    done: _Done,
    unit_id: int,
    replied_id: int,
    function: int,
    count: int,
    pdu: bytes,
    *,
    rtu: bool = False,
) -> Transaction:
    if replied_id != unit_id:
        return done(
            "wrong_device",
            detail=f"reply from unit id {replied_id}, asked {unit_id} "
            "(two meters with one id, or a gateway mixing up ids)",
        )
    if pdu[0] == function | 0x80 and len(pdu) >= 2:
        code = pdu[1]
        name = EXCEPTION_NAMES.get(code, "unknown exception")
        return done("exception", exception_code=code, detail=f"exception {code} ({name})")
    problem = _protocol_problem(function, count, pdu)
    if problem:
        # RTU has no transaction id: a late reply to an earlier request looks the same.
        late = " (or a late reply to an earlier request: timeout too short?)" if rtu else ""
        return done("bad_reply", detail=f"the meter broke the protocol: {problem}{late}")
    return done("ok", data=bytes(pdu[2:]))


def _protocol_problem(function: int, count: int, pdu: bytes) -> str:
    """What makes ``pdu`` (from the asked unit) not a reply to this read, or ''."""
    if pdu[0] != function:
        return f"reply with function code {pdu[0]} to a function code {function} request"
    if len(pdu) < 2:
        return "reply without its byte count"
    if pdu[1] != len(pdu) - 2:
        return f"byte count {pdu[1]} but {len(pdu) - 2} data bytes in the frame"
    expected = count * 2 if function in (3, 4) else (count + 7) // 8
    if pdu[1] != expected:
        what = "registers" if function in (3, 4) else "coils/inputs"
        return f"{pdu[1]} data bytes for {count} {what} ({expected} bytes asked)"
    return ""


class _Done(Protocol):
    def __call__(self, outcome: str, **kw: object) -> Transaction: ...


def _mbap_transaction(
    stream: _Stream,
    tid: int,
    unit_id: int,
    function: int,
    address: int,
    count: int,
    timeout: float,
) -> Transaction:
    pdu = read_pdu(function, address, count)
    request = struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit_id) + pdu
    ex = _Exchange(function, address, count, unit_id, request)
    _send(stream, ex)
    deadline = ex.start + timeout
    ex.reply = header = stream.read(7, deadline)
    if not header:
        return ex.done("timeout", detail=f"no answer within {timeout:g} s")
    if len(header) < 7:
        return ex.done("crc", detail=f"truncated MBAP header ({len(header)} bytes)")
    r_tid, proto, length, r_unit = struct.unpack(">HHHB", header)
    if proto != 0 or not 2 <= length <= 254:
        return ex.done("crc", detail=f"malformed MBAP header {header.hex()}")
    body = stream.read(length - 1, deadline)
    ex.reply = header + body
    if len(body) < length - 1:
        return ex.done("crc", detail="truncated Modbus TCP reply")
    if r_tid != tid:
        return ex.done("wrong_device", detail=f"reply to transaction {r_tid}, expected {tid}")
    return _classify_pdu(ex.done, unit_id, r_unit, function, count, body)


# -- links --------------------------------------------------------------------------
class StreamLink(ABC):
    """What every link shares: its byte stream while open, and :meth:`transact`, which opens
    the link when needed and turns an OS/serial error into an ``io`` transaction (closing
    the link, so the poller reopens it).  Subclasses open and close the stream and choose
    the framing of one exchange (:meth:`_exchange`)."""

    description: str
    _stream: _Stream | None = None

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _exchange(
        self, unit_id: int, function: int, address: int, count: int, timeout: float
    ) -> _Run:
        """The framing of one request/reply on the open stream."""

    def transact(
        self, unit_id: int, function: int, address: int, count: int, timeout: float
    ) -> Transaction:
        if self._stream is None:
            self.open()
        stream = self._stream
        assert stream is not None
        run = self._exchange(unit_id, function, address, count, timeout)
        start = time.monotonic()
        try:
            return run(stream)
        except port_errors() as err:
            self.close()
            return Transaction(
                "io",
                function,
                address,
                count,
                unit_id,
                time.monotonic() - start,
                detail=f"{self.description}: {err}",
            )


class _Run(Protocol):
    def __call__(self, stream: _Stream, /) -> Transaction: ...


def rtu_exchange(unit_id: int, function: int, address: int, count: int, timeout: float) -> _Run:
    """One RTU request/reply (serial line, or RTU through a TCP gateway)."""
    return lambda s: _rtu_transaction(s, unit_id, function, address, count, timeout)


class SerialRtuLink(StreamLink):
    """Modbus RTU on a serial port (RS-485 adapter); opened exclusively."""

    def __init__(
        self, port: str, baudrate: int, parity: str = "N", stopbits: int = 1, bytesize: int = 8
    ) -> None:
        self.port, self.baudrate, self.parity = port, baudrate, parity
        self.stopbits, self.bytesize = stopbits, bytesize
        self.description = f"{port} {baudrate} {bytesize}{parity}{stopbits}"
        self._stream: _SerialStream | None = None

    def open(self) -> None:
        if self._stream is not None:
            return
        if not _is_windows_port(self.port) and not os.path.exists(self.port):
            raise PortUnavailableError(
                f"serial port {self.port} does not exist (adapter unplugged? {_list_ports_hint()})"
            )
        serial = _pyserial()
        settings = {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
        }
        try:
            ser = serial.Serial(self.port, timeout=SERIAL_READ_SLICE_S, exclusive=True, **settings)
        except _open_errors() as err:
            if self._opens_at_defaults():
                raise SettingUnsupportedError(
                    f"serial port {self.port} cannot use {self.description.split(' ', 1)[1]}: {err}"
                ) from err
            raise PortUnavailableError(
                f"cannot open serial port {self.port}: {err} ({_port_busy_hint()})"
            ) from err
        self._stream = _SerialStream(ser)

    def _opens_at_defaults(self) -> bool:
        """Whether the port opens at 9600 8N1: then the port is fine and the setting that
        was asked is what it refuses (a pty has no parity E; an adapter a baud rate)."""
        serial = _pyserial()
        try:
            ser = serial.Serial(self.port, timeout=SERIAL_READ_SLICE_S, exclusive=True)
        except _open_errors():
            return False
        ser.close()
        return True

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                stream.close()
            except port_errors():
                pass  # the port is already gone; nothing left to release

    def _exchange(
        self, unit_id: int, function: int, address: int, count: int, timeout: float
    ) -> _Run:
        return rtu_exchange(unit_id, function, address, count, timeout)


class TcpLink(StreamLink):
    """Modbus TCP (MBAP) or RTU framing through a TCP gateway (``rtu=True``)."""

    def __init__(self, host: str, port: int, *, rtu: bool, connect_timeout: float = 2.0) -> None:
        self.host, self.port, self.rtu = host, port, rtu
        self.connect_timeout = connect_timeout
        scheme = "rtu+tcp" if rtu else "tcp"
        self.description = f"{scheme}://{host}:{port}"
        self._stream: _SocketStream | None = None
        self._tid = 0

    def open(self) -> None:
        if self._stream is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as err:
            raise PortUnavailableError(
                f"cannot connect to Modbus gateway {self.description}: {err} "
                "(gateway powered and reachable? port right?)"
            ) from err
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._stream = _SocketStream(sock)

    def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()

    def _exchange(
        self, unit_id: int, function: int, address: int, count: int, timeout: float
    ) -> _Run:
        if self.rtu:
            return rtu_exchange(unit_id, function, address, count, timeout)
        self._tid = (self._tid + 1) & 0xFFFF
        tid = self._tid
        return lambda s: _mbap_transaction(s, tid, unit_id, function, address, count, timeout)


def _pyserial() -> Any:
    """pyserial, whose backend for this system (serialwin32, serialposix) must load."""
    try:
        import serial
    except ImportError as err:
        raise PortUnavailableError(
            f"serial ports are unavailable in this Python: pyserial's backend for {sys.platform} "
            f"cannot load ({err}); reinstall candiag (pip install --force-reinstall pyserial), "
            "or reach the meters through a Modbus gateway (tcp://HOST:PORT, rtu+tcp://HOST:PORT)"
        ) from err
    return serial


def _is_windows_port(port: str) -> bool:
    """On Windows a port is a device name (COM3, \\\\.\\COM12), not a file to look for:
    pyserial's open says whether it exists."""
    return sys.platform == "win32"


def _list_ports_hint() -> str:
    if sys.platform == "win32":
        return "Device Manager lists it under Ports (COM & LPT), or `python -m serial.tools.list_ports`"
    return "check `ls /dev/serial/by-id/` and the port setting"


def _port_busy_hint() -> str:
    if sys.platform == "win32":
        return (
            "right COM number (Device Manager, Ports)? another program using it? only one "
            "program can open a COM port"
        )
    return "another program using it? permission: add the user to the dialout group"


def make_link(
    port: str, *, baudrate: int = 9600, parity: str = "N", stopbits: int = 1
) -> SerialRtuLink | TcpLink:
    """A link from a port string: a tty path, ``tcp://host:port`` or ``rtu+tcp://host:port``."""
    if "://" not in port:
        return SerialRtuLink(port, baudrate, parity, stopbits)
    try:
        parts = urlsplit(port)
        scheme, host, port_number = parts.scheme, parts.hostname, parts.port
    except ValueError:  # "Port out of range 0-65535", "Invalid IPv6 URL"
        scheme, host, port_number = "", None, None
    if scheme not in ("tcp", "rtu+tcp") or not host or port_number is None:
        raise PortUnavailableError(
            f"cannot use port {port!r}: expected a tty path, tcp://HOST:PORT (Modbus TCP) "
            "or rtu+tcp://HOST:PORT (RTU through a TCP gateway)"
        )
    return TcpLink(host, port_number, rtu=scheme == "rtu+tcp")
