"""Netlink link statistics of a SocketCAN interface: the second, independent health source.

Owns parsing ``ip -details -statistics -json link show DEV`` (iproute2 ``ip/iplink_can.c``,
docs/can-errors.md §3) into :class:`LinkStats` and reading it with a timeout.  Error frames and
netlink fail independently (peak_usb FD sends no bus-error frames, log files lose classes),
while the kernel's controller state, TEC/REC and ``can_device_stats`` remain; every figure
here is marked ``source="netlink"``.

We shell out to ``ip`` rather than speak rtnetlink ourselves: ``ip`` is on every charger
controller, its JSON is stable, and it keeps candiag free of a netlink dependency.  The
reader never raises to the daemon: a missing ``ip``, a missing device, a timeout or
unparseable output all give ``None`` (and a debug log line saying why).

Frames lost before candiag saw them show up as the interface's ``rx dropped`` and
``rx over_errors`` counters; :class:`InterfaceDropCounter` turns them into deltas for
``candiag_can_frames_dropped_total{source="interface"}``.

:func:`read_link` keeps why a reading failed, in words, and :func:`link_rate` tells a link's
configured rate and state for ``candiag probe`` (docs/probe.md): a vcan has no rate, a link
that is down hears nothing, a CAN link without bittiming has no rate set.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from candiag.health.jsontypes import JsonObject

log = logging.getLogger(__name__)

# enum can_state, as iproute2 prints it -> candiag's state names.
NETLINK_STATES: dict[str, str] = {
    "ERROR-ACTIVE": "error_active",
    "ERROR-WARNING": "error_warning",
    "ERROR-PASSIVE": "error_passive",
    "BUS-OFF": "bus_off",
    "STOPPED": "stopped",
    "SLEEPING": "sleeping",
}


@dataclass(frozen=True)
class LinkStats:
    """One snapshot of an interface, as the kernel reports it (``source="netlink"``)."""

    device: str
    kind: str | None  # "can", "vcan", ... (None: not a CAN-style link)
    operstate: str | None  # "UP", "DOWN", "UNKNOWN" (vcan)
    up: bool  # administratively up and, where reported, lower layer up
    state: str | None  # error_active/error_warning/error_passive/bus_off/stopped/sleeping
    tec: int | None
    rec: int | None
    restart_ms: int | None
    bitrate: int | None
    sample_point: float | None
    data_bitrate: int | None
    restarts: int | None
    bus_error: int | None
    arbitration_lost: int | None
    error_warning: int | None
    error_passive: int | None
    bus_off: int | None
    rx_packets: int | None
    rx_errors: int | None
    rx_dropped: int | None
    rx_over_errors: int | None
    tx_packets: int | None
    tx_errors: int | None
    tx_dropped: int | None
    source: str = "netlink"

    def to_json(self) -> JsonObject:
        return asdict(self)


def _int(obj: dict[str, Any] | None, key: str) -> int | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(obj: dict[str, Any] | None, key: str) -> float | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    try:  # iproute2 prints sample_point as a string ("0.875")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _dict(obj: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    if not isinstance(obj, dict):
        return None
    value = obj.get(key)
    return value if isinstance(value, dict) else None


def parse_link_json(text: str | bytes, device: str | None = None) -> LinkStats:
    """Parse ``ip -details -statistics -json link show DEV`` output.

    Raises ``ValueError`` when the text is not that JSON (callers that must not raise use
    :func:`read_link_stats`).
    """
    doc = json.loads(text)
    links = doc if isinstance(doc, list) else [doc]
    link = next(
        (x for x in links if isinstance(x, dict) and (device is None or x.get("ifname") == device)),
        None,
    )
    if link is None:
        raise ValueError(f"no link {device or ''} in ip output".replace("  ", " "))
    linkinfo = _dict(link, "linkinfo")
    info = _dict(linkinfo, "info_data")
    xstats = _dict(linkinfo, "info_xstats")
    berr = _dict(info, "berr_counter")
    stats = _dict(link, "stats64") or _dict(link, "stats")
    rx, tx = _dict(stats, "rx"), _dict(stats, "tx")
    raw_flags = link.get("flags")
    flags: list[Any] = raw_flags if isinstance(raw_flags, list) else []
    raw_state = info.get("state") if info else None
    return LinkStats(
        device=str(link.get("ifname", device or "")),
        kind=linkinfo.get("info_kind") if linkinfo else None,
        operstate=link.get("operstate"),
        up="UP" in flags and ("LOWER_UP" in flags or link.get("operstate") != "DOWN"),
        state=NETLINK_STATES.get(raw_state, raw_state.lower())
        if isinstance(raw_state, str)
        else None,
        tec=_int(berr, "tx"),
        rec=_int(berr, "rx"),
        restart_ms=_int(info, "restart_ms"),
        bitrate=_int(_dict(info, "bittiming"), "bitrate") or _int(info, "bittiming_bitrate"),
        sample_point=_float(_dict(info, "bittiming"), "sample_point"),
        data_bitrate=_int(_dict(info, "data_bittiming"), "bitrate"),
        restarts=_int(xstats, "restarts"),
        bus_error=_int(xstats, "bus_error"),
        arbitration_lost=_int(xstats, "arbitration_lost"),
        error_warning=_int(xstats, "error_warning"),
        error_passive=_int(xstats, "error_passive"),
        bus_off=_int(xstats, "bus_off"),
        rx_packets=_int(rx, "packets"),
        rx_errors=_int(rx, "errors"),
        rx_dropped=_int(rx, "dropped"),
        rx_over_errors=_int(rx, "over_errors"),
        tx_packets=_int(tx, "packets"),
        tx_errors=_int(tx, "errors"),
        tx_dropped=_int(tx, "dropped"),
    )


@dataclass(frozen=True)
class LinkReading:
    """What ``ip`` said about a link: its statistics, or why there are none (in words)."""

    device: str
    stats: LinkStats | None
    problem: str | None = None  # set exactly when stats is None


def read_link(device: str, timeout: float = 2.0, ip: str = "ip") -> LinkReading:
    """Run ``ip -details -statistics -json link show dev DEVICE`` and parse it; never raises.

    A missing ``ip``, a missing device, a timeout and output that is not iproute2's JSON each
    give a :class:`LinkReading` whose ``problem`` says which, for a user to read.
    """
    exe = shutil.which(ip)
    if exe is None:
        return LinkReading(
            device, None, f"`{ip}` was not found on PATH (iproute2 is not installed)"
        )
    try:
        done = subprocess.run(
            [exe, "-details", "-statistics", "-json", "link", "show", "dev", device],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return LinkReading(device, None, f"`ip link show {device}` did not answer in {timeout:g} s")
    except OSError as err:
        return LinkReading(device, None, f"`{ip}` could not be run: {err}")
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        return LinkReading(device, None, f"`ip link show {device}` failed: {said}")
    try:
        return LinkReading(device, parse_link_json(done.stdout, device))
    except (ValueError, TypeError, AttributeError) as err:
        return LinkReading(
            device, None, f"`ip link show {device}` printed what is not iproute2's JSON ({err})"
        )


def read_link_stats(device: str, timeout: float = 2.0, ip: str = "ip") -> LinkStats | None:
    """Run ``ip`` for ``device``; ``None`` when ``ip`` or the device is missing (never raises)."""
    reading = read_link(device, timeout, ip)
    if reading.stats is None:
        log.debug("link stats of %s unavailable: %s", device, reading.problem)
    return reading.stats


@dataclass(frozen=True)
class LinkRate:
    """A SocketCAN link's configured rate and state as ``candiag probe`` reports them.

    ``bitrate`` is only set when the kernel reports one for a CAN controller; ``listenable``
    is False when listening would show nothing (no such link, a link that is down, not CAN).
    ``text`` says all of it in words.
    """

    device: str
    kind: str | None
    up: bool | None  # None: not known
    state: str | None
    bitrate: int | None
    sample_point: float | None
    data_bitrate: int | None
    listenable: bool
    text: str

    def to_json(self) -> JsonObject:
        return asdict(self)


def set_rate_how(device: str) -> str:
    return (
        f"`sudo ip link set {device} down; sudo ip link set {device} type can bitrate <N> "
        f"listen-only on; sudo ip link set {device} up`"
    )


def link_rate(reading: LinkReading) -> LinkRate:
    """The rate and state of a link in words (``candiag probe`` on SocketCAN)."""
    dev, s = reading.device, reading.stats
    if s is None:
        missing = "does not exist" in (reading.problem or "")
        text = f"the rate of {dev} could not be read: {reading.problem}"
        return LinkRate(dev, None, None, None, None, None, None, not missing, text)
    listenable, parts = True, []
    if s.kind == "vcan" or s.kind == "vxcan":
        parts.append(
            f"{dev} is a virtual CAN link ({s.kind}): it has no bitrate, so the rate cannot be "
            "read (frames pass at any rate)"
        )
    elif s.kind != "can":
        listenable = False
        parts.append(f"{dev} is not a CAN link (kind {s.kind or 'none'}): no rate to read")
    elif s.bitrate:
        parts.append(f"{s.bitrate:,} bit/s set on the link {dev}")
        if s.sample_point:
            parts[-1] += f" (sample point {s.sample_point:.3f})"
        if s.data_bitrate:
            parts[-1] += f", CAN FD data phase {s.data_bitrate:,} bit/s"
    else:
        parts.append(f"{dev} has no bitrate set: set one with {set_rate_how(dev)}")
    if not s.up:
        listenable = False
        parts.append(
            f"{dev} is down (operstate {s.operstate or 'not reported'}): nothing can be heard "
            f"until it is up (`sudo ip link set {dev} up`)"
        )
    if s.state is not None:
        parts.append(f"controller {s.state}")
    return LinkRate(
        dev,
        s.kind,
        s.up,
        s.state,
        s.bitrate if s.kind == "can" else None,
        s.sample_point if s.kind == "can" else None,
        s.data_bitrate if s.kind == "can" else None,
        listenable,
        "; ".join(parts),
    )


class InterfaceDropCounter:
    """Frames the interface dropped before candiag saw them: deltas of rx dropped + over_errors.

    Netdev counters restart at 0 when a driver reloads; a counter going backwards is taken as
    such a reset (its new value is the delta), never as a negative drop.
    """

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None
        self.total = 0

    def update(self, stats: LinkStats) -> int:
        """New drops since the previous snapshot (0 on the first one)."""
        now = (stats.rx_dropped or 0, stats.rx_over_errors or 0)
        if self._last is None:
            self._last = now
            return 0
        delta = sum(n - o if n >= o else n for n, o in zip(now, self._last, strict=True))
        self._last = now
        self.total += delta
        return delta
