"""The metrics endpoint's listen address: one parser for the config loader and the server.

``host:port`` or ``[v6addr]:port``; port 0 picks a free port. The default keeps the endpoint
on the loopback address until an operator opens it deliberately (docs/operations.md).
"""

from __future__ import annotations

import re

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9847
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
LISTEN_HINT = "write it as 127.0.0.1:9847, [::1]:9847 or 0.0.0.0:9847"

_LISTEN_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]*)):(?P<port>[^:\[\]]*)$")


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9847"`` / ``"[::1]:9847"`` -> (host, port); ValueError says what is wrong."""
    text = listen.strip()
    if text.startswith("[") and "]:" not in text:
        raise ValueError("missing ']:port'")
    m = _LISTEN_RE.match(text)
    if m is None:
        raise ValueError("expected host:port")
    host = m.group("v6") or m.group("host")
    if not host:
        raise ValueError("no host; candiag never listens on every interface implicitly")
    port = m.group("port")
    if not port.isascii() or not port.isdigit():
        raise ValueError("port must be 0-65535")
    digits = port.lstrip("0") or "0"
    # Length first: int() refuses strings of 4,300+ digits with a ValueError of its own.
    if len(digits) > 5 or int(digits) > 65535:
        raise ValueError("port must be 0-65535")
    return host, int(digits)
