"""The web config file of the metrics endpoint (``[metrics] web_config_file``): TLS, basic auth.

The file has the format of the Prometheus exporter-toolkit (``docs/web-configuration.md``)
that operators already use for node_exporter and friends::

    tls_server_config:
      cert_file: /etc/candiag/tls/server.crt     # relative paths: relative to this file
      key_file: /etc/candiag/tls/server.key
      client_ca_file: /etc/candiag/tls/ca.crt    # optional: client-certificate auth
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:
      prometheus: $2b$12$...                     # bcrypt hash (htpasswd -nBC 12 '' | tr -d ':')

We parse it ourselves because prometheus_client has no server-side basic auth (declined
upstream in client_python PR #610/#292, issue #761) and its TLS options do not read this
file. Python's :mod:`ssl` cannot accept a client certificate without verifying it, so the
two Go modes that do that (``RequestClientCert``, ``RequireAnyClientCert``) are rejected
with a fix instead of silently changing meaning.

Loading never raises anything but :class:`~candiag.errors.ConfigError`, each problem in the
one format of :mod:`candiag.config.problems` (``web.yml:LINE:COL: key.path: expected X,
found Y; fix``; start, ``check-config`` and a SIGHUP reload all go through
:func:`load_web_config`). The YAML is read with bounds, because a web config is a few
hundred bytes and anything else is a mistake or an attack: at most
:data:`MAX_FILE_BYTES`, UTF-8, no anchors or aliases (a "billion laughs" alias bomb expands
a 1 kB file to gigabytes), nesting at most :data:`MAX_DEPTH`, no duplicate keys (YAML would
silently keep the last one). Values are never copied whole into a message
(:func:`candiag.errors.shown`).

Security that is asked for is never silently dropped: ``tls_server_config:`` or
``basic_auth_users:`` left empty (their lines commented out) is refused, as is an encrypted
private key (OpenSSL would otherwise prompt for a passphrase on the terminal of a service).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from candiag.config.bounded_yaml import parse_bounded_yaml
from candiag.config.files import decode_utf8, read_bytes
from candiag.config.problems import KeyPath, Positions, Problems
from candiag.errors import shown

CLIENT_AUTH_TYPES: tuple[str, ...] = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
_UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
_VERIFY_MODES: dict[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_TLS_KEYS = frozenset(
    {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
)
_TOP_KEYS = frozenset({"tls_server_config", "basic_auth_users"})
# $2a$/$2b$/$2y$, two-digit cost, 22 characters of salt and 31 of hash (bcrypt's base64).
_BCRYPT_RE = re.compile(r"\$(2[aby])\$(\d\d)\$([./A-Za-z0-9]{22})[./A-Za-z0-9]{31}")
# bcrypt allows costs 4-31; each step doubles the time. Above 16 one check takes seconds
# (cost 12: about 0.25 s on a PC), longer than a scrape may wait, and every wrong password
# would cost that much CPU.
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 16
# bcrypt reads at most 72 bytes of a password; bcrypt 5 refuses longer ones.
BCRYPT_MAX_PASSWORD_BYTES = 72

# A web config is a few hundred bytes; a PEM certificate chain a few kilobytes.
MAX_FILE_BYTES = 1 << 20
_HINT_HTPASSWD = "create one with: htpasswd -nBC 12 '' | tr -d ':\\n'"

# Wrong passwords cost CPU (one bcrypt hash each); however many arrive at once, they take
# at most this many cores from the daemon's own work.
CONCURRENT_HASHES = 1

# A scrape every few seconds must not cost a bcrypt hash (~0.25 s at cost 12) each time:
# a successful (user, password) is remembered this long, as exporter-toolkit does.
AUTH_CACHE_SECONDS = 60.0


class _EncryptedKey(Exception):
    """Raised from the passphrase callback: candiag never asks for a passphrase."""


def _refuse_passphrase() -> bytes:
    raise _EncryptedKey


_CERT = ("tls_server_config", "cert_file")
_KEY = ("tls_server_config", "key_file")
_CA = ("tls_server_config", "client_ca_file")


@dataclass(frozen=True)
class TlsServerConfig:
    """``tls_server_config``: the server certificate and optional client-certificate auth."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None

    def ssl_context(self, problems: Problems | None = None) -> ssl.SSLContext:
        """A server-side context; a ConfigError saying which file and how to fix it otherwise
        (placed in the web config file ``problems`` is about, when given).

        Never prompts: an encrypted key is refused (a service has no terminal, and OpenSSL's
        prompt would block ``candiag run`` in a shell).
        """
        p = problems if problems is not None else Problems("<web config>")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        cert_text = _read_pem(self.cert_file, _CERT, p)
        key_text = _read_pem(self.key_file, _KEY, p)
        if "-----BEGIN CERTIFICATE-----" not in cert_text:
            p.add(
                _CERT,
                "a PEM certificate (a '-----BEGIN CERTIFICATE-----' line)",
                f"{self.cert_file}, which holds none",
                "give the server certificate in PEM",
            )
            raise p.error()
        if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_text):
            p.add(
                _KEY,
                "a PEM private key (a '-----BEGIN ... PRIVATE KEY-----' line)",
                f"{self.key_file}, which holds none",
                "give the certificate's key in PEM",
            )
            raise p.error()
        try:
            context.load_cert_chain(self.cert_file, self.key_file, password=_refuse_passphrase)
        except _EncryptedKey:
            p.add(
                _KEY,
                "an unencrypted private key",
                f"{self.key_file}, which is encrypted",
                "candiag needs an unencrypted key file (or one handed over decrypted as a "
                f"systemd credential, systemd/README.md): openssl pkey -in {self.key_file} "
                "-out server.key, then make it readable only by the service",
            )
            raise p.error() from None
        except ssl.SSLError as err:
            if err.reason == "KEY_VALUES_MISMATCH":
                p.add(
                    _KEY,
                    f"the key of the certificate {self.cert_file}",
                    f"{self.key_file}, which is another key",
                    "give the key the certificate was made for",
                )
            else:
                p.add(
                    _CERT,
                    f"a certificate candiag can load with the key {self.key_file}",
                    f"{self.cert_file}, which does not load ({err})",
                    "check that both are PEM, undamaged and match each other",
                )
            raise p.error() from None
        except (OSError, ValueError) as err:
            p.add(
                _CERT,
                f"a certificate candiag can load with the key {self.key_file}",
                f"{self.cert_file}, which does not load ({err})",
                "check that both are readable by the candiag user",
            )
            raise p.error() from None
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ValueError, ssl.SSLError) as err:
                p.add(
                    _CA,
                    "a readable PEM file with the CA that signs scraper certificates",
                    f"{self.client_ca_file}, which does not load ({err})",
                )
                raise p.error() from None
        context.verify_mode = _VERIFY_MODES[self.client_auth_type]
        return context


def _read_pem(path: Path, key: KeyPath, problems: Problems) -> str:
    """The file's text (bounded): enough to see which PEM blocks it holds."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        problems.add(
            key, "a readable file", f"{path} ({reason})", "make it readable by the candiag user"
        )
        raise problems.error() from None
    if len(data) > MAX_FILE_BYTES:
        problems.add(
            key, "a PEM file (a few kilobytes)", f"{path}, larger than 1 MiB", "give the PEM file"
        )
        raise problems.error()
    return data.decode("ascii", "replace")


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config: optional TLS, optional basic-auth users (name → bcrypt hash)."""

    tls: TlsServerConfig | None = None
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)
    source: str = "<web config>"
    # Where each key is in the file, for the problems of the TLS files it names.
    positions: Positions = field(default_factory=dict, compare=False, repr=False)

    @property
    def requires_auth(self) -> bool:
        return bool(self.basic_auth_users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS); ConfigError placed in this file otherwise."""
        if self.tls is None:
            return None
        return self.tls.ssl_context(Problems(self.source, self.positions))


class BasicAuthChecker:
    """Checks ``Authorization: Basic`` credentials against bcrypt hashes, with a short cache.

    Every check that misses the cache costs one bcrypt hash at the cost of the stored
    hashes, one at a time (:data:`CONCURRENT_HASHES`): unknown users and passwords bcrypt cannot take (more than 72 bytes) are checked
    against a dummy hash, so the response time reveals neither which user names exist nor
    anything about the password. Cached entries hold a SHA-256 of the password, never the
    password, and are compared in constant time.
    """

    def __init__(
        self,
        users: Mapping[str, bytes],
        *,
        cache_seconds: float = AUTH_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = dict(users)
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()
        cost = _lowest_cost(self._users.values())
        self._dummy_hash = bcrypt.hashpw(b"candiag-no-such-user", bcrypt.gensalt(rounds=cost))
        self._hashing = threading.Semaphore(CONCURRENT_HASHES)
        self.bcrypt_checks = 0

    def check(self, user: str, password: str) -> bool:
        secret = password.encode("utf-8", "surrogateescape")
        digest = hashlib.sha256(secret).digest()
        if self._cached(user, digest):
            return True
        stored = self._users.get(user)
        usable = stored is not None and len(secret) <= BCRYPT_MAX_PASSWORD_BYTES
        with self._hashing:
            self.bcrypt_checks += 1
            ok = _checkpw(
                secret[:BCRYPT_MAX_PASSWORD_BYTES],
                stored if usable and stored is not None else self._dummy_hash,
            )
        if ok and usable:
            with self._lock:
                self._cache[user] = (digest, self._clock() + self._cache_seconds)
            return True
        return False

    def _cached(self, user: str, digest: bytes) -> bool:
        with self._lock:
            entry = self._cache.get(user)
        if entry is None:
            return False
        cached_digest, expires = entry
        return self._clock() < expires and hmac.compare_digest(cached_digest, digest)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bool(bcrypt.checkpw(password, hashed))
    except ValueError:  # hashes are validated when loaded; a failed login, never a 500
        return False


def _lowest_cost(hashes: Iterable[bytes]) -> int:
    costs = [int(h[4:6]) for h in hashes if h[4:6].isdigit()]
    return max(MIN_BCRYPT_COST, min(costs)) if costs else 10


# -- loading ------------------------------------------------------------------------------
_FILE_HINT = "check [metrics] web_config_file"


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web config file; ConfigError lists every problem with its place.

    Only the file itself is checked here (and that the files it names exist); the TLS
    material is loaded by :meth:`WebConfig.ssl_context`.
    """
    source = Path(path)
    problems = Problems(str(source), yaml=True)
    data = read_bytes(source, problems, hint=_FILE_HINT, max_bytes=MAX_FILE_BYTES)
    text = None if data is None else decode_utf8(data, problems, bom=True)
    document = None if text is None else parse_bounded_yaml(text, problems)
    problems.raise_if_any()
    return parse_web_config(
        {} if document is None else document,
        base_dir=source.parent,
        source=str(source),
        positions=problems.positions,
    )


# -- validation ---------------------------------------------------------------------------


def parse_web_config(
    data: object,
    *,
    base_dir: Path,
    source: str = "<web config>",
    positions: Positions | None = None,
) -> WebConfig:
    """Validate an already-parsed web config mapping (see module docstring for the keys)."""
    problems = Problems(source, positions, yaml=True)
    if not isinstance(data, dict):
        problems.add_value((), "a mapping at top level (tls_server_config, basic_auth_users)", data)
        raise problems.error()
    problems.unknown_keys(data, (), _TOP_KEYS)
    tls = None
    if "tls_server_config" in data:
        tls = _parse_tls(data["tls_server_config"], base_dir, problems)
    users: dict[str, bytes] = {}
    if "basic_auth_users" in data:
        users = _parse_users(data["basic_auth_users"], problems)
    problems.raise_if_any()
    return WebConfig(tls=tls, basic_auth_users=users, source=source, positions=problems.positions)


def _parse_tls(raw: object, base_dir: Path, problems: Problems) -> TlsServerConfig | None:
    where: KeyPath = ("tls_server_config",)
    if raw is None or raw == {}:
        problems.add(
            where,
            "cert_file and key_file",
            "an empty mapping (are its keys commented out?)",
            "TLS was asked for, so candiag will not serve plain HTTP: give cert_file and "
            "key_file, or delete the tls_server_config line to serve without TLS",
        )
        return None
    if not isinstance(raw, dict):
        problems.add_value(where, "a mapping with cert_file and key_file", raw)
        return None
    start = len(problems)
    problems.unknown_keys(raw, where, _TLS_KEYS, what="a key candiag supports here")
    cert = _path(raw, "cert_file", base_dir, problems, required=True)
    key = _path(raw, "key_file", base_dir, problems, required=True)
    ca = _path(raw, "client_ca_file", base_dir, problems, required=False)
    auth = _client_auth_type(raw, ca is not None, problems)
    versions = f"one of {', '.join(TLS_VERSIONS)} (one word, no list)"
    min_version = problems.choice(raw, where, "min_version", TLS_VERSIONS, expected=versions)
    max_version = problems.choice(raw, where, "max_version", TLS_VERSIONS, expected=versions)
    min_version = min_version or "TLS12"
    if max_version is not None and TLS_VERSIONS[max_version] < TLS_VERSIONS[min_version]:
        problems.add(
            (*where, "max_version"), f"a version from min_version {min_version} up", max_version
        )
    if len(problems) > start or cert is None or key is None:
        return None
    return TlsServerConfig(cert, key, ca, auth, min_version, max_version)


def _path(
    raw: dict[Any, Any], key: str, base_dir: Path, problems: Problems, *, required: bool
) -> Path | None:
    where: KeyPath = ("tls_server_config", key)
    value = raw.get(key)
    if value is None:
        if required:
            problems.missing(where, "the path of a PEM file")
        return None
    if not isinstance(value, str) or not value or "\0" in value:
        problems.add_value(where, "a file path", value)
        return None
    path = Path(value)
    path = path if path.is_absolute() else base_dir / path
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as err:  # a name too long for the file system
        problems.add(where, "a usable file path", f"{shown(str(path))} ({err.__class__.__name__})")
        return None
    if not is_file:
        problems.add(
            where,
            "an existing file (relative paths start at the web config's folder)",
            f"{path}, which does not exist or is not a file",
        )
    return path


def _client_auth_type(raw: dict[Any, Any], has_ca: bool, problems: Problems) -> str:
    # exporter-toolkit: a client CA without an explicit type means RequireAndVerifyClientCert.
    default = "RequireAndVerifyClientCert" if has_ca else "NoClientCert"
    where: KeyPath = ("tls_server_config",)
    value = problems.choice(raw, where, "client_auth_type", CLIENT_AUTH_TYPES)
    if value is None:
        return default
    if value in _UNVERIFIED_CLIENT_AUTH:
        problems.add(
            (*where, "client_auth_type"),
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert (with client_ca_file)",
            f"{value}, which accepts client certificates without verifying them",
            "candiag (Python ssl) cannot do that",
        )
        return default
    if value != "NoClientCert" and not has_ca:
        problems.add(
            (*where, "client_auth_type"),
            f"client_ca_file (the CA of allowed clients) with {value}",
            "no client_ca_file",
        )
    return value


def _parse_users(raw: object, problems: Problems) -> dict[str, bytes]:
    where: KeyPath = ("basic_auth_users",)
    if raw is None or raw == {}:
        problems.add(
            where,
            "'user: bcrypt-hash' lines",
            "no users (are they commented out?)",
            "basic auth was asked for, so candiag will not serve without it: add "
            "'user: bcrypt-hash' lines, or delete the basic_auth_users line to serve "
            "without basic auth",
        )
        return {}
    if not isinstance(raw, dict):
        problems.add_value(where, "a mapping of user name to bcrypt hash", raw)
        return {}
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        path = (*where, str(name))
        if not isinstance(name, str) or not name or ":" in name:
            problems.add(
                path,
                "a user name: non-empty text without ':'",
                shown(name) if isinstance(name, str) else problems.described(name),
                "quote names YAML reads as numbers or booleans, e.g. '123'",
            )
            continue
        found = _bcrypt_problem(hashed, problems)
        if found is not None:
            expected, what = found
            problems.add(path, expected, what, _HINT_HTPASSWD)
            continue
        users[name] = str(hashed).encode("ascii")
    return users


def _bcrypt_problem(hashed: object, problems: Problems) -> tuple[str, str] | None:
    """(expected, found) when ``hashed`` is not a bcrypt hash bcrypt.checkpw will take."""
    expected = "a bcrypt hash ($2b$..., 60 characters)"
    if not isinstance(hashed, str):
        return expected, problems.described(hashed)
    match = _BCRYPT_RE.fullmatch(hashed)
    if match is None:
        return expected, f"{len(hashed)} characters that are not one"
    cost = int(match.group(2))
    if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
        return (
            f"a bcrypt cost in {MIN_BCRYPT_COST}..{MAX_BCRYPT_COST} (each step doubles the "
            f"time of every login; above {MAX_BCRYPT_COST} a check takes seconds)",
            f"bcrypt cost {cost}",
        )
    try:  # the salt must decode, or every login would fail inside bcrypt (cost 4: ~1 ms)
        bcrypt.hashpw(b"", f"${match.group(1)}$04${match.group(3)}".encode("ascii"))
    except ValueError:
        return expected, "a hash whose salt does not decode"
    return None
