"""Where the slow real-world checks find the public inputs nobody here wrote.

``make realworld`` (run by CI) downloads them into ``.realworld/`` at the repository root:
opendbc's and cantools' DBCs, python-can 4.6.1's test logs (tests/fetch_realworld.sh).
Environment variables point elsewhere: ``CANDIAG_REALWORLD_DBC`` (folders of DBCs, separated
by ``os.pathsep``) and ``CANDIAG_PYCAN_DATA`` (python-can's ``test/data``).  When neither
is there, the tests skip and say how to get them.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FETCHED = REPO / ".realworld"
HOW = "run `make realworld` (downloads from PyPI) or set CANDIAG_REALWORLD_DBC/CANDIAG_PYCAN_DATA"


def dbc_dirs() -> list[Path]:
    """Folders of real-world DBCs (opendbc, cantools' tests), those that exist."""
    raw = os.environ.get("CANDIAG_REALWORLD_DBC") or ""
    dirs = [Path(p) for p in raw.split(os.pathsep) if p]
    if not dirs:
        dirs = [FETCHED / "dbc" / "opendbc", FETCHED / "dbc" / "cantools"]
    return [d for d in dirs if d.is_dir()]


def pycan_dir() -> Path | None:
    """python-can's test logs, if present."""
    raw = os.environ.get("CANDIAG_PYCAN_DATA") or ""
    folder = Path(raw) if raw else FETCHED / "pycan"
    return folder if folder.is_dir() else None
