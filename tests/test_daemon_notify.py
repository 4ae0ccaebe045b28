"""systemd notify over a real AF_UNIX datagram socket, and key=value event logs."""

from __future__ import annotations

import io
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from candiag.daemon.logging import EventLog, format_fields, setup_logging
from candiag.daemon.notify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def test_messages_arrive_on_a_real_socket(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
    assert n.enabled and n.watchdog_interval_s == 5.0
    assert n.ready("can0: 10 fps\nsecond line")
    assert sock.recv(4096) == b"READY=1\nSTATUS=can0: 10 fps second line"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("x")
    assert sock.recv(4096) == b"STATUS=x"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    before = time.monotonic_ns() // 1000
    assert n.reloading()
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=")
    assert 0 <= int(second.split("=")[1]) - before < 5_000_000


def test_abstract_socket_address() -> None:
    name = f"candiag-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()


def test_silent_without_notify_socket() -> None:
    n = Notifier({})
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.stopping()
    assert n.failures == 0


def test_watchdog_honours_watchdog_pid(notify_socket: tuple[socket.socket, str]) -> None:
    _, path = notify_socket
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None and not other.watchdog()
    mine = Notifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    )
    assert mine.watchdog_interval_s == 1.0


def test_unreachable_socket_is_counted_not_raised(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.ready() is False and n.failures == 1


def test_format_fields_quotes_when_needed() -> None:
    assert format_fields(event="bus_down", bus="can0", error="No such device", n=3, x=None) == (
        'event=bus_down bus=can0 error="No such device" n=3'
    )
    assert format_fields(v=0.25, q='a"b') == 'v=0.25 q="a\\"b"'


def test_repeated_events_are_summarized() -> None:
    now = [0.0]
    stream = io.StringIO()
    logger = logging.getLogger("candiag.test_repeats")
    logger.handlers.clear()
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    log = EventLog(logger, window_s=60.0, clock=lambda: now[0])
    for i in range(58):
        now[0] = i * 1.0
        log.event(logging.WARNING, "bus_down", repeat_key="down:can0", bus="can0")
    lines = stream.getvalue().splitlines()
    assert lines == ["event=bus_down bus=can0"]
    now[0] = 61.0
    log.flush()
    lines = stream.getvalue().splitlines()
    assert lines[1] == "event=bus_down bus=can0 (repeated 57 times in 61 s)"
    log.event(logging.WARNING, "bus_down", repeat_key="down:can0", bus="can0")
    log.resolved("down:can0")
    assert stream.getvalue().splitlines()[2:] == [
        "event=bus_down bus=can0 (repeated 1 times in 1 s)"
    ]
    log.event(logging.WARNING, "bus_down", repeat_key="down:can0", bus="can0")
    assert stream.getvalue().splitlines()[-1] == "event=bus_down bus=can0"


def test_setup_logging_writes_level_and_fields() -> None:
    stream = io.StringIO()
    setup_logging("debug", stream)
    try:
        EventLog().info("started", version="0.1.0")
        logging.getLogger("foreign").warning("hello")
        assert stream.getvalue().splitlines() == [
            "level=info event=started version=0.1.0",
            "level=warning logger=foreign hello",
        ]
    finally:
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        root.setLevel(logging.WARNING)
        # setup_logging tunes these process-wide; give other tests the defaults back.
        for name in ("candiag", "can", "pymodbus", "candiag.ingest.live"):
            logging.getLogger(name).setLevel(logging.NOTSET)
