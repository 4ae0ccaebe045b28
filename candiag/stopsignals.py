"""The signals that mean "stop" to a command on this platform (a leaf: no candiag imports).

Field commands run on Windows laptops as well as Linux (docs/windows.md): SIGHUP does not exist
there, and a console's Ctrl-Break is SIGBREAK.  The daemon adds SIGHUP (reload) on Linux.
"""

from __future__ import annotations

import signal


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that mean "stop" to a field command here: Ctrl-C (SIGINT) and SIGTERM
    everywhere, and Ctrl-Break (SIGBREAK) in a Windows console.  Never SIGHUP: it does not
    exist on Windows (the daemon alone uses it, on Linux)."""
    signals = [signal.SIGINT, signal.SIGTERM]
    ctrl_break = getattr(signal, "SIGBREAK", None)
    if ctrl_break is not None:
        signals.append(ctrl_break)
    return tuple(signals)
