"""How the report layer reads an analysis report: one small function per field.

The report is being turned from dictionaries into typed objects; every read of it in
:mod:`candiag.report` goes through here, and :func:`field` reads a key of a mapping or an
attribute of an object alike, so that change touches this file only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` of a mapping, ``obj.name`` of an object; ``default`` when absent or None."""
    if obj is None:
        return default
    value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
    return default if value is None else value


def capture(report: Any) -> Any:
    return field(report, "capture", {})


def capture_path(report: Any) -> str:
    return str(field(capture(report), "path", "?"))


def capture_format(report: Any) -> str:
    return str(field(capture(report), "format", "?"))


def capture_start(report: Any) -> float | None:
    start = field(capture(report), "start")
    return None if start is None else float(start)


def capture_end(report: Any) -> float | None:
    end = field(capture(report), "end")
    return None if end is None else float(end)


def capture_duration(report: Any) -> float:
    return float(field(capture(report), "duration_s", 0.0))


def capture_channels(report: Any) -> list[str]:
    return [str(c) for c in field(capture(report), "channels", [])]


def malformed_lines(report: Any) -> int:
    return int(field(capture(report), "malformed_lines", 0))


def malformed_examples(report: Any) -> Sequence[Any]:
    examples: Sequence[Any] = field(capture(report), "malformed_examples", [])
    return examples


def frames_total(report: Any) -> int:
    return int(field(field(report, "frames", {}), "total", 0))


def error_frame_count(report: Any) -> int:
    return int(field(field(report, "frames", {}), "error", 0))


def bus_off_events(report: Any) -> int:
    return int(field(report, "bus_off_events", 0))


def tec_rec_max(report: Any) -> tuple[Any, Any]:
    ef = field(report, "error_frames", {})
    return field(ef, "tec_max", 0), field(ef, "rec_max", 0)


def load_mean(report: Any) -> float | None:
    value = field(field(report, "bus_load", {}), "mean_ratio")
    return None if value is None else float(value)


def load_max_1s(report: Any) -> float | None:
    value = field(field(report, "bus_load", {}), "max_ratio_1s")
    return None if value is None else float(value)


@dataclass(frozen=True)
class BitrateLine:
    """The bitrate of one bus and how it is known (see candiag.health.bitrate)."""

    bus: str
    bitrate: int
    source: str  # flag, recording, config, inferred, assumed
    known: bool
    detail: str


def bitrates(report: Any) -> list[BitrateLine]:
    """One line per bus: ``bitrate`` is one bus's entry, or a mapping bus -> entry."""
    raw = field(report, "bitrate", {})
    if raw and field(raw, "bitrate") is None and isinstance(raw, Mapping):
        entries = list(raw.items())
    else:
        entries = [(", ".join(capture_channels(report)) or "bus", raw)]
    return [
        BitrateLine(
            bus=str(bus),
            bitrate=int(field(entry, "bitrate", 0)),
            source=str(field(entry, "source", "flag")),
            known=bool(field(entry, "known", True)),
            detail=str(field(entry, "detail", "")),
        )
        for bus, entry in entries
    ]


def findings(report: Any) -> Sequence[Any]:
    items: Sequence[Any] = field(report, "findings", [])
    return items


def nodes(report: Any) -> Sequence[Any]:
    items: Sequence[Any] = field(report, "nodes", [])
    return items


def ids(report: Any) -> Mapping[str, Any]:
    items: Mapping[str, Any] = field(report, "ids", {})
    return items


def signals(report: Any) -> Mapping[str, Any]:
    items: Mapping[str, Any] = field(report, "signals", {})
    return items


def firmware_mismatches(report: Any) -> Sequence[Any]:
    items: Sequence[Any] = field(report, "firmware_mismatches", [])
    return items


def notes(report: Any) -> list[str]:
    return [str(n) for n in field(report, "notes", [])]


def dbc_files(report: Any) -> list[str]:
    return [str(f) for f in field(_dbc(report), "files", [])]


def dbc_selection(report: Any) -> str:
    return str(field(_dbc(report), "selection", ""))


def dbc_warnings(report: Any) -> int:
    return len(field(_dbc(report), "warnings", []))


def _dbc(report: Any) -> Any:
    return field(field(report, "decode", {}), "dbc", {})


def decoded_frames(report: Any) -> int:
    return int(field(field(report, "decode", {}), "decoded_frames", 0))


@dataclass(frozen=True)
class EpisodeLine:
    """One interval of a finding (issue 15): ``end`` None while it lasted to the end."""

    start: float
    end: float | None

    def end_or(self, default: float) -> float:
        return default if self.end is None else self.end


def episodes(finding: Any) -> list[EpisodeLine]:
    """A finding's episodes; a report without them has one, from ``since`` to ``cleared_at``."""
    raw: Sequence[Any] = field(finding, "episodes", [])
    out = [
        EpisodeLine(float(field(e, "start")), _float_or_none(field(e, "end")))
        for e in raw
        if field(e, "start") is not None
    ]
    if out or field(finding, "since") is None:
        return out
    return [
        EpisodeLine(float(field(finding, "since")), _float_or_none(field(finding, "cleared_at")))
    ]


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def consequences(finding: Any) -> Sequence[Any]:
    """The findings the causal model folds under this one (shown as its evidence)."""
    items: Sequence[Any] = field(finding, "consequences", [])
    return items


def consequence_of(finding: Any) -> str:
    """Why a consequence is folded under its cause (``"CAN_ERR_ACK can0: ..."``)."""
    return str(field(finding, "consequence_of", ""))


def contactors(report: Any) -> Sequence[Any]:
    items: Sequence[Any] = field(report, "contactors", [])
    return items
