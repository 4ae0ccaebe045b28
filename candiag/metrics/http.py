"""The HTTP(S) endpoint: ``/metrics`` from a registry, a landing page at ``/``, 404 elsewhere.

A small threaded wsgiref server around ``prometheus_client.make_wsgi_app`` (which keeps
content negotiation, gzip and ``name[]`` filtering). We do not use
``prometheus_client.start_http_server`` because it binds ``0.0.0.0`` by default, has no
basic auth and performs the TLS handshake in the accepting thread, so one stalled client
would block every scrape; here the handshake runs in the connection's own thread with a
timeout. The default listen address ``127.0.0.1:9847`` keeps the endpoint local until an
operator opens it deliberately. The exporter registry range 9100-9999 of the Prometheus
"Default port allocations" wiki page has been fully allocated since 2023, so an internal
exporter cannot get a unique registered port; 9847 is candiag's fixed choice (a fixed port
keeps the ``instance`` label stable across restarts). Check it is free on your controllers.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import socket
import ssl
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from candiag import __version__
from candiag.errors import ConfigError
from candiag.metrics.webconfig import BasicAuthChecker, WebConfig

if TYPE_CHECKING:
    from collections.abc import Iterable
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
# A connection that sends nothing (or stalls in the TLS handshake) is dropped after this.
CONNECTION_TIMEOUT_SECONDS = 10.0
REALM = "candiag"
# Connections served at once; more are closed at once. A controller must not run out of
# threads because something hammers the endpoint (Prometheus needs one at a time).
MAX_CONNECTIONS = 16


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


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise ConfigError(
            f"listen address {host}:{port}: cannot resolve {host!r} ({err.strerror}); "
            "use an IP address"
        ) from err
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


class _Handler(WSGIRequestHandler):
    timeout = CONNECTION_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s %s", self.address_string(), format % args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # Non-daemon threads joined on close: stop() leaves nothing running behind.
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(
        self,
        family: socket.AddressFamily,
        sockaddr: tuple[Any, ...],
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
    ) -> None:
        self.address_family = family
        self.ssl_context = ssl_context
        self.tls_handshake_failures = 0
        self.rejected_connections = 0
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(sockaddr, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # "[::]:port" should mean IPv6 only, as written; no silent dual-stack.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        if self.ssl_context is None:
            return sock, addr
        # The handshake happens later, in the connection's thread (finish_request).
        return self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.rejected_connections += 1
            log.warning("too many connections; closing the one from %s", client_address)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        threading.current_thread().name = "candiag-http-conn"
        request.settimeout(CONNECTION_TIMEOUT_SECONDS)
        if isinstance(request, ssl.SSLSocket):
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as err:
                self.tls_handshake_failures += 1
                log.info("TLS handshake with %s failed: %s", client_address, err)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("error while serving %s", client_address, exc_info=True)


class MetricsServer:
    """A running endpoint. ``stop()`` shuts it down and joins its threads."""

    def __init__(self, server: _ThreadingServer, thread: threading.Thread, tls: bool) -> None:
        self._server = server
        self._thread = thread
        sockaddr = server.socket.getsockname()
        self.address: str = sockaddr[0]
        self.port: int = sockaddr[1]
        self.scheme = "https" if tls else "http"

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def tls_handshake_failures(self) -> int:
        return self._server.tls_handshake_failures

    @property
    def rejected_connections(self) -> int:
        return self._server.rejected_connections

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_metrics_server(
    listen: str = DEFAULT_LISTEN,
    registry: CollectorRegistry | None = None,
    web_config: WebConfig | None = None,
    *,
    max_connections: int = MAX_CONNECTIONS,
) -> MetricsServer:
    """Serve ``registry`` on ``listen`` (port 0 picks a free port) until ``stop()``."""
    host, port = parse_listen(listen)
    family, sockaddr = _resolve(host, port)
    tls_context = web_config.tls.ssl_context() if web_config and web_config.tls else None
    auth = (
        BasicAuthChecker(web_config.basic_auth_users)
        if web_config and web_config.requires_auth
        else None
    )
    if auth is not None and tls_context is None:
        log.warning("basic auth without TLS sends passwords in clear text; add tls_server_config")
    try:
        server = _ThreadingServer(family, sockaddr, tls_context, max_connections)
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {listen}: {err.strerror}; choose a free port and a local "
            "address ([metrics] listen)"
        ) from err
    server.set_app(make_app(registry if registry is not None else REGISTRY, auth))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="candiag-http"
    )
    thread.start()
    running = MetricsServer(server, thread, tls=tls_context is not None)
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
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
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
