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

Loading never raises anything but :class:`~candiag.errors.ConfigError` naming the file, the
line and the key path (start, ``check-config`` and a SIGHUP reload all go through
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
import stat
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from candiag.errors import ConfigError, shown

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
# The deepest legitimate key is two levels down (tls_server_config.cert_file).
MAX_DEPTH = 16
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
        """A server-side context; ConfigError naming the file and how to fix it otherwise.

        Never prompts: an encrypted key is refused (a service has no terminal, and OpenSSL's
        prompt would block ``candiag run`` in a shell).
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = TLS_VERSIONS[self.min_version]
        if self.max_version is not None:
            context.maximum_version = TLS_VERSIONS[self.max_version]
        cert_text = _read_pem(self.cert_file, "tls_server_config.cert_file")
        key_text = _read_pem(self.key_file, "tls_server_config.key_file")
        if "-----BEGIN CERTIFICATE-----" not in cert_text:
            raise ConfigError(
                f"tls_server_config.cert_file: {self.cert_file} holds no PEM certificate "
                "(no '-----BEGIN CERTIFICATE-----' line); give the server certificate in PEM"
            )
        if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_text):
            raise ConfigError(
                f"tls_server_config.key_file: {self.key_file} holds no PEM private key "
                "(no '-----BEGIN ... PRIVATE KEY-----' line); give the certificate's key in PEM"
            )
        try:
            context.load_cert_chain(self.cert_file, self.key_file, password=_refuse_passphrase)
        except _EncryptedKey:
            raise ConfigError(
                f"tls_server_config.key_file: {self.key_file}: the key is encrypted; candiag "
                "needs an unencrypted key file (or one handed over decrypted as a systemd "
                f"credential, systemd/README.md): openssl pkey -in {self.key_file} -out "
                "server.key, then make it readable only by the service"
            ) from None
        except ssl.SSLError as err:
            if err.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(
                    f"tls_server_config.key_file: {self.key_file} is not the key of the "
                    f"certificate {self.cert_file}; give the key the certificate was made for"
                ) from None
            raise ConfigError(
                f"tls_server_config.cert_file/key_file: cannot load {self.cert_file} with key "
                f"{self.key_file}: {err}; check that both are PEM, undamaged and match each other"
            ) from None
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"tls_server_config.cert_file/key_file: cannot load {self.cert_file} with key "
                f"{self.key_file}: {err}; check that both are readable by the candiag user"
            ) from None
        if self.client_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ValueError, ssl.SSLError) as err:
                raise ConfigError(
                    f"tls_server_config.client_ca_file: cannot load {self.client_ca_file}: "
                    f"{err}; give a readable PEM file with the CA that signs scraper certificates"
                ) from None
        context.verify_mode = _VERIFY_MODES[self.client_auth_type]
        return context


def _read_pem(path: Path, key: str) -> str:
    """The file's text (bounded): enough to see which PEM blocks it holds."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(
            f"{key}: cannot read {path}: {reason}; make it readable by the candiag user"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"{key}: {path} is larger than 1 MiB; a PEM file is a few kilobytes")
    return data.decode("ascii", "replace")


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config: optional TLS, optional basic-auth users (name → bcrypt hash)."""

    tls: TlsServerConfig | None = None
    basic_auth_users: Mapping[str, bytes] = field(default_factory=dict)
    source: str = "<web config>"

    @property
    def requires_auth(self) -> bool:
        return bool(self.basic_auth_users)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (None without TLS); ConfigError naming this file otherwise."""
        if self.tls is None:
            return None
        try:
            return self.tls.ssl_context()
        except ConfigError as err:
            raise ConfigError(err.problems, path=self.source) from None


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


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate a web config file; ConfigError lists every problem with its key path.

    Only the file itself is checked here (and that the files it names exist); the TLS
    material is loaded by :meth:`WebConfig.ssl_context`.
    """
    source = Path(path)
    text = _read_text(source)
    data, lines = _parse_yaml(text, str(source))
    return parse_web_config(
        {} if data is None else data, base_dir=source.parent, source=str(source), lines=lines
    )


def _read_text(source: Path) -> str:
    hint = "check [metrics] web_config_file"
    try:
        info = source.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"not a regular file; {hint}", path=str(source))
        if info.st_size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{info.st_size} bytes, more than a web config can be (1 MiB); {hint}",
                path=str(source),
            )
        with source.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise ConfigError(f"cannot read web config: {reason}; {hint}", path=str(source)) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"more than a web config can be (1 MiB); {hint}", path=str(source))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"line {line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); "
            "save the file as UTF-8",
            path=str(source),
        ) from None


def _parse_yaml(text: str, source: str) -> tuple[object, dict[tuple[str, ...], int]]:
    """The document and the line of each mapping key (by key path); ConfigError otherwise."""
    import yaml  # only needed when a web config is used

    loader: Any = None
    try:
        loader = _bounded_loader_class()(text)  # (already reads: may raise ReaderError)
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except _Refused as err:
        raise ConfigError(f"line {err.line}: {err.reason}", path=source) from None
    except yaml.YAMLError as err:
        raise ConfigError(
            f"{_yaml_where(err, text)}not valid YAML: "
            f"{shown(_yaml_problem(err), 200)[1:-1]}; fix the YAML syntax",
            path=source,
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, _key_lines(node)


def _yaml_where(err: Exception, text: str) -> str:
    mark = getattr(err, "problem_mark", None)
    if mark is not None:
        return f"line {mark.line + 1}: "
    position = getattr(err, "position", None)  # ReaderError: a character YAML does not allow
    if isinstance(position, int):
        return f"line {text.count(chr(10), 0, position) + 1}: "
    return ""


def _yaml_problem(err: Exception) -> str:
    character = getattr(err, "character", None)
    if isinstance(character, int):
        return f"character U+{character:04X} is not allowed in YAML"
    return str(getattr(err, "problem", None) or err)


class _Refused(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


_LOADER: type[Any] | None = None


def _bounded_loader_class() -> type[Any]:
    """yaml.SafeLoader without anchors, aliases, deep nesting or duplicate keys."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
                raise _Refused(
                    line,
                    "YAML anchors and aliases (&name, *name) are not accepted in a web "
                    "config; write each value out",
                )
            if self.depth >= MAX_DEPTH:
                raise _Refused(line, f"nested more than {MAX_DEPTH} levels deep; fix the YAML")
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except (_Refused, yaml.YAMLError):
                raise
            except Exception as err:
                # Scalars the parser accepts but a constructor cannot turn into a value: a
                # 5000-digit integer, month 13, "!!timestamp 2024-99-99" (AttributeError
                # inside PyYAML). Whatever a constructor raises, it is this file's value.
                raise _Refused(
                    node.start_mark.line + 1,
                    f"a value cannot be read ({shown(str(err), 120)[1:-1]}); fix the value",
                ) from None

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
                if isinstance(key_node, yaml.ScalarNode):
                    key = (key_node.tag, key_node.value)
                    if key in seen:
                        raise _Refused(
                            key_node.start_mark.line + 1,
                            f"key {shown(key_node.value)} appears twice in the same mapping; "
                            "keep one",
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _LOADER = BoundedLoader
    return BoundedLoader


def _key_lines(node: Any) -> dict[tuple[str, ...], int]:
    """Line numbers of mapping keys by key path (the composer bounded the depth)."""
    import yaml

    lines: dict[tuple[str, ...], int] = {}
    todo: list[tuple[Any, tuple[str, ...]]] = [(node, ())]
    while todo:
        current, path = todo.pop()
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key_path = (*path, str(key_node.value))
                    lines[key_path] = key_node.start_mark.line + 1
                    todo.append((value_node, key_path))
    return lines


# -- validation ---------------------------------------------------------------------------


class _Problems:
    """Problems as ``[line N: ]key.path: what; fix``."""

    def __init__(self, lines: Mapping[tuple[str, ...], int]) -> None:
        self.lines = lines
        self.items: list[str] = []

    def add(self, path: tuple[str, ...], message: str) -> None:
        line = self.lines.get(path)
        where = ".".join(_key_text(p) for p in path)
        self.items.append((f"line {line}: " if line else "") + f"{where}: {message}")


def _key_text(key: object) -> str:
    text = key if isinstance(key, str) else repr(key)
    return text if len(text) <= 40 else text[:39] + "…"


def parse_web_config(
    data: object,
    *,
    base_dir: Path,
    source: str = "<web config>",
    lines: Mapping[tuple[str, ...], int] | None = None,
) -> WebConfig:
    """Validate an already-parsed web config mapping (see module docstring for the keys)."""
    problems = _Problems(lines or {})
    if not isinstance(data, dict):
        raise ConfigError(
            f"the web config must be a mapping at top level, found {shown(data)}", path=source
        )
    for key in sorted(set(data) - _TOP_KEYS, key=str):
        problems.add((str(key),), f"unknown key; candiag supports {', '.join(sorted(_TOP_KEYS))}")
    tls = None
    if "tls_server_config" in data:
        tls = _parse_tls(data["tls_server_config"], base_dir, problems)
    users: dict[str, bytes] = {}
    if "basic_auth_users" in data:
        users = _parse_users(data["basic_auth_users"], problems)
    if problems.items:
        raise ConfigError(problems.items, path=source)
    return WebConfig(tls=tls, basic_auth_users=users, source=source)


def _parse_tls(raw: object, base_dir: Path, problems: _Problems) -> TlsServerConfig | None:
    where = ("tls_server_config",)
    if raw is None or raw == {}:
        problems.add(
            where,
            "empty (are its keys commented out?); TLS was asked for, so candiag will not "
            "serve plain HTTP: give cert_file and key_file, or delete the tls_server_config "
            "line to serve without TLS",
        )
        return None
    if not isinstance(raw, dict):
        problems.add(where, f"must be a mapping with cert_file and key_file, found {shown(raw)}")
        return None
    start = len(problems.items)
    for key in sorted(set(raw) - _TLS_KEYS, key=str):
        problems.add(
            (*where, str(key)),
            "unknown or unsupported key; supported: " + ", ".join(sorted(_TLS_KEYS)),
        )
    cert = _path(raw, "cert_file", base_dir, problems, required=True)
    key = _path(raw, "key_file", base_dir, problems, required=True)
    ca = _path(raw, "client_ca_file", base_dir, problems, required=False)
    auth = _client_auth_type(raw, ca is not None, problems)
    min_version = _tls_version(raw, "min_version", problems) or "TLS12"
    max_version = _tls_version(raw, "max_version", problems)
    if max_version is not None and TLS_VERSIONS[max_version] < TLS_VERSIONS[min_version]:
        problems.add((*where, "max_version"), f"{max_version} is below min_version {min_version}")
    if len(problems.items) > start or cert is None or key is None:
        return None
    return TlsServerConfig(cert, key, ca, auth, min_version, max_version)


def _path(
    raw: dict[Any, Any], key: str, base_dir: Path, problems: _Problems, *, required: bool
) -> Path | None:
    where = ("tls_server_config", key)
    value = raw.get(key)
    if value is None:
        if required:
            problems.add(where, "missing; give the path of a PEM file")
        return None
    if not isinstance(value, str) or not value or "\0" in value:
        problems.add(where, f"must be a file path, found {shown(value)}")
        return None
    path = Path(value)
    path = path if path.is_absolute() else base_dir / path
    try:
        is_file = path.is_file()
    except (OSError, ValueError) as err:  # a name too long for the file system
        problems.add(where, f"{shown(str(path))} is not a usable path ({err.__class__.__name__})")
        return None
    if not is_file:
        problems.add(where, f"{path} does not exist or is not a file")
    return path


def _client_auth_type(raw: dict[Any, Any], has_ca: bool, problems: _Problems) -> str:
    # exporter-toolkit: a client CA without an explicit type means RequireAndVerifyClientCert.
    default = "RequireAndVerifyClientCert" if has_ca else "NoClientCert"
    value = raw.get("client_auth_type", default)
    where = ("tls_server_config", "client_auth_type")
    if not isinstance(value, str) or value not in CLIENT_AUTH_TYPES:
        problems.add(where, f"{shown(value)} is not one of {', '.join(CLIENT_AUTH_TYPES)}")
        return default
    if value in _UNVERIFIED_CLIENT_AUTH:
        problems.add(
            where,
            f"{value} accepts client certificates without verifying them, which candiag "
            "(Python ssl) cannot do; use VerifyClientCertIfGiven or "
            "RequireAndVerifyClientCert with client_ca_file",
        )
        return default
    if value != "NoClientCert" and not has_ca:
        problems.add(where, f"{value} needs client_ca_file (the CA of allowed clients)")
    return value


def _tls_version(raw: dict[Any, Any], key: str, problems: _Problems) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in TLS_VERSIONS:
        problems.add(
            ("tls_server_config", key),
            f"{shown(value)} is not one of {', '.join(TLS_VERSIONS)} (one word, no list)",
        )
        return None
    return value


def _parse_users(raw: object, problems: _Problems) -> dict[str, bytes]:
    where = ("basic_auth_users",)
    if raw is None or raw == {}:
        problems.add(
            where,
            "lists no users (are they commented out?); basic auth was asked for, so candiag "
            "will not serve without it: add 'user: bcrypt-hash' lines, or delete the "
            "basic_auth_users line to serve without basic auth",
        )
        return {}
    if not isinstance(raw, dict):
        problems.add(where, f"must be a mapping of user name to bcrypt hash, found {shown(raw)}")
        return {}
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        path = (*where, _key_text(name))
        if not isinstance(name, str) or not name or ":" in name:
            problems.add(
                path,
                "user names must be non-empty text without ':' (quote names YAML reads as "
                "numbers or booleans, e.g. '123')",
            )
            continue
        problem = _bcrypt_problem(hashed)
        if problem is not None:
            problems.add(path, problem)
            continue
        users[name] = str(hashed).encode("ascii")
    return users


def _bcrypt_problem(hashed: object) -> str | None:
    """Why ``hashed`` is not a bcrypt hash bcrypt.checkpw will take; None when it is."""
    expected = "expected $2b$..., 60 characters"
    if not isinstance(hashed, str):
        return f"not a bcrypt hash ({expected}), found {shown(hashed)}; {_HINT_HTPASSWD}"
    match = _BCRYPT_RE.fullmatch(hashed)
    if match is None:
        return f"not a bcrypt hash ({expected}); {_HINT_HTPASSWD}"
    cost = int(match.group(2))
    if not MIN_BCRYPT_COST <= cost <= MAX_BCRYPT_COST:
        return (
            f"bcrypt cost {cost} is outside {MIN_BCRYPT_COST}-{MAX_BCRYPT_COST} (each step "
            f"doubles the time of every login; above {MAX_BCRYPT_COST} a check takes seconds); "
            f"{_HINT_HTPASSWD}"
        )
    try:  # the salt must decode, or every login would fail inside bcrypt (cost 4: ~1 ms)
        bcrypt.hashpw(b"", f"${match.group(1)}$04${match.group(3)}".encode("ascii"))
    except ValueError:
        return f"not a valid bcrypt hash (its salt does not decode); {_HINT_HTPASSWD}"
    return None
