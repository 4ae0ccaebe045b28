"""Bitrate scan: listen at each candidate rate, listen-only, and count what arrives.

For each candidate bitrate the adapter is opened through
:func:`candiag.ingest.live.open_listen_only_bus` (listen-only where python-can has the switch;
its ``send`` refuses), kept for a dwell time (longer while nothing arrives), and the frames
are counted: valid data/remote frames, error frames, protocol errors among them.  A
controller listening at the wrong rate sees the bus's edges as stuff, form and CRC errors;
at the right rate it sees valid frames and no protocol error.  The rate picked is the one
with valid traffic and no protocol error (the most valid frames if several).

Never transmits: no frame is sent, and a listen-only controller does not even acknowledge
(docs/probe.md).  Interfaces where candiag cannot switch the controller to listen-only are
refused (:func:`scan_refusal`): a controller that acknowledges at a wrong rate would destroy
every frame on a live charger's bus with error flags.  SocketCAN's rate is the link's, set
with ``ip link`` by the administrator: candiag tells how and listens at what is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import can

from candiag.errors import BusUnavailableError
from candiag.ingest.live import LISTEN_ONLY_KWARGS, open_listen_only_bus
from candiag.socketcan_errors import CAN_ERR_PROT

#: The order of the scan: the common charger rates first, then the rarer ones (issue 16).
DEFAULT_CANDIDATES = (125_000, 250_000, 500_000, 1_000_000, 50_000, 100_000, 800_000)
DEFAULT_DWELL_S = 1.0
#: A silent rate is listened to longer, doubling up to this (a 1 s poll may just be missed).
MAX_DWELL_S = 4.0
#: Interfaces scanned without a listen-only switch: nothing there can disturb a charger.
SAFE_WITHOUT_SWITCH = frozenset({"virtual"})


@dataclass
class RateResult:
    """What one candidate rate showed."""

    bitrate: int
    dwell_s: float
    valid_frames: int
    error_frames: int
    protocol_errors: int
    error: str | None = None  # the adapter could not be opened at this rate

    @property
    def clean(self) -> bool:
        return self.error is None and self.valid_frames > 0 and self.protocol_errors == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "bitrate": self.bitrate,
            "dwell_s": round(self.dwell_s, 3),
            "valid_frames": self.valid_frames,
            "error_frames": self.error_frames,
            "protocol_errors": self.protocol_errors,
            "error": self.error,
        }


def scan_refusal(interface: str) -> str | None:
    """Why candiag will not scan on ``interface`` (None: it may)."""
    if interface in LISTEN_ONLY_KWARGS or interface in SAFE_WITHOUT_SWITCH:
        return None
    if interface == "socketcan":
        return (
            "on SocketCAN the bitrate is the link's, set by the system, not by candiag; set "
            "each candidate with `sudo ip link set <if> down; sudo ip link set <if> type can "
            "bitrate <N> listen-only on; sudo ip link set <if> up` and run probe again (it "
            "listens at what is set), or scan with a PCAN/Kvaser/Vector adapter"
        )
    return (
        f"python-can's {interface!r} interface has no listen-only switch, so candiag cannot "
        f"guarantee that the adapter never acknowledges or sends error flags at a wrong "
        f"rate; scan with an adapter that has one ({', '.join(sorted(LISTEN_ONLY_KWARGS))}) "
        f"or give the known rate with --bitrates N"
    )


def choose(results: Sequence[RateResult]) -> RateResult | None:
    """The rate with valid traffic and no protocol error (most valid frames), else None."""
    clean = [r for r in results if r.clean]
    return max(clean, key=lambda r: r.valid_frames) if clean else None


def listen(bus: can.BusABC, dwell_s: float, max_dwell_s: float) -> tuple[float, int, int, int]:
    """(seconds listened, valid, error, protocol-error frames); longer while silent."""
    start = time.monotonic()
    deadline = start + dwell_s
    limit = start + max(dwell_s, max_dwell_s)
    valid = errors = protocol = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            if valid or errors or now >= limit:
                break
            deadline = min(limit, start + 2 * (now - start))  # silent so far: listen longer
        msg = bus.recv(timeout=max(0.0, min(0.1, deadline - now)))
        if msg is None:
            continue
        if msg.is_error_frame:
            errors += 1
            if msg.arbitration_id & CAN_ERR_PROT:
                protocol += 1
        else:
            valid += 1
    return time.monotonic() - start, valid, errors, protocol


def scan_bitrates(
    interface: str,
    channel: str,
    candidates: Sequence[int] = DEFAULT_CANDIDATES,
    *,
    dwell_s: float = DEFAULT_DWELL_S,
    max_dwell_s: float = MAX_DWELL_S,
    progress: Callable[[str, int, RateResult | None], None] | None = None,
    **extra: Any,
) -> list[RateResult]:
    """Listen at each candidate rate in turn (see the module docstring).  Every candidate is
    listened to, so a rate that only seems clean (few frames) is weighed against the others;
    ``progress`` is told when each rate starts and what it showed."""
    refusal = scan_refusal(interface)
    if refusal is not None:
        raise ValueError(refusal)
    results: list[RateResult] = []
    for rate in candidates:
        if progress:
            progress("start", rate, None)
        try:
            bus = open_listen_only_bus(interface, channel, rate, **extra)
        except BusUnavailableError as err:  # a driver refusing a rate is that rate's result
            result = RateResult(rate, 0.0, 0, 0, 0, error=str(err))
        else:
            try:
                seconds, valid, errors, protocol = listen(bus, dwell_s, max_dwell_s)
            finally:
                bus.shutdown()
            result = RateResult(rate, seconds, valid, errors, protocol)
        results.append(result)
        if progress:
            progress("done", rate, result)
    return results
