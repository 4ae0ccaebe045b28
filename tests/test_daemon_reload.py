"""Reloads in-process: requests coalesce, and a bad file on reload never ends monitoring.

Issue 13 §1 items 1 and 2: a reload asked for during a reload stopped the daemon, and a
web config that failed to load in a way its parser did not foresee (``TypeError``,
``UnicodeEncodeError``, ``UnicodeDecodeError``) ended it.  Every file a config names is
tried here: the web config, the diagnosis thresholds, a DBC, a meter profile, the config
itself.  The same files through the real ``candiag run`` are in
``tests/adversarial/test_daemon_attacks.py``.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from candiag.config.load import load_config
from candiag.daemon.logging import EventLog
from candiag.daemon.service import Daemon, prepare_config
from candiag.errors import ConfigError
from tests.waiting import wait_for

DBC = """VERSION ""
BO_ 256 Heartbeat: 8 Node
 SG_ Counter : 0|8@1+ (1,0) [0|255] "" Vector__XXX
"""


def capture_log() -> tuple[EventLog, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"candiag.test.reload.{id(stream)}")
    logger.handlers.clear()
    logger.addHandler(logging.StreamHandler(stream))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return EventLog(logger), stream


def config_text(channel: str, **files: Path) -> str:
    text = f'[[can.buses]]\nname = "can0"\ninterface = "virtual"\nchannel = "{channel}"\n'
    if "dbc" in files:
        text += f'dbc = ["{files["dbc"]}"]\n'
    text += '[metrics]\nlisten = "127.0.0.1:0"\n'
    if "web" in files:
        text += f'web_config_file = "{files["web"]}"\n'
    if "thresholds" in files:
        text += f'[diagnosis]\nthresholds_file = "{files["thresholds"]}"\n'
    if "profile" in files:
        text += (
            '[[modbus.ports]]\nport = "/dev/candiag-test-no-such-tty"\nname = "rs485"\n'
            f'[[modbus.ports.devices]]\nprofile = "{files["profile"]}"\nunit_id = 1\n'
        )
    return text


@pytest.fixture
def channel() -> str:
    return f"reload-{time.monotonic_ns()}"


@pytest.fixture
def started(tmp_path: Path, channel: str) -> Iterator[tuple[Daemon, io.StringIO, Path]]:
    path = tmp_path / "candiag.toml"
    path.write_text(config_text(channel))
    log, stream = capture_log()
    daemon = Daemon(load_config(path), config_path=path, log=log)
    daemon.start()
    try:
        yield daemon, stream, path
    finally:
        daemon.stop()


def scrape(daemon: Daemon) -> str:
    assert daemon.metrics_url is not None
    with urllib.request.urlopen(daemon.metrics_url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_a_reload_asked_for_during_a_reload_runs_once_after_it(tmp_path: Path) -> None:
    """Three SIGHUPs during the first reload: one more reload, and the loop goes on."""
    path = tmp_path / "candiag.toml"
    path.write_text(config_text(f"coalesce-{time.monotonic_ns()}"))
    log, _ = capture_log()
    daemon = Daemon(load_config(path), config_path=path, log=log, serve_metrics=False)
    daemon.start()
    reloads: list[float] = []
    original = daemon.reload

    def reload_hit_by_sighups() -> bool:
        reloads.append(time.monotonic())
        if len(reloads) == 1:
            for _ in range(3):  # what the SIGHUP handler does, while this reload runs
                daemon.request_reload()
        return original()

    daemon.reload = reload_hit_by_sighups  # type: ignore[method-assign]
    loop = threading.Thread(target=daemon.run, name="candiag-test-loop")
    loop.start()
    try:
        daemon.request_reload()
        wait_for(lambda: len(reloads) >= 2, "two reloads", timeout=10)
        iterations = daemon.iterations
        wait_for(lambda: daemon.iterations > iterations + 3, "the loop going on", timeout=10)
        assert loop.is_alive()
        assert len(reloads) == 2
        assert daemon.reloads == 2 and daemon.reload_failures == 0
    finally:
        daemon.request_stop()
        loop.join(5)
        daemon.stop()
    assert not loop.is_alive()


def test_stop_wins_over_a_pending_reload(tmp_path: Path) -> None:
    path = tmp_path / "candiag.toml"
    path.write_text(config_text(f"stopwins-{time.monotonic_ns()}"))
    log, _ = capture_log()
    daemon = Daemon(load_config(path), config_path=path, log=log, serve_metrics=False)
    daemon.start()
    try:
        daemon.request_reload()
        daemon.request_stop()
        daemon.run()  # returns at once: no reload after a stop request
        assert daemon.reloads == 0 and daemon.iterations == 0
    finally:
        daemon.stop()


def _write_bad_web_type(tmp: Path) -> Path:
    path = tmp / "web-type.yml"
    path.write_text(
        "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n  min_version: [TLS12]\n"
    )
    return path


def _write_bad_web_hash(tmp: Path) -> Path:
    path = tmp / "web-hash.yml"
    path.write_text('basic_auth_users:\n  alice: "$2b$12$' + "é" * 53 + '"\n', encoding="utf-8")
    return path


def _write_bad_web_bytes(tmp: Path) -> Path:
    path = tmp / "web-bytes.yml"
    path.write_bytes(b"basic_auth_users:\n  al\xffice: x\n")
    return path


def _write_bad_thresholds(tmp: Path) -> Path:
    path = tmp / "thresholds.toml"
    path.write_bytes(b"[bus]\n# \xff\xfe not UTF-8\n")
    return path


def _write_bad_dbc(tmp: Path) -> Path:
    path = tmp / "bus.dbc"
    path.write_text(DBC.replace("0|8@1+", "0|8@1+ (((("))
    return path


def _write_bad_profile(tmp: Path) -> Path:
    path = tmp / "meter.toml"
    path.write_bytes(b'name = "m"\n[[blocks]\n\xff')
    return path


BAD_FILES: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "web config: a list where a TLS version belongs": ("web", _write_bad_web_type),
    "web config: a bcrypt hash with non-ASCII characters": ("web", _write_bad_web_hash),
    "web config: not UTF-8": ("web", _write_bad_web_bytes),
    "diagnosis thresholds: not UTF-8": ("thresholds", _write_bad_thresholds),
    "DBC: a syntax error": ("dbc", _write_bad_dbc),
    "meter profile: not TOML": ("profile", _write_bad_profile),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_on_reload_is_logged_counted_and_the_old_config_runs(
    case: str, tmp_path: Path, channel: str, started: tuple[Daemon, io.StringIO, Path]
) -> None:
    daemon, stream, path = started
    key, write = BAD_FILES[case]
    bad = write(tmp_path)
    path.write_text(config_text(f"{channel}-new", **{key: bad}))

    assert daemon.reload() is False
    lines = [line for line in stream.getvalue().splitlines() if "event=reload_failed" in line]
    assert len(lines) == 1, stream.getvalue()
    assert str(bad) in lines[0] and "keeping the running configuration" in lines[0]
    assert "Traceback" not in stream.getvalue()
    # The old configuration keeps running: the same bus, still stepping, still served.
    daemon.step()
    assert [b.name for b in daemon.snapshot().buses] == ["can0"]
    assert daemon.monitors["can0"].config.channel == channel
    text = scrape(daemon)
    assert "candiag_config_reload_failures_total 1.0" in text
    assert "candiag_config_last_reload_successful 0.0" in text
    assert 'candiag_can_bus_up{bus="can0"}' in text

    # Fixed: the next reload takes it, and the gauge says so.
    path.write_text(config_text(f"{channel}-fixed"))
    assert daemon.reload() is True
    assert daemon.monitors["can0"].config.channel == f"{channel}-fixed"
    text = scrape(daemon)
    assert "candiag_config_reload_failures_total 1.0" in text
    assert "candiag_config_last_reload_successful 1.0" in text


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_the_same_files_at_start_are_a_config_error_naming_the_file(
    case: str, tmp_path: Path, channel: str
) -> None:
    key, write = BAD_FILES[case]
    bad = write(tmp_path)
    path = tmp_path / "candiag.toml"
    path.write_text(config_text(channel, **{key: bad}))
    with pytest.raises(ConfigError) as caught:
        prepare_config(path)
    assert str(bad) in str(caught.value)


def test_a_failure_while_applying_restarts_the_old_components(tmp_path: Path, channel: str) -> None:
    """A reader that cannot be created for the new config: the old buses come back."""
    path = tmp_path / "candiag.toml"
    path.write_text(config_text(channel))
    log, stream = capture_log()
    from candiag.daemon.service import default_reader_factory

    def factory(bus):  # type: ignore[no-untyped-def]
        if bus.channel.endswith("-broken"):
            raise OSError("no such adapter driver")  # something no loader could foresee
        return default_reader_factory(bus)

    daemon = Daemon(
        load_config(path), config_path=path, log=log, reader_factory=factory, serve_metrics=False
    )
    daemon.start()
    try:
        path.write_text(config_text(f"{channel}-broken"))
        assert daemon.reload() is False
        assert "event=reload_failed" in stream.getvalue()
        assert "OSError: no such adapter driver" in stream.getvalue()
        assert daemon.monitors["can0"].config.channel == channel
        assert daemon.reload_failures == 1
    finally:
        daemon.stop()


def test_when_neither_config_starts_the_daemon_ends_with_an_error(
    tmp_path: Path, channel: str
) -> None:
    """Restart=on-failure must get its chance: no silent daemon without buses."""
    path = tmp_path / "candiag.toml"
    path.write_text(config_text(channel))
    log, _ = capture_log()
    from candiag.daemon.service import default_reader_factory

    adapters_gone = False

    def factory(bus):  # type: ignore[no-untyped-def]
        if adapters_gone:
            raise OSError("driver unloaded")
        return default_reader_factory(bus)

    daemon = Daemon(
        load_config(path), config_path=path, log=log, reader_factory=factory, serve_metrics=False
    )
    daemon.start()
    try:
        adapters_gone = True
        path.write_text(config_text(f"{channel}-new"))
        daemon.request_reload()
        with pytest.raises(RuntimeError, match="did not start again: driver unloaded"):
            daemon.run()
    finally:
        daemon.stop()
