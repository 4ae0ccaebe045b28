"""The fuzz tests import the shared targets of the repository's ``fuzz`` package."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # `pytest` run as a script does not put the repository on sys.path
    sys.path.insert(0, ROOT)
