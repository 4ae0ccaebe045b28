"""candump ``-L`` log text: candiag's own capture format, parsed vectorized and formatted back.

Line format (can-utils ``lib.c``; docs/capture-formats.md, "candump -L")::

    (1700000000.000100) can0 123#0102          standard data frame (3 hex digits)
    (1700000000.000100) can0 18FF50E5#01020304 extended data frame (8 hex digits)
    (1700000000.000100) can0 123#R  / 123#R5   remote frame (requested length 5)
    (1700000000.000100) can0 123##1AABB        CAN FD, flags nibble (BRS 1, ESI 2)
    (1700000000.000100) can0 20000040#00...    error frame: CAN_ERR_FLAG | class bits

We parse and format it ourselves instead of using python-can's ``CanutilsLogReader`` and
``CanutilsLogWriter`` because those lose error frames (the writer writes every error frame
as ``20000080``, the reader turns ``20000040`` bus-off frames into data frames with id
0x040) and parse one line at a time in Python.

Parsing runs in three tiers, each taking only lines it decodes exactly as the next would,
so which tier took a line never shows in the result (``tests/test_candump_tiers.py``):

1. :mod:`.fixed_layout`: every line, checked against a layout taken from the lines
   themselves, each field gathered as 8-byte words at a fixed offset (the speed of the
   reader on a real capture: nearly every line is taken here);
2. :mod:`.shape_groups`: what tier 1 left, grouped by separator positions and decoded
   column-wise (other layouts, more channel names, a direction suffix);
3. :mod:`.per_line`: what is still left, one line at a time (remote and FD frames, the
   ``_`` DLC suffix, ``.`` separators) and every malformed line with the reason in words.

:mod:`.parser` runs the tiers over a chunk of lines, :mod:`.reader` cuts a capture's
bytes into chunks, :mod:`.formatter` writes batches back as candump ``-L`` text (the
rotating, durable file writer is :mod:`candiag.capture.writer`).
"""

from candiag.capture.formats.candump.formatter import format_candump
from candiag.capture.formats.candump.parser import ParsedChunk, parse_candump, parse_lines
from candiag.capture.formats.candump.per_line import parse_line
from candiag.capture.formats.candump.reader import CandumpReader

__all__ = [
    "CandumpReader",
    "ParsedChunk",
    "format_candump",
    "parse_candump",
    "parse_line",
    "parse_lines",
]
