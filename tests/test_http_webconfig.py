"""Validation of the exporter-toolkit web config file: every problem, with its key path."""

from __future__ import annotations

from pathlib import Path

import bcrypt
import pytest
import yaml

from candiag.errors import ConfigError
from candiag.metrics.webconfig import load_web_config, parse_web_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "web-config.example.yml"
HASH = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()


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
