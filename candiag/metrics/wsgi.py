"""The WSGI application the endpoint serves: basic auth first, then ``/metrics``, ``/`` or 404.

``prometheus_client.make_wsgi_app`` builds the ``/metrics`` responses (content negotiation,
gzip, ``name[]`` filtering); the server that carries requests to it is
:mod:`candiag.metrics.http`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, make_wsgi_app

from candiag import __version__
from candiag.metrics.webconfig import BasicAuthChecker

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

REALM = "candiag"


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
