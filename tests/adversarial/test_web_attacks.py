"""Attacks on the metrics endpoint and its web config (issue 13 §1 items 2, 7-9, §2).

Everything runs against the real endpoint on 127.0.0.1 (and 127.0.0.2, another loopback
address Linux routes to ``lo``). The attacks are bounded in time; they assert behaviour
(scrapes answered, clean refusals, no traceback), never speed.
"""

from __future__ import annotations

import base64
import collections
import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, Gauge

from candiag.metrics.http import MetricsServer, ServerLimits, start_metrics_server
from candiag.metrics.webconfig import TlsServerConfig, WebConfig
from tests.adversarial.bounded import run_bounded

SLOW_CLIENTS = 32  # twice what blinded the old endpoint, and more than one address may hold
SCRAPE_DEADLINE_S = 2.0


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("candiag_attack_value", "Served while under attack.", ["i"], registry=registry)
    for i in range(500):  # an exposition of a realistic size (a charger exports ~300 series)
        gauge.labels(str(i)).set(i)
    return registry


def scrape(server: MetricsServer, timeout: float = SCRAPE_DEADLINE_S) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        body = response.read()
        assert response.status != 200 or b"candiag_attack_value" in body
        return response.status
    finally:
        conn.close()


class SlowLoris:
    """Threads that each keep a connection sending one header line every ``period_s``,
    reconnecting whenever the server closes it."""

    def __init__(self, port: int, clients: int, source: str = "127.0.0.1", period_s: float = 0.5):
        self.port, self.source, self.period_s = port, source, period_s
        self.stop = threading.Event()
        self.connections = 0
        self.threads = [
            threading.Thread(target=self._run, name=f"slowloris-{i}") for i in range(clients)
        ]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(
                    ("127.0.0.1", self.port), timeout=2, source_address=(self.source, 0)
                ) as sock:
                    self.connections += 1
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: charger\r\n")
                    while not self.stop.wait(self.period_s):
                        sock.sendall(b"X-Still-Here: 1\r\n")
            except OSError:
                self.stop.wait(0.01)

    def __enter__(self) -> SlowLoris:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(5)


def scrapes_during(server: MetricsServer, seconds: float) -> list[tuple[int, float]]:
    """Scrape every 0.1 s for ``seconds``: (status, duration) of each."""
    results = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        results.append((scrape(server), time.monotonic() - started))
        time.sleep(0.1)
    return results


def assert_no_traceback_and_few_lines(caplog: pytest.LogCaptureFixture) -> None:
    records = [r for r in caplog.records if r.name.startswith("candiag.metrics")]
    assert not [r for r in records if r.exc_info], "a client's misbehaviour logged a traceback"
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 2, warnings  # the first at once, the rest in one summary


@pytest.mark.slow
def test_slowloris_does_not_blind_the_endpoint(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="candiag.metrics.http")
    with start_metrics_server("127.0.0.1:0", registry) as server:
        with SlowLoris(server.port, SLOW_CLIENTS) as attack:
            time.sleep(0.5)  # every slot is taken before the first scrape
            results = scrapes_during(server, 4.0)
        assert attack.connections >= SLOW_CLIENTS
        assert [status for status, _ in results] == [200] * len(results)
        assert max(duration for _, duration in results) < SCRAPE_DEADLINE_S
        trouble = server.client_trouble
        assert trouble.get("evicted", 0) + trouble.get("head_timeout", 0) >= SLOW_CLIENTS // 2
    assert_no_traceback_and_few_lines(caplog)


def _second_loopback_address() -> bool:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _second_loopback_address(), reason="127.0.0.2 is not usable here")
def test_one_address_cannot_take_the_connections_of_others(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="candiag.metrics.http")
    limits = ServerLimits(max_connections=32, max_per_address=8)
    with start_metrics_server("127.0.0.1:0", registry, limits=limits) as server:
        with SlowLoris(server.port, 48, source="127.0.0.2", period_s=0.2):
            time.sleep(0.5)
            assert server._server._per_address["127.0.0.2"] <= 8
            results = scrapes_during(server, 2.0)
        assert [status for status, _ in results] == [200] * len(results)
        assert server.client_trouble.get("evicted", 0) > 0
    assert_no_traceback_and_few_lines(caplog)


def _concurrently(count: int, fn: Callable[[], object]) -> tuple[collections.Counter[str], float]:
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        barrier.wait()
        try:
            outcome = str(fn())
        except (ConnectionError, ssl.SSLError, http.client.RemoteDisconnected) as err:
            outcome = type(err).__name__
        except OSError as err:  # a timeout is not a clean refusal: it fails the test below
            outcome = f"OSError:{err}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=one, name=f"scraper-{i}") for i in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes, time.monotonic() - started


REFUSALS = {"503", "ConnectionResetError", "ConnectionRefusedError", "RemoteDisconnected"}


def test_200_concurrent_scrapes_succeed_or_are_refused_cleanly(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with start_metrics_server("127.0.0.1:0", registry) as server:
        outcomes, elapsed = _concurrently(200, lambda: scrape(server, timeout=20))
        assert set(outcomes) <= {"200"} | REFUSALS, outcomes
        assert outcomes["200"] >= ServerLimits().max_per_address, outcomes
        assert elapsed < 30, f"200 scrapes took {elapsed:.1f} s"
        assert scrape(server) == 200  # and nothing is left stuck
    assert not [r for r in caplog.records if r.exc_info]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from external_tools import require_tool

    from tests.test_http_tls import _make_ca

    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("attack-pki")
    _make_ca(openssl, d, "server")  # self-signed, CN=server
    return d / "server.crt", d / "server.key"


def test_200_concurrent_tls_scrapes_with_basic_auth(
    registry: CollectorRegistry, tls_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tls_files
    users = {"prometheus": bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))}
    config = WebConfig(tls=TlsServerConfig(cert, key), basic_auth_users=users)
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    token = base64.b64encode(b"prometheus:secret").decode()

    def tls_scrape(server: MetricsServer, password_ok: bool) -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=20)
        try:
            auth = token if password_ok else base64.b64encode(b"prometheus:" + b"x" * 100).decode()
            conn.request("GET", "/metrics", headers={"Authorization": f"Basic {auth}"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    with start_metrics_server("127.0.0.1:0", registry, config) as server:
        calls = iter(range(10_000))
        lock = threading.Lock()

        def mixed() -> int:
            with lock:
                n = next(calls)
            return tls_scrape(server, password_ok=n % 4 != 0)  # a quarter with a long password

        outcomes, elapsed = _concurrently(200, mixed)
        tls_refusals = {"SSLEOFError", "SSLError", "SSLZeroReturnError", "BrokenPipeError"}
        assert set(outcomes) <= {"200", "401"} | REFUSALS | tls_refusals, outcomes
        assert outcomes["200"] >= 8 and outcomes["401"] >= 1, outcomes
        assert elapsed < 30
        assert tls_scrape(server, password_ok=True) == 200
    assert not [r for r in caplog.records if r.exc_info]


# --- the web config as an attack surface, through the real CLI --------------------------------


def _alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\ntls_server_config:\n  cert_file: *i\n  key_file: *i\n"


HOSTILE_WEB_CONFIGS = {
    "alias_bomb": (
        _alias_bomb().encode(),
        "web.yml:1:4: expected a web config without YAML anchors or aliases, found an anchor or "
        "alias (&name, *name)",
    ),
    "min_version_list": (
        b"tls_server_config:\n  cert_file: web.yml\n  key_file: web.yml\n  min_version: [TLS12]\n",
        "web.yml:4:3: tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13 "
        "(one word, no list), found a list ['TLS12']",
    ),
    "non_ascii_hash": (
        ("basic_auth_users:\n  alice: '$2b$12$" + "é" + "a" * 52 + "'\n").encode(),
        "web.yml:2:3: basic_auth_users.alice: expected a bcrypt hash ($2b$..., 60 characters)",
    ),
    "not_utf8": (
        b"basic_auth_users:\n  alice: \xff\n",
        "web.yml:2:10: expected UTF-8 text, found byte 0xff",
    ),
    "tls_keys_commented_out": (
        b"tls_server_config:\n  # cert_file: a.crt\n  # key_file: a.key\n",
        "web.yml:1:1: tls_server_config: expected cert_file and key_file, found an empty mapping "
        "(are its keys commented out?)",
    ),
}


@pytest.fixture(params=sorted(HOSTILE_WEB_CONFIGS))
def hostile_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    content, expected = HOSTILE_WEB_CONFIGS[request.param]
    (tmp_path / "web.yml").write_bytes(content)
    config = tmp_path / "candiag.toml"
    config.write_text('[metrics]\nlisten = "127.0.0.1:0"\nweb_config_file = "web.yml"\n')
    yield config, expected


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_hostile_web_config_is_refused_by_check_config_and_run(
    hostile_config: tuple[Path, str], command: str
) -> None:
    config, expected = hostile_config
    args = (
        ["check-config", str(config)]
        if command == "check-config"
        else ["run", "--config", str(config)]
    )
    # 1.5 GB of address space and 60 s: the alias bomb reached 5.5 GB in 60 s before.
    result = run_bounded(args, timeout_s=60)
    assert result.code == 2, (result.code, result.stderr[-2000:])
    assert result.stderr.startswith("candiag: error: "), result.stderr[-2000:]
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr) < 2000
