"""The metrics endpoint over real sockets on 127.0.0.1: routing, listen addresses, basic auth."""

from __future__ import annotations

import base64
import inspect
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from candiag.errors import ConfigError
from candiag.metrics.http import (
    DEFAULT_LISTEN,
    MetricsServer,
    parse_listen,
    start_metrics_server,
)
from candiag.metrics.webconfig import BasicAuthChecker, WebConfig


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(url: str, *, user: str | None = None, password: str = "") -> Reply:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, dict(err.headers), err.read())


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("candiag_test_value", "A value only this test exports.", registry=registry)
    gauge.set(42)
    return registry


@pytest.fixture
def server(registry: CollectorRegistry) -> Iterator[MetricsServer]:
    running = start_metrics_server("127.0.0.1:0", registry)
    yield running
    running.stop()


def test_metrics_path_serves_the_given_registry(server: MetricsServer) -> None:
    reply = fetch(f"{server.url}/metrics")
    assert reply.status == 200
    assert b"candiag_test_value 42.0" in reply.body
    assert reply.headers["Content-Type"].startswith("text/plain")


def test_landing_page_links_metrics(server: MetricsServer) -> None:
    reply = fetch(f"{server.url}/")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b'<a href="/metrics">' in reply.body


@pytest.mark.parametrize("path", ["/nope", "/metrics/extra", "/favicon.ico"])
def test_other_paths_are_404(server: MetricsServer, path: str) -> None:
    reply = fetch(f"{server.url}{path}")
    assert reply.status == 404
    assert b"candiag_test_value" not in reply.body


def test_server_thread_is_named_and_stop_joins_it(registry: CollectorRegistry) -> None:
    import threading

    running = start_metrics_server("127.0.0.1:0", registry)
    names = [t.name for t in threading.enumerate()]
    assert "candiag-http" in names
    fetch(f"{running.url}/metrics")
    running.stop()
    running.stop()  # idempotent
    assert all(t.name != "candiag-http" for t in threading.enumerate())
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", running.port)) != 0


def test_default_listen_address_is_loopback_only() -> None:
    assert DEFAULT_LISTEN == "127.0.0.1:9847"
    default = inspect.signature(start_metrics_server).parameters["listen"].default
    assert default == DEFAULT_LISTEN
    assert parse_listen(default) == ("127.0.0.1", 9847)


def test_ephemeral_port_is_reported(server: MetricsServer) -> None:
    assert server.address == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def _ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback_available(), reason="no IPv6 loopback on this machine")
def test_ipv6_listen_address(registry: CollectorRegistry) -> None:
    with start_metrics_server("[::1]:0", registry) as running:
        assert running.address == "::1"
        assert running.url.startswith("http://[::1]:")
        assert fetch(f"{running.url}/metrics").status == 200


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9847", ("127.0.0.1", 9847)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:0", ("localhost", 0)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ],
)
def test_parse_listen_accepts(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        (":9847", "no host"),
        ("127.0.0.1", "expected host:port"),
        ("127.0.0.1:99999", "port must be 0-65535"),
        ("127.0.0.1:http", "port must be 0-65535"),
        ("[::1]9847", "missing ']:port'"),
        ("::1:9847", "expected host:port"),
    ],
)
def test_parse_listen_rejects_with_a_fix(listen: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_listen(listen)
    assert message in str(info.value)
    assert "127.0.0.1:9847" in str(info.value)


def test_port_in_use_is_a_clear_error(server: MetricsServer, registry: CollectorRegistry) -> None:
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        start_metrics_server(f"127.0.0.1:{server.port}", registry)


# --- basic auth ------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def password_hash() -> bytes:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4))


@pytest.fixture
def auth_server(registry: CollectorRegistry, password_hash: bytes) -> Iterator[MetricsServer]:
    config = WebConfig(basic_auth_users={"prometheus": password_hash})
    running = start_metrics_server("127.0.0.1:0", registry, config)
    yield running
    running.stop()


def test_no_credentials_get_401_with_challenge(auth_server: MetricsServer) -> None:
    reply = fetch(f"{auth_server.url}/metrics")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="candiag"'
    assert b"candiag_test_value" not in reply.body


def test_wrong_password_gets_401(auth_server: MetricsServer) -> None:
    reply = fetch(f"{auth_server.url}/metrics", user="prometheus", password="guess")
    assert reply.status == 401
    assert b"candiag_test_value" not in reply.body


def test_unknown_user_gets_401(auth_server: MetricsServer) -> None:
    assert fetch(f"{auth_server.url}/metrics", user="mallory", password=PASSWORD).status == 401


def test_right_password_gets_metrics(auth_server: MetricsServer) -> None:
    for _ in range(3):
        reply = fetch(f"{auth_server.url}/metrics", user="prometheus", password=PASSWORD)
        assert reply.status == 200
        assert b"candiag_test_value 42.0" in reply.body


def test_landing_page_also_needs_auth(auth_server: MetricsServer) -> None:
    assert fetch(f"{auth_server.url}/").status == 401
    assert fetch(f"{auth_server.url}/", user="prometheus", password=PASSWORD).status == 200


@pytest.mark.parametrize(
    "header", ["Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"nocolon").decode()]
)
def test_malformed_authorization_gets_401(auth_server: MetricsServer, header: str) -> None:
    request = urllib.request.Request(
        f"{auth_server.url}/metrics", headers={"Authorization": header}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    info.value.close()
    assert info.value.code == 401


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_successful_checks_are_cached_briefly(password_hash: bytes) -> None:
    clock = FakeClock()
    checker = BasicAuthChecker({"prometheus": password_hash}, cache_seconds=60, clock=clock)
    assert checker.check("prometheus", PASSWORD)
    assert checker.check("prometheus", PASSWORD)
    assert checker.bcrypt_checks == 1, "the second check must come from the cache"
    clock.now += 61
    assert checker.check("prometheus", PASSWORD)
    assert checker.bcrypt_checks == 2, "an expired cache entry must be re-checked with bcrypt"


def test_cache_never_accepts_a_different_password(password_hash: bytes) -> None:
    checker = BasicAuthChecker({"prometheus": password_hash}, clock=FakeClock())
    assert checker.check("prometheus", PASSWORD)
    assert not checker.check("prometheus", PASSWORD + "x")
    assert not checker.check("prometheus", "")
    assert checker.bcrypt_checks == 3


def test_failures_are_not_cached_and_unknown_users_cost_a_hash(password_hash: bytes) -> None:
    checker = BasicAuthChecker({"prometheus": password_hash}, clock=FakeClock())
    assert not checker.check("nobody", PASSWORD)
    assert not checker.check("nobody", PASSWORD)
    assert checker.bcrypt_checks == 2


def test_connections_beyond_the_limit_are_closed(registry: CollectorRegistry) -> None:
    import http.client

    with start_metrics_server("127.0.0.1:0", registry, max_connections=1) as running:
        idle = socket.create_connection(("127.0.0.1", running.port), timeout=5)
        try:
            # The idle connection holds the only slot until it sends or times out.
            time.sleep(0.2)
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
                try:
                    conn.request("GET", "/metrics")
                    conn.getresponse()
                finally:
                    conn.close()
            assert running.rejected_connections == 1
        finally:
            idle.close()
        # Closing the idle connection frees its slot: scrapes are served again.
        deadline = time.monotonic() + 5
        while True:
            try:
                assert fetch(f"{running.url}/metrics").status == 200
                break
            except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
                assert time.monotonic() < deadline, "slot not released"
                time.sleep(0.05)
