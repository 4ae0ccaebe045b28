"""cantools as the judge of candiag's decoder, also on DBCs loaded leniently.

For each decoded frame: cantools' ``Message.decode(payload, decode_choices=False,
scaling=True)`` (what ``cantools decode --no-strict`` prints).  Where cantools refuses
the frame, the refusal must be explained:

* a multiplexer value that selects no signal (candiag keeps the valid signals);
* a message cantools cannot decode at all because its layout is broken (overlapping
  signals of one byte order, a signal past the end, a float of no float length): then
  every signal candiag decodes is compared with cantools decoding that signal alone
  (a one-signal cantools message built from the signal's start, length, byte order,
  sign, scale and offset), so cantools still extracts every bit.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import cantools
import numpy as np
from cantools.database.can import Message, Signal
from cantools.database.conversion import BaseConversion

from candiag.decode.dbc import ChargerDatabase, MessageDef, SignalDef
from candiag.decode.decoder import DecodedMessage, DecodeResult
from candiag.ingest.frames import FrameBatch


def broken_layout(message: Any) -> bool:
    """Whether cantools' strict check refuses the message or a float has no float length
    (then cantools may refuse every frame of it)."""
    if any(s.is_float and s.length not in (16, 32, 64) for s in message.signals):
        return True
    try:
        message.refresh(strict=True)
    except cantools.database.Error:
        return True
    finally:
        message.refresh(strict=False)
    return False


def single_signal_decode(sig: SignalDef, payload: bytes) -> Any:
    """cantools decoding ``sig`` alone from ``payload`` (padded to 64 bytes)."""
    alone = Signal(
        name="x",
        start=sig.start,
        length=sig.length,
        byte_order=sig.byte_order,
        is_signed=sig.is_signed,
        conversion=BaseConversion.factory(sig.scale, sig.offset, None, sig.is_float),
    )
    message = Message(frame_id=1, name="m", length=64, signals=[alone], strict=False)
    return message.decode(payload.ljust(64, b"\0"), decode_choices=False, scaling=True)["x"]


def same_value(got: object, want: object, where: str) -> None:
    if isinstance(want, int):
        assert not isinstance(got, float | np.floating), f"{where}: int expected, got {got!r}"
        assert int(got) == want, f"{where}: {got!r} != {want!r}"  # type: ignore[call-overload]
        return
    assert isinstance(want, float), f"{where}: {want!r}"
    got_f = float(got)  # type: ignore[arg-type]
    if math.isnan(want):
        assert math.isnan(got_f), f"{where}: {got_f!r} != nan"
    else:
        assert got_f == want or math.isclose(got_f, want, rel_tol=1e-9, abs_tol=1e-300), (
            f"{where}: {got_f!r} != {want!r}"
        )


def _selector(value: Any) -> int:
    if isinstance(value, float | np.floating):
        return int(value) if math.isfinite(value) else -1
    return int(value)


def _expected_presence(msg: MessageDef, decoded: DecodedMessage, k: int) -> dict[str, bool]:
    by_name = {s.name: s for s in msg.signals}
    present: dict[str, bool] = {}

    def visit(sig: SignalDef) -> bool:
        if sig.name in present:
            return present[sig.name]
        parent = sig.multiplexer_signal
        if parent is None or parent not in by_name:
            result = True
        else:
            result = visit(by_name[parent]) and _selector(decoded.signals[parent][k]) in set(
                sig.multiplexer_ids or ()
            )
        present[sig.name] = result
        return result

    for sig in msg.signals:
        visit(sig)
    return present


def compare(db: ChargerDatabase, batch: FrameBatch, result: DecodeResult) -> Counter[str]:
    """Assert candiag equals cantools on every decoded frame; counts of how it was judged."""
    counts: Counter[str] = Counter()
    seen = 0
    broken: dict[int, bool] = {}
    for decoded in result.messages.values():
        msg = decoded.message
        assert np.all(np.diff(decoded.index) > 0), "frames must stay in capture order"
        assert (batch.dlc[decoded.index] >= msg.length).all(), "a short frame was decoded"
        for k, row in enumerate(decoded.index.tolist()):
            seen += 1
            payload = bytes(batch.data[row, : batch.dlc[row]])
            where = f"{msg.where} {msg.name} frame {row} ({payload.hex()})"
            presence = _expected_presence(msg, decoded, k)
            for name, expected in presence.items():
                assert bool(decoded.present[name][k]) == expected, f"{where}: {name} presence"
            try:
                want: dict[str, Any] = msg.cantools_message.decode(
                    payload, decode_choices=False, scaling=True
                )
            except (cantools.database.DecodeError, ValueError, KeyError):
                key = id(msg.cantools_message)
                if key not in broken:
                    broken[key] = broken_layout(msg.cantools_message)
                if not broken[key]:
                    _check_mux_refusal(decoded, k, where)
                counts["cantools_refused_frames"] += 1
                for sig in msg.signals:
                    if decoded.present[sig.name][k]:
                        expect = single_signal_decode(sig, payload)
                        same_value(decoded.signals[sig.name][k], expect, f"{where}.{sig.name}")
                        counts["values_vs_single_signal"] += 1
                continue
            counts["cantools_frames"] += 1
            got = {s.name for s in msg.signals if decoded.present[s.name][k]}
            renamed = any("#" in s.name for s in msg.signals)
            if not renamed:
                assert got == set(want), f"{where}: signals {sorted(got)} != {sorted(want)}"
            for sig in msg.signals:
                if not decoded.present[sig.name][k]:
                    continue
                if sig.name in want and not renamed:
                    same_value(decoded.signals[sig.name][k], want[sig.name], f"{where}.{sig.name}")
                    counts["values_vs_cantools"] += 1
                else:
                    expect = single_signal_decode(sig, payload)
                    same_value(decoded.signals[sig.name][k], expect, f"{where}.{sig.name}")
                    counts["values_vs_single_signal"] += 1
    assert seen == result.decoded_frames
    return counts


def _check_mux_refusal(decoded: DecodedMessage, k: int, where: str) -> None:
    mux_ids: dict[str, set[int]] = {}
    for sig in decoded.message.signals:
        if sig.multiplexer_signal is not None:
            mux_ids.setdefault(sig.multiplexer_signal, set()).update(sig.multiplexer_ids or ())
    assert any(
        decoded.present[mux][k] and _selector(decoded.signals[mux][k]) not in ids
        for mux, ids in mux_ids.items()
        if mux in decoded.present
    ), f"{where}: cantools refused a frame candiag decoded as valid"
