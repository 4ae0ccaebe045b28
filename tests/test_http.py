"""The metrics endpoint over real sockets on 127.0.0.1: routing, listen addresses, basic auth,
deadlines and limits against clients that misbehave."""

from __future__ import annotations

import base64
import inspect
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from candiag.errors import ConfigError
from candiag.metrics.http import (
    DEFAULT_LISTEN,
    MetricsServer,
    ServerLimits,
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


def test_a_password_longer_than_bcrypt_takes_is_a_failed_login(password_hash: bytes) -> None:
    checker = BasicAuthChecker({"prometheus": password_hash}, clock=FakeClock())
    long_password = PASSWORD + "x" * (80 - len(PASSWORD))
    assert not checker.check("prometheus", long_password)
    assert not checker.check("nobody", long_password)
    # Still one bcrypt hash each: the time does not tell a long password from a wrong one.
    assert checker.bcrypt_checks == 2


def test_a_password_whose_first_72_bytes_are_right_is_not_accepted() -> None:
    right = "p" * 72
    checker = BasicAuthChecker(
        {"prometheus": bcrypt.hashpw(right.encode(), bcrypt.gensalt(rounds=4))}, clock=FakeClock()
    )
    assert checker.check("prometheus", right)
    assert not checker.check("prometheus", right + "extra")


def test_long_password_over_http_gets_401_not_500(
    auth_server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    for user in ("prometheus", "nobody"):
        reply = fetch(f"{auth_server.url}/metrics", user=user, password="x" * 200)
        assert reply.status == 401
        assert b"candiag_test_value" not in reply.body
    assert not [r for r in caplog.records if r.exc_info], "a failed login logged a traceback"


@pytest.mark.parametrize(
    "value", [b"Basic \xe9\xe9\xe9", b"Basic " + base64.b64encode("é:é".encode("latin-1"))]
)
def test_an_authorization_header_that_is_not_ascii_or_utf8_gets_401(
    auth_server: MetricsServer, value: bytes
) -> None:
    reply = raw_request(
        auth_server, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + value + b"\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 401 ")


# --- the connection handling: deadlines, limits, misbehaving clients -------------------------


def raw_request(server: MetricsServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` as is and read everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def fast_limits(**kwargs: float) -> ServerLimits:
    defaults: dict[str, float] = {"head_deadline_s": 0.5, "response_deadline_s": 0.5}
    return ServerLimits(**{**defaults, **kwargs})  # type: ignore[arg-type]


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_head_deadline_covers_the_whole_request_not_each_read(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="candiag.metrics.http")
    with start_metrics_server("127.0.0.1:0", registry, limits=fast_limits()) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            started = time.monotonic()
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            closed_after = None
            for _ in range(40):  # a header line every 0.05 s: each read is quick
                time.sleep(0.05)
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    closed_after = time.monotonic() - started
                    break
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408 ") or closed_after is not None
        assert time.monotonic() - started < 1.9, "the deadline was extended by each read"
        assert running.client_trouble["head_timeout"] == 1
    no_tracebacks(caplog)


def test_an_idle_connection_is_one_summarized_line_not_a_traceback(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="candiag.metrics.http")
    with start_metrics_server("127.0.0.1:0", registry, limits=fast_limits()) as running:
        idle = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(3)]
        try:
            assert all(read_all(s).startswith(b"HTTP/1.1 408 ") for s in idle)
        finally:
            for s in idle:
                s.close()
        assert fetch(f"{running.url}/metrics").status == 200
    no_tracebacks(caplog)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # The first is logged at once, the rest summarized (here: when the server stops).
    assert 1 <= len(warnings) <= 2, warnings
    assert "sent no complete request in time" in warnings[0]
    assert "127.0.0.1" in warnings[0]


def test_a_slow_client_is_evicted_to_make_room_for_a_scrape(registry: CollectorRegistry) -> None:
    limits = ServerLimits(max_connections=2, max_per_address=2)
    with start_metrics_server("127.0.0.1:0", registry, limits=limits) as running:
        slow = [socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(2)]
        try:
            slow[0].sendall(b"GET /metrics HTTP/1.1\r\n")  # half a request, then nothing
            time.sleep(0.1)
            reply = fetch(f"{running.url}/metrics")
            assert reply.status == 200 and b"candiag_test_value 42.0" in reply.body
            assert read_all(slow[0]).startswith(b"HTTP/1.1 503 "), "the oldest goes first"
            assert running.client_trouble["evicted"] == 1
        finally:
            for s in slow:
                s.close()


class _Blocking:
    """A collector that holds its scrape until released (a busy worker)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def collect(self) -> Iterator[Any]:
        self.entered.set()
        self.release.wait(5)
        return iter(())


def test_when_every_connection_has_its_request_a_new_one_gets_503() -> None:
    registry = CollectorRegistry()
    blocking = _Blocking()
    registry.register(blocking)  # type: ignore[arg-type]
    limits = ServerLimits(max_connections=2, max_per_address=2, workers=1)
    with start_metrics_server("127.0.0.1:0", registry, limits=limits) as running:
        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(fetch(f"{running.url}/metrics").status)
        )
        first.start()
        assert blocking.entered.wait(5)
        second = threading.Thread(target=lambda: results.append(fetch(f"{running.url}/").status))
        second.start()
        deadline = time.monotonic() + 5
        while running._server._open < 2:  # the second request is queued behind the first
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)
        reply = raw_request(running, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable")
        assert b"Retry-After: 1" in reply
        assert running.rejected_connections == 1
        blocking.release.set()
        first.join(5)
        second.join(5)
        assert sorted(results) == [200, 200]


class _Huge:
    """One gauge with 8 MB of HELP text: more than the socket buffers on both ends hold."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("candiag_huge", "x" * 8_000_000, value=1)


def test_a_client_that_does_not_read_its_response_frees_the_worker() -> None:
    registry = CollectorRegistry()
    registry.register(_Huge())  # type: ignore[arg-type]
    limits = fast_limits(workers=1)
    with start_metrics_server("127.0.0.1:0", registry, limits=limits) as running:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", running.port))
        try:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
            deadline = time.monotonic() + 5
            while not running.client_trouble.get("write_timeout"):
                assert time.monotonic() < deadline, "the response deadline did not end the write"
                time.sleep(0.05)
            # The only worker is free again.
            assert fetch(f"{running.url}/").status == 200
        finally:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"NOT A REQUEST\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/9.9\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", b"400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),  # TLS to plain HTTP
    ],
)
def test_malformed_requests_get_a_4xx_and_no_traceback(
    server: MetricsServer, caplog: pytest.LogCaptureFixture, request_bytes: bytes, status: bytes
) -> None:
    reply = raw_request(server, request_bytes)
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:80]
    assert fetch(f"{server.url}/metrics").status == 200
    no_tracebacks(caplog)


def test_head_gets_headers_and_underscored_headers_are_dropped(server: MetricsServer) -> None:
    reply = raw_request(server, b"GET /metrics HTTP/1.0\r\nAccept_Encoding: gzip\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Encoding: gzip" not in head  # "Accept_Encoding" is not Accept-Encoding
    assert b"candiag_test_value 42.0" in body
    assert b"Connection: close" in head


def test_stop_closes_queued_and_half_read_connections(registry: CollectorRegistry) -> None:
    running = start_metrics_server("127.0.0.1:0", registry)
    half = socket.create_connection(("127.0.0.1", running.port), timeout=5)
    try:
        half.sendall(b"GET /met")
        time.sleep(0.1)
        started = time.monotonic()
        running.stop()
        assert time.monotonic() - started < 2
        assert read_all(half) == b""
    finally:
        half.close()


def test_wrong_passwords_are_hashed_one_at_a_time(
    password_hash: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import candiag.metrics.webconfig as webconfig

    real = webconfig.bcrypt.checkpw
    active, most = 0, 0
    lock = threading.Lock()

    def counting(password: bytes, hashed: bytes) -> bool:  # the real hash, counted
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            return bool(real(password, hashed))
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    checker = BasicAuthChecker({"prometheus": password_hash})
    threads = [
        threading.Thread(target=checker.check, args=("prometheus", f"wrong{i}"), name=f"t{i}")
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert checker.bcrypt_checks == 8
    assert most == 1, "wrong passwords may take at most one core (CONCURRENT_HASHES)"


def _usable(address: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _usable("127.0.0.2"), reason="127.0.0.2 is not usable here")
def test_at_the_total_limit_the_address_holding_most_loses_its_slowest(
    registry: CollectorRegistry,
) -> None:
    limits = ServerLimits(max_connections=4, max_per_address=4)
    with start_metrics_server("127.0.0.1:0", registry, limits=limits) as running:

        def slow(source: str) -> socket.socket:
            sock = socket.create_connection(
                ("127.0.0.1", running.port), timeout=5, source_address=(source, 0)
            )
            time.sleep(0.05)  # accepted in this order
            return sock

        mine = slow("127.0.0.1")
        theirs = [slow("127.0.0.2") for _ in range(3)]
        try:
            assert fetch(f"{running.url}/metrics").status == 200
            assert read_all(theirs[0]).startswith(b"HTTP/1.1 503 ")  # oldest of the crowd
            mine.settimeout(0.2)
            with pytest.raises(TimeoutError):
                mine.recv(1)  # older, but its address holds one connection: kept
        finally:
            for sock in [mine, *theirs]:
                sock.close()
