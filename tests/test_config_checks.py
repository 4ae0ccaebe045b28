"""``check-config`` runs every check ``run`` runs (issue 13 §1 item 10), and the files a config
names (diagnosis thresholds, web config, TLS material) are validated key by key.

The corpus test holds the two commands together: for every config below, ``check-config``
exits non-zero if and only if ``run`` refuses to start, with the same message.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest
from external_tools import require_tool

from candiag.cli import main
from candiag.config.check import check_config
from candiag.config.load import load_config, parse_config_text
from candiag.diagnosis.engine import ENGINE_LIMITS, THRESHOLD_LIMITS, load_rulebook
from candiag.errors import ConfigError
from candiag.health.thresholds import load_thresholds

REPO = Path(__file__).resolve().parent.parent
METRICS = '[metrics]\nlisten = "127.0.0.1:0"\n'


# --- diagnosis thresholds and rules --------------------------------------------------------


def override_problems(tmp_path: Path, text: str | bytes) -> list[str]:
    path = tmp_path / "thresholds.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as info:
        load_rulebook(path)
    assert str(info.value).startswith(str(path)), str(info.value)
    return info.value.problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[thresholds]\nburst_errors_per_s = nan\n", "thresholds.toml:2:1: thresholds.burst_errors_per_s: "
         "expected a whole number in 1..1000000 (protocol errors in one second), found nan"),
        ("[thresholds]\nburst_errors_per_s = 8.5\n", "expected a whole number"),
        ("[thresholds]\nbus_load_warning = -0.5\n", "thresholds.bus_load_warning: expected a "
         "number in 0.01..1 (a load ratio, 0-1, not percent), found -0.5"),
        ("[thresholds]\nbus_load_warning = 70\n", "not percent), found 70"),
        ("[thresholds]\ncoolant_warning_c = inf\n", "thresholds.coolant_warning_c: expected"),
        ("[thresholds]\nmin_flow_l_min = -inf\n", "found -inf"),
        ("[thresholds]\nbus_load_warning = true\n", "found a boolean True"),
        ("[engine]\nclear_after_s = -5\n", "thresholds.toml:2:1: engine.clear_after_s: expected a number "
         "in 0..86400 (seconds a condition must be absent), found -5"),
        ("[engine]\nraise_after_s = nan\n", "engine.raise_after_s: expected"),
        ("[engine]\nclear_after = 5\n", "thresholds.toml:2:1: engine.clear_after: expected a key of "
         "engine (clear_after_s, raise_after_s), found an unknown key; did you mean "
         "'clear_after_s'?"),
        ("[thresholds]\nbus_load_warning = 0.95\n", "thresholds.bus_load_warning: expected "
         "bus_load_warning <= bus_load_critical, found 0.95 > 0.9"),
        ("[threshold]\nx = 1\n", "thresholds.toml:1:1: threshold: expected a section of "
         "candiag/data/diagnosis.toml (engine, rules, thresholds), found an unknown key; did you "
         "mean 'thresholds'?"),
        ("[rules.CAN_ERR_ACK]\nseverity = \"fatal\"\n", "thresholds.toml:2:1: rules.CAN_ERR_ACK.severity: "
         "expected one of critical, warning, info, found 'fatal'"),
        ("[rules.CAN_ERR_ACK]\ntitle = \"{bus\"\n", "rules.CAN_ERR_ACK.title: expected a text "
         "with plain {name} placeholders, found '{bus' (expected '}' before end of string); "
         "write a literal brace as {{ or }}"),
        ("[rules.CAN_ERR_ACK]\nfix = \"{bus.__class__}\"\n", "found placeholder "
         "'{bus.__class__}'; write it as {bus}, {address}, ..."),
        ("[rules.CAN_ERR_ACK]\nfix = \"{load:d}\"\n", "plain {name} placeholders (no index, "
         "attribute, format or conversion), found placeholder '{load}'"),
        ("[rules.CAN_ERR_ACK]\ncauses = \"one\"\n", "causes: expected a list of texts"),
        ("[rules.CAN_ERR_ACK]\nrank = -1\n", "rules.CAN_ERR_ACK.rank: expected a whole number"),
        ("[rules.CAN_ERR_AKC]\nrank = 1\n", "thresholds.toml:1:1: rules.CAN_ERR_AKC: expected a rule code "
         "of candiag/data/diagnosis.toml, found an unknown key; did you mean 'CAN_ERR_ACK'?"),
        ("[rules]\nCAN_ERR_ACK = 5\n", "rules.CAN_ERR_ACK: expected a table of severity"),
        ("not toml = = =\n", "thresholds.toml:1:5: expected valid TOML, found a TOML syntax error ("),
        (b"\xff\xfe[thresholds]\n", "thresholds.toml:1:1: expected UTF-8 text, found byte 0xff; save the "
         "file as UTF-8"),
        ("[thresholds]\nbus_load_warning = " + "9" * 5000 + "\n", "thresholds.toml:2:20: expected a "
         "64-bit integer, found a value that cannot be read ("),
        ("[thresholds]\nerror_frames_warning_60s = 99999999999999999999\n", "thresholds.toml:2:1: "
         "thresholds.error_frames_warning_60s: expected a 64-bit integer, found a larger one"),
    ],
)  # fmt: skip
def test_a_bad_override_is_refused_with_where_and_what(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    problems = override_problems(tmp_path, text)
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{tmp_path / 'thresholds.toml'}:") for p in problems), problems


def test_every_problem_of_an_override_is_listed_at_once(tmp_path: Path) -> None:
    problems = override_problems(
        tmp_path,
        "[thresholds]\nburst_errors_per_s = nan\nbus_load_warning = -1\n"
        "[engine]\nclear_after_s = -5\n[rules.CAN_ERR_ACK]\nseverity = 'x'\n",
    )
    assert len(problems) == 4, problems


def test_the_shipped_rule_data_is_within_its_own_limits() -> None:
    from importlib import resources

    import tomllib

    data = tomllib.loads(resources.files("candiag.data").joinpath("diagnosis.toml").read_text())
    assert set(data["thresholds"]) == set(THRESHOLD_LIMITS), "every threshold needs a limit"
    for key, value in data["thresholds"].items():
        assert THRESHOLD_LIMITS[key].allows(value), (key, value)
    for key, value in data["engine"].items():
        assert ENGINE_LIMITS[key].allows(value), (key, value)


def test_a_good_override_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        "[thresholds]\nbus_load_warning = 0.5\nburst_errors_per_s = 10.0\n[engine]\n"
        "clear_after_s = 0\n[rules.CAN_ERR_ACK]\ntitle = 'No ACK on {bus} ({nothing})'\n"
    )
    book = load_rulebook(path)
    assert book.t("bus_load_warning") == 0.5 and book.clear_after_s == 0.0


def test_analyze_with_a_nan_threshold_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.toml").write_text("[thresholds]\nburst_errors_per_s = nan\n")
    config = tmp_path / "c.toml"
    config.write_text(
        '[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "x"\n'
        '[diagnosis]\nthresholds_file = "t.toml"\n'
    )
    capture = tmp_path / "c.log"
    capture.write_text("(1.000000) can0 123#00\n(1.100000) can0 123#00\n")
    assert main(["analyze", str(capture), "--config", str(config)]) == 2
    assert "thresholds.burst_errors_per_s: expected a whole number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"\xff\xfe", "h.toml:1:1: expected UTF-8 text, found byte 0xff"),
        ("[cycle\n", "h.toml:1:7: expected valid TOML, found a TOML syntax error"),
        (
            "[cycle]\np95_factor = nan\n",
            "h.toml:2:1: cycle.p95_factor: expected a number in "
            "1..100 (a multiple of the declared period), found nan",
        ),
        (
            "[cycle]\nmean_tolerance = -1\n",
            "h.toml:2:1: cycle.mean_tolerance: expected a number "
            "in 0..10 (a fraction of the declared period), found -1",
        ),
    ],
)
def test_health_thresholds_files_are_validated_the_same_way(
    tmp_path: Path, text: str | bytes, expected: str
) -> None:
    path = tmp_path / "h.toml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ConfigError) as info:
        load_thresholds(path)
    assert str(info.value).startswith(f"{path.parent}/{expected}")


def test_a_long_value_is_never_copied_whole_into_a_config_problem() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(f'[log]\nlevel = "{"x" * 100_000}"\n', source="c.toml")
    assert len(str(info.value)) < 400
    assert "…" in str(info.value)


# --- the listen address ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (
            "no-such-host.invalid:9847",
            "2:1: metrics.listen: expected a host that resolves, "
            "found 'no-such-host.invalid', which does not (",
        ),
        (
            "192.0.2.1:9847",
            "2:1: metrics.listen: expected an address of this machine, found 192.0.2.1 (",
        ),  # TEST-NET-1
    ],
)
def test_a_listen_host_that_run_cannot_use_fails_check_config(
    tmp_path: Path, listen: str, expected: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError) as info:
        check_config(load_config(path))
    assert str(info.value).startswith(f"{path}:{expected}")


def test_problems_of_several_files_are_reported_together(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text("[engine]\nclear_after_s = -5\n")
    (tmp_path / "web.yml").write_text("tls_server_config:\n")
    path = tmp_path / "c.toml"
    path.write_text(
        '[diagnosis]\nthresholds_file = "t.toml"\n'
        '[metrics]\nlisten = "no-such-host.invalid:1"\nweb_config_file = "web.yml"\n'
    )
    with pytest.raises(ConfigError) as info:
        check_config(load_config(path))
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{tmp_path / 't.toml'}:2:1: engine.clear_after_s: expected")
    assert problems[1].startswith(
        f"{tmp_path / 'web.yml'}:1:1: tls_server_config: expected cert_file and key_file, "
        "found an empty mapping"
    )
    assert problems[2].startswith(f"{path}:4:1: metrics.listen: expected a host that resolves")


# --- reload: a bad file named by the config keeps the running one ----------------------------


def test_reload_with_a_bad_web_config_keeps_the_daemon_running(tmp_path: Path) -> None:
    from candiag.daemon.service import Daemon

    web = tmp_path / "web.yml"
    web.write_text(
        f"basic_auth_users:\n  prometheus: '{bcrypt.hashpw(b'x', bcrypt.gensalt(4)).decode()}'\n"
    )
    path = tmp_path / "candiag.toml"
    path.write_text(METRICS + 'web_config_file = "web.yml"\n')
    daemon = Daemon(load_config(path), config_path=path, serve_metrics=False)
    daemon.start()
    try:
        for content in (
            b"tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: [TLS12]\n",
            ("basic_auth_users:\n  p: '$2b$12$" + "é" + "a" * 52 + "'\n").encode(),
            b"basic_auth_users:\n  p: \xff\n",
            b"a: &a [1]\nb: *a\n",
            b"tls_server_config:\n",
        ):
            web.write_bytes(content)
            assert daemon.reload() is False  # and no exception: the daemon keeps running
    finally:
        daemon.stop()


# --- the corpus: check-config fails iff run refuses to start, with the same message ----------


def _pki(tmp_path: Path) -> dict[str, Path]:
    from tests.test_http_tls import _make_ca, _openssl

    openssl = require_tool("openssl")
    for name in ("a", "b"):
        _make_ca(openssl, tmp_path, name)
    _openssl(
        openssl, "pkey", "-in", "a.key", "-aes256", "-passout", "pass:x", "-out", "enc.key",
        cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "junk.pem").write_bytes(bytes(range(256)) * 4)
    return {n: tmp_path / n for n in ("a.crt", "a.key", "b.key", "enc.key", "junk.pem")}


def _tls(cert: str, key: str) -> str:
    return f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"


# name -> (candiag.toml body after [metrics], {file name: content}, refused?)
CORPUS: dict[str, tuple[str, dict[str, str | bytes], bool]] = {
    "plain": ("", {}, False),
    "tls_and_auth": ('web_config_file = "web.yml"\n', {"web.yml": _tls("a.crt", "a.key")}, False),
    "good_thresholds": (
        '[diagnosis]\nthresholds_file = "t.toml"\n',
        {"t.toml": "[thresholds]\nbus_load_warning = 0.5\n"},
        False,
    ),
    "thresholds_not_toml": (
        '[diagnosis]\nthresholds_file = "t.toml"\n', {"t.toml": "<xml>not toml</xml>\n"}, True
    ),
    "thresholds_binary": ('[diagnosis]\nthresholds_file = "t.toml"\n', {"t.toml": b"\x00\xff"}, True),
    "threshold_nan": (
        '[diagnosis]\nthresholds_file = "t.toml"\n',
        {"t.toml": "[thresholds]\nburst_errors_per_s = nan\n"},
        True,
    ),
    "threshold_negative": (
        '[diagnosis]\nthresholds_file = "t.toml"\n',
        {"t.toml": "[thresholds]\nbus_load_warning = -1\n"},
        True,
    ),
    "threshold_inf": (
        '[diagnosis]\nthresholds_file = "t.toml"\n',
        {"t.toml": "[thresholds]\ncoolant_critical_c = inf\n"},
        True,
    ),
    "clear_after_negative": (
        '[diagnosis]\nthresholds_file = "t.toml"\n',
        {"t.toml": "[engine]\nclear_after_s = -5\n"},
        True,
    ),
    "key_mismatch": ('web_config_file = "web.yml"\n', {"web.yml": _tls("a.crt", "b.key")}, True),
    "encrypted_key": ('web_config_file = "web.yml"\n', {"web.yml": _tls("a.crt", "enc.key")}, True),
    "junk_cert": ('web_config_file = "web.yml"\n', {"web.yml": _tls("junk.pem", "a.key")}, True),
    "junk_key": ('web_config_file = "web.yml"\n', {"web.yml": _tls("a.crt", "junk.pem")}, True),
    "tls_commented_out": (
        'web_config_file = "web.yml"\n', {"web.yml": "tls_server_config:\n  # cert_file: a\n"}, True
    ),
    "min_version_list": (
        'web_config_file = "web.yml"\n',
        {"web.yml": _tls("a.crt", "a.key") + "  min_version: [TLS12]\n"},
        True,
    ),
    "non_ascii_hash": (
        'web_config_file = "web.yml"\n',
        {"web.yml": "basic_auth_users:\n  p: '$2b$12$" + "é" + "a" * 52 + "'\n"},
        True,
    ),
    "web_not_utf8": ('web_config_file = "web.yml"\n', {"web.yml": b"basic_auth_users:\n \xff"}, True),
    "alias_bomb": (
        'web_config_file = "web.yml"\n',
        {"web.yml": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a]\n"},
        True,
    ),
}  # fmt: skip
LISTEN_CASES = {
    "unresolvable_host": "no-such-host.invalid:0",
    "not_this_machine": "192.0.2.1:0",
}


def _write_case(tmp_path: Path, name: str, pki: Callable[[], dict[str, Path]]) -> Path:
    if name in LISTEN_CASES:
        body, files = f'[metrics]\nlisten = "{LISTEN_CASES[name]}"\n', {}
    else:
        extra, files, _ = CORPUS[name]
        # [metrics] first; a [diagnosis] table after it closes it.
        body = METRICS + extra
    if any(isinstance(c, str) and "cert_file" in c for c in files.values()):
        pki()
    for file_name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode()
        (tmp_path / file_name).write_bytes(data)
    path = tmp_path / "candiag.toml"
    path.write_text(body)
    return path


def _run_until_started_or_exited(config: Path, timeout: float = 60.0) -> tuple[int | None, str]:
    """``candiag run``: (exit code, stderr) when it refused; (None, stderr) once it started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", "run", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:  # exited
                return proc.wait(10), "".join(lines)
            lines.append(line)
            if "event=started" in line:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(20) == 0
                return None, "".join(lines)
        raise AssertionError("run neither started nor exited:\n" + "".join(lines))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
@pytest.mark.parametrize("name", [*CORPUS, *LISTEN_CASES])
def test_check_config_fails_iff_run_refuses_with_the_same_message(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    made: dict[str, Path] = {}

    def pki() -> dict[str, Path]:
        if not made:
            made.update(_pki(tmp_path))
        return made

    config = _write_case(tmp_path, name, pki)
    check_code = main(["check-config", str(config)])
    check_err = capsys.readouterr().err
    run_code, run_err = _run_until_started_or_exited(config)
    refused = CORPUS[name][2] if name in CORPUS else True
    assert (check_code != 0) == refused, check_err
    assert (run_code is not None) == refused, run_err
    if refused:
        assert check_code == run_code == 2
        assert check_err == run_err, (check_err, run_err)
        assert check_err.startswith("candiag: error: ") and "Traceback" not in run_err
