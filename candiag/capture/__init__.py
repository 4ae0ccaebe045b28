"""Capture files: reading them into frame batches and writing them.

(Layout in progress: the reader front, the formats, the writer and the recording metadata.)
"""

from candiag.capture.candump import CandumpWriter
from candiag.capture.reader import STDIN, CaptureReader, CaptureStats, MalformedLine, read_capture

__all__ = [
    "STDIN",
    "CandumpWriter",
    "CaptureReader",
    "CaptureStats",
    "MalformedLine",
    "read_capture",
]
