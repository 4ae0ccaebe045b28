"""Live CAN buses: opening them listen-only, and a reader thread that survives losing them.

The daemon, ``candiag record`` and ``candiag monitor`` all read live buses
through this module, so the project rule "candiag never transmits on CAN" is
enforced in one place:

* :func:`open_listen_only_bus` opens with ``ignore_config=True`` (no
  ``~/.canrc``/``CAN_*`` surprises, docs/can-errors.md §4.3), switches the controller to
  listen-only where python-can exposes it, and replaces ``send``/``send_periodic``
  on the returned bus with functions raising :class:`SafetyError`.
* :class:`BusReader` only ever receives: python-can's ``recv``, or on a SocketCAN bus
  ``recvmmsg`` on the bus's own socket (:mod:`candiag.ingest.socketcan_bulk`).

We do not use ``can.Notifier``: its thread dies (or spins) when ``recv`` raises,
e.g. PCAN's bus-off ``PcanCanOperationError`` or an unplugged adapter
(docs/can-errors.md §4.3).  :class:`BusReader` instead marks the bus down and
reopens it with exponential backoff.

Why one file of ~620 lines: everything that may open a bus is here, so the listen-only
rule is enforced (and reviewed) in one place.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import can

from candiag.errors import BusUnavailableError, SafetyError
from candiag.ingest.frames import BatchBuilder, FrameBatch
from candiag.ingest.socketcan_bulk import BulkReceiver, BulkUnsupportedError, bulk_receiver_for

log = logging.getLogger(__name__)

#: Listen-only switches per python-can interface (python-can 4.6 sources).  With
#: these the controller neither transmits nor acknowledges.
LISTEN_ONLY_KWARGS: dict[str, dict[str, Any]] = {
    "pcan": {"state": can.BusState.PASSIVE},  # PCAN_LISTEN_ONLY on (pcan.py)
    "kvaser": {"driver_mode": False},  # canlib DRIVER_MODE_SILENT
    "vector": {"listen_only": True},
    "slcan": {"listen_only": True},
    "nixnet": {"listen_only": True},
    "seeedstudio": {"operation_mode": "silent"},
    "cantact": {"monitor": True},
}

#: Other options candiag sets by default per interface (the caller's ``extra`` wins).
DEFAULT_KWARGS: dict[str, dict[str, Any]] = {
    # Recover from bus-off inside the driver instead of staying silent (pcan.py auto_reset).
    "pcan": {"auto_reset": True},
}

#: Interfaces whose driver has no listen-only switch in python-can; candiag
#: still never sends on them.  The value tells the user how to get it anyway.
NO_LISTEN_ONLY_HINT: dict[str, str] = {
    "socketcan": "for a listen-only controller: ip link set <if> type can bitrate <N> listen-only on",
    "virtual": "in-process test bus",
    "gs_usb": "candleLight firmware in python-can 4.6 has no listen-only option",
    "ixxat": "python-can 4.6 does not expose CAN_OPMODE_LISTONLY",
}

_HINTS: dict[str, str] = {
    "socketcan": "check `ip -details link show {channel}` (interface present and up, bitrate set) "
    "and that the kernel has CAN support (modprobe can_raw)",
    "pcan": "check that the PCAN-USB is plugged in and the channel name (e.g. PCAN_USBBUS1); "
    "if the PCAN-Basic library is missing, install PEAK's PCAN-Basic (Windows: PCANBasic.dll; "
    "Linux: peak-linux-driver with libpcanbasic, or use the adapter as SocketCAN: -i socketcan "
    "-c can0) from peak-system.com",
    "kvaser": "check that the adapter is plugged in and the channel number (0, 1, ...)",
    "vector": "check the Vector driver and the application channel assignment",
}


#: The adapters a technician's Windows laptop can use through python-can (their vendors'
#: Windows drivers: PCAN-Basic, CANlib, XL, VCI; slcan on a COM port; gs_usb via libusb).
WINDOWS_INTERFACES = ("pcan", "kvaser", "vector", "ixxat", "slcan", "gs_usb")


def interface_unavailable_here(interface: str, platform: str = sys.platform) -> str:
    """Why ``interface`` cannot exist on ``platform`` and what works instead ('' if it can)."""
    if interface == "socketcan" and not platform.startswith("linux"):
        return (
            "SocketCAN is part of the Linux kernel and does not exist on this system "
            f"({platform}); use an adapter python-can drives here: "
            + ", ".join(WINDOWS_INTERFACES)
            + " (e.g. PEAK PCAN-USB: -i pcan -c PCAN_USBBUS1)"
        )
    return ""


#: ``can.Bus`` keywords that switch a controller between listen-only and active modes
#: (:data:`LISTEN_ONLY_KWARGS`): the command line refuses them in ``--bus-kwargs``
#: (:func:`candiag.cli.args.adapter_options`); here they are overridden whoever passes them.
LISTEN_ONLY_KEYS = frozenset(k for kw in LISTEN_ONLY_KWARGS.values() for k in kw) | {
    "receive_own_messages"
}

#: What to install when an interface's vendor library is missing (docs/live-buses.md).
DRIVER_FIX: dict[str, str] = {
    "kvaser": "install Kvaser CANlib (Linux: 'Kvaser Linux Drivers and SDK', which provides "
    "libcanlib.so; Windows: 'Kvaser Drivers for Windows', canlib32.dll) from kvaser.com",
    "vector": "install the Vector XL Driver Library (vxlapi64.dll, Windows only) from "
    "vector.com and assign the application channel in Vector Hardware Config; on Linux use "
    "the adapter through SocketCAN if its driver offers one",
}


def driver_missing(interface: str) -> str:
    """Why ``interface``'s vendor library is known to be missing, with the fix ("" if it
    is there or cannot be told before opening).

    python-can imports such a driver module anyway and fails later and obscurely (Kvaser:
    ``NameError: canGetNumberOfChannels``), or logs a warning at import (Vector: "Could not
    import vxlapi"); here the module's own record of its library is read instead.
    """
    if interface == "kvaser":
        try:
            with _driver_warnings():
                from can.interfaces.kvaser import canlib
        except ImportError:
            return f"python-can's Kvaser driver cannot be imported; {DRIVER_FIX['kvaser']}"
        if getattr(canlib, "__canlib", None) is None:
            return f"Kvaser CANlib is not installed (libcanlib.so/canlib32.dll not found); {DRIVER_FIX['kvaser']}"
    if interface == "vector":
        try:
            with _driver_warnings():
                from can.interfaces.vector import canlib as vector
        except ImportError:
            return f"python-can's Vector driver cannot be imported; {DRIVER_FIX['vector']}"
        if getattr(vector, "xldriver", None) is None:
            return (
                f"the Vector XL library is not installed (vxlapi not found); {DRIVER_FIX['vector']}"
            )
    return ""


class _driver_warnings:  # a context manager named for its use, like contextlib's
    """Collects what python-can's driver modules log while they are imported and opened.

    The messages become part of candiag's one-line error when opening fails (instead of a
    stray "Could not import vxlapi" line before it); after a successful open they are
    logged at debug level: the cases they describe are handled here
    (:func:`_pcan_epoch_timestamps`)."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._handler = _ListHandler(self.messages)
        self._logger = logging.getLogger("can")
        self._propagate = True

    def __enter__(self) -> list[str]:
        self._propagate = self._logger.propagate
        self._logger.addHandler(self._handler)
        self._logger.propagate = False
        return self.messages

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.propagate = self._propagate
        for message in self.messages:
            log.debug("python-can: %s", message)


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self._messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self._messages.append(record.getMessage())


def boot_epoch() -> float:
    """The wall-clock time the machine booted (``time.time()`` minus the time since boot)."""
    since_boot = getattr(time, "CLOCK_BOOTTIME", None)
    if since_boot is not None:
        return time.time() - time.clock_gettime(since_boot)
    return time.time() - time.monotonic()  # Windows/macOS: monotonic counts from boot


def _pcan_epoch_timestamps() -> None:
    """Give python-can's PCAN driver the boot time it wants from the ``uptime`` package.

    Without ``uptime`` python-can logs "uptime library not available" and stamps frames
    with seconds since boot (1970 dates in a recording, and ages that make every value
    look stale); the PCAN timestamp counts from boot, so the boot time is all it lacks.
    """
    from can.interfaces.pcan import pcan

    if not getattr(pcan, "boottimeEpoch", 0):
        pcan.boottimeEpoch = boot_epoch()  # type: ignore[assignment] # python-can: 0 or float


def _refuse_send(*_args: object, **_kwargs: object) -> None:
    raise SafetyError(
        "candiag never transmits on a CAN bus outside its simulator; this call is a bug"
    )


def open_listen_only_bus(
    interface: str,
    channel: str,
    bitrate: int | None,
    data_bitrate: int | None = None,
    fd: bool = False,
    **extra: Any,
) -> can.BusABC:
    """Open a python-can bus for receiving only (see module docstring).

    Raises :class:`BusUnavailableError` naming the interface, channel and what
    to check when the driver is missing or the channel cannot be opened.
    """
    kwargs: dict[str, Any] = {"receive_own_messages": False}
    kwargs.update(DEFAULT_KWARGS.get(interface, {}))
    kwargs.update(extra)
    kwargs.update(LISTEN_ONLY_KWARGS.get(interface, {}))  # not overridable: safety first
    if bitrate is not None:
        kwargs["bitrate"] = bitrate
    if fd:
        kwargs["fd"] = True
        if data_bitrate is not None:
            kwargs["data_bitrate"] = data_bitrate
    where = f"CAN interface {interface!r} channel {channel!r}"
    unavailable = interface_unavailable_here(interface)
    if unavailable:
        raise BusUnavailableError(f"{where}: {unavailable}")
    hint = _HINTS.get(interface, "check the adapter, its driver and the channel name").format(
        channel=channel
    )
    missing = driver_missing(interface)
    if missing:
        raise BusUnavailableError(f"{where}: {missing}")
    try:
        with _driver_warnings() as warnings:
            bus = can.Bus(channel=channel, interface=interface, ignore_config=True, **kwargs)
    except can.CanInterfaceNotImplementedError as err:
        said = "; ".join(dict.fromkeys([*warnings, str(err)]))
        raise BusUnavailableError(f"{where}: driver not available ({said}); {hint}") from err
    except (NameError, ImportError, AttributeError) as err:
        # A driver module imported without its vendor library fails inside python-can
        # (Kvaser: NameError canGetNumberOfChannels): the library is missing, not a bug here.
        raise BusUnavailableError(
            f"{where}: the adapter's driver library is missing ({type(err).__name__}: {err}); "
            f"{hint}"
        ) from err
    except NotImplementedError as err:
        known = ", ".join(sorted(can.interfaces.VALID_INTERFACES))
        raise BusUnavailableError(
            f"{where}: unknown python-can interface; use one of: {known}"
        ) from err
    except (can.CanError, OSError, ValueError, TypeError) as err:
        raise BusUnavailableError(f"{where}: cannot open ({err}); {hint}") from err
    if interface == "pcan":
        _pcan_epoch_timestamps()
    if interface not in LISTEN_ONLY_KWARGS:
        log.info(
            "%s: no listen-only switch in python-can (%s); candiag only receives",
            where,
            NO_LISTEN_ONLY_HINT.get(interface, "driver default mode"),
        )
    # Defence in depth: whatever code later holds this bus cannot transmit with it.
    bus.send = _refuse_send  # type: ignore[method-assign]
    bus.send_periodic = _refuse_send  # type: ignore[method-assign,assignment]
    return bus


@dataclass(frozen=True)
class BusStatus:
    """A snapshot of a :class:`BusReader`'s link state."""

    up: bool
    last_error: str
    reconnects: int
    down_since: float | None  # wall-clock time the bus went (or started) down
    frames_received: int
    dropped_frames: int


BusFactory = Callable[[], can.BusABC]
#: Makes the bulk receiver for an opened bus (``None``: use python-can's ``recv``).
BulkFactory = Callable[[can.BusABC, int], BulkReceiver | None]


IFF_UP = 0x1


def link_is_down(interface: str, channel: str, sysfs: Path = Path("/sys/class/net")) -> bool:
    """True when a SocketCAN interface is administratively down (``ip link set ... down``).

    Read from sysfs (no privileges, no netlink); when it cannot be read the socket's
    own errors decide, so this never reports a link down wrongly.
    """
    if interface != "socketcan":
        return False
    try:
        flags = int((sysfs / channel / "flags").read_text("ascii").strip(), 16)
    except (OSError, ValueError):
        return False
    return not flags & IFF_UP


class BusReader:
    """Receives one live bus on a thread named ``candiag-bus-<channel>``.

    Hand-over: with ``on_batch`` each batch (at most ``max_batch`` frames, at
    least every ``batch_interval`` seconds when frames arrived) is passed to the
    callback **on the reader thread**; keep it short (e.g. put it on a queue).
    Without ``on_batch`` batches are kept until the consumer calls
    :meth:`drain`, which is thread-safe; if nobody drains, the oldest batches are
    dropped beyond ``max_pending`` frames and counted in ``queue_dropped``.

    Receive paths: on a python-can SocketCAN bus (``interface="socketcan"``, one channel,
    no software filters) frames are read in bulk with ``recvmmsg`` straight into numpy
    buffers and parsed into batches, with no python-can ``Message`` per frame
    (:mod:`candiag.ingest.socketcan_bulk`; the batches are identical to what the
    per-message path makes of the same frames).  Every other interface (pcan, kvaser,
    virtual, ...), and SocketCAN where ``recvmmsg`` is unavailable, uses python-can's
    ``recv`` and :class:`BatchBuilder`.  Both paths take what is queued without waiting
    and look at the clock and the stop flag between reads; hand-over, batch limits and
    link loss are the same.

    Link loss: an open failure or a receive exception (``OSError``,
    ``CanOperationError``, PCAN bus-off; on the bulk path an ``OSError`` of
    ``recvmmsg``, raised as ``CanOperationError`` like python-can's) marks the bus down
    (``up``, ``last_error``, ``down_since``) and it is reopened after a backoff that
    doubles from ``backoff_min`` to ``backoff_max`` and resets once the bus has
    stayed up for ``backoff_max`` seconds.  ``reconnects`` counts successful
    reopens after a failure.  Frames received before the failure are handed over.

    ``dropped_frames``: frames the kernel discarded because this reader's socket receive
    buffer was full (``SO_RXQ_OVFL``, bulk SocketCAN path only; python-can exposes no
    drop counter).  It is cumulative over reconnects: a reopened socket's counter starts
    at 0 and is added to what the closed sockets had counted.  The kernel reports it with
    the frames, so drops show once a frame queued after them has been read.
    """

    def __init__(
        self,
        interface: str,
        channel: str,
        bitrate: int | None = None,
        *,
        data_bitrate: int | None = None,
        fd: bool = False,
        on_batch: Callable[[FrameBatch], None] | None = None,
        batch_interval: float = 0.1,
        max_batch: int = 4096,
        max_pending: int = 1_000_000,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        bus_factory: BusFactory | None = None,
        bulk_factory: BulkFactory | None = bulk_receiver_for,
        **extra: Any,
    ) -> None:
        self.interface = interface
        self.channel = channel
        self._factory: BusFactory = bus_factory or (
            lambda: open_listen_only_bus(interface, channel, bitrate, data_bitrate, fd, **extra)
        )
        self._bulk_factory = bulk_factory
        self._on_batch = on_batch
        self._batch_interval = batch_interval
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[FrameBatch] = []
        self._pending_frames = 0
        self._thread: threading.Thread | None = None
        self.up = False
        self.last_error = ""
        self.reconnects = 0
        self.down_since: float | None = None
        self.frames_received = 0
        self.dropped_frames = 0
        self._dropped_closed = 0  # drops counted by sockets already closed
        self.queue_dropped = 0
        self.callback_errors = 0
        #: "bulk" (recvmmsg) or "per-message" (python-can's recv) once the bus is open.
        self.receive_path = ""
        self._ever_failed = False

    # -- control ----------------------------------------------------------------------------
    def start(self) -> BusReader:
        if self._thread is not None:
            raise RuntimeError("BusReader already started")
        self._thread = threading.Thread(
            target=self._run, name=f"candiag-bus-{self.channel}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Stop receiving, close the bus and join the thread (within ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> BusReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> BusStatus:
        return BusStatus(
            up=self.up,
            last_error=self.last_error,
            reconnects=self.reconnects,
            down_since=self.down_since,
            frames_received=self.frames_received,
            dropped_frames=self.dropped_frames,
        )

    def drain(self) -> FrameBatch:
        """All frames received since the last drain, in order (drain mode only)."""
        with self._lock:
            pending, self._pending, self._pending_frames = self._pending, [], 0
        return FrameBatch.concat(pending) if pending else FrameBatch.empty(channels=[self.channel])

    # -- the thread -------------------------------------------------------------------------
    def _run(self) -> None:
        builder = BatchBuilder(default_channel=self.channel)
        bus: can.BusABC | None = None
        bulk: BulkReceiver | None = None
        backoff = self._backoff_min
        up_since = 0.0
        try:
            while not self._stop.is_set():
                if bus is None:
                    bus = self._try_open()
                    if bus is None:
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self._backoff_max)
                        continue
                    up_since = time.monotonic()
                    bulk = self._open_bulk(bus)
                try:
                    if bulk is not None:
                        self._receive_bulk(bulk)
                    else:
                        self._receive(bus, builder)
                except BulkUnsupportedError as err:
                    log.warning(
                        "%s: bus %s: bulk receive refused (%s); using python-can's recv",
                        self.interface,
                        self.channel,
                        err,
                    )
                    if bulk is not None:
                        bulk.release()
                    bulk, self._bulk_factory, self.receive_path = None, None, "per-message"
                    continue
                except (can.CanError, OSError, ValueError) as err:
                    self._hand_over(builder)
                    self._mark_down(f"receive failed: {type(err).__name__}: {err}")
                    self._close_bulk(bulk)
                    bulk = None
                    _shutdown(bus)
                    bus = None
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                    continue
                if time.monotonic() - up_since >= self._backoff_max:
                    backoff = self._backoff_min
        finally:
            self._close_bulk(bulk)
            if bus is not None:
                _shutdown(bus)
            self._hand_over(builder)
            self.up = False

    def _open_bulk(self, bus: can.BusABC) -> BulkReceiver | None:
        bulk = None
        if self._bulk_factory is not None:
            try:
                bulk = self._bulk_factory(bus, self._max_batch)
            except Exception:  # never fail because of the bulk path: python-can's recv works
                log.exception("%s: bus %s: bulk receive unavailable", self.interface, self.channel)
        path = "bulk" if bulk is not None else "per-message"
        if path != self.receive_path:
            log.info("%s: bus %s: %s receive", self.interface, self.channel, path)
        self.receive_path = path
        return bulk

    def _close_bulk(self, bulk: BulkReceiver | None) -> None:
        if bulk is not None:
            self._dropped_closed += bulk.dropped
            self.dropped_frames = self._dropped_closed

    def _try_open(self) -> can.BusABC | None:
        if link_is_down(self.interface, self.channel):
            # A SocketCAN socket opens on a down interface and then simply receives
            # nothing: reporting it "up" would hide the fault.
            self._mark_down(f"interface {self.channel} is down (ip link set {self.channel} up)")
            return None
        try:
            bus = self._factory()
        except BusUnavailableError as err:
            self._mark_down(str(err))
            return None
        if self._ever_failed:
            self.reconnects += 1
            log.warning("%s: bus %s is back", self.interface, self.channel)
        self.up = True
        self.down_since = None
        return bus

    def _mark_down(self, reason: str) -> None:
        if self.up or self.down_since is None:
            log.warning("%s: bus %s down: %s", self.interface, self.channel, reason)
            self.down_since = time.time()
        self.up = False
        self.last_error = reason
        self._ever_failed = True

    def _receive(self, bus: can.BusABC, builder: BatchBuilder) -> None:
        """Receive until the batch is full, the interval is over, or stop is requested.

        What is already queued is taken without waiting (``recv(0)``), and the clock and
        the stop flag are looked at every 64 frames only: under load the loop costs little
        more than python-can's own receive.
        """
        deadline = time.monotonic() + self._batch_interval
        limit = self._max_batch
        recv, add, stop = bus.recv, builder.add, self._stop
        received = 0
        try:
            while received < limit:
                msg = recv(0.0)
                if msg is None:
                    if stop.is_set():
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    msg = recv(min(remaining, 0.05))
                    if msg is None:
                        continue
                add(msg)
                received += 1
                if not received & 63 and (stop.is_set() or time.monotonic() >= deadline):
                    break
        finally:
            self.frames_received += received
        self._hand_over(builder)

    def _receive_bulk(self, bulk: BulkReceiver) -> None:
        """The bulk SocketCAN path of :meth:`_receive`: same limits, hand-over and errors.

        Each ``recvmmsg`` takes everything queued (up to the free rows); the stop flag and
        the clock are looked at after each call.
        """
        deadline = time.monotonic() + self._batch_interval
        limit = min(bulk.capacity, self._max_batch)
        receive, stop = bulk.receive, self._stop
        received = 0
        try:
            while received < limit:
                got = receive(received, 0.0, limit)
                if not got:
                    if stop.is_set():
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    got = receive(received, min(remaining, 0.05), limit)
                    if not got:
                        continue
                received += got
                if stop.is_set() or time.monotonic() >= deadline:
                    break
        finally:
            self.frames_received += received
            if received:
                batch = bulk.take(received)
                self.dropped_frames = self._dropped_closed + bulk.dropped
                self._deliver(batch)

    def _hand_over(self, builder: BatchBuilder) -> None:
        if len(builder):
            self._deliver(builder.build())

    def _deliver(self, batch: FrameBatch) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(batch)
            except Exception:  # the consumer's bug must not stop bus reception
                self.callback_errors += 1
                log.exception("on_batch callback failed for bus %s", self.channel)
            return
        with self._lock:
            self._pending.append(batch)
            self._pending_frames += len(batch)
            while self._pending_frames > self._max_pending and len(self._pending) > 1:
                old = self._pending.pop(0)
                self._pending_frames -= len(old)
                self.queue_dropped += len(old)


def _shutdown(bus: can.BusABC) -> None:
    try:
        bus.shutdown()
    except (can.CanError, OSError) as err:
        log.debug("shutting down %s failed: %s", bus, err)
