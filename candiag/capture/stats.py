"""What reading a capture found, besides its frames: :class:`CaptureStats` and the lines skipped.

Every reader reports into one :class:`CaptureStats` (the methods format readers call are
:class:`~candiag.capture.formats.rows.Sink`); ``candiag analyze`` puts it in its report
(``capture`` in the JSON), ``candiag decode`` prints :meth:`CaptureStats.summary`.  Nothing
read is silently dropped: every line is a frame, a blank line, a malformed line (counted,
the first ten kept as :class:`MalformedLine`), a record that is not a frame (counted by
kind), or past the point where a reader that cannot resume stopped (said with how much).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from candiag.capture import detect as detection
from candiag.ingest.frames import MAX_CHANNELS, OVERFLOW_CHANNEL

MAX_EXAMPLES = 10


@dataclass
class MalformedLine:
    """A capture line that was skipped: 1-based line number, why, and its text."""

    line: int
    reason: str
    text: str


@dataclass
class CaptureStats:
    """What reading a capture found; complete once ``batches()`` is exhausted.

    ``lines`` counts text lines (records for BLF/MF4); ``malformed`` the lines or records
    skipped, ``examples`` the first ten of them; ``blank`` the lines with nothing but
    whitespace (neither frames nor malformed).  ``overflow_frames``: frames whose channel
    name came after the first :data:`~candiag.ingest.frames.MAX_CHANNELS` distinct ones,
    read into the one channel :data:`~candiag.ingest.frames.OVERFLOW_CHANNEL`.
    ``not_frames`` counts records that are not CAN frames (ASC statistics, TRC status
    rows, BLF objects of other types) by kind.
    ``stopped_at``/``unread``: where a reader that cannot resume (a damaged BLF or MF4
    file) stopped, and how much was left (``None``: not known) in ``unread_unit``.
    """

    path: str
    lines: int = 0
    frames: int = 0
    malformed: int = 0
    blank: int = 0
    examples: list[MalformedLine] = field(default_factory=list)  # the first 10
    format: str = ""
    format_reason: str = ""
    truncated: bool = False  # gzip without its end marker (recording cut short)
    note: str = ""  # why reading stopped early, when it did
    not_frames: dict[str, int] = field(default_factory=dict)
    stopped_at: int | None = None
    unread: int | None = None
    unread_unit: str = ""
    overflow_frames: int = 0

    def add_malformed(self, items: list[MalformedLine]) -> None:
        self.malformed += len(items)
        room = MAX_EXAMPLES - len(self.examples)
        if room > 0:
            self.examples.extend(items[:room])

    # -- what format readers report (candiag.capture.formats.rows.Sink) --------------------
    def bad_line(self, line: int, reason: str, text: str) -> None:
        self.add_malformed([MalformedLine(line, reason, text[:200])])

    def not_a_frame(self, kind: str, count: int = 1) -> None:
        self.not_frames[kind] = self.not_frames.get(kind, 0) + count

    def stopped(self, at: int, unread: int | None, unit: str, reason: str) -> None:
        self.stopped_at, self.unread, self.unread_unit = at, unread, unit
        self.note = f"{reason}; {self.stop_text()}"

    def stop_text(self) -> str:
        """``reader stopped at record N, M records not read`` (empty when it did not stop)."""
        if self.stopped_at is None:
            return ""
        unit = self.unread_unit or "records"
        where = f"reader stopped at {unit.rstrip('s')} {self.stopped_at}"
        if self.unread is None:
            return f"{where}; the rest of the file was not read"
        return f"{where}, {self.unread} {unit} not read"

    def overflow_text(self) -> str:
        """What the channel cap did, in words (empty when it did nothing)."""
        if not self.overflow_frames:
            return ""
        return (
            f"more than {MAX_CHANNELS} channel names: the frames of every name after the "
            f"first {MAX_CHANNELS} ({self.overflow_frames} frames) are read into one channel "
            f"'{OVERFLOW_CHANNEL}', whose figures are not those of one bus"
        )

    def summary(self) -> str:
        """One human line, then details: format, malformed lines, what was not read."""
        text = f"{self.path}: {self.frames} frames from {self.lines} lines"
        if self.malformed:
            text += f", {self.malformed} malformed lines skipped"
        if self.blank:
            text += f", {self.blank} blank lines"
        if self.format:
            text += f"\n  read as {detection.NAMES.get(self.format, self.format)}"
            text += f" ({self.format_reason})" if self.format_reason else ""
        text += "".join(f"\n  line {m.line}: {m.reason}: {m.text!r}" for m in self.examples)
        if self.not_frames:
            kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(self.not_frames.items()))
            text += f"\n  not CAN frames, counted and skipped: {kinds}"
        if self.truncated:
            text += (
                "\n  the gzip stream ends early (recording cut short); read up to its last flush"
            )
        if self.stopped_at is not None:
            text += f"\n  {self.note or self.stop_text()}"
        elif self.note:
            text += f"\n  {self.note}"
        if self.overflow_frames:
            text += f"\n  {self.overflow_text()}"
        return text
