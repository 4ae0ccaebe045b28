"""Finding the slaves on a line: which unit ids answer at which serial settings.

Owns ``candiag modbus scan``'s logic.  Modbus RTU has no discovery, so each unit id
is probed with one small read (FC4, 1 register at 0): any answer, data or an
exception reply, proves a device at that id and those settings.  Each responder is
then probed with the first block of every shipped profile; the profiles it answers
with data are the ones that fit.  Garbled replies at a setting are counted: they
mean something is talking, usually at another baud rate or parity.  A setting the port
cannot take (a pty refuses parity E; an adapter a baud rate) is skipped and kept with
the reason, and the scan goes on with the others; a port that cannot be opened at all
ends the scan.  The total time is bounded (``max_time``); a scan cut short says so.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from candiag.errors import PortUnavailableError, SettingUnsupportedError
from candiag.modbus.link import Link, Transaction, make_link, t35_seconds
from candiag.modbus.profile import MeterProfile

PROBE = (4, 0, 1)  # function, address, count


@dataclass(frozen=True)
class ScanHit:
    baudrate: int | None  # None on Modbus TCP
    parity: str | None
    stopbits: int | None
    unit_id: int
    outcome: str  # ok | exception (the probe's answer)
    fits: tuple[str, ...]  # profiles whose first block this device answered with data
    latency: float


@dataclass
class ScanResult:
    hits: list[ScanHit] = field(default_factory=list)
    garbled: dict[str, int] = field(default_factory=dict)  # "9600 8E1" -> crc/wrong replies
    skipped: dict[str, str] = field(default_factory=dict)  # "9600 8E1" -> why the port refused
    complete: bool = True
    elapsed: float = 0.0
    requests: int = 0


def parse_ids(text: str) -> list[int]:
    """``"1-10,20"`` -> [1, ..., 10, 20]; ValueError with a readable message otherwise."""
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low_s, _, high_s = part.partition("-")
        try:
            low, high = int(low_s), int(high_s or low_s)
        except ValueError:
            raise ValueError(f"{part!r} is not an id or a range like 1-247") from None
        if not 1 <= low <= high <= 247:
            raise ValueError(f"{part!r}: unit ids are 1..247")
        ids.extend(range(low, high + 1))
    if not ids:
        raise ValueError("no unit ids given")
    return sorted(set(ids))


def scan(
    port: str,
    *,
    ids: Sequence[int],
    profiles: Sequence[MeterProfile],
    baudrates: Sequence[int] = (9600,),
    parities: Sequence[str] = ("N",),
    stopbits: int = 1,
    timeout: float = 0.2,
    max_time: float = 600.0,
    progress: Callable[[int, int], None] | None = None,
    on_hit: Callable[[ScanHit], None] | None = None,
) -> ScanResult:
    """Probe ``ids`` at every setting; ``progress(done, total)`` after each probe,
    ``on_hit(hit)`` as soon as a device is found."""
    tcp = "://" in port
    settings: list[tuple[int | None, str | None]] = (
        [(None, None)] if tcp else [(b, p) for b in baudrates for p in parities]
    )
    result = ScanResult()
    total = len(settings) * len(ids)
    done = 0
    start = time.monotonic()
    for baudrate, parity in settings:
        link = make_link(port, baudrate=baudrate or 9600, parity=parity or "N", stopbits=stopbits)
        silence = 0.0 if tcp else t35_seconds(baudrate or 9600)
        label = "tcp" if tcp else f"{baudrate} 8{parity}{stopbits}"
        try:
            link.open()  # PortUnavailableError says which port and what to check
        except SettingUnsupportedError as err:
            result.skipped[label] = str(err)
            done += len(ids)
            if progress is not None:
                progress(done, total)
            continue
        garbled: Counter[str] = Counter()
        try:
            for unit_id in ids:
                if time.monotonic() - start > max_time:
                    result.complete = False
                    break
                tx = _probe(link, unit_id, *PROBE, timeout, silence)
                result.requests += 1
                if tx.outcome in ("crc", "wrong_device"):
                    garbled[tx.outcome] += 1
                if tx.outcome == "io":
                    raise PortUnavailableError(f"{port}: {tx.detail}")
                if tx.outcome in ("ok", "exception", "bad_reply"):  # something lives there
                    fits = []
                    for profile in profiles:
                        block = profile.blocks[0]
                        fit = _probe(
                            link,
                            unit_id,
                            block.function,
                            block.address,
                            block.count,
                            timeout,
                            silence,
                        )
                        result.requests += 1
                        if fit.outcome == "ok":
                            fits.append(profile.name)
                    hit = ScanHit(
                        baudrate,
                        parity,
                        None if tcp else stopbits,
                        unit_id,
                        tx.outcome,
                        tuple(fits),
                        tx.duration,
                    )
                    result.hits.append(hit)
                    if on_hit is not None:
                        on_hit(hit)
                done += 1
                if progress is not None:
                    progress(done, total)
        finally:
            link.close()
        if garbled:
            result.garbled[label] = sum(garbled.values())
        if not result.complete:
            break
    result.elapsed = time.monotonic() - start
    return result


def _probe(
    link: Link,
    unit_id: int,
    function: int,
    address: int,
    count: int,
    timeout: float,
    silence: float,
) -> Transaction:
    time.sleep(silence)  # the RTU inter-frame silence (t3.5)
    return link.transact(unit_id, function, address, count, timeout)
