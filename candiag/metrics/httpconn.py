"""The metrics endpoint's connections: request heads, canned replies, client trouble, sockets.

What :mod:`candiag.metrics.http`'s selector server needs below the level of its state machine:
the per-connection record, the request-head syntax it accepts, the fixed replies it sends when a
client misbehaves, the once-a-minute summary of that misbehaviour, and the socket helpers that
bound every send by a deadline.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("candiag.metrics.http")

# Client trouble is summarized in one log line at most this often.
LOG_INTERVAL_S = 60.0
LISTEN_BACKLOG = 128
SEND_PIECE = 16 * 1024


# -- client trouble: counted, summarized ---------------------------------------------------

TROUBLE_TEXT = {
    "head_timeout": "sent no complete request in time",
    "evicted": "closed to make room (no request yet)",
    "refused": "refused (too many connections)",
    "tls_failed": "failed the TLS handshake",
    "bad_request": "sent a malformed request",
    "too_large": "sent a request head that is too large",
    "write_timeout": "did not read the response in time",
    "reset": "reset the connection",
    "accept_failed": "could not be accepted (out of file descriptors?)",
}


class TroubleLog:
    """Counts client misbehaviour; logs one summary line at most every ``interval_s``."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._pending: collections.Counter[str] = collections.Counter()
        self._addresses: collections.Counter[str] = collections.Counter()
        self._next_log = 0.0
        self.totals: collections.Counter[str] = collections.Counter()

    def count(self, kind: str, address: str) -> None:
        with self._lock:
            self.totals[kind] += 1
            self._pending[kind] += 1
            self._addresses[address] += 1
        self.flush()

    def flush(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not self._pending or (now < self._next_log and not force):
                return
            kinds = ", ".join(f"{n} {TROUBLE_TEXT[k]}" for k, n in self._pending.most_common())
            top = self._addresses.most_common(3)
            more = len(self._addresses) - len(top)
            self._pending.clear()
            self._addresses.clear()
            self._next_log = now + self._interval_s
        sources = ", ".join(f"{a} ({n})" for a, n in top) + (f" and {more} more" if more else "")
        log.warning(
            "metrics endpoint: clients %s; from %s (summarized at most every %.0f s)",
            kinds,
            sources,
            self._interval_s,
        )


# -- connections ---------------------------------------------------------------------------


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    address: str
    accepted: float
    deadline: float
    handshaking: bool = False
    buffer: bytearray = field(default_factory=bytearray)
    head_end: int = 0


HEAD_END = re.compile(rb"\r?\n\r?\n")
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
HTTP_VERSION = re.compile(r"HTTP/1\.[0-9]")
MAX_HEADERS = 100


def status_response(status: str, text: str, extra: str = "") -> bytes:
    body = f"{status}: {text}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + body


REFUSED = status_response(
    "503 Service Unavailable", "too many connections, try again", "Retry-After: 1\r\n"
)
TIMED_OUT = status_response("408 Request Timeout", "the request head came too slowly")
TOO_LARGE = status_response("431 Request Header Fields Too Large", "request head too large")
BAD_REQUEST = status_response("400 Bad Request", "malformed request")


class BadRequest(Exception):
    pass


def listen_socket(family: socket.AddressFamily, sockaddr: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform == "win32":
            # Windows' SO_REUSEADDR would let a second process bind this port too (scrapes then
            # reach either); SO_EXCLUSIVEADDRUSE refuses it, as POSIX does (docs/windows.md).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # "[::]:port" should mean IPv6 only, as written; no silent dual-stack.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def send_before(sock: socket.socket, data: bytes, deadline: float) -> None:
    """``sendall`` that ends at ``deadline`` however slowly the client reads (TimeoutError).

    In pieces of one TLS record, each with the time that is left: a socket timeout bounds
    one call, not the whole response.
    """
    view = memoryview(data)
    for start in range(0, len(view), SEND_PIECE):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        sock.sendall(view[start : start + SEND_PIECE])


def close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
