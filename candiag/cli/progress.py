"""Progress of long commands (``analyze``, ``decode``, ``simulate -o``): rich, on stderr.

Shown only when stderr is a terminal and ``--quiet`` was not given: a pipe or a log file
never receives bar redraws, and the command's own output (stdout) is never touched.  The
bar is transient: once the work is done it is gone and the command's summary follows.

A capture file's progress is its stored bytes read (compressed bytes for ``.gz``), the only
figure known before the end; standard input has no size, so it shows frames read and time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from candiag.capture import CaptureReader
    from candiag.ingest.frames import FrameBatch

#: ``update(completed, total, frames)``: ``total`` None when not known.
Update = Callable[[float, float | None, int], None]


def shown(quiet: bool) -> bool:
    """Whether a progress display goes to stderr (a terminal, and not ``--quiet``)."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress(description: str, *, quiet: bool, unit: str = "MB") -> Iterator[Update]:
    """A transient bar on stderr; yields ``update``.  A no-op when not :func:`shown`."""
    if not shown(quiet):
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        refresh_per_second=4,
    )
    task = bar.add_task(description, total=None, figures="")

    def update(completed: float, total: float | None, frames: int) -> None:
        done = f"{completed:,.1f}/{total:,.1f} {unit}" if total else ""
        figures = f"{done}  {frames:,} frames" if done else f"{frames:,} frames"
        bar.update(task, completed=completed, total=total, figures=figures)

    with bar:
        yield update


def _ignore(_completed: float, _total: float | None, _frames: int) -> None:
    pass


def capture_batches(
    reader: CaptureReader, batches: Iterator[FrameBatch], update: Update
) -> Iterator[FrameBatch]:
    """``batches`` unchanged, reporting the capture's stored bytes read after each one."""
    frames = 0
    for batch in batches:
        frames += len(batch)
        position = reader.source.progress()
        if position is None:
            update(0, None, frames)
        else:
            read, size = position
            update(read / 1e6, max(size, read) / 1e6, frames)
        yield batch
