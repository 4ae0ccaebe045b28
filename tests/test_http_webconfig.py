"""Validation of the exporter-toolkit web config file: every problem, with its key path."""

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
    joined = "\n".join(problems)
    assert len(problems) == 6, joined
    assert "http_server_config: unknown key" in joined
    assert "tls_server_config.cipher_suites: unknown or unsupported key" in joined
    assert f"tls_server_config.cert_file: {pem_dir / 'missing.crt'} does not exist" in joined
    assert "tls_server_config.key_file: missing" in joined
    assert (
        "tls_server_config.min_version: 'SSL3' is not one of TLS10, TLS11, TLS12, TLS13" in joined
    )
    assert "basic_auth_users.alice: not a bcrypt hash" in joined
    assert "htpasswd -nBC" in joined


@pytest.mark.parametrize("mode", ["RequestClientCert", "RequireAnyClientCert"])
def test_unverified_client_cert_modes_are_rejected_with_a_fix(pem_dir: Path, mode: str) -> None:
    tls = {"cert_file": "server.crt", "key_file": "server.key", "client_ca_file": "ca.crt"}
    problems = _problems({"tls_server_config": {**tls, "client_auth_type": mode}}, pem_dir)
    assert len(problems) == 1
    assert problems[0].startswith(f"tls_server_config.client_auth_type: {mode} accepts")
    assert "RequireAndVerifyClientCert" in problems[0]


def test_verifying_modes_need_a_client_ca(pem_dir: Path) -> None:
    tls = {"cert_file": "server.crt", "key_file": "server.key"}
    problems = _problems(
        {"tls_server_config": {**tls, "client_auth_type": "RequireAndVerifyClientCert"}}, pem_dir
    )
    assert problems == [
        "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file "
        "(the CA of allowed clients)"
    ]


def test_unknown_client_auth_type(pem_dir: Path) -> None:
    tls = {"cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "Yes"}
    (problem,) = _problems({"tls_server_config": tls}, pem_dir)
    assert problem.startswith("tls_server_config.client_auth_type: 'Yes' is not one of")


def test_max_below_min_version(pem_dir: Path) -> None:
    tls = {
        "cert_file": "server.crt",
        "key_file": "server.key",
        "min_version": "TLS13",
        "max_version": "TLS12",
    }
    (problem,) = _problems({"tls_server_config": tls}, pem_dir)
    assert problem == "tls_server_config.max_version: TLS12 is below min_version TLS13"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a mapping at top level"),
        ({"tls_server_config": "yes"}, "tls_server_config: must be a mapping"),
        ({"basic_auth_users": ["alice"]}, "basic_auth_users: must be a mapping"),
        ({"basic_auth_users": {"a:b": HASH}}, "basic_auth_users.a:b: user names"),
        ({"basic_auth_users": {"bob": 12}}, "basic_auth_users.bob: not a bcrypt hash"),
    ],
)
def test_wrong_shapes(tmp_path: Path, data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_web_config(data, base_dir=tmp_path)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text("basic_auth_users:\n  alice: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    assert str(info.value).startswith(f"{path}: line ")
    assert "not valid YAML" in str(info.value)


def test_missing_file_says_which_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read web config.*\[metrics\] web_config_file"):
        load_web_config(tmp_path / "absent.yml")


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
    assert message.startswith(f"{path}: "), message
    return path, message


def test_min_version_as_a_list_is_a_config_error_with_its_line(pem_dir: Path) -> None:
    content = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    _, message = _load_problems(pem_dir, content + "  min_version: [TLS12]\n")
    assert "line 4: tls_server_config.min_version: ['TLS12'] is not one of TLS10" in message
    assert "(one word, no list)" in message


def test_a_non_ascii_character_in_a_bcrypt_hash(tmp_path: Path) -> None:
    almost = "$2b$12$" + "é" + "a" * 52  # 60 characters, one not ASCII
    _, message = _load_problems(tmp_path, f'basic_auth_users:\n  alice: "{almost}"\n')
    assert "line 2: basic_auth_users.alice: not a bcrypt hash" in message
    assert "htpasswd -nBC" in message


def test_a_file_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    _, message = _load_problems(tmp_path, b"basic_auth_users:\n  alice: \xff\xfe\n")
    assert "line 2: not UTF-8 text (byte 0xff at column 10); save the file as UTF-8" in message


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 12):  # 9**12 strings once expanded
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("tls_server_config:\n  cert_file: *l\n")
    _, message = _load_problems(tmp_path, "\n".join(lines))
    assert "line 1: YAML anchors and aliases (&name, *name) are not accepted" in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("tls_server_config: &t\n  cert_file: x\n", "line 1: YAML anchors and aliases"),
        ("basic_auth_users:\n  a: 1\n  a: 2\n", "line 3: key 'a' appears twice"),
        ("basic_auth_users:\n  a: " + "[" * 40 + "]" * 40 + "\n", "nested more than 16 levels"),
        ("basic_auth_users:\n  a: " + "9" * 5000 + "\n", "line 2: a value cannot be read"),
        ("basic_auth_users:\n  a: 2024-13-40\n", "line 2: a value cannot be read"),
        ("basic_auth_users:\n  a: [unclosed\n", "not valid YAML"),
        ("basic_auth_users: !!binary aGVsbG8=\n", "must be a mapping of user name to bcrypt"),
        ("basic_auth_users: !!python/object:os.system {}\n", "not valid YAML"),
        ("- just\n- a list\n", "the web config must be a mapping at top level"),
        ("basic_auth_users:\n  123: " + ADVERSARIAL_HASH + "\n", "quote names YAML reads"),
        ("tls_server_config:\n  cert_file: " + "x" * 5000 + "\n", "tls_server_config.cert_file"),
        ("tls_server_config:\n  cert_file: {a: 1}\n", "must be a file path, found {'a': 1}"),
        ("tls_server_config:\n  min_version: {TLS12: 1}\n", "min_version: {'TLS12': 1} is not"),
        ("tls_server_config:\n  client_auth_type: [x]\n", "client_auth_type: ['x'] is not one"),
    ],
)
def test_hostile_yaml_is_a_config_error(tmp_path: Path, content: str, expected: str) -> None:
    _, message = _load_problems(tmp_path, content)
    assert expected in message
    assert len(message) < 2000, "a value from the file was copied whole into the message"


def test_a_file_too_large_to_be_a_web_config(tmp_path: Path) -> None:
    _, message = _load_problems(tmp_path, "# x\n" * 300_000)
    assert "more than a web config can be (1 MiB)" in message


def test_something_that_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)  # opening it for reading would block forever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_web_config(fifo)


@pytest.mark.parametrize("body", ["\n", "  # cert_file: server.crt\n  # key_file: x\n", " {}\n"])
def test_tls_asked_for_but_empty_refuses_instead_of_serving_plain_http(
    tmp_path: Path, body: str
) -> None:
    _, message = _load_problems(tmp_path, "tls_server_config:" + body)
    assert "line 1: tls_server_config: empty (are its keys commented out?)" in message
    assert "will not serve plain HTTP" in message


@pytest.mark.parametrize("body", ["\n", "\n  # prometheus: $2b$12$...\n", " {}\n"])
def test_basic_auth_asked_for_without_users_refuses(tmp_path: Path, body: str) -> None:
    _, message = _load_problems(tmp_path, "basic_auth_users:" + body)
    assert "basic_auth_users: lists no users (are they commented out?)" in message


@pytest.mark.parametrize(
    ("hashed", "expected"),
    [
        ("$2b$04$" + "z" * 53, "its salt does not decode"),
        ("$2b$20$" + "a" * 53, "bcrypt cost 20 is outside 4-16"),
        ("$2b$03$" + "a" * 53, "bcrypt cost 3 is outside 4-16"),
        ("$2b$04$" + "!" * 53, "not a bcrypt hash"),
        ("$2x$04$" + "a" * 53, "not a bcrypt hash"),
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

_PROBLEM_RE = re.compile(r"^(line \d+: )?[^\s][^\n]*?: ")

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
        assert str(err).startswith(f"{path}: "), str(err)
        assert len(str(err)) < 20_000
        for problem in err.problems:
            assert _PROBLEM_RE.match(problem) or problem.startswith("the web config"), problem
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
