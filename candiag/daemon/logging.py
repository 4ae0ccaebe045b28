"""Daemon logs: one ``key=value`` line per event, repeated faults summarized.

``log.event("bus_down", bus="can0", error="...")`` writes
``level=warning event=bus_down bus=can0 error="..."``.  A fault that repeats (a
bus that stays absent, a meter that keeps timing out) is logged the first
time; further occurrences with the same key within ``window_s`` are only
counted and then summarized once: ``... (repeated 57 times in 60 s)``.  This
keeps journald readable and spares flash storage (docs/meters.md §4).
Expected faults never carry tracebacks; only bugs do.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOGGER_NAME = "candiag"


def format_fields(**fields: Any) -> str:
    """``k=v`` pairs; values with spaces, quotes or '=' are quoted."""
    parts = []
    for key, value in fields.items():
        if value is None:
            continue
        text = f"{value:g}" if isinstance(value, float) else str(value)
        if not text or any(c in text for c in ' "=\n\t'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


@dataclass
class _Repeat:
    first: float
    count: int  # occurrences suppressed since `first`
    level: int
    line: str


class EventLog:
    """Structured event logging with per-key repeat suppression."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger or logging.getLogger(LOGGER_NAME)
        self.window_s = window_s
        self._clock = clock
        self._repeats: dict[str, _Repeat] = {}

    def event(
        self, level: int, event: str, *, repeat_key: str | None = None, **fields: Any
    ) -> None:
        """Log ``event`` now, or count it if the same ``repeat_key`` was logged recently."""
        line = format_fields(event=event, **fields)
        if repeat_key is None:
            self.logger.log(level, line)
            return
        now = self._clock()
        rep = self._repeats.get(repeat_key)
        if rep is not None and now - rep.first < self.window_s:
            rep.count += 1
            rep.line = line
            return
        if rep is not None and rep.count:
            self._summarize(rep, now)
        self._repeats[repeat_key] = _Repeat(first=now, count=0, level=level, line=line)
        self.logger.log(level, line)

    def resolved(self, repeat_key: str) -> None:
        """The fault behind ``repeat_key`` is gone: flush its summary, log it afresh next time."""
        rep = self._repeats.pop(repeat_key, None)
        if rep is not None and rep.count:
            self._summarize(rep, self._clock())

    def flush(self) -> None:
        """Summarize repeats whose window has passed (called from the processing loop)."""
        now = self._clock()
        for key, rep in list(self._repeats.items()):
            if now - rep.first >= self.window_s:
                if rep.count:
                    self._summarize(rep, now)
                    self._repeats[key] = _Repeat(first=now, count=0, level=rep.level, line=rep.line)

    def _summarize(self, rep: _Repeat, now: float) -> None:
        span = max(1, round(now - rep.first))
        self.logger.log(rep.level, f"{rep.line} (repeated {rep.count} times in {span} s)")

    # Conveniences.
    def info(self, event: str, **fields: Any) -> None:
        self.event(logging.INFO, event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.event(logging.WARNING, event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.event(logging.ERROR, event, **fields)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = format_fields(level=record.levelname.lower())
        if record.name != LOGGER_NAME and not record.name.startswith(LOGGER_NAME + "."):
            head += " " + format_fields(logger=record.name)
        text = f"{head} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """One handler on stderr (journald adds timestamps); third-party loggers quieter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger(LOGGER_NAME).setLevel(level.upper())
    # python-can and pymodbus log every reconnect attempt, the bus reader each link
    # change; the daemon's own bus_down/bus_up events (with repeat summaries) cover those.
    for noisy in ("can", "pymodbus", "candiag.ingest.live"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
