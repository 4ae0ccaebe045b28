"""systemd notify protocol: READY, STATUS, WATCHDOG, STOPPING (sd_notify(3)).

Our own few lines instead of a library (docs/standards.md §2): the protocol is
"guaranteed to be stable" and is one AF_UNIX datagram per message;
``sdnotify`` swallows every exception and ``systemd-python`` needs a C build.
Without ``$NOTIFY_SOCKET`` (not under systemd) every call is silent.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify messages to ``$NOTIFY_SOCKET`` (a leading ``@`` is abstract)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval_s = _watchdog_interval(env)
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False (and counted) if it failed."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall("\n".join(fields).encode())
        except OSError:
            # systemd gone or socket unreachable: keep running, the watchdog will tell.
            self.failures += 1
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={_one_line(status)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1") if self.watchdog_interval_s is not None else False

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC timestamp systemd >= 253 requires.

        systemd then waits for READY=1, which must follow whether or not the reload worked.
        """
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` (the recommended ping period), if meant for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6


def _one_line(text: str) -> str:
    return " ".join(text.split())
