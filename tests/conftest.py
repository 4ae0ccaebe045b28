"""Shared fixtures and the order of the run.

An autouse fixture fails any test that leaks a bus or a thread.  The run is ordered fast
first, so that ``pytest -x`` reports a broken unit test within seconds: unit tests, then
the tests marked ``slow`` (end-to-end runs of the real CLI and daemon), then the suites that
are slow as a whole (:data:`SLOW_FOLDERS`).  Within each group the collection order stays.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# Folders whose tests attack, fault, fuzz or need the microVM: seconds to minutes each.
SLOW_FOLDERS = frozenset({"adversarial", "faults", "fuzz", "socketcan"})
UNIT, SLOW_MARKED, SLOW_FOLDER = range(3)


def run_group(item: pytest.Item) -> int:
    """Where ``item`` runs: :data:`UNIT` first, :data:`SLOW_MARKED`, :data:`SLOW_FOLDER` last."""
    try:
        folder = item.path.resolve().relative_to(TESTS).parts[0]
    except ValueError:  # a test outside tests/ (named on the command line)
        folder = ""
    if folder in SLOW_FOLDERS:
        return SLOW_FOLDER
    if item.get_closest_marker("slow") is not None:
        return SLOW_MARKED
    return UNIT


def pytest_configure(config: pytest.Config) -> None:
    """The DBC cache (candiag/decode/dbc_cache.py) in a folder of this run, for every test
    and every command the tests start: used as users use it, never the user's own."""
    if "CANDIAG_CACHE_DIR" not in os.environ:
        folder = tempfile.mkdtemp(prefix="candiag-test-dbc-cache-")
        os.environ["CANDIAG_CACHE_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=run_group)  # stable: collection order within each group


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
