"""The HTTP(S) endpoint: ``/metrics`` from a registry, a landing page at ``/``, 404 elsewhere.

``prometheus_client.make_wsgi_app`` builds the responses (content negotiation, gzip,
``name[]`` filtering); this module only gets requests to it and answers back. We do not
use ``prometheus_client.start_http_server`` because it binds ``0.0.0.0`` by default, has no
basic auth and performs the TLS handshake in the accepting thread. We do not use wsgiref's
server either: it reads a request in a thread per connection with a timeout per read, so 16
clients sending one header line every 5 s held every slot and refused every scrape for 45 s
("slowloris"), and a client that sent nothing left a traceback in the log.

How clients are kept from starving each other (numbers in :class:`ServerLimits`):

* One selector thread accepts connections, does the TLS handshakes and reads request heads,
  all non-blocking. A slow client costs a file descriptor, never a thread. The whole request
  head (handshake included) must arrive within ``head_deadline_s`` of the accept.
* Only complete requests reach a fixed pool of worker threads, taken round-robin per client
  address, so the requests of one address wait behind each other, not in front of others'.
  A response must be written within ``response_deadline_s``.
* Connections are limited per client address and in total. When a limit is reached, the
  connection that has waited longest for its request head (of the same address, or of the
  address holding the most connections) is closed to make room: a slow client is displaced
  by the next real one, whose request arrives at once. When every connection has its
  request, the new one gets ``503`` (plain HTTP) or is closed (TLS).
* A client's misbehaviour (timeout, reset, bad request, failed handshake) is never a
  traceback: it is counted, and one summary line is logged at most every
  ``LOG_INTERVAL_S``.

The default listen address ``127.0.0.1:9847`` keeps the endpoint local until an operator
opens it deliberately. The exporter registry range 9100-9999 of the Prometheus "Default port
allocations" wiki page has been fully allocated since 2023, so an internal exporter cannot
get a unique registered port; 9847 is candiag's fixed choice (a fixed port keeps the
``instance`` label stable across restarts). Check it is free on your controllers.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import html
import io
import logging
import re
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from candiag import __version__
from candiag.errors import ConfigError
from candiag.metrics.webconfig import BasicAuthChecker, WebConfig

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
REALM = "candiag"
# Client trouble is summarized in one log line at most this often.
LOG_INTERVAL_S = 60.0
# A refused plain-HTTP connection is kept this long to read what the client sent, so the
# close does not reset the connection before the client has read the 503.
LINGER_S = 1.0
_LISTEN_BACKLOG = 128
_ACCEPTS_PER_WAKEUP = 64
_SEND_PIECE = 16 * 1024
_ACCEPT_PAUSE_S = 0.1


@dataclass(frozen=True)
class ServerLimits:
    """How much the endpoint gives each client and all of them together."""

    # Open connections in every state (reading, queued, being answered).
    max_connections: int = 64
    # ... of which one client address may hold this many.
    max_per_address: int = 16
    # Threads that build and write responses (Prometheus needs one at a time).
    workers: int = 4
    # The TLS handshake and the whole request head within this, measured from the accept.
    head_deadline_s: float = 5.0
    # The response written within this (Prometheus' default scrape timeout is 10 s).
    response_deadline_s: float = 10.0
    # A Prometheus request head is a few hundred bytes (with basic auth).
    max_head_bytes: int = 16 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port`` → (host, port); ConfigError says how to write it."""
    hint = "write it as 127.0.0.1:9847, [::1]:9847 or 0.0.0.0:9847"
    if listen.startswith("["):
        host, sep, port_text = listen[1:].partition("]:")
        if not sep:
            raise ConfigError(f"listen address {listen!r}: missing ']:port'; {hint}")
    else:
        host, sep, port_text = listen.rpartition(":")
        if not sep or ":" in host:
            raise ConfigError(f"listen address {listen!r}: expected host:port; {hint}")
    if not host:
        raise ConfigError(
            f"listen address {listen!r}: no host; candiag never listens on every interface "
            f"implicitly, {hint}"
        )
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"listen address {listen!r}: port must be 0-65535; {hint}")
    return host, int(port_text)


def resolve_listen(listen: str) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The address family and socket address to bind ``listen`` to; ConfigError otherwise.

    ``candiag check-config`` calls this too, so a host that does not resolve is found
    before the daemon is started.
    """
    host, port = parse_listen(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(
            f"metrics.listen: cannot resolve {host!r} ({reason}); use an IP address such as "
            "127.0.0.1 or the controller's own address"
        ) from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


# -- client trouble: counted, summarized ---------------------------------------------------

_TROUBLE_TEXT = {
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


class _TroubleLog:
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
            kinds = ", ".join(f"{n} {_TROUBLE_TEXT[k]}" for k, n in self._pending.most_common())
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
class _Conn:
    sock: socket.socket
    address: str
    accepted: float
    deadline: float
    handshaking: bool = False
    buffer: bytearray = field(default_factory=bytearray)
    head_end: int = 0


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(r"HTTP/1\.[0-9]")
_MAX_HEADERS = 100


def _status_response(status: str, text: str, extra: str = "") -> bytes:
    body = f"{status}: {text}\n".encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode() + body


_REFUSED = _status_response(
    "503 Service Unavailable", "too many connections, try again", "Retry-After: 1\r\n"
)
_TIMED_OUT = _status_response("408 Request Timeout", "the request head came too slowly")
_TOO_LARGE = _status_response("431 Request Header Fields Too Large", "request head too large")
_BAD_REQUEST = _status_response("400 Bad Request", "malformed request")


class _BadRequest(Exception):
    pass


class _Server:
    """The listening socket, the selector thread and the worker pool."""

    def __init__(
        self,
        family: socket.AddressFamily,
        sockaddr: tuple[Any, ...],
        app: WSGIApplication,
        ssl_context: ssl.SSLContext | None,
        limits: ServerLimits,
    ) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.limits = limits
        self.trouble = _TroubleLog()
        self.listener = _listen(family, sockaddr)
        self.sockname = self.listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._per_address: collections.Counter[str] = collections.Counter()
        self._open = 0
        self._queues: dict[str, collections.deque[_Conn]] = {}
        self._rotation: collections.deque[str] = collections.deque()
        # Loop thread only: connections still reading their head, and refused ones lingering.
        self._reading: dict[_Conn, None] = {}  # insertion order = accept order
        self._lingering: dict[socket.socket, float] = {}
        self._threads: list[threading.Thread] = []
        self._accept_paused_until: float | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self._selector.register(self.listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        loop = threading.Thread(target=self._loop, name="candiag-http")
        self._threads.append(loop)
        for i in range(self.limits.workers):
            self._threads.append(
                threading.Thread(target=self._work, name=f"candiag-http-worker-{i}")
            )
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.sendall(b"x")
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join()
        with self._lock:  # handed over after the workers had left
            left = [conn for queue in self._queues.values() for conn in queue]
            self._queues.clear()
            self._rotation.clear()
        for conn in left:
            _close(conn.sock)
        self.trouble.flush(force=True)

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # -- the selector thread ----------------------------------------------------------------
    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._next_timeout()):
                    if key.data == "listen":
                        self._accept_some()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    elif isinstance(key.data, _Conn):
                        # (An eviction earlier in this batch may have closed it already.)
                        if key.data in self._reading:
                            self._on_readable(key.data)
                    elif key.fileobj in self._lingering:
                        self._on_lingering(key.fileobj)
                self._expire(time.monotonic())
                self.trouble.flush()
        finally:
            self._close_all()

    def _next_timeout(self) -> float:
        # Both are in arrival order and share one delay, so the first of each is the nearest.
        oldest = next(iter(self._reading), None)
        deadlines = [oldest.deadline] if oldest is not None else []
        deadlines += [next(iter(self._lingering.values()))] if self._lingering else []
        if self._accept_paused_until is not None:
            deadlines.append(self._accept_paused_until)
        if not deadlines:
            return 1.0
        return max(0.0, min(1.0, min(deadlines) - time.monotonic()))

    def _accept_some(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                sock, peer = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE, ENFILE, ENOBUFS: the client will see a reset
                self.trouble.count("accept_failed", "?")
                # The listener stays readable: stop accepting briefly instead of spinning.
                self._selector.unregister(self.listener)
                self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE_S
                return
            address = str(peer[0])
            if not self._admit(address):
                self.trouble.count("refused", address)
                self._refuse(sock)
                continue
            now = time.monotonic()
            sock.setblocking(False)
            conn = _Conn(sock, address, now, now + self.limits.head_deadline_s)
            if self.ssl_context is not None:
                try:
                    conn.sock = self.ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, ValueError):
                    self._release(address)
                    sock.close()
                    self.trouble.count("tls_failed", address)
                    continue
                conn.handshaking = True
            self._reading[conn] = None
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def _admit(self, address: str) -> bool:
        """Room for one more connection from ``address``, evicting a slow one if need be.

        The candidate for eviction is read once more first: one whose request has arrived
        is handed to the workers (or closed, if its client left) instead, and the next one
        is tried. Each round removes one connection from the readers, so this ends.
        """
        limits = self.limits
        while True:
            with self._lock:
                if (
                    self._per_address[address] < limits.max_per_address
                    and self._open < limits.max_connections
                ):
                    self._per_address[address] += 1
                    self._open += 1
                    return True
                crowded = self._per_address[address] >= limits.max_per_address
            candidate = self._longest_waiting(address if crowded else None)
            if candidate is None:
                return False
            self._on_readable(candidate)
            if candidate in self._reading:  # still without its request: the slow one
                self.trouble.count("evicted", candidate.address)
                self._drop(candidate, _REFUSED)  # for this client a refusal: it may retry

    def _longest_waiting(self, address: str | None) -> _Conn | None:
        """The connection waiting longest for its request head, of ``address`` or else of
        the address holding the most connections; None when none is waiting."""
        if address is None:
            waiting = {c.address for c in self._reading}
            with self._lock:
                address = max(waiting, key=lambda a: self._per_address[a], default=None)
        return next((c for c in self._reading if c.address == address), None)

    def _refuse(self, sock: socket.socket) -> None:
        if self.ssl_context is not None or len(self._lingering) >= 2 * self.limits.max_connections:
            sock.close()
            return
        sock.setblocking(False)
        try:
            sock.sendall(_REFUSED)  # a fresh socket's buffer takes these few bytes
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._lingering[sock] = time.monotonic() + LINGER_S
        self._selector.register(sock, selectors.EVENT_READ, None)

    def _on_lingering(self, sock: socket.socket) -> None:
        try:
            if sock.recv(4096):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        self._lingering.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()

    def _on_readable(self, conn: _Conn) -> None:
        if conn.handshaking and not self._handshake(conn):
            return
        while True:
            try:
                chunk = conn.sock.recv(self.limits.max_head_bytes + 1 - len(conn.buffer))
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                self._want(conn, selectors.EVENT_READ)
                return
            except ssl.SSLWantWriteError:
                self._want(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLError:
                self.trouble.count("tls_failed", conn.address)
                self._drop(conn)
                return
            except OSError:
                self.trouble.count("reset", conn.address)
                self._drop(conn)
                return
            if not chunk:  # closed before sending a request: a port probe, not trouble
                self._drop(conn)
                return
            start = max(0, len(conn.buffer) - 3)
            conn.buffer += chunk
            end = _HEAD_END.search(conn.buffer, start)
            if end is not None:
                conn.head_end = end.end()
                self._hand_over(conn)
                return
            if len(conn.buffer) > self.limits.max_head_bytes:
                self.trouble.count("too_large", conn.address)
                self._drop(conn, _TOO_LARGE)
                return

    def _handshake(self, conn: _Conn) -> bool:
        try:
            conn.sock.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._want(conn, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._want(conn, selectors.EVENT_WRITE)
            return False
        except (ssl.SSLError, OSError, ValueError) as err:
            self.trouble.count("tls_failed", conn.address)
            log.debug("TLS handshake with %s failed: %s", conn.address, err)
            self._drop(conn)
            return False
        conn.handshaking = False
        return True

    def _want(self, conn: _Conn, events: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(conn.sock, events, conn)

    def _hand_over(self, conn: _Conn) -> None:
        self._reading.pop(conn, None)
        self._selector.unregister(conn.sock)
        with self._lock:
            queue = self._queues.get(conn.address)
            if queue is None:
                queue = self._queues[conn.address] = collections.deque()
                self._rotation.append(conn.address)
            queue.append(conn)
            self._lock.notify()

    def _expire(self, now: float) -> None:
        if self._accept_paused_until is not None and self._accept_paused_until <= now:
            self._accept_paused_until = None
            self._selector.register(self.listener, selectors.EVENT_READ, "listen")
        for conn in list(self._reading):  # oldest first
            if conn.deadline > now:
                break
            self.trouble.count("head_timeout", conn.address)
            self._drop(conn, _TIMED_OUT)
        for sock, deadline in list(self._lingering.items()):
            if deadline <= now:
                self._end_linger(sock)

    def _drop(self, conn: _Conn, reply: bytes | None = None) -> None:
        """Close a connection the loop owns (reading), best-effort reply first."""
        if conn in self._reading:
            del self._reading[conn]
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        if reply is not None and self.ssl_context is None:
            with contextlib.suppress(OSError):
                conn.sock.sendall(reply)
        _close(conn.sock)
        self._release(conn.address)

    def _release(self, address: str) -> None:
        with self._lock:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]
            self._open -= 1

    def _close_all(self) -> None:
        for conn in list(self._reading):
            self._drop(conn)
        for sock in list(self._lingering):
            self._end_linger(sock)
        self._selector.close()
        self.listener.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the workers ------------------------------------------------------------------------
    def _next_request(self) -> _Conn | None:
        with self._lock:
            while not self._rotation:
                if self._stopping.is_set():
                    return None
                self._lock.wait(0.5)
            address = self._rotation.popleft()
            queue = self._queues[address]
            conn = queue.popleft()
            if queue:
                self._rotation.append(address)
            else:
                del self._queues[address]
            return conn

    def _work(self) -> None:
        while True:
            conn = self._next_request()
            if conn is None:
                return
            try:
                if not self._stopping.is_set():
                    self._answer(conn)
            except Exception:  # a bug here must not shrink the pool
                log.exception("metrics endpoint: answering %s failed", conn.address)
            finally:
                _close(conn.sock)
                self._release(conn.address)

    def _answer(self, conn: _Conn) -> None:
        deadline = time.monotonic() + self.limits.response_deadline_s
        try:
            environ = self._environ(conn)
        except _BadRequest:
            self.trouble.count("bad_request", conn.address)
            reply = _BAD_REQUEST
        else:
            reply = self._call_app(environ)
        try:
            _send_before(conn.sock, reply, deadline)
        except TimeoutError:
            self.trouble.count("write_timeout", conn.address)
        except (OSError, ValueError):
            self.trouble.count("reset", conn.address)

    def _environ(self, conn: _Conn) -> dict[str, Any]:
        head = bytes(conn.buffer[: conn.head_end]).decode("latin-1")
        lines = [line.rstrip("\r") for line in head.split("\n")]
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
            raise _BadRequest
        method, target, version = parts
        if not target.startswith("/"):
            target = urlsplit(target).path or "/"  # absolute form (proxies) or '*'
        path, _, query = target.partition("?")
        host, port = self.sockname[0], self.sockname[1]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, "latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": version,
            "REMOTE_ADDR": conn.address,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if self.ssl_context is not None else "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        headers = [line for line in lines[1:] if line]
        if len(headers) > _MAX_HEADERS:
            raise _BadRequest
        for line in headers:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _BadRequest
            if "_" in name:  # as wsgiref: HTTP_X_Y must not be forged by "X_Y:"
                continue
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            value = value.strip(" \t")
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call_app(self, environ: dict[str, Any]) -> bytes:
        response: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            response[:] = [status, headers]
            return lambda data: None

        try:
            result = self.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except Exception:  # a bug in a collector: its traceback, and a 500 for the client
            log.exception("metrics endpoint: building the response failed")
            return _status_response("500 Internal Server Error", "see the candiag log")
        status, headers = response
        lines = [f"HTTP/1.1 {status}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in ("connection",)]
        if not any(k.lower() == "content-length" for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        lines += ["Connection: close", "", ""]
        head = "\r\n".join(lines).encode("latin-1")
        return head if environ["REQUEST_METHOD"] == "HEAD" else head + body


def _listen(family: socket.AddressFamily, sockaddr: tuple[Any, ...]) -> socket.socket:
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
        sock.listen(_LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _send_before(sock: socket.socket, data: bytes, deadline: float) -> None:
    """``sendall`` that ends at ``deadline`` however slowly the client reads (TimeoutError).

    In pieces of one TLS record, each with the time that is left: a socket timeout bounds
    one call, not the whole response.
    """
    view = memoryview(data)
    for start in range(0, len(view), _SEND_PIECE):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        sock.sendall(view[start : start + _SEND_PIECE])


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class MetricsServer:
    """A running endpoint. ``stop()`` shuts it down and joins its threads."""

    def __init__(self, server: _Server, tls: bool) -> None:
        self._server = server
        self.address: str = server.sockname[0]
        self.port: int = server.sockname[1]
        self.scheme = "https" if tls else "http"
        self.limits = server.limits

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def client_trouble(self) -> dict[str, int]:
        """How often each kind of client misbehaviour happened (see ``_TROUBLE_TEXT``)."""
        return dict(self._server.trouble.totals)

    @property
    def tls_handshake_failures(self) -> int:
        return self._server.trouble.totals["tls_failed"]

    @property
    def rejected_connections(self) -> int:
        return self._server.trouble.totals["refused"]

    def stop(self) -> None:
        if self._server.alive:
            self._server.stop()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_metrics_server(
    listen: str = DEFAULT_LISTEN,
    registry: CollectorRegistry | None = None,
    web_config: WebConfig | None = None,
    *,
    limits: ServerLimits | None = None,
) -> MetricsServer:
    """Serve ``registry`` on ``listen`` (port 0 picks a free port) until ``stop()``."""
    family, sockaddr = resolve_listen(listen)
    tls_context = web_config.ssl_context() if web_config is not None else None
    auth = (
        BasicAuthChecker(web_config.basic_auth_users)
        if web_config and web_config.requires_auth
        else None
    )
    if auth is not None and tls_context is None:
        log.warning("basic auth without TLS sends passwords in clear text; add tls_server_config")
    app = make_app(registry if registry is not None else REGISTRY, auth)
    try:
        server = _Server(family, sockaddr, app, tls_context, limits or ServerLimits())
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {listen}: {err.strerror}; choose a free port and a local "
            "address ([metrics] listen)"
        ) from None
    server.start()
    running = MetricsServer(server, tls=tls_context is not None)
    log.info("metrics endpoint on %s/metrics", running.url)
    return running


def make_app(registry: CollectorRegistry, auth: BasicAuthChecker | None = None) -> WSGIApplication:
    """The WSGI application: auth first, then ``/metrics``, ``/`` or 404."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if auth is not None and not _authorized(environ, auth):
            return _respond(
                start_response,
                "401 Unauthorized",
                b"401 Unauthorized: give the user and password from basic_auth_users\n",
                extra=[("WWW-Authenticate", f'Basic realm="{REALM}"')],
            )
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = metrics_app(environ, start_response)
            return body
        if path == "/":
            return _respond(start_response, "200 OK", _LANDING_PAGE, content_type="text/html")
        return _respond(start_response, "404 Not Found", b"404 Not Found: try /metrics\n")

    return app


def _authorized(environ: WSGIEnvironment, auth: BasicAuthChecker) -> bool:
    """Any malformed ``Authorization`` header is a failed login, never an error."""
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep) and auth.check(user, password)


def _respond(
    start_response: StartResponse,
    status: str,
    body: bytes,
    *,
    content_type: str = "text/plain",
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [
        ("Content-Type", f"{content_type}; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ]
    start_response(status, headers + (extra or []))
    return [body]


_LANDING_PAGE = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>candiag exporter</title></head>
<body>
<h1>candiag {html.escape(__version__)}</h1>
<p>CAN and Modbus RS-485 link diagnostics for DC fast chargers.</p>
<p><a href="/metrics">Metrics</a></p>
</body></html>
""".encode()
