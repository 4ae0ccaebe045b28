"""Frames and live buses: the frame batch every layer works on, and listen-only bus readers.

* :mod:`.frames`: :class:`~candiag.ingest.frames.FrameBatch` (frames as numpy arrays),
  the channel table, :class:`~candiag.ingest.frames.BatchBuilder` for python-can messages;
* :mod:`.live`: opening buses listen-only, the reader thread that survives losing them;
* :mod:`.socketcan_bulk`: SocketCAN received many frames per system call.

Capture files (reading, writing, recording a live bus into them) are
:mod:`candiag.capture`'s, which builds on this package; nothing here imports it.
"""
