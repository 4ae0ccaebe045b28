"""Shared fixtures.  An autouse fixture fails any test that leaks a bus or a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


def _live_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_buses_or_threads() -> Iterator[None]:
    """Fail a test that leaves a python-can virtual channel open or a thread running."""
    from can.interfaces import virtual

    before = _live_threads()
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = {
            t for t in _live_threads() - before if not t.daemon or t.name.startswith("candiag")
        }
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    open_channels = {k: v for k, v in virtual.channels.items() if v}
    virtual.channels.clear()
    assert not open_channels, (
        f"test leaked python-can virtual buses on channels {list(open_channels)}"
    )
    assert not leaked, f"test leaked threads: {sorted(t.name for t in leaked)}"
