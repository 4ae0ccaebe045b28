"""Reading single keys from a terminal without blocking, and always giving it back; the
signals that stop a field command on each platform.

:class:`KeyReader` reads the keys typed in the console the command runs in, the way the
platform allows:

* POSIX: the terminal is switched to cbreak mode (keys arrive one by one, unechoed; Ctrl-C
  still raises SIGINT) and the saved attributes are put back in :meth:`KeyReader.restore`,
  which ``__exit__`` calls whatever happened (exception, Ctrl-C).  Keys are read with
  ``select`` so the same wait is the processing loop's sleep: a key press is handled at
  once, not at the next tick.  ``termios``/``tty`` are imported here only, when a key
  reader is entered: a Python without them (or a terminal that refuses cbreak) still gets
  its keys, line by line (a key then Enter), and :attr:`KeyReader.note` says so.
* Windows: ``msvcrt`` reads console keys without echo and without changing any console
  mode, so there is nothing to restore; the wait polls ``msvcrt.kbhit`` every
  :data:`WINDOWS_KEY_POLL_S`.  Arrow and function keys (two codes, the first ``\\x00`` or
  ``\\xe0``) are dropped whole.  Ctrl-C stays a SIGINT (the console's processed input).

We use the standard library directly: rich has no key input, and a full-screen toolkit
would take over the terminal (and its own event loop) for four keys.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Protocol

TermAttrs = list[Any]  # termios.tcgetattr's list
WINDOWS_KEY_POLL_S = 0.02
# A console key's first code when a second one follows (arrows, F-keys, Home, ...).
_WINDOWS_KEY_PREFIXES = ("\x00", "\xe0")


class _Keys(Protocol):
    """One platform's way of reading keys."""

    note: str

    def enter(self) -> None: ...
    def restore(self) -> None: ...
    def read(self, timeout: float) -> str | None: ...  # None: the terminal went away


class KeyReader:
    """Non-blocking single-key input from the console: the file descriptor ``fd`` on POSIX,
    the process's console on Windows (``fd`` is not used there)."""

    def __init__(self, fd: int, *, keys: _Keys | None = None) -> None:
        self.fd = fd
        self._keys: _Keys = keys or (
            WindowsConsoleKeys() if sys.platform == "win32" else PosixKeys(fd)
        )
        self._entered = False
        self.eof = False  # the terminal went away: reads only wait from now on

    @property
    def active(self) -> bool:
        return self._entered

    @property
    def note(self) -> str:
        """What the user should know about key input here ('' when keys work as usual)."""
        return self._keys.note

    def enter(self) -> None:
        """Switch the console to reading single keys (POSIX: cbreak mode)."""
        if self._entered:
            return
        self._keys.enter()
        self._entered = True

    def restore(self) -> None:
        """Give the console back as it was (idempotent; safe to call from any cleanup)."""
        if self._entered:
            self._entered = False
            self._keys.restore()

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
        keys = self._keys.read(max(0.0, timeout))
        if keys is None:
            self.eof = True
            return ""
        return keys


class PosixKeys:
    """A POSIX terminal: cbreak mode through termios, keys through ``select`` and ``read``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._saved: TermAttrs | None = None
        self.note = ""

    def enter(self) -> None:
        try:
            import termios
            import tty
        except ImportError:
            self.note = "keys take effect after Enter (this Python has no termios)"
            return
        try:
            saved = termios.tcgetattr(self.fd)
        except termios.error as err:  # not a terminal after all, or one without attributes
            self.note = f"keys take effect after Enter (terminal mode unavailable: {err})"
            return
        self._saved = saved
        try:
            tty.setcbreak(self.fd, termios.TCSANOW)
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        saved, self._saved = self._saved, None
        if saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)

    def read(self, timeout: float) -> str | None:
        import select

        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return ""
        try:
            data = os.read(self.fd, 64)
        except (BlockingIOError, InterruptedError):
            return ""
        except OSError:  # e.g. EIO once the terminal is hung up
            return None
        if not data:
            return None
        return data.decode("utf-8", errors="replace")


class _Console(Protocol):
    """The part of ``msvcrt`` the Windows reader uses."""

    def kbhit(self) -> bool: ...
    def getwch(self) -> str: ...


class WindowsConsoleKeys:
    """A Windows console through ``msvcrt``: no mode to change, keys polled with ``kbhit``.

    ``console`` is ``msvcrt`` (imported when not given, so this module imports anywhere).
    """

    def __init__(self, console: _Console | None = None) -> None:
        self._console = console
        self.note = ""

    def _msvcrt(self) -> _Console:
        if self._console is None:
            import importlib

            # Imported by name: typeshed declares msvcrt's functions for win32 only.
            console: _Console = importlib.import_module("msvcrt")
            self._console = console
        return self._console

    def enter(self) -> None:
        self._msvcrt()  # fails here, before the view starts, if there is no console module

    def restore(self) -> None:
        pass  # msvcrt changes no console mode

    def read(self, timeout: float) -> str | None:
        console = self._msvcrt()
        deadline = time.monotonic() + timeout
        while not console.kbhit():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ""
            time.sleep(min(WINDOWS_KEY_POLL_S, remaining))
        keys: list[str] = []
        while console.kbhit():
            key = console.getwch()
            if key in _WINDOWS_KEY_PREFIXES:
                console.getwch()  # the second code of an arrow or function key: not ours
                continue
            keys.append(key)
        return "".join(keys)
