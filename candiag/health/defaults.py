"""The defaults every command shares, in a module that imports nothing.

:data:`DEFAULT_BITRATE` lives here (and is re-exported by :mod:`candiag.health.bitrate`)
so that the command line can print it in its help without importing numpy.
"""

from __future__ import annotations

#: The one default of every command: the reference bus rate (docs/bitrate.md, docs/reference-bus.md).
DEFAULT_BITRATE = 125_000
