"""The candump ``-L`` parser's front: a chunk of lines through the three tiers, in order.

:func:`parse_lines` counts blank lines apart (a few vector operations), gives every line
to the fixed-layout tier (:mod:`.fixed_layout`), and the lines it did not take to the
shape-grouped tier (:mod:`.shape_groups`) and then to the per-line tier
(:mod:`.per_line`), all filling one :class:`~.chunk.ChunkArrays`.  The result is one
:class:`ParsedChunk`: the frames in line order, the line count and the malformed lines
with their numbers in the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from candiag.capture.formats.candump.chunk import (
    I64,
    NL,
    U8,
    ChunkArrays,
    Rows,
    compact_lines,
    line_bounds,
)
from candiag.capture.formats.candump.fixed_layout import decode_fixed_layout
from candiag.capture.formats.candump.per_line import decode_per_line
from candiag.capture.formats.candump.shape_groups import decode_shape_groups
from candiag.capture.source import BLANK_BYTES
from candiag.capture.stats import MalformedLine
from candiag.ingest.frames import ChannelTable, FrameBatch


@dataclass
class ParsedChunk:
    """Result of parsing one block of complete lines."""

    batch: FrameBatch
    lines: int
    malformed: list[MalformedLine]
    blank: int = 0  # lines with nothing but whitespace (counted in ``lines``)


def parse_candump(
    data: bytes | bytearray | memoryview | U8,
    *,
    first_line: int = 1,
    channels: list[str] | None = None,
) -> ParsedChunk:
    """Parse complete candump ``-L`` lines (a trailing line without ``\\n`` is accepted).

    ``first_line`` is the file line number of the first line (for error reports);
    ``channels`` is the caller's channel table, extended in place so that channel
    indices stay stable across the chunks of one file.
    """
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if len(buf) and buf[-1] != NL:
        buf = np.concatenate([buf, np.array([NL], np.uint8)])
    nl = np.flatnonzero(buf == NL)
    return parse_lines(buf, nl, first_line=first_line, channels=channels)


def parse_lines(
    buf: U8,
    nl: Rows,
    *,
    first_line: int = 1,
    channels: list[str] | None = None,
) -> ParsedChunk:
    """Parse ``buf`` whose lines end at the newline positions ``nl`` (see parse_candump).

    Blank lines (nothing but ASCII whitespace) are neither frames nor malformed: they
    are counted in ``ParsedChunk.blank`` and cost a few vector operations, never a pass
    of the line parsers (a gigabyte of newlines is read at memory speed).
    """
    table = channels if isinstance(channels, ChannelTable) else ChannelTable(channels or ())
    n = len(nl)
    starts, ends = line_bounds(buf, nl)
    blank = _blank_lines(buf, starts, ends)
    keep: Rows | None = None
    if blank is not None:
        keep = np.flatnonzero(~blank)
        buf, starts, ends = compact_lines(buf, starts[keep], ends[keep])
    out = ChunkArrays(len(starts))
    done = decode_fixed_layout(buf, starts, ends, out, table) if len(starts) else out.valid
    malformed: list[MalformedLine] = []
    if not done.all():
        malformed = decode_leftovers(
            buf, starts, ends, np.flatnonzero(~done), out, table, first_line
        )
    if keep is not None:
        for item in malformed:  # back to the numbers of the lines in the file
            item.line = first_line + int(keep[item.line - first_line])
    if channels is not None and channels is not table:
        channels[len(channels) :] = table[len(channels) :]
    return ParsedChunk(out.batch(table), n, malformed, blank=n - len(starts))


def decode_leftovers(
    buf: U8,
    starts: I64,
    ends: I64,
    rows: Rows,
    out: ChunkArrays,
    channels: ChannelTable,
    first_line: int,
) -> list[MalformedLine]:
    """The ``rows`` the fixed-layout tier left: the shape-grouped tier, then the per-line
    tier for what is still left; returns the malformed lines.

    Over every line of a chunk (``rows`` all of them) this is the reader without its
    fastest tier, the reference that tier is tested against.
    """
    if len(rows) == len(starts):
        out.reset()  # the fixed-layout tier may have left its arrays there
        grouped = decode_shape_groups(buf, starts, ends, out, channels)
        return decode_per_line(
            buf, starts, ends, np.flatnonzero(~grouped), out, channels, first_line
        )
    sub = ChunkArrays(len(rows))
    sub_buf, sub_starts, sub_ends = compact_lines(buf, starts[rows], ends[rows])
    grouped = decode_shape_groups(sub_buf, sub_starts, sub_ends, sub, channels)
    malformed = decode_per_line(
        sub_buf, sub_starts, sub_ends, np.flatnonzero(~grouped), sub, channels, first_line, rows
    )
    out.merge(rows, sub)
    return malformed


def _blank_lines(buf: U8, starts: I64, ends: I64) -> npt.NDArray[np.bool_] | None:
    """Which lines hold nothing but whitespace; None when none does (the usual capture)."""
    if not len(starts):
        return None
    blank = ends <= starts
    # A frame line starts with '(': only lines starting with whitespace need a closer look.
    first = buf[np.minimum(starts, len(buf) - 1)]
    spaced = ~blank & BLANK_BYTES[first]
    if spaced.any():
        rows = np.flatnonzero(spaced)
        if len(rows) <= 64:
            for i in rows.tolist():
                blank[i] = BLANK_BYTES[buf[starts[i] : ends[i]]].all()
        else:
            content = np.zeros(len(buf) + 1, np.int64)
            np.cumsum(~BLANK_BYTES[buf], out=content[1:])
            blank[rows] = content[ends[rows]] == content[starts[rows]]
    return blank if blank.any() else None
