"""Reading a capture ahead of its consumer, in a thread.

``analyze`` alternates between reading a capture (file blocks, line splitting, parsing:
I/O and numpy, which release the GIL for much of their time) and folding the batches into
the trackers.  With the next chunk read and parsed in a thread while the trackers work on
this one, the two overlap on a second core: the 1,000,000-frame reference capture's
analysis took 13 % less (``bench/bench_analyze.py``, 0.66 s -> 0.58 s on this project's
2-core machine).  At most ``depth`` parsed batches wait, so memory stays bounded.

An error while reading is raised in the consumer, where it would have been raised
without the thread; a consumer that stops early (an error of its own, Ctrl-C) stops the
reader at its next batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# How long the reader waits for room before it looks whether the consumer stopped, and how
# long a stopping consumer waits for the reader (a read of a pipe may block for longer: the
# thread is a daemon, and exits with the process).
POLL_S = 0.1
JOIN_S = 1.0


@dataclass(frozen=True)
class _Item(Generic[T]):
    batch: T | None = None  # None: the end
    error: Exception | None = None


def read_ahead(
    batches: Iterator[T], depth: int = 2, *, threaded: bool = True
) -> Generator[T, None, None]:
    """The items of ``batches`` (batches, or batches with what the thread computed of
    them), read in a thread up to ``depth`` items ahead.

    ``threaded=False`` reads them in the consumer, for standard input: a thread blocked on
    an open pipe cannot be stopped, and at interpreter exit it still holds the stdin lock,
    so a Ctrl-C ended in "Fatal Python error" and a core instead of exit code 130 (a review).
    """
    if not threaded:
        yield from batches
        return
    slots: queue.Queue[_Item[T]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: _Item[T]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not hand_over(_Item(batch)):
                    return
            hand_over(_Item[T]())
        except Exception as err:  # raised again in the consumer, with its traceback
            hand_over(_Item(error=err))

    thread = threading.Thread(target=produce, name="candiag-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item.error is not None:
                raise item.error
            if item.batch is None:
                return
            yield item.batch
    finally:
        stop.set()
        thread.join(JOIN_S)
