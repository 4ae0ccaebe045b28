"""The monitor's loop: step the session at a fixed cadence, handle keys, show the result.

One loop on the calling (main) thread: every ``interval`` seconds it drains the
readers into the monitors (:meth:`MonitorSession.step`, which diagnoses once a
second), then either redraws the rich ``Live`` view (a terminal) or prints plain
lines (no terminal: a summary line per bus and meter every ``summary_interval``
seconds, and each finding as it is raised or cleared; no escape codes).

Keys (terminal only): ``p`` pause/resume the display (analysis goes on), ``r``
reset counters, ``w`` start/stop recording a candump log, ``v`` switch between the
health view and the raw per-id view, ``c`` compact/full layout (compact by default
below 120x40), arrows/``j``/``k``, PgUp/PgDn (or space/``b``), Home/End (``g``/``G``)
scroll, ``q`` quit.  SIGINT
and SIGTERM end the loop the same way as ``q``; the terminal is restored in a
``finally`` whatever ends it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from rich.console import Console

from candiag.errors import RecordingError
from candiag.ingest.filters import FrameFilter
from candiag.stopsignals import stop_signals
from candiag.tui.plain import active_finding_line, finding_line, plain_summary
from candiag.tui.rawview import RawViews
from candiag.tui.session import MonitorSession
from candiag.tui.view import (
    ScreenState,
    ScrollState,
    render_screen,
)

DEFAULT_INTERVAL_S = 0.25
DEFAULT_SUMMARY_INTERVAL_S = 5.0
#: Terminal escape sequences of the scrolling keys (xterm and the Linux console).
ESCAPE_KEYS = {
    "\x1b[A": "up",
    "\x1bOA": "up",
    "\x1b[B": "down",
    "\x1bOB": "down",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\x1b[H": "home",
    "\x1bOH": "home",
    "\x1b[1~": "home",
    "\x1b[F": "end",
    "\x1bOF": "end",
    "\x1b[4~": "end",
}


class MonitorApp:
    """Drives a started :class:`MonitorSession` until ``q``, a signal or ``duration``."""

    def __init__(
        self,
        session: MonitorSession,
        *,
        record_dir: Path,
        interval: float = DEFAULT_INTERVAL_S,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL_S,
        duration: float | None = None,
        frame_filter: FrameFilter | None = None,
    ) -> None:
        self.session = session
        self.record_dir = record_dir
        self.interval = interval
        self.summary_interval = summary_interval
        self.duration = duration
        self.paused = False
        self._frame_due = True  # one more frame to draw, e.g. the one saying PAUSED
        self.message = ""
        self.recordings: list[tuple[Path, int]] = []
        self._stop = threading.Event()
        self.mode = "health"
        self.compact: bool | None = None  # None: from the terminal size
        self.scroll = {"health": ScrollState(), "raw": ScrollState()}
        self.frame_filter = frame_filter
        self.raw = RawViews(frame_filter)
        for bus in session.buses:
            self.raw.add_bus(bus.config.name, bus.db)
        session.taps.append(self.raw.feed)

    # -- keys -----------------------------------------------------------------------------------
    def handle_key(self, key: str) -> None:
        """Act on one key press (case-insensitive; unknown keys are ignored)."""
        action = self._actions().get(key.lower())
        if action is not None:
            action()

    def handle_keys(self, keys: str) -> None:
        """Keys as read from the terminal: single characters and scrolling escape sequences."""
        i = 0
        while i < len(keys):
            if keys[i] == "\x1b":
                sequence = next((s for s in ESCAPE_KEYS if keys.startswith(s, i)), None)
                if sequence is not None:
                    self.scroll_by(ESCAPE_KEYS[sequence])
                    i += len(sequence)
                    continue
            key = keys[i]
            if key in self._scroll_keys():
                self.scroll_by(self._scroll_keys()[key])
            else:
                self.handle_key(key)
            i += 1

    @staticmethod
    def _scroll_keys() -> dict[str, str]:
        return {"j": "down", "k": "up", " ": "pgdn", "b": "pgup", "g": "home", "G": "end"}

    def scroll_by(self, action: str) -> None:
        scroll = self.scroll[self.mode]
        step = {"up": -1, "down": 1, "pgup": -scroll.page, "pgdn": scroll.page}
        if action == "home":
            scroll.offset = 0
        elif action == "end":
            scroll.offset = scroll.max_offset
        else:
            scroll.move(step[action])
        self._frame_due = True

    def _actions(self) -> dict[str, Callable[[], None]]:
        return {
            "q": self.request_stop,
            "p": self.toggle_pause,
            "r": self.reset,
            "w": self.toggle_recording,
            "v": self.toggle_view,
            "c": self.toggle_compact,
        }

    def toggle_view(self) -> None:
        self.mode = "raw" if self.mode == "health" else "health"
        self._frame_due = True

    def toggle_compact(self) -> None:
        self.compact = not self.scroll[self.mode].compact_shown
        self._frame_due = True

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        self._frame_due = True
        self.message = "display paused (analysis continues); p resumes" if self.paused else ""

    def reset(self) -> None:
        self.session.reset()
        self.raw.reset()
        self.message = "counters reset at " + time.strftime("%H:%M:%S")

    def toggle_recording(self) -> None:
        if self.session.recording is None:
            self.start_recording()
        else:
            self.stop_recording()

    def start_recording(self) -> None:
        try:
            path = self.session.start_recording(self.record_dir)
        except RecordingError as err:
            self.message = f"cannot record: {err}"
            return
        self.message = f"recording to {path}; w stops"

    def stop_recording(self) -> None:
        try:
            recording = self.session.stop_recording()
        except RecordingError as err:
            self.message = f"recording failed: {err}"
            return
        if recording is not None:
            self.recordings.append((recording.path, recording.frames))
            self.message = f"recorded {recording.frames} frames to {recording.path}"

    # -- the loop ---------------------------------------------------------------------------------
    def _step(self) -> tuple[list[str], list[str]]:
        """One processing step; returns (raised, cleared) finding lines."""
        try:
            raised, cleared = self.session.step()
        except RecordingError as err:
            self.message = f"recording stopped: {err}"
            return [], []
        return (
            [finding_line(f, raised=True) for f in raised],
            [finding_line(f, raised=False) for f in cleared],
        )

    def _deadline(self) -> float | None:
        return None if self.duration is None else time.monotonic() + self.duration

    def _wait(
        self, started: float, deadline: float | None, waiter: Callable[[float], object]
    ) -> None:
        remaining = self.interval - (time.monotonic() - started)
        if deadline is not None:
            remaining = min(remaining, deadline - time.monotonic())
        if remaining > 0:
            waiter(remaining)

    @staticmethod
    def _expired(deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def run_plain(self, out: TextIO) -> int:
        """Plain periodic lines (stdout is not a terminal)."""
        deadline = self._deadline()
        next_summary = time.monotonic() + self.summary_interval
        with stop_on_signals(self.request_stop):
            while not self._stop.is_set():
                started = time.monotonic()
                raised, cleared = self._step()
                for line in (*raised, *cleared):
                    _print(out, line)
                if self.message:
                    _print(out, self.message)
                    self.message = ""
                if started >= next_summary:
                    next_summary = started + self.summary_interval
                    self._print_summary(out)
                if self._expired(deadline):
                    break
                self._wait(started, deadline, self._stop.wait)
        self._finish(out)
        return 0

    def run_live(self, console: Console, key_fd: int) -> int:
        """The rich ``Live`` view with key handling (stdout and stdin are a terminal)."""
        from rich.live import Live

        from candiag.tui.terminal import KeyReader

        deadline = self._deadline()
        keys = KeyReader(key_fd)
        live = Live(console=console, screen=True, auto_refresh=False, transient=True)

        def wait_for_keys(timeout: float) -> None:
            self.handle_keys(keys.read(timeout))

        with stop_on_signals(self.request_stop), contextlib.ExitStack() as cleanup:
            keys.enter()
            cleanup.callback(keys.restore)
            self.message = self.message or keys.note  # e.g. keys need Enter without termios
            live.start()
            cleanup.callback(live.stop)
            while not self._stop.is_set():
                started = time.monotonic()
                self._step()
                if not self.paused or self._frame_due:
                    live.update(render_screen(self._screen()), refresh=True)
                    self._frame_due = False
                if self._expired(deadline):
                    break
                self._wait(started, deadline, wait_for_keys)
        self._finish(None, console)
        return 0

    def _screen(self) -> ScreenState:
        state = self.session.screen(paused=self.paused, message=self.message)
        return dataclasses.replace(
            state,
            mode=self.mode,
            compact=self.compact,
            raw=self.raw.views(state.now) if self.mode == "raw" else (),
            filter_text=self.frame_filter.text() if self.frame_filter else "",
            scroll=self.scroll[self.mode],
        )

    def _print_summary(self, out: TextIO) -> None:
        for line in plain_summary(self._screen()):
            _print(out, line)

    def _finish(self, out: TextIO | None, console: Console | None = None) -> None:
        """Close the recording and print a last summary (plain text, terminal restored)."""
        self.stop_recording()
        lines = plain_summary(self._screen())
        findings = self.session.findings()
        lines.append(f"{len(findings)} active finding(s)")
        lines.extend(active_finding_line(f) for f in findings)
        lines.extend(f"recorded {n} frames to {path}" for path, n in self.recordings)
        for line in lines:
            if console is not None:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            elif out is not None:
                _print(out, line)


def _print(out: TextIO, line: str) -> None:
    out.write(f"{time.strftime('%H:%M:%S')} {line}\n")
    out.flush()


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Ctrl-C, SIGTERM (and Ctrl-Break on Windows) call ``stop`` (main thread only);
    previous handlers restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    previous = {sig: signal.signal(sig, handler) for sig in stop_signals()}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
