"""HTTPS and client-certificate auth with certificates made by the openssl CLI in the test."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from external_tools import require_tool
from prometheus_client import CollectorRegistry, Gauge
from waiting import wait_for

from candiag.errors import ConfigError
from candiag.metrics.http import MetricsServer, start_metrics_server
from candiag.metrics.webconfig import TlsServerConfig, WebConfig, load_web_config


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA the server does not trust
    rogue_key: Path


def _openssl(openssl: str, *args: str, cwd: Path) -> None:
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_ca(openssl: str, d: Path, name: str) -> None:
    _openssl(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
        "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip


def _make_leaf(openssl: str, d: Path, name: str, ca: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        openssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip
    _openssl(
        openssl, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey",
        f"{ca}.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
        "-extfile", f"{name}.ext", cwd=d,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = require_tool("openssl")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(openssl, d, "ca")
    _make_ca(openssl, d, "rogue-ca")
    server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    client_ext = "extendedKeyUsage=clientAuth\n"
    _make_leaf(openssl, d, "server", "ca", server_ext)
    _make_leaf(openssl, d, "client", "ca", client_ext)
    _make_leaf(openssl, d, "rogue", "rogue-ca", client_ext)
    return Pki(
        d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt", d / "client.key",
        d / "rogue.crt", d / "rogue.key",
    )  # fmt: skip


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("candiag_tls_test", "Exported over TLS.", registry=registry).set(7)
    return registry


def _serve(registry: CollectorRegistry, tls: TlsServerConfig) -> MetricsServer:
    return start_metrics_server("127.0.0.1:0", registry, WebConfig(tls=tls))


def _client_context(pki: Pki, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def _get(server: MetricsServer, context: ssl.SSLContext, path: str = "/metrics") -> bytes:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


@pytest.fixture
def tls_server(pki: Pki, registry: CollectorRegistry) -> Iterator[MetricsServer]:
    running = _serve(registry, TlsServerConfig(pki.server_cert, pki.server_key))
    yield running
    running.stop()


def test_https_with_the_ca_works(tls_server: MetricsServer, pki: Pki) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    assert b"candiag_tls_test 7.0" in _get(tls_server, _client_context(pki))


def test_https_client_trusting_another_ca_refuses_the_server(
    tls_server: MetricsServer, pki: Pki
) -> None:
    other_ca = ssl.create_default_context(cafile=str(pki.rogue_cert.parent / "rogue-ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        _get(tls_server, other_ca)


def test_plain_http_to_the_tls_port_gets_no_metrics(tls_server: MetricsServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", tls_server.port, timeout=5)
    try:
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.request("GET", "/metrics")
            conn.getresponse().read()
    finally:
        conn.close()


def test_min_version_tls13_refuses_a_tls12_client(pki: Pki, registry: CollectorRegistry) -> None:
    tls = TlsServerConfig(pki.server_cert, pki.server_key, min_version="TLS13")
    with _serve(registry, tls) as running:
        context = _client_context(pki)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            _get(running, context)
        assert b"candiag_tls_test" in _get(running, _client_context(pki))


@pytest.fixture
def mtls_server(pki: Pki, registry: CollectorRegistry) -> Iterator[MetricsServer]:
    tls = TlsServerConfig(
        pki.server_cert, pki.server_key, pki.ca, client_auth_type="RequireAndVerifyClientCert"
    )
    running = _serve(registry, tls)
    yield running
    running.stop()


def test_client_auth_required_without_a_certificate_fails(
    mtls_server: MetricsServer, pki: Pki
) -> None:
    # With TLS 1.3 the client learns of the rejection on its first read, not in connect().
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(mtls_server, _client_context(pki))
    # The server's thread counts the failure after the client saw it: wait, bounded.
    wait_for(lambda: mtls_server.tls_handshake_failures >= 1, "the handshake failure counted")


def test_client_auth_required_with_an_untrusted_certificate_fails(
    mtls_server: MetricsServer, pki: Pki
) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _get(mtls_server, _client_context(pki, pki.rogue_cert, pki.rogue_key))


def test_client_auth_required_with_a_valid_certificate_works(
    mtls_server: MetricsServer, pki: Pki
) -> None:
    body = _get(mtls_server, _client_context(pki, pki.client_cert, pki.client_key))
    assert b"candiag_tls_test 7.0" in body


def test_verify_if_given_accepts_no_certificate_but_rejects_a_bad_one(
    pki: Pki, registry: CollectorRegistry
) -> None:
    tls = TlsServerConfig(
        pki.server_cert, pki.server_key, pki.ca, client_auth_type="VerifyClientCertIfGiven"
    )
    with _serve(registry, tls) as running:
        assert b"candiag_tls_test" in _get(running, _client_context(pki))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _get(running, _client_context(pki, pki.rogue_cert, pki.rogue_key))


def test_a_slow_handshake_does_not_block_other_scrapes(tls_server: MetricsServer, pki: Pki) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5):
        # This client connected but never starts TLS; a scrape must still be served.
        assert b"candiag_tls_test" in _get(tls_server, _client_context(pki))


def test_web_config_file_with_relative_paths(pki: Pki, registry: CollectorRegistry) -> None:
    config_file = pki.ca.parent / "web.yml"
    config_file.write_text(
        "tls_server_config:\n"
        "  cert_file: server.crt\n"
        "  key_file: server.key\n"
        "  client_ca_file: ca.crt\n"
    )
    config = load_web_config(config_file)
    assert config.tls is not None
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"  # exporter-toolkit default
    with start_metrics_server("127.0.0.1:0", registry, config) as running:
        assert b"candiag_tls_test" in _get(
            running, _client_context(pki, pki.client_cert, pki.client_key)
        )


def test_mismatched_key_is_a_config_error_naming_the_files(pki: Pki) -> None:
    tls = TlsServerConfig(pki.server_cert, pki.client_key)
    with pytest.raises(ConfigError) as info:
        tls.ssl_context()
    assert str(info.value) == (
        "<web config>: tls_server_config.key_file: expected the key of the certificate "
        f"{pki.server_cert}, found {pki.client_key}, which is another key; give the key the "
        "certificate was made for"
    )


def test_unreadable_client_ca_is_a_config_error(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.crt"
    not_pem.write_text("not a certificate\n")
    tls = TlsServerConfig(pki.server_cert, pki.server_key, not_pem, "RequireAndVerifyClientCert")
    with pytest.raises(ConfigError) as info:
        tls.ssl_context()
    assert str(info.value).startswith(
        "<web config>: tls_server_config.client_ca_file: expected a readable PEM file with the "
        f"CA that signs scraper certificates, found {not_pem}, which does not load ("
    )


# --- TLS asked for means TLS or refusal (issue 13 item 9) ------------------------------------


@pytest.fixture(scope="module")
def encrypted_key(pki: Pki) -> Path:
    openssl = require_tool("openssl")
    out = pki.ca.parent / "server-encrypted.key"
    _openssl(
        openssl, "pkey", "-in", str(pki.server_key), "-aes256", "-passout", "pass:secret",
        "-out", str(out), cwd=pki.ca.parent,
    )  # fmt: skip
    return out


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(
    pki: Pki, encrypted_key: Path
) -> None:
    tls = TlsServerConfig(pki.server_cert, encrypted_key)
    with pytest.raises(ConfigError) as info:
        tls.ssl_context()
    message = str(info.value)
    assert message.startswith(
        "<web config>: tls_server_config.key_file: expected an unencrypted private key, found "
        f"{encrypted_key}, which is encrypted; "
    )
    assert "candiag needs an unencrypted key file (or" in message
    assert "openssl pkey -in" in message


def test_check_config_with_an_encrypted_key_never_prompts(
    pki: Pki, encrypted_key: Path, tmp_path: Path
) -> None:
    from tests.adversarial.bounded import run_bounded

    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {encrypted_key}\n"
    )
    config = tmp_path / "candiag.toml"
    config.write_text(f'[metrics]\nlisten = "127.0.0.1:0"\nweb_config_file = "{web}"\n')
    # No terminal is needed (and none is read): the child would hang on a prompt otherwise.
    result = run_bounded(["check-config", str(config)], timeout_s=60, stdin=b"")
    assert result.code == 2, result.stderr
    assert f"{web}:3:3: tls_server_config.key_file: expected an unencrypted private key" in (
        result.stderr
    )
    assert "which is encrypted; candiag needs an unencrypted key file" in result.stderr
    assert "Errno 22" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("cert", "key", "expected"),
    [
        ("junk", "server_key", "cert_file: expected a PEM certificate (a '-----BEGIN "
         "CERTIFICATE-----' line), found {cert}, which holds none; give the server certificate "
         "in PEM"),
        ("server_key", "server_key", "cert_file: expected a PEM certificate (a '-----BEGIN "
         "CERTIFICATE-----' line), found {cert}, which holds none"),
        ("server_cert", "junk", "key_file: expected a PEM private key (a '-----BEGIN ... "
         "PRIVATE KEY-----' line), found {key}, which holds none; give the certificate's key "
         "in PEM"),
        ("server_cert", "server_cert", "key_file: expected a PEM private key (a '-----BEGIN "
         "... PRIVATE KEY-----' line), found {key}, which holds none"),
        ("server_cert", "absent", "key_file: expected a readable file, found {key} ("),
        ("damaged", "server_key", "cert_file: expected a certificate candiag can load with the "
         "key {key}, found {cert}, which does not load ("),
    ],
)  # fmt: skip
def test_unusable_tls_files_name_the_file_and_the_fix(
    pki: Pki, tmp_path: Path, cert: str, key: str, expected: str
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(bytes(range(256)))
    damaged = tmp_path / "damaged.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nnot base64 !!!\n-----END CERTIFICATE-----\n")
    files = {
        "junk": junk, "damaged": damaged, "absent": tmp_path / "absent.key",
        "server_key": pki.server_key, "server_cert": pki.server_cert,
    }  # fmt: skip
    tls = TlsServerConfig(files[cert], files[key])
    with pytest.raises(ConfigError) as info:
        tls.ssl_context()
    assert str(info.value).startswith(
        "<web config>: tls_server_config." + expected.format(cert=files[cert], key=files[key])
    )


def test_web_config_tls_errors_name_the_web_config_file(pki: Pki, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.client_key}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_web_config(web).ssl_context()
    assert str(info.value).startswith(
        f"{web}:3:3: tls_server_config.key_file: expected the key of the certificate"
    )


def test_tls_server_config_with_its_keys_commented_out_never_serves_plain_http(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  # cert_file: server.crt\n  # key_file: server.key\n")
    with pytest.raises(ConfigError, match="TLS was asked for, so candiag will not serve plain"):
        start_metrics_server("127.0.0.1:0", registry, load_web_config(web))


def test_a_stalled_handshake_is_closed_at_the_head_deadline(
    pki: Pki, registry: CollectorRegistry
) -> None:
    import socket
    import time

    from candiag.metrics.http import ServerLimits

    limits = ServerLimits(head_deadline_s=0.5)
    with start_metrics_server(
        "127.0.0.1:0", registry, WebConfig(tls=TlsServerConfig(pki.server_cert, pki.server_key)),
        limits=limits,
    ) as running:  # fmt: skip
        stalled = [
            socket.create_connection(("127.0.0.1", running.port), timeout=5) for _ in range(20)
        ]
        try:
            stalled[0].sendall(b"\x16\x03\x01\x00\xff\x01")  # the start of a ClientHello
            assert b"candiag_tls_test" in _get(running, _client_context(pki))
            started = time.monotonic()
            assert stalled[0].recv(100) == b""  # closed by the server
            assert time.monotonic() - started < 2
        finally:
            for sock in stalled:
                sock.close()
        assert (
            running.client_trouble.get("head_timeout", 0) + running.client_trouble.get("evicted", 0)
            >= 1
        )
