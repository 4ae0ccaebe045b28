"""Modbus links against a scripted peer (127.0.0.1 TCP, or a pty) that answers arbitrary bytes.

The in-memory targets (fuzz.targets.check_modbus_reply / check_poller) cover the
classification at high counts; here the real sockets, deadlines and input flushing of
:class:`~candiag.modbus.link.TcpLink` meet replies that are random, cut short, late,
endless, or a closed connection.  Every transaction must end within its timeout (plus
scheduling slack) with one of the outcomes.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candiag.modbus.link import OUTCOMES, TcpLink, with_crc

TIMEOUT = 0.05
SLACK = 1.0  # scheduling on a loaded CI machine; a hang would be far longer


@contextmanager
def scripted_peer(replies: list[bytes | None], *, babble: bool = False) -> Iterator[int]:
    """A TCP peer on 127.0.0.1: per request, the next reply (``None``: close the
    connection); with ``babble`` it sends without pause whatever is asked."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5.0)
    stop = threading.Event()

    def serve() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(0.05)
            queue = list(replies)
            while not stop.is_set():
                try:
                    if babble:
                        conn.sendall(b"\x01\x03\x02" * 341)
                        continue
                    if not conn.recv(512):
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return
                reply = queue.pop(0) if queue else b""
                if reply is None:
                    return  # the gateway drops the connection
                try:
                    conn.sendall(reply)
                except OSError:
                    return

    thread = threading.Thread(target=serve, name="scripted-peer")
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(5.0)


replies = st.lists(
    st.one_of(
        st.binary(max_size=300),
        st.none(),
        st.builds(lambda b: with_crc(bytes([1, 3, 4]) + b), st.binary(min_size=4, max_size=4)),
        st.builds(lambda b: with_crc(b), st.binary(max_size=20)),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies=replies, rtu=st.booleans())
def test_every_reply_is_classified_in_bounded_time(replies: list[bytes | None], rtu: bool) -> None:
    with scripted_peer(replies) as port:
        link = TcpLink("127.0.0.1", port, rtu=rtu)
        try:
            for _ in replies:
                began = time.monotonic()
                tx = link.transact(1, 3, 0, 2, TIMEOUT)
                assert time.monotonic() - began < TIMEOUT + SLACK
                assert tx.outcome in OUTCOMES
                if tx.outcome == "ok":
                    assert len(tx.registers) == 2
                if tx.outcome == "io":
                    assert not link.is_open  # reopened on the next transaction
                    break
        finally:
            link.close()


def test_a_valid_reply_over_tcp_is_ok() -> None:
    """The scripted peer itself is sound: a correct RTU reply is classified ok."""
    with scripted_peer([with_crc(bytes([1, 3, 4, 0, 7, 0, 9]))]) as port:
        link = TcpLink("127.0.0.1", port, rtu=True)
        try:
            tx = link.transact(1, 3, 0, 2, 0.5)
        finally:
            link.close()
    assert tx.outcome == "ok" and tx.registers == [7, 9]


def test_a_peer_that_never_stops_talking_cannot_hang_a_transaction() -> None:
    with scripted_peer([], babble=True) as port:
        link = TcpLink("127.0.0.1", port, rtu=True)
        try:
            for _ in range(5):
                began = time.monotonic()
                tx = link.transact(1, 3, 0, 2, TIMEOUT)
                assert time.monotonic() - began < TIMEOUT + SLACK
                assert tx.outcome in ("crc", "wrong_device", "bad_reply", "io"), tx
        finally:
            link.close()


@contextmanager
def pty_peer(replies: list[bytes]) -> Iterator[str]:
    """A serial peer on a pseudo-terminal: per request, the next reply (b"": silence)."""
    import os
    import select

    master, slave = os.openpty()
    path = os.ttyname(slave)
    stop = threading.Event()

    def serve() -> None:
        queue = list(replies)
        while not stop.is_set():
            if not select.select([master], [], [], 0.02)[0]:
                continue
            try:
                if not os.read(master, 512):
                    return
            except OSError:
                return
            reply = queue.pop(0) if queue else b""
            if reply:
                os.write(master, reply)

    thread = threading.Thread(target=serve, name="pty-peer")
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(5.0)
        os.close(master)
        os.close(slave)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replies=st.lists(
        st.one_of(
            st.binary(max_size=260),
            st.builds(lambda b: with_crc(bytes([1, 3, 4]) + b), st.binary(min_size=4, max_size=4)),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_serial_rtu_over_a_pty_classifies_every_reply(replies: list[bytes]) -> None:
    from candiag.modbus.link import SerialRtuLink

    with pty_peer(replies) as path:
        link = SerialRtuLink(path, 115200)
        try:
            for _ in replies:
                began = time.monotonic()
                tx = link.transact(1, 3, 0, 2, TIMEOUT)
                assert time.monotonic() - began < TIMEOUT + SLACK
                assert tx.outcome in OUTCOMES
                if tx.outcome == "ok":
                    assert len(tx.registers) == 2
        finally:
            link.close()


def test_serial_rtu_over_a_pty_valid_reply_is_ok() -> None:
    from candiag.modbus.link import SerialRtuLink

    with pty_peer([with_crc(bytes([1, 3, 4, 0, 1, 0, 2]))]) as path:
        link = SerialRtuLink(path, 115200)
        try:
            tx = link.transact(1, 3, 0, 2, 0.5)
        finally:
            link.close()
    assert tx.outcome == "ok" and tx.registers == [1, 2]
