"""Reading single keys from a terminal without blocking, and always giving it back.

:class:`KeyReader` switches the terminal to cbreak mode (keys arrive one by one,
unechoed; Ctrl-C still raises SIGINT) and restores the saved attributes in
:meth:`KeyReader.restore`, which ``__exit__`` calls whatever happened (exception,
Ctrl-C).  Keys are read with ``select`` so the same wait is the processing
loop's sleep: a key press is handled at once, not at the next tick.

We use ``termios``/``tty`` directly: rich has no key input, and a full-screen
toolkit would take over the terminal (and its own event loop) for four keys.
"""

from __future__ import annotations

import os
import select
import termios
import time
import tty
from typing import Any

TermAttrs = list[Any]  # termios.tcgetattr's list


class KeyReader:
    """Non-blocking single-key input on a terminal file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: TermAttrs | None = None
        self.eof = False  # the terminal went away: reads only wait from now on

    @property
    def active(self) -> bool:
        return self._saved is not None

    def enter(self) -> None:
        """Save the terminal attributes and switch to cbreak mode."""
        if self._saved is not None:
            return
        self._saved = termios.tcgetattr(self.fd)
        try:
            tty.setcbreak(self.fd, termios.TCSANOW)
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        """Put the saved attributes back (idempotent; safe to call from any cleanup)."""
        saved, self._saved = self._saved, None
        if saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)

    def __enter__(self) -> KeyReader:
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def read(self, timeout: float) -> str:
        """Keys typed within ``timeout`` seconds (``""`` if none); returns at the first input."""
        if self.eof:
            time.sleep(max(0.0, timeout))
            return ""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return ""
        try:
            data = os.read(self.fd, 64)
        except (BlockingIOError, InterruptedError):
            return ""
        except OSError:  # e.g. EIO once the terminal is hung up
            data = b""
        if not data:
            self.eof = True
        return data.decode("utf-8", errors="replace")
