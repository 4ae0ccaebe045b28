"""Test helper: a FrameBatch from python-can messages, the way the live path builds one.

The package builds batches from messages only through :class:`BatchBuilder` (the live
per-message path); tests that hold a list of messages use this shorthand for it.
"""

from __future__ import annotations

from collections.abc import Iterable

import can

from candiag.ingest.frames import BatchBuilder, FrameBatch


def batch_of(messages: Iterable[can.Message], default_channel: str = "can0") -> FrameBatch:
    """``messages`` as one batch (messages without a channel go to ``default_channel``)."""
    builder = BatchBuilder(default_channel=default_channel)
    for msg in messages:
        builder.add(msg)
    return builder.build()
