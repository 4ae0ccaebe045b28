"""Signal layout checks: what cantools' ``strict=True`` refuses, every problem listed, in bit masks.

cantools' strict mode (``Message.refresh(strict=True)``) walks the message's signal tree
and raises at the first signal that does not fit in the message or overlaps a signal
that can be in the same frame (multiplexed signals of different multiplexer values may
share bits).  It builds a Python list per bit and per signal, which is slow for long
signals and stops at the first problem.  :func:`layout_problems` walks the same tree
with one integer bit mask per signal, so it costs a few operations per signal, and it
reports every problem of the message; a message has problems here exactly when cantools'
strict check refuses it (tests/test_dbc_lenient.py holds the two together).

It also names what cantools accepts but can never decode: a float signal that is not
16, 32 or 64 bits long (cantools' bitstruct has no such float).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: Overlaps named per message; the rest are counted.
MAX_NAMED_OVERLAPS = 10
FLOAT_LENGTHS = (16, 32, 64)

ProblemKind = Literal["past_end", "overlap", "bad_float", "overlap_count"]


@dataclass(frozen=True)
class LayoutProblem:
    """One layout problem of a message (``signal`` is the one at fault)."""

    kind: ProblemKind
    signal: str
    other: str
    text: str
    #: True when cantools' strict mode refuses the message for it.
    strict_refuses: bool = True


def plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def network_first_bit(start: int, big_endian: bool) -> int:
    """The signal's first bit in network order (byte 0 MSB = 0), as cantools counts it."""
    return 8 * (start // 8) + 7 - start % 8 if big_endian else start


def bit_span(start: int, length: int, big_endian: bool) -> tuple[int, int]:
    """First and last byte holding the signal (both inclusive)."""
    if big_endian:
        first = network_first_bit(start, True)
        return first // 8, (first + length - 1) // 8
    return start // 8, (start + length - 1) // 8


def fits(start: int, length: int, big_endian: bool, message_bytes: int) -> bool:
    """Whether the signal lies inside the message (cantools' "does not fit" test)."""
    return network_first_bit(start, big_endian) + length <= 8 * message_bytes


def bit_mask(start: int, length: int, big_endian: bool) -> int:
    """The signal's bits as a mask over physical bit numbers (8 * byte + bit, bit 0 = LSB)."""
    if not big_endian:
        return ((1 << length) - 1) << start
    mask = 0
    network = network_first_bit(start, True)  # MSB, then down through the bytes
    remaining = length
    while remaining > 0:
        byte, offset = divmod(network, 8)  # offset 0 = the byte's MSB
        take = min(remaining, 8 - offset)
        top = 7 - offset  # physical bit of the MSB taken from this byte
        mask |= ((1 << take) - 1) << (8 * byte + top - take + 1)
        network += take
        remaining -= take
    return mask


def layout_problems(message: Any) -> list[LayoutProblem]:
    """Every layout problem of a cantools ``Message``, in cantools' order of checking."""
    checker = _Checker(message)
    checker.walk(message.signal_tree, 0)
    checker.finish()
    return checker.problems


class _Checker:
    def __init__(self, message: Any) -> None:
        self.message = message
        self.name = message.name
        self.length = int(message.length)
        self.problems: list[LayoutProblem] = []
        # cantools resolves tree names with get_signal_by_name: the last signal of a name.
        self.by_name = {s.name: s for s in message.signals}
        self.placed: list[tuple[int, str]] = []
        self.overlaps = 0
        self.unnamed = 0

    def walk(self, tree: list[Any], occupied: int) -> int:
        for node in tree:
            if isinstance(node, dict):
                ((mux, children),) = node.items()
                occupied = self.place(mux, occupied)
                base = occupied
                for mux_id in sorted(children):
                    occupied |= self.walk(children[mux_id], base)
            else:
                occupied = self.place(node, occupied)
        return occupied

    def place(self, name: str, occupied: int) -> int:
        sig = self.by_name[name]
        big = sig.byte_order == "big_endian"
        start, length = int(sig.start), int(sig.length)
        if not fits(start, length, big, self.length):
            _, last = bit_span(start, length, big)
            self.problems.append(
                LayoutProblem(
                    "past_end",
                    name,
                    "",
                    f"signal {name} of message {self.name} (start bit {start}, "
                    f"{plural(length, 'bit')}) needs {plural(last + 1, 'byte')} but the message "
                    f"is {plural(self.length, 'byte')} long; candiag does not decode it "
                    f"(cantools refuses to decode the message): check its start bit and "
                    f"length, or the message length",
                )
            )
            return occupied
        mask = bit_mask(start, length, big)
        clash = mask & occupied
        if clash:
            self.overlap(name, clash)
        self.placed.append((mask, name))
        return occupied | mask

    def overlap(self, name: str, clash: int) -> None:
        self.overlaps += 1
        if self.overlaps > MAX_NAMED_OVERLAPS:
            self.unnamed += 1
            return
        other = next((n for m, n in self.placed if m & clash), "?")
        low = (clash & -clash).bit_length() - 1
        bits = bin(clash).count("1")
        where = f"byte {low // 8} bit {low % 8}" + (f" and {bits - 1} more" if bits > 1 else "")
        if other == name:
            text = (
                f"signal name {name} is defined twice in message {self.name} and both can be "
                f"in one frame ({where}); rename one"
            )
        else:
            text = (
                f"signals {name} and {other} of message {self.name} overlap ({where}) and can "
                f"be in the same frame; candiag decodes each from its own bits: check their "
                f"start bits and lengths"
            )
        self.problems.append(LayoutProblem("overlap", name, other, text))

    def finish(self) -> None:
        if self.unnamed:
            self.problems.append(
                LayoutProblem(
                    "overlap_count",
                    "",
                    "",
                    f"message {self.name} has {self.unnamed} more overlapping signals "
                    f"(only the first {MAX_NAMED_OVERLAPS} are named)",
                )
            )
        for sig in self.message.signals:
            if sig.is_float and int(sig.length) not in FLOAT_LENGTHS:
                self.problems.append(
                    LayoutProblem(
                        "bad_float",
                        sig.name,
                        "",
                        f"signal {sig.name} of message {self.name} is declared an IEEE float "
                        f"(SIG_VALTYPE_) but is {plural(sig.length, 'bit')} long, not 16, 32 or "
                        f"64; "
                        f"candiag does not decode it (cantools cannot either)",
                        strict_refuses=False,
                    )
                )
