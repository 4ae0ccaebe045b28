"""candump ``-L`` captures as batches: blocks of bytes cut into chunks of whole lines.

The capture's (decompressed) bytes come in blocks (:mod:`candiag.capture.source`); a line
cut by a block boundary is carried into the next block, and a line longer than
:data:`~candiag.capture.source.MAX_LINE_BYTES` is kept only up to that length (it is
reported as malformed, never grown in memory).  Every chunk of at most ``chunk_lines``
lines goes through :func:`~.parser.parse_lines`; line numbers, counts and malformed lines
go to the capture's :class:`~candiag.capture.formats.rows.Sink`.  The capture's first chunk
is shorter (:data:`FIRST_CHUNK_LINES`): a reader ahead of its consumer
(:mod:`candiag.capture.readahead`) hands it over sooner, and the consumer starts while the
rest is parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from candiag.capture.formats.candump.chunk import NL, U8
from candiag.capture.formats.candump.parser import parse_lines
from candiag.capture.formats.rows import Sink
from candiag.capture.source import MAX_LINE_BYTES
from candiag.ingest.frames import ChannelTable, FrameBatch

NAME = "candump -L"
# Lines of a capture's first chunk: enough for the reference DBCs' identification sample
# (candiag.analysis.SAMPLE_FRAMES), an eighth of the default chunk.  A bitrate to infer
# still reads its 262,144 frames (candiag.analysis.BITRATE_SAMPLE_FRAMES).
FIRST_CHUNK_LINES = 32_768


class CandumpReader:
    """Reads candump ``-L`` blocks into batches of at most ``chunk`` lines."""

    def __init__(self, sink: Sink, channels: ChannelTable, chunk: int) -> None:
        self.sink = sink
        self.channels = channels
        self.chunk = chunk
        self._first = True  # the capture's first chunk is still to come

    def batches(self, blocks: Iterable[bytes]) -> Iterator[FrameBatch]:
        carry = b""
        for block in blocks:
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:][:MAX_LINE_BYTES]
            if cut:
                yield from self._chunks(np.frombuffer(data, np.uint8, count=cut))
        if carry:
            yield from self._chunks(np.frombuffer(carry + b"\n", np.uint8))

    def _chunks(self, buf: U8) -> Iterator[FrameBatch]:
        nl = np.flatnonzero(buf == NL)
        sink = self.sink
        k = 0
        while k < len(nl):
            step = min(self.chunk, FIRST_CHUNK_LINES) if self._first else self.chunk
            self._first = False
            begin = int(nl[k - 1]) + 1 if k else 0
            chunk_nl = nl[k : k + step]
            k += step
            end = int(chunk_nl[-1]) + 1
            parsed = parse_lines(
                buf[begin:end], chunk_nl - begin, first_line=sink.lines + 1, channels=self.channels
            )
            sink.lines += parsed.lines
            sink.blank += parsed.blank
            for item in parsed.malformed:
                item.reason = f"{NAME}: {item.reason}"
            sink.add_malformed(parsed.malformed)
            if len(parsed.batch):
                yield parsed.batch
