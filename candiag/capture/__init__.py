"""Capture files: reading them into frame batches, and writing candiag's own recordings.

This package owns everything between a capture file's bytes and
:class:`~candiag.ingest.frames.FrameBatch` chunks, both ways; frames themselves and live
buses are :mod:`candiag.ingest`'s (this package uses them, never the other way round).

Reading, front to back:

* :mod:`.reader`: :class:`CaptureReader` and :func:`read_capture`, the front every
  command reads captures through (open, detect, hand to the format's reader);
* :mod:`.source`: the bytes of a capture: file or standard input, streaming gzip
  decompression that survives a recording cut short, line ends, blank lines;
* :mod:`.detect`: which format a capture is (content first, suffix second) and why;
* :mod:`.formats`: one module per format (candump ``-L`` as a package of its own);
* :mod:`.stats`: :class:`CaptureStats`, what reading found besides frames.

Writing: :mod:`.writer` (:class:`CandumpWriter`: candump ``-L`` files, rotation, gzip
with the metadata in its header, durability), :mod:`.metadata` (what a recording says
about its bus), :mod:`.recorder` (a live bus drained into a writer).
"""

from candiag.capture.reader import STDIN, CaptureReader, CaptureStats, MalformedLine, read_capture
from candiag.capture.writer import CandumpWriter

__all__ = [
    "STDIN",
    "CandumpWriter",
    "CaptureReader",
    "CaptureStats",
    "MalformedLine",
    "read_capture",
]
