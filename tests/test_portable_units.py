"""The platform-dependent pieces of the field commands, as far as Linux can run them.

* The Windows key reader's logic (polling, arrow and function keys dropped whole) runs
  against a console object with ``msvcrt``'s two functions, fed the key codes a Windows
  console gives (https://learn.microsoft.com/cpp/c-runtime-library/reference/getch-getwch:
  "When reading a function key or an arrow key, each function must be called twice; the
  first call returns 0 or 0xE0").  ``msvcrt`` itself only exists on Windows.
* The POSIX key reader without termios falls back to line input on a real pty.
* Stop signals and the SocketCAN-elsewhere message per platform.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque

import pytest

from candiag.ingest.live import WINDOWS_INTERFACES, interface_unavailable_here
from candiag.stopsignals import stop_signals
from candiag.tui.terminal import KeyReader, PosixKeys, WindowsConsoleKeys


class ConsoleKeys:
    """Keys as a Windows console queues them for ``kbhit``/``getwch``."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.kbhit_calls = 0

    def type(self, codes: str) -> None:
        self.queue.extend(codes)

    def kbhit(self) -> bool:
        self.kbhit_calls += 1
        return bool(self.queue)

    def getwch(self) -> str:
        return self.queue.popleft()


def test_windows_keys_arrive_at_once_and_arrows_are_dropped_whole() -> None:
    console = ConsoleKeys()
    keys = KeyReader(0, keys=WindowsConsoleKeys(console))
    with keys:
        assert keys.active
        console.type("p\xe0Hr\x00;")  # p, Up arrow (E0 48), r, F1 (00 3B)
        started = time.monotonic()
        assert keys.read(5.0) == "pr"
        assert time.monotonic() - started < 0.5  # not the whole timeout
        assert keys.note == ""
    assert not keys.active


def test_windows_keys_wait_out_the_timeout_polling_kbhit() -> None:
    console = ConsoleKeys()
    keys = KeyReader(0, keys=WindowsConsoleKeys(console))
    started = time.monotonic()
    assert keys.read(0.1) == ""
    assert time.monotonic() - started >= 0.09
    assert 2 <= console.kbhit_calls <= 20  # polled every WINDOWS_KEY_POLL_S, not spun
    assert keys.read(0) == ""


def test_without_msvcrt_the_windows_reader_fails_when_entered_not_when_imported() -> None:
    reader = WindowsConsoleKeys()
    with pytest.raises(ModuleNotFoundError, match="msvcrt"):
        reader.enter()


def test_posix_keys_without_termios_read_lines_and_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_termios(name: str, *args: object, **kwargs: object) -> object:
        if name in ("termios", "tty"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    master, slave = os.openpty()
    try:
        monkeypatch.setattr(builtins, "__import__", no_termios)
        with KeyReader(slave, keys=PosixKeys(slave)) as keys:
            assert "after Enter" in keys.note
            os.write(master, b"w\n")  # the pty stays in line mode: the line arrives
            assert keys.read(2.0) == "w\n"
    finally:
        os.close(master)
        os.close(slave)


def test_posix_keys_on_something_that_is_not_a_terminal_read_lines() -> None:
    read_end, write_end = os.pipe()
    try:
        with KeyReader(read_end, keys=PosixKeys(read_end)) as keys:
            assert "terminal mode unavailable" in keys.note
            os.write(write_end, b"q")
            assert keys.read(1.0) == "q"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_stop_signals_are_the_ones_this_platform_has() -> None:
    signals = stop_signals()
    assert signals[:2] == (signal.SIGINT, signal.SIGTERM)
    assert all(isinstance(s, signal.Signals) for s in signals)
    assert (getattr(signal, "SIGBREAK", None) in signals) == hasattr(signal, "SIGBREAK")
    assert not any(s.name == "SIGHUP" for s in signals)


@pytest.mark.parametrize("platform", ["win32", "darwin"])
def test_socketcan_elsewhere_names_the_adapters_that_work(platform: str) -> None:
    text = interface_unavailable_here("socketcan", platform)
    assert "SocketCAN is part of the Linux kernel" in text and platform in text
    for interface in ("pcan", "kvaser", "vector", "ixxat", "slcan", "gs_usb"):
        assert interface in text
    assert set(WINDOWS_INTERFACES) == {"pcan", "kvaser", "vector", "ixxat", "slcan", "gs_usb"}


def test_socketcan_on_linux_and_pcan_anywhere_are_not_refused() -> None:
    assert interface_unavailable_here("socketcan", "linux") == ""
    assert interface_unavailable_here("pcan", "win32") == ""
