"""Validation of the exporter-toolkit web config file: every problem with its line, column and
key path, what was expected and what was found (the one format of candiag.config.problems)."""

from __future__ import annotations

import re
from pathlib import Path

import bcrypt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.errors import ConfigError
from candiag.metrics.webconfig import WebConfig, load_web_config, parse_web_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "web-config.example.yml"
HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
_TLS_KEYS_FOR_TESTS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version")


def _problems(data: object, base_dir: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_web_config(data, base_dir=base_dir, source="web.yml")
    assert str(info.value).startswith("web.yml: ")
    return info.value.problems


@pytest.fixture
def pem_dir(tmp_path: Path) -> Path:
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_text("placeholder\n")  # parse only checks the files exist
    return tmp_path


def test_empty_file_means_no_tls_no_auth(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("# nothing configured\n")
    config = load_web_config(path)
    assert config.tls is None
    assert not config.requires_auth


def test_users_and_tls_parse(pem_dir: Path) -> None:
    config = parse_web_config(
        {
            "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
            "basic_auth_users": {"prometheus": HASH},
        },
        base_dir=pem_dir,
    )
    assert config.tls is not None
    assert config.tls.cert_file == pem_dir / "server.crt"
    assert config.tls.client_auth_type == "NoClientCert"
    assert config.tls.min_version == "TLS12"
    assert config.basic_auth_users == {"prometheus": HASH.encode()}


def test_all_problems_are_listed_with_key_paths(pem_dir: Path) -> None:
    problems = _problems(
        {
            "tls_server_config": {
                "cert_file": "missing.crt",
                "min_version": "SSL3",
                "cipher_suites": ["TLS_AES_128_GCM_SHA256"],
            },
            "basic_auth_users": {"alice": "plaintext-password"},
            "http_server_config": {"http2": True},
        },
        pem_dir,
    )
    assert problems == [
        "web.yml: http_server_config: expected a top-level key (basic_auth_users, "
        "tls_server_config), found an unknown key; did you mean 'tls_server_config'?",
        "web.yml: tls_server_config.cipher_suites: expected a key candiag supports here "
        "(cert_file, client_auth_type, client_ca_file, key_file, max_version, min_version), "
        "found an unknown key",
        "web.yml: tls_server_config.cert_file: expected an existing file (relative paths start "
        f"at the web config's folder), found {pem_dir / 'missing.crt'}, which does not exist or "
        "is not a file",
        "web.yml: tls_server_config.key_file: expected the path of a PEM file, found nothing; "
        "this key is required",
        "web.yml: tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13 "
        "(one word, no list), found 'SSL3'",
        "web.yml: basic_auth_users.alice: expected a bcrypt hash ($2b$..., 60 characters), found "
        "18 characters that are not one; create one with: htpasswd -nBC 12 '' | tr -d ':\\n'",
    ]


@pytest.mark.parametrize("mode", ["RequestClientCert", "RequireAnyClientCert"])
def test_unverified_client_cert_modes_are_rejected_with_a_fix(pem_dir: Path, mode: str) -> None:
    tls = {"cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "ca.crt"}
    problems = _problems({"tls_server_config": {**tls, "client_auth_type": mode}}, pem_dir)
    assert problems == [
        "web.yml: tls_server_config.client_auth_type: expected VerifyClientCertIfGiven or "
        f"RequireAndVerifyClientCert (with client_ca_file), found {mode}, which accepts client "
        "certificates without verifying them; candiag (Python ssl) cannot do that"
    ]


def test_verifying_modes_need_a_client_ca(pem_dir: Path) -> None:
    tls = {"cert_file": "server.crt", "key_file": "server.key"}
    problems = _problems(
        {"tls_server_config": {**tls, "client_auth_type": "RequireAndVerifyClientCert"}}, pem_dir
    )
    assert problems == [
        "web.yml: tls_server_config.client_auth_type: expected client_ca_file (the CA of "
        "allowed clients) with RequireAndVerifyClientCert, found no client_ca_file"
    ]


def test_unknown_client_auth_type(pem_dir: Path) -> None:
    tls = {"cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "Yes"}
    (problem,) = _problems({"tls_server_config": tls}, pem_dir)
    assert problem == (
        "web.yml: tls_server_config.client_auth_type: expected one of NoClientCert, "
        "RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, "
        "RequireAndVerifyClientCert, found 'Yes'"
    )


def test_max_below_min_version(pem_dir: Path) -> None:
    tls = {
        "cert_file": "server.crt",
        "key_file": "server.key",
        "min_version": "TLS13",
        "max_version": "TLS12",
    }
    (problem,) = _problems({"tls_server_config": tls}, pem_dir)
    assert problem == (
        "web.yml: tls_server_config.max_version: expected a version from min_version TLS13 up, "
        "found TLS12"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a mapping at top level (tls_server_config, basic_auth_users), found a "
         "list []"),
        ({"tls_server_config": "yes"}, "tls_server_config: expected a mapping with cert_file "
         "and key_file, found a string 'yes'"),
        ({"basic_auth_users": ["alice"]}, "basic_auth_users: expected a mapping of user name to "
         "bcrypt hash, found a list ['alice']"),
        ({"basic_auth_users": {"a:b": HASH}}, 'basic_auth_users."a:b": expected a user name: '
         "non-empty text without ':', found 'a:b'"),
        ({"basic_auth_users": {"bob": 12}}, "basic_auth_users.bob: expected a bcrypt hash "
         "($2b$..., 60 characters), found an integer 12"),
    ],
)  # fmt: skip
def test_wrong_shapes(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_web_config(data, base_dir=tmp_path)
    assert str(info.value).startswith(f"<web config>: {message}")


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert str(info.value) == (
        f"{path}:3:1: expected valid YAML, found a YAML syntax error (expected ',' or ']', but "
        "got '<stream end>'); fix the YAML syntax"
    )


def test_missing_file_says_which_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_web_config(tmp_path / "absent.yml")
    assert str(info.value) == (
        f"{tmp_path / 'absent.yml'}: expected an existing file, found no such file; check "
        "[metrics] web_config_file"
    )


def test_shipped_example_is_valid_once_its_files_exist(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    # The example points at /etc/candiag/tls/*: the only problems may be those files.
    with pytest.raises(ConfigError) as info:
        parse_web_config(data, base_dir=EXAMPLE.parent)
    assert info.value.problems
    assert all("does not exist" in p for p in info.value.problems), info.value.problems
    tls = data["tls_server_config"]
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in tls:
            (tmp_path / Path(tls[key]).name).write_text("placeholder\n")
            tls[key] = Path(tls[key]).name
    config = parse_web_config(data, base_dir=tmp_path)
    assert config.tls is not None
    assert config.requires_auth


# --- hostile files (issue 13 item 2): only ConfigError, with file, line and key path -------

ADVERSARIAL_HASH = bcrypt.hashpw(b"nobody knows", bcrypt.gensalt(rounds=4)).decode()


def _load_problems(tmp_path: Path, content: bytes | str) -> tuple[Path, str]:
    path = tmp_path / "web.yml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:"), message
    return path, message


def test_min_version_as_a_list_is_a_config_error_with_its_line(pem_dir: Path) -> None:
    content = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    _, message = _load_problems(pem_dir, content + "  min_version: [TLS12]\n")
    assert message.endswith(
        "web.yml:4:3: tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13 "
        "(one word, no list), found a list ['TLS12']"
    )


def test_a_non_ascii_character_in_a_bcrypt_hash(tmp_path: Path) -> None:
    almost = "$2b$12$" + "é" + "a" * 52  # 60 characters, one not ASCII
    _, message = _load_problems(tmp_path, f'basic_auth_users:\n  alice: "{almost}"\n')
    assert message.endswith(
        "web.yml:2:3: basic_auth_users.alice: expected a bcrypt hash ($2b$..., 60 characters), "
        "found 60 characters that are not one; create one with: htpasswd -nBC 12 '' | tr -d ':\\n'"
    )


def test_a_file_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    _, message = _load_problems(tmp_path, b"basic_auth_users:\n  alice: \xff\xfe\n")
    assert message.endswith(
        "web.yml:2:10: expected UTF-8 text, found byte 0xff; save the file as UTF-8"
    )


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 12):  # 9**12 strings once expanded
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("tls_server_config:\n  cert_file: *l\n")
    _, message = _load_problems(tmp_path, "\n".join(lines))
    assert message.endswith(
        "web.yml:1:4: expected a web config without YAML anchors or aliases, found an anchor or "
        "alias (&name, *name); write each value out"
    )
    assert len(message) < 400


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("tls_server_config: &t\n  cert_file: x\n", ":1:20: expected a web config without YAML "
         "anchors or aliases"),
        ("basic_auth_users:\n  a: 1\n  a: 2\n", ":3:3: expected each key once in a mapping, "
         "found key 'a' a second time; keep one"),
        ("basic_auth_users:\n  a: " + "[" * 40 + "]" * 40 + "\n", ":2:20: expected at most 16 "
         "levels of nesting, found more"),
        ("basic_auth_users:\n  a: " + "9" * 5000 + "\n", ":2:6: expected a value YAML can "
         "read, found one it cannot (Exceeds the limit (4300 digits)"),
        ("basic_auth_users:\n  a: 2024-13-40\n", ":2:6: expected a value YAML can read, found "
         "one it cannot (month must be in 1..12); fix the value"),
        ("basic_auth_users:\n  a: [unclosed\n", ":3:1: expected valid YAML, found a YAML "
         "syntax error"),
        ("basic_auth_users: !!binary aGVsbG8=\n", ":1:1: basic_auth_users: expected a mapping of "
         "user name to bcrypt hash, found binary data b'hello'"),
        ("basic_auth_users: !!python/object:os.system {}\n", ":1:19: expected valid YAML, found "
         "a YAML syntax error (could not determine a constructor"),
        ("- just\n- a list\n", ": expected a mapping at top level (tls_server_config, "
         "basic_auth_users), found a list ['just', 'a list']"),
        ("basic_auth_users:\n  123: " + ADVERSARIAL_HASH + "\n", ":2:3: basic_auth_users.123: "
         "expected a user name: non-empty text without ':', found an integer 123; quote names "
         "YAML reads as numbers or booleans, e.g. '123'"),
        ("tls_server_config:\n  cert_file: " + "x" * 5000 + "\n", ":2:3: "
         "tls_server_config.cert_file: expected a usable file path, found '"),
        ("tls_server_config:\n  cert_file: {a: 1}\n", ":2:3: tls_server_config.cert_file: "
         "expected a file path, found a mapping {'a': 1}"),
        ("tls_server_config:\n  min_version: {TLS12: 1}\n", ":2:3: "
         "tls_server_config.min_version: expected one of TLS10, TLS11, TLS12, TLS13 (one word, "
         "no list), found a mapping {'TLS12': 1}"),
        ("tls_server_config:\n  client_auth_type: [x]\n", ":2:3: "
         "tls_server_config.client_auth_type: expected one of NoClientCert, RequestClientCert, "
         "RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert, found a "
         "list ['x']"),
    ],
)  # fmt: skip
def test_hostile_yaml_is_a_config_error(tmp_path: Path, content: str, expected: str) -> None:
    path, message = _load_problems(tmp_path, content)
    assert f"{path}{expected}" in message
    assert len(message) < 2000, "a value from the file was copied whole into the message"


def test_a_file_too_large_to_be_a_web_config(tmp_path: Path) -> None:
    _, message = _load_problems(tmp_path, "# x\n" * 300_000)
    assert message.endswith(
        "web.yml: expected at most 1 MiB, found 1200000 bytes; check [metrics] web_config_file"
    )


def test_something_that_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(ConfigError) as info:
        load_web_config(fifo)
    assert str(info.value) == (
        f"{fifo}: expected a regular file, found a named pipe; check [metrics] web_config_file"
    )


@pytest.mark.parametrize("body", ["\n", "  # cert_file: server.crt\n  # key_file: x\n", " {}\n"])
def test_tls_asked_for_but_empty_refuses_instead_of_serving_plain_http(
    tmp_path: Path, body: str
) -> None:
    _, message = _load_problems(tmp_path, "tls_server_config:" + body)
    assert message.endswith(
        "web.yml:1:1: tls_server_config: expected cert_file and key_file, found an empty "
        "mapping (are its keys commented out?); TLS was asked for, so candiag will not serve "
        "plain HTTP: give cert_file and key_file, or delete the tls_server_config line to serve "
        "without TLS"
    )


@pytest.mark.parametrize("body", ["\n", "\n  # prometheus: $2b$12$...\n", " {}\n"])
def test_basic_auth_asked_for_without_users_refuses(tmp_path: Path, body: str) -> None:
    _, message = _load_problems(tmp_path, "basic_auth_users:" + body)
    assert "web.yml:1:1: basic_auth_users: expected 'user: bcrypt-hash' lines, found no users " in (
        message
    )


@pytest.mark.parametrize(
    ("hashed", "expected"),
    [
        ("$2b$04$" + "z" * 53, "found a hash whose salt does not decode"),
        (
            "$2b$20$" + "a" * 53,
            "expected a bcrypt cost in 4..16 (each step doubles the time of "
            "every login; above 16 a check takes seconds), found bcrypt cost 20",
        ),
        ("$2b$03$" + "a" * 53, "found bcrypt cost 3"),
        ("$2b$04$" + "!" * 53, "found 60 characters that are not one"),
        ("$2x$04$" + "a" * 53, "found 60 characters that are not one"),
    ],
)
def test_hashes_bcrypt_would_refuse_at_login_are_refused_when_loaded(
    tmp_path: Path, hashed: str, expected: str
) -> None:
    _, message = _load_problems(tmp_path, f"basic_auth_users:\n  alice: '{hashed}'\n")
    assert expected in message


def test_every_accepted_hash_is_one_bcrypt_takes(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  alice: '{HASH}'\n  bob: '{ADVERSARIAL_HASH}'\n")
    users = load_web_config(path).basic_auth_users
    assert bcrypt.checkpw(b"pw", users["alice"])
    assert not bcrypt.checkpw(b"pw", users["bob"])


# --- random and hostile YAML (hypothesis) -----------------------------------------------------

# file[:line:col]: [key.path: ]expected ..., found ...
_PROBLEM_RE = re.compile(r"^\S[^\n]*?(:\d+:\d+)?: ([^\n]+: )?expected [^\n]+, found ")

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(["TLS12", "TLS13", "server.crt", "NoClientCert", HASH, ADVERSARIAL_HASH]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=20), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.one_of(
    st.sampled_from(sorted({"tls_server_config", "basic_auth_users", *_TLS_KEYS_FOR_TESTS})),
    st.text(max_size=20),
)
_documents = st.dictionaries(
    _keys,
    st.one_of(_values, st.dictionaries(_keys, _values, max_size=6)),
    max_size=4,
)
# Pieces of hostile YAML text: anchors, aliases, tags, nesting, control characters.
_hostile_pieces = st.sampled_from(
    [
        "&a ", "*a", "&b [*a, *a, *a]", "<<: *a", "!!binary aGk=", "!!set {a}", "!!omap [a: 1]",
        "!!python/name:os.system", "!!timestamp 2024-99-99", "? [a]\n: b", "[" * 30, "]" * 30,
        "{", "}", "\t", "\x00", "\ufeff", "\x85", "%YAML 1.1\n---\n", "...\n", "---\n", "|\n  x",
        "tls_server_config:", "basic_auth_users:", "  cert_file: ", "  min_version: ", "\n",
        "  ", ": ", "- ", "'", '"', "\\x", "9" * 4400, "é", "#",
    ]
)  # fmt: skip


def _check_contract(path: Path) -> None:
    """A WebConfig, or a ConfigError naming the file whose every problem has a location."""
    try:
        config = load_web_config(path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}:"), str(err)
        assert len(str(err)) < 20_000
        for problem in err.problems:
            assert problem.startswith(f"{path}:") and _PROBLEM_RE.match(problem), problem
        return
    assert isinstance(config, WebConfig)
    for name, hashed in config.basic_auth_users.items():
        assert isinstance(name, str) and ":" not in name
        bcrypt.checkpw(b"x", hashed)  # never raises for an accepted hash


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.slow
@given(document=_documents)
def test_random_documents_load_or_fail_with_a_config_error(
    tmp_path: Path, document: dict[object, object]
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    _check_contract(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(_hostile_pieces, max_size=25))
def test_hostile_yaml_text_loads_or_fails_with_a_config_error(
    tmp_path: Path, pieces: list[str]
) -> None:
    path = tmp_path / "web.yml"
    path.write_text("".join(pieces), encoding="utf-8")
    _check_contract(path)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), keep=st.integers(min_value=0, max_value=400))
def test_damaged_example_bytes_load_or_fail_with_a_config_error(
    tmp_path: Path, data: bytes, keep: int
) -> None:
    path = tmp_path / "web.yml"
    original = EXAMPLE.read_bytes()
    path.write_bytes(original[:keep] + data + original[keep + len(data) :])
    _check_contract(path)
