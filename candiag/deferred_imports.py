"""Optional heavy imports that third-party packages make at import time, deferred until needed.

python-can's ``can.io`` package imports its MF4 module whenever python-can is imported, and
that module imports ``asammdf`` (and with it pandas) when it is installed: about 0.7 s on
every command that imports python-can, or cantools (which imports python-can), though only an
``.mf4`` capture needs it.  The command line marks ``asammdf`` absent while a command runs
(:func:`defer_mf4`, Python's documented ``sys.modules[name] = None``: its import then fails
as if not installed); reading an MF4 file restores it and reloads python-can's MF4 module
(:func:`restore_mf4`, :mod:`candiag.capture.formats.mf4`).  Measured in
``bench/bench_startup.py``.
"""

from __future__ import annotations

import importlib
import sys

_DEFERRED = "asammdf"


def defer_mf4() -> None:
    """Until :func:`restore_mf4`, importing asammdf fails (python-can then skips MF4)."""
    if _DEFERRED not in sys.modules:
        sys.modules[_DEFERRED] = None  # type: ignore[assignment]


def restore_mf4() -> None:
    """Undo :func:`defer_mf4`, and reload python-can's MF4 module if it was imported without it."""
    if _DEFERRED in sys.modules and sys.modules[_DEFERRED] is None:
        del sys.modules[_DEFERRED]
        mf4 = sys.modules.get("can.io.mf4")
        if mf4 is not None:
            importlib.reload(mf4)
