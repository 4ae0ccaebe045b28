"""JSON Lines export of decoded frames (``candiag decode``), one object per frame in capture order.

Written by hand instead of ``json.dumps`` per frame: each message gets a ``%``-template
with its constant parts (name, signal keys) already JSON-encoded, values are turned into
text column by column (``map(repr, ...)`` on whole lists), and only the final template
fill is per frame.  Multiplexed messages get one template per combination of present
signals.  Output is strict JSON: non-finite floats (NaN, ±inf from IEEE float signals)
are written as ``null``.

Line shape::

    {"timestamp": 1700000000.0001, "channel": "can0", "arbitration_id": 256,
     "message": "PM_Status", "node": 3, "signals": {"OutputVoltage": 751.5}}

``node`` appears only for messages whose identifier carries a node address.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.decode.decoder import DecodedMessage, DecodeResult
from candiag.ingest.frames import FrameBatch


def format_jsonl(batch: FrameBatch, result: DecodeResult) -> str:
    """The decoded frames of ``batch`` as JSON Lines (each line ends with ``\\n``)."""
    if not result.decoded_frames:
        return ""
    channels = [json.dumps(c) for c in batch.channels] or ['""']
    indices: list[npt.NDArray[np.intp]] = []
    lines: list[str] = []
    for decoded in result.messages.values():
        indices.append(decoded.index)
        lines.extend(_message_lines(batch, decoded, channels))
    if len(indices) == 1:
        return "\n".join(lines) + "\n"
    order = np.argsort(np.concatenate(indices), kind="stable")
    in_capture_order: list[str] = _objects(lines)[order].tolist()
    return "\n".join(in_capture_order) + "\n"


def _message_lines(batch: FrameBatch, decoded: DecodedMessage, channels: list[str]) -> list[str]:
    index = decoded.index
    head: list[list[Any]] = [
        _column(batch.timestamp[index]),
        [channels[c] for c in batch.channel[index].tolist()],
        batch.can_id[index].tolist(),
    ]
    prefix = '{"timestamp": %s, "channel": %s, "arbitration_id": %d, "message": '
    prefix = prefix + _escape(json.dumps(decoded.message.name))
    if decoded.message.node_mask:
        prefix += ', "node": %d'
        head.append(decoded.node.tolist())
    names = [s.name for s in decoded.message.signals]
    columns = [_column(decoded.signals[name]) for name in names]
    if not decoded.message.is_multiplexed:
        template = prefix + ', "signals": {' + _signal_slots(names) + "}}"
        return [template % row for row in zip(*head, *columns, strict=True)]
    return _multiplexed_lines(prefix, head, names, columns, decoded)


def _multiplexed_lines(
    prefix: str,
    head: list[list[Any]],
    names: list[str],
    columns: list[list[Any]],
    decoded: DecodedMessage,
) -> list[str]:
    """One template per combination of present signals (few per message in practice)."""
    present = np.stack([decoded.present[name] for name in names], axis=1)
    patterns, which = np.unique(present, axis=0, return_inverse=True)
    which = which.reshape(-1)
    head_cols = [_objects(col) for col in head]  # fancy-indexable per pattern
    signal_cols = [_objects(col) for col in columns]
    out = np.empty(len(decoded), dtype=object)
    for p, pattern in enumerate(patterns.tolist()):
        keep = [i for i, on in enumerate(pattern) if on]
        template = prefix + ', "signals": {' + _signal_slots([names[i] for i in keep]) + "}}"
        rows = np.flatnonzero(which == p)
        selected = [col[rows].tolist() for col in head_cols]
        selected += [signal_cols[i][rows].tolist() for i in keep]
        out[rows] = [template % values for values in zip(*selected, strict=True)]
    result: list[str] = out.tolist()
    return result


def _signal_slots(names: Sequence[str]) -> str:
    return ", ".join(_escape(json.dumps(name)) + ": %s" for name in names)


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _column(values: npt.NDArray[np.generic]) -> list[Any]:
    """Python values whose ``%s`` is their JSON text (floats: repr; non-finite: null)."""
    items: list[Any] = values.tolist()
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        for i in bad.tolist():
            items[i] = "null"
    return items


def _objects(items: list[Any]) -> npt.NDArray[np.object_]:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr
