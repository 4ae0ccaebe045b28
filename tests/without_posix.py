"""Running ``candiag`` in a Python that has no POSIX-only modules, as on Windows.

:func:`command` is ``python -c WRAPPER candiag-args...``: the wrapper installs a meta-path
finder that makes ``termios``, ``tty``, ``fcntl``, ``pwd``, ``grp`` and ``resource``
unimportable (and drops them from ``sys.modules`` should start-up have loaded one) before
candiag is imported, then runs ``python -m candiag`` with the arguments.  Anything on a
command's path that needs one of them fails there as it would on Windows.

It is not Windows: ``sys.platform`` stays ``linux``, so code that picks a backend by
platform (pyserial's serialposix, our key reader) takes its POSIX branch, minus these
modules.  What only Windows can show (msvcrt keys, serialwin32 COM ports, PCANBasic.dll) is
listed in docs/windows.md.

``CANDIAG_TEST_SEND=CHANNEL:N`` makes the wrapper also send N frames on the python-can
virtual channel CHANNEL from a thread once candiag has opened it (the virtual bus exists
only inside one process, so a recording needs its sender there).
"""

from __future__ import annotations

import sys

BLOCKED = ("termios", "tty", "fcntl", "pwd", "grp", "resource")

WRAPPER = """
import importlib.abc, os, runpy, sys, threading, time

BLOCKED = frozenset(__BLOCKED__)


class _PosixOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(
                f"No module named {name!r} (POSIX-only, blocked as on Windows)", name=name
            )
        return None


for _name in [n for n in sys.modules if n.partition(".")[0] in BLOCKED]:
    del sys.modules[_name]
sys.meta_path.insert(0, _PosixOnly())


def _send(channel, count):
    import can
    from can.interfaces import virtual

    while not virtual.channels.get(channel):
        time.sleep(0.01)
    bus = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    try:
        for i in range(count):
            bus.send(can.Message(arbitration_id=0x100 + i % 16, data=bytes([i & 0xFF]) * 8))
    finally:
        bus.shutdown()
    print(f"SENT {count}", file=sys.stderr, flush=True)


if os.environ.get("CANDIAG_TEST_SEND"):
    _channel, _, _count = os.environ["CANDIAG_TEST_SEND"].rpartition(":")
    threading.Thread(target=_send, args=(_channel, int(_count)), daemon=True).start()
sys.argv = ["candiag", *sys.argv[1:]]
runpy.run_module("candiag", run_name="__main__", alter_sys=True)
""".replace("__BLOCKED__", repr(BLOCKED))


def command(*args: str) -> list[str]:
    """The argv that runs ``candiag ARGS`` without the POSIX-only modules."""
    return [sys.executable, "-c", WRAPPER, *args]
