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
"""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from candiag.errors import ConfigError

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
_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")

# A scrape every few seconds must not cost a bcrypt hash (~0.25 s at cost 12) each time:
# a successful (user, password) is remembered this long, as exporter-toolkit does.
AUTH_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class TlsServerConfig:
    """``tls_server_config``: the server certificate and optional client-certificate auth."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context; ConfigError naming the file when one cannot be loaded."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            context.load_cert_chain(certfile=self.cert_file, keyfile=self.key_file)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"tls_server_config.cert_file/key_file: cannot load {self.cert_file} with key "
                f"{self.key_file}: {err}; check that both are PEM, match each other and are "
                "readable by the candiag user"
            ) from err
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as err:
                raise ConfigError(
                    f"tls_server_config.client_ca_file: cannot load {self.client_ca_file}: "
                    f"{err}; give a readable PEM file with the CA that signs scraper certificates"
                ) from err
        context.verify_mode = _VERIFY_MODES[self.client_auth_type]
        return context


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config: optional TLS, optional basic-auth users (name → bcrypt hash)."""

    tls: TlsServerConfig | None = None
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)
    source: str = "<web config>"

    @property
    def requires_auth(self) -> bool:
        return bool(self.basic_auth_users)


class BasicAuthChecker:
    """Checks ``Authorization: Basic`` credentials against bcrypt hashes, with a short cache.

    Unknown users are checked against a dummy hash too, so the response time does not
    reveal which user names exist. Cached entries hold a SHA-256 of the password, never
    the password, and are compared in constant time.
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
        self.bcrypt_checks = 0

    def check(self, user: str, password: str) -> bool:
        digest = hashlib.sha256(password.encode("utf-8")).digest()
        if self._cached(user, digest):
            return True
        stored = self._users.get(user)
        self.bcrypt_checks += 1
        ok = bcrypt.checkpw(password.encode("utf-8"), stored or self._dummy_hash)
        if ok and stored is not None:
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


def _lowest_cost(hashes: Iterable[bytes]) -> int:
    costs = [int(h[4:6]) for h in hashes if h[4:6].isdigit()]
    return max(4, min(costs)) if costs else 10


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web config file; ConfigError lists every problem with its key path."""
    import yaml  # only needed when a web config is used

    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            f"cannot read web config: {err.strerror}; check [metrics] web_config_file",
            path=str(source),
        ) from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{where}not valid YAML: {err}", path=str(source)) from err
    return parse_web_config(
        {} if data is None else data, base_dir=source.parent, source=str(source)
    )


def parse_web_config(data: object, *, base_dir: Path, source: str = "<web config>") -> WebConfig:
    """Validate an already-parsed web config mapping (see module docstring for the keys)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError("the web config must be a mapping at top level", path=source)
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        problems.append(f"{key}: unknown key; candiag supports {', '.join(sorted(_TOP_KEYS))}")
    tls = _parse_tls(data.get("tls_server_config"), base_dir, problems)
    users = _parse_users(data.get("basic_auth_users"), problems)
    if problems:
        raise ConfigError(problems, path=source)
    return WebConfig(tls=tls, basic_auth_users=users, source=source)


def _parse_tls(raw: object, base_dir: Path, problems: list[str]) -> TlsServerConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("tls_server_config: must be a mapping with cert_file and key_file")
        return None
    start = len(problems)
    for key in sorted(set(raw) - _TLS_KEYS, key=str):
        problems.append(
            f"tls_server_config.{key}: unknown or unsupported key; supported: "
            + ", ".join(sorted(_TLS_KEYS))
        )
    cert = _path(raw, "cert_file", base_dir, problems, required=True)
    key = _path(raw, "key_file", base_dir, problems, required=True)
    ca = _path(raw, "client_ca_file", base_dir, problems, required=False)
    auth = _client_auth_type(raw, ca is not None, problems)
    min_version = _tls_version(raw, "min_version", problems) or "TLS12"
    max_version = _tls_version(raw, "max_version", problems)
    if max_version is not None and TLS_VERSIONS[max_version] < TLS_VERSIONS[min_version]:
        problems.append(
            f"tls_server_config.max_version: {max_version} is below min_version {min_version}"
        )
    if len(problems) > start or cert is None or key is None:
        return None
    return TlsServerConfig(cert, key, ca, auth, min_version, max_version)


def _path(
    raw: dict[Any, Any], key: str, base_dir: Path, problems: list[str], *, required: bool
) -> Path | None:
    value = raw.get(key)
    if value is None:
        if required:
            problems.append(f"tls_server_config.{key}: missing; give the path of a PEM file")
        return None
    if not isinstance(value, str) or not value:
        problems.append(f"tls_server_config.{key}: must be a file path, got {value!r}")
        return None
    path = Path(value)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        problems.append(f"tls_server_config.{key}: {path} does not exist or is not a file")
    return path


def _client_auth_type(raw: dict[Any, Any], has_ca: bool, problems: list[str]) -> str:
    # exporter-toolkit: a client CA without an explicit type means RequireAndVerifyClientCert.
    default = "RequireAndVerifyClientCert" if has_ca else "NoClientCert"
    value = raw.get("client_auth_type", default)
    where = "tls_server_config.client_auth_type"
    if value not in CLIENT_AUTH_TYPES:
        problems.append(f"{where}: {value!r} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
        return default
    if value in _UNVERIFIED_CLIENT_AUTH:
        problems.append(
            f"{where}: {value} accepts client certificates without verifying them, which "
            "candiag (Python ssl) cannot do; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file"
        )
        return default
    if value != "NoClientCert" and not has_ca:
        problems.append(f"{where}: {value} needs client_ca_file (the CA of allowed clients)")
    return str(value)


def _tls_version(raw: dict[Any, Any], key: str, problems: list[str]) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if value not in TLS_VERSIONS:
        problems.append(
            f"tls_server_config.{key}: {value!r} is not one of {', '.join(TLS_VERSIONS)}"
        )
        return None
    return str(value)


def _parse_users(raw: object, problems: list[str]) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("basic_auth_users: must be a mapping of user name to bcrypt hash")
        return {}
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        where = f"basic_auth_users.{name}"
        if not isinstance(name, str) or not name or ":" in name:
            problems.append(f"{where}: user names must be non-empty text without ':'")
            continue
        if not isinstance(hashed, str) or not _is_bcrypt_hash(hashed.encode("ascii", "replace")):
            problems.append(
                f"{where}: not a bcrypt hash (expected $2b$..., 60 characters); create one "
                "with: htpasswd -nBC 12 '' | tr -d ':'"
            )
            continue
        users[name] = hashed.encode("ascii")
    return users


def _is_bcrypt_hash(value: bytes) -> bool:
    return len(value) == 60 and value[:4] in _BCRYPT_PREFIXES and value[4:6].isdigit()
