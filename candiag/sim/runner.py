"""Live sending of the simulated charger on a python-can bus, paced in real time.

This module and :mod:`candiag.sim` are the only code in candiag that transmits
on CAN.  :class:`SimulatorRunner` runs one thread named ``candiag-sim`` that
generates the traffic due since the last step (every ``step`` seconds of wall
time) and sends it; ``stop()`` joins the thread.  Tests, ``candiag demo`` and
the monitor use it with python-can's in-process ``virtual`` interface.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import can

from candiag.errors import BusUnavailableError
from candiag.health.bitrate import DEFAULT_BITRATE
from candiag.sim.charger import ChargerSimulator

log = logging.getLogger(__name__)


def open_sim_bus(interface: str, channel: str, bitrate: int | None = None) -> can.BusABC:
    """Open a bus for the simulator to send on (``BusUnavailableError`` with a fix if it fails)."""
    # socketcan and virtual take no bitrate (socketcan's is set with `ip link`).
    rate = bitrate if interface not in ("virtual", "socketcan") else None
    try:
        # ignore_config: never pick up /etc/can.conf or CAN_* variables behind the user's back.
        if rate:
            return can.Bus(interface=interface, channel=channel, bitrate=rate, ignore_config=True)
        return can.Bus(interface=interface, channel=channel, ignore_config=True)
    except (can.CanError, OSError, ValueError, ImportError, NotImplementedError) as err:
        raise BusUnavailableError(
            f"cannot open CAN interface {interface!r} channel {channel!r} for the simulator: "
            f"{err}. Check the adapter is plugged in and the interface is up "
            f"(e.g. 'ip link set {channel} up type can bitrate {bitrate or DEFAULT_BITRATE}'), "
            "or use --interface virtual."
        ) from err


#: The simulated chargers sending in real time in this process, oldest first: the demo's
#: simulated Modbus meters read the running charger's DC output and AC input from here
#: (:func:`running_charger`), so one charger's figures appear on CAN and on Modbus.
_RUNNING: list[ChargerSimulator] = []
_RUNNING_LOCK = threading.Lock()


def running_charger() -> ChargerSimulator | None:
    """The oldest simulated charger sending in real time in this process, if any."""
    with _RUNNING_LOCK:
        return _RUNNING[0] if _RUNNING else None


class SimulatorRunner:
    """Sends ``sim``'s traffic on ``bus`` in real time (``speed`` x simulated seconds per second)."""

    def __init__(
        self,
        bus: can.BusABC,
        sim: ChargerSimulator,
        speed: float = 1.0,
        step: float = 0.02,
        duration: float | None = None,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.bus = bus
        self.sim = sim
        self.speed = speed
        self.step = step
        self.duration = duration
        self.frames_sent = 0
        self.send_errors = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor = sim.start_time

    @property
    def sim_time(self) -> float:
        """Simulated time sent so far (absolute seconds)."""
        return self._cursor

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("SimulatorRunner already started")
        self._thread = threading.Thread(target=self._run, name="candiag-sim", daemon=True)
        self._thread.start()
        if self.speed == 1.0 and hasattr(self.sim, "electrical"):
            with _RUNNING_LOCK:
                _RUNNING.append(self.sim)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with _RUNNING_LOCK:
            if self.sim in _RUNNING:
                _RUNNING.remove(self.sim)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the runner finished (``duration`` reached or stopped); True if it did."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> SimulatorRunner:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        wall0 = time.monotonic()
        end = None if self.duration is None else self.sim.start_time + self.duration
        try:
            while not self._stop.is_set():
                target = self.sim.start_time + (time.monotonic() - wall0) * self.speed
                if end is not None:
                    target = min(target, end)
                if target > self._cursor:
                    self._send(self.sim.generate(self._cursor, target).to_messages())
                    self._cursor = target
                if end is not None and self._cursor >= end:
                    return
                self._stop.wait(self.step)
        except Exception as err:  # reported through .error: the thread must not die silently
            self.error = err
            log.exception("simulator thread stopped")

    def _send(self, messages: list[can.Message]) -> None:
        for msg in messages:
            if self._stop.is_set():
                return
            try:
                self.bus.send(msg)
                self.frames_sent += 1
            except can.CanError as err:
                # Real adapters refuse error frames and may report a full TX queue; keep going.
                self.send_errors += 1
                if self.send_errors in (1, 100, 10000):
                    log.warning(
                        "simulator could not send a frame (%d so far): %s", self.send_errors, err
                    )
