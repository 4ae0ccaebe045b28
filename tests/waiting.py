"""Waiting in tests: one helper for "until this holds, or fail after a timeout".

``wait_for(condition, "what it means")`` polls ``condition`` every ``interval`` seconds and
returns as soon as it is true; after ``timeout`` seconds it fails the test with an
``AssertionError`` naming what was awaited (plus ``diagnose()``'s text, when given, to show
the state that did not come about).  ``step`` runs before each check, for tests that drive a
loop themselves.  Imported as ``tests.waiting`` (the microVM suite in tests/socketcan too).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object],
    what: str = "the condition",
    *,
    timeout: float = 5.0,
    interval: float = 0.02,
    step: Callable[[], object] | None = None,
    diagnose: Callable[[], object] | None = None,
) -> None:
    """Return once ``condition()`` is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        if condition():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    detail = "" if diagnose is None else f"\n{diagnose()}"
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
