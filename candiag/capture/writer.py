"""Recording files: candump ``-L`` text written durably, rotated, with the recording metadata.

This is the plumbing around the format (:mod:`candiag.capture.formats.candump.formatter`
makes the text), as python-can keeps ``io/logger.py``'s rotation and compression apart
from ``io/canutils.py``: file names and rotation by size or time, never overwriting a
file, gzip written by hand so its header carries the metadata, flushes and ``fsync`` on
a schedule, and a file cut back to whole lines when a write fails.  The recorder
(:mod:`candiag.capture.recorder`), ``candiag simulate -o`` and the monitor's ``w`` write
through :class:`CandumpWriter`.
"""

from __future__ import annotations

import errno
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from candiag.capture.formats.candump.formatter import format_candump
from candiag.capture.metadata import RecordingMetadata, gzip_header, sidecar_path, write_sidecar
from candiag.errors import InputError, RecordingError
from candiag.ingest.frames import FrameBatch

# Rotation passes over numbers another file took; this many in a row is not a race but a
# folder full of them (the writer says so instead of searching on).
_MAX_TAKEN_NUMBERS = 10_000


class _WriteFully:
    """A file whose ``write`` writes everything or raises.

    An unbuffered file may write part of the data (a disk filling up); a compressed
    stream that went on after such a short count would be silently corrupt.
    """

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += self.raw.write(view[done:])
        return done

    def flush(self) -> None:
        self.raw.flush()


class _GzipMember:
    """One gzip member written by hand: header, raw deflate stream, CRC-32 and size trailer.

    :class:`gzip.GzipFile` cannot write the header's FCOMMENT field, which carries the
    recording metadata (:func:`candiag.capture.metadata.gzip_header`); the stream itself is
    what ``GzipFile`` writes (zlib level 9, ``Z_SYNC_FLUSH`` points, RFC 1952 trailer).
    """

    def __init__(self, out: _WriteFully, header: bytes) -> None:
        self.out = out
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        out.write(header)

    def write(self, data: bytes) -> None:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        compressed = self._deflate.compress(data)
        if compressed:
            self.out.write(compressed)

    def sync_flush(self) -> None:
        """A point up to which the file decodes without a trailer."""
        self.out.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def close(self) -> None:
        trailer = struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)
        self.out.write(self._deflate.flush(zlib.Z_FINISH) + trailer)


class CandumpWriter:
    """Writes batches as candump ``-L`` text to ``.log`` or ``.log.gz`` files.

    * Rotation: with ``rotate_bytes`` (on-disk size) and/or ``rotate_seconds`` the
      files are numbered ``<stem>.0001.log[.gz]``, ``<stem>.0002...``; a file is
      closed at the first batch boundary past the limit.  Without rotation the
      file is exactly ``path``.  Existing files are never overwritten: a rotating
      recording starts after the highest number already in the folder and passes
      over any number taken meanwhile (a file, or a ``.log`` file's metadata sidecar),
      so a name that exists never stops it; without rotation an existing ``path`` is
      refused before anything is recorded.
    * Durability: data is flushed (gzip: ``Z_SYNC_FLUSH``, so the file decodes up to
      that point without a trailer) and ``fsync``-ed once ``flush_interval`` has
      passed since the last flush, on :meth:`write` or :meth:`flush_if_due`.  A
      caller whose writes may stop (a silent bus) calls ``flush_if_due()``
      periodically; the recorder does so every 0.1 s, so a power cut loses at most
      ``flush_interval`` seconds.
    * Errors: any ``OSError`` (disk full, permission) becomes :class:`RecordingError`
      naming the file and the fix, and the file is cut back so that it never ends in a
      torn line (which a reader would report as malformed, or parse as a shorter
      frame): ``.log`` to its last complete line, ``.log.gz`` to its last flush point.
      The file is written unbuffered (one ``write`` per batch): a killed process
      loses nothing it wrote, and nothing can land after that cut.
    * Metadata: with ``metadata`` every file (each rotated one too) carries the recording
      metadata, stamped with the time it was opened: ``.log.gz`` in its gzip header's
      comment, ``.log`` in a sidecar ``<file>.meta.json`` written before the first frame
      (:mod:`candiag.capture.metadata`; an existing sidecar is never overwritten either).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        rotate_bytes: int | None = None,
        rotate_seconds: float | None = None,
        flush_interval: float = 1.0,
        fsync: bool = True,
        clock: Callable[[], float] = time.monotonic,
        metadata: RecordingMetadata | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        path = Path(path)
        name = path.name
        if name.endswith(".log.gz"):
            self._stem, self._suffix = name[: -len(".log.gz")], ".log.gz"
        elif name.endswith(".log"):
            self._stem, self._suffix = name[: -len(".log")], ".log"
        else:
            raise InputError(
                f"{path}: a recording must end in .log or .log.gz (candump -L text); "
                "rename the output file"
            )
        if rotate_bytes is not None and rotate_bytes <= 0:
            raise InputError(f"rotate size must be positive, got {rotate_bytes} bytes")
        if rotate_seconds is not None and rotate_seconds <= 0:
            raise InputError(f"rotate time must be positive, got {rotate_seconds} s")
        self._dir = path.parent
        self._path = path
        self._rotating = rotate_bytes is not None or rotate_seconds is not None
        self._rotate_bytes = rotate_bytes
        self._rotate_seconds = rotate_seconds
        self._flush_interval = flush_interval
        self._fsync = fsync
        self._clock = clock
        self._wall_clock = wall_clock
        self.metadata = metadata
        self.frames_written = 0
        self.files: list[Path] = []
        self._raw: BinaryIO | None = None
        self._gz: _GzipMember | None = None
        self._dirty = False
        self._safe_size = 0  # file bytes ending on a whole line (.log.gz: at a sync point)
        self._opened_at = 0.0
        self._flushed_at = 0.0
        self._rotated = False  # the next file is opened on the next frames, never empty
        self._number = self._first_free_number() if self._rotating else 0
        self._open_next()

    @property
    def current(self) -> Path:
        """The file being written."""
        return self.files[-1]

    def _first_free_number(self) -> int:
        """One above the highest ``<stem>.NNNN<suffix>`` (or its sidecar) in the folder."""
        pattern = re.compile(
            re.escape(self._stem) + r"\.(\d{4,})" + re.escape(self._suffix) + r"(?:\.meta\.json)?"
        )
        try:
            names = os.listdir(self._dir)
        except OSError:
            return 1  # opening the first file reports what is wrong with the folder
        taken = [int(m.group(1)) for name in names if (m := pattern.fullmatch(name))]
        return max(taken, default=0) + 1

    def _open_next(self) -> None:
        target, raw = self._create_next()
        metadata = self.metadata.stamped(self._wall_clock()) if self.metadata else None
        try:
            if self._suffix == ".log.gz":
                self._gz = _GzipMember(_WriteFully(raw), gzip_header(metadata))
            elif metadata is not None:
                write_sidecar(target, metadata, fsync=self._fsync)
        except BaseException as err:
            raw.close()
            target.unlink(missing_ok=True)  # nothing recorded into it yet
            if isinstance(err, FileExistsError):
                raise RecordingError(
                    f"{sidecar_path(target)}: metadata file already exists (left from an "
                    "earlier recording?); move it away or choose another --output name"
                ) from None
            if isinstance(err, OSError):
                raise self._error(target, err, opening=True) from err
            raise
        self._raw = raw
        self._number += 1
        self.files.append(target)
        self._opened_at = self._flushed_at = self._clock()
        self._dirty = False
        self._safe_size = raw.tell()  # .log.gz: its header stays, whatever comes after

    def _create_next(self) -> tuple[Path, BinaryIO]:
        """Create the next file (``x``: never over an existing one), passing over taken numbers."""
        for _ in range(_MAX_TAKEN_NUMBERS):
            target = (
                self._dir / f"{self._stem}.{self._number:04d}{self._suffix}"
                if self._rotating
                else self._path
            )
            if self._rotating and self._sidecar_taken(target):
                self._number += 1
                continue
            try:
                # Unbuffered: kept open across writes, closed in close(); see Errors above.
                return target, open(target, "xb", buffering=0)
            except FileExistsError:
                if not self._rotating:
                    raise RecordingError(
                        f"{target}: file already exists; choose another --output name or move "
                        "the old recording away (candiag never overwrites a capture)"
                    ) from None
                self._number += 1
            except OSError as err:
                raise self._error(target, err, opening=True) from err
        raise RecordingError(
            f"{self._dir}: {_MAX_TAKEN_NUMBERS} numbers after {self._stem}.{self._number:04d}"
            f"{self._suffix} are all taken; choose another --output name"
        )

    def _sidecar_taken(self, target: Path) -> bool:
        return (
            self.metadata is not None and self._suffix == ".log" and sidecar_path(target).exists()
        )

    def _error(self, target: Path, err: OSError, *, opening: bool = False) -> RecordingError:
        """The error in words, with the fix that fits its cause (not always disk space)."""
        reason = err.strerror or str(err)
        kept = "" if opening else " Everything up to the last flush is in the file."
        if err.errno == errno.ENOENT and not target.parent.is_dir():
            fix = f"the folder {target.parent} does not exist; create it or choose another --output"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR):
            fix = "choose a writable --output path"
        elif err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = "free disk space or choose a writable --output directory"
        else:
            fix = "check the disk, or choose another --output directory"
        return RecordingError(f"{target}: cannot write the recording ({reason}); {fix}.{kept}")

    def write(self, batch: FrameBatch) -> None:
        """Append ``batch``; flush and rotate when due."""
        if len(batch) and self._raw is None:
            if not self._rotated:
                raise RecordingError(f"{self.current}: the writer is closed; this is a candiag bug")
            self._rotated = False
            self._open_next()
        if len(batch) and self._raw is not None:
            data = format_candump(batch)
            try:
                if self._gz is not None:
                    self._gz.write(data)
                else:
                    self._write_lines(self._raw, data)
            except OSError as err:
                self._abandon()
                raise self._error(self.current, err) from err
            self.frames_written += len(batch)
            self._dirty = True
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush if the last flush is ``flush_interval`` old; rotate when a limit is reached."""
        if self._raw is None:
            return
        now = self._clock()
        if self._dirty and now - self._flushed_at >= self._flush_interval:
            self.flush()
        if self._rotation_due(now):
            self._close_current()
            self._rotated = True

    def _rotation_due(self, now: float) -> bool:
        if self._rotate_seconds is not None and now - self._opened_at >= self._rotate_seconds:
            return True
        if self._rotate_bytes is None or self._raw is None:
            return False
        return self._raw.tell() >= self._rotate_bytes

    def flush(self) -> None:
        """Push everything written so far to disk (gzip: a sync-flush point)."""
        if self._raw is None:
            return
        try:
            if self._gz is not None:
                self._gz.sync_flush()
            self._raw.flush()
            if self._fsync:
                os.fsync(self._raw.fileno())
        except OSError as err:
            self._abandon()
            raise self._error(self.current, err) from err
        if self._gz is not None:
            self._safe_size = self._raw.tell()
        self._flushed_at = self._clock()
        self._dirty = False

    def _close_current(self) -> None:
        raw, gz = self._raw, self._gz
        self._raw = self._gz = None
        if raw is None:
            return
        try:
            if gz is not None:
                gz.close()
            raw.flush()
            if self._fsync:
                os.fsync(raw.fileno())
        except OSError as err:
            self._raw, self._gz = raw, gz
            self._abandon()
            raise self._error(self.files[-1], err) from err
        raw.close()

    def _write_lines(self, raw: BinaryIO, data: bytes) -> None:
        """Write all of ``data`` (an unbuffered file may take part of it per call)."""
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += raw.write(view[done:])
        finally:
            # Whole lines that reached the file stay in it, even when the rest failed.
            self._safe_size += data.rfind(b"\n", 0, done) + 1

    def _abandon(self) -> None:
        """After a write error: cut the file back to its last whole line and close it."""
        raw = self._raw
        self._raw = self._gz = None  # the member is dropped: no trailer after the cut
        if raw is None:
            return
        try:
            os.ftruncate(raw.fileno(), self._safe_size)
        except OSError:
            pass  # the original error is the one to report; a reader flags a torn last line
        finally:
            raw.close()

    def close(self) -> None:
        """Flush and close the current file (idempotent)."""
        self._rotated = False
        self._close_current()

    def discard(self) -> None:
        """Close and delete what was opened, metadata sidecars too: for a recording that
        never started (its bus could not be opened).  Refused once frames were written."""
        if self.frames_written:
            raise RecordingError(f"{self.current}: holds recorded frames; not deleting it")
        self.close()
        for path in self.files:
            path.unlink(missing_ok=True)
            if self.metadata is not None and self._suffix == ".log":
                sidecar_path(path).unlink(missing_ok=True)

    def __enter__(self) -> CandumpWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
