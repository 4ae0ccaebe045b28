"""The tests' one waiting helper."""

from __future__ import annotations

import time

import pytest

from tests.waiting import wait_for


def test_returns_as_soon_as_the_condition_holds() -> None:
    calls = []
    wait_for(lambda: calls.append(1) or len(calls) >= 3, "three calls", interval=0.001)
    assert len(calls) == 3


def test_runs_step_before_each_check() -> None:
    ticks: list[int] = []
    wait_for(lambda: len(ticks) >= 2, "two steps", step=lambda: ticks.append(1), interval=0.001)
    assert ticks == [1, 1]


def test_fails_after_the_timeout_naming_what_and_why() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"after 0.05 s waiting for the bus\nstate: down"):
        wait_for(lambda: False, "the bus", timeout=0.05, diagnose=lambda: "state: down")
    assert time.monotonic() - started >= 0.05
