"""Bus health: error-frame classes, bus state, exact bus load, sliding windows, ids, nodes, firmware.

Modules (all vectorized over :class:`~candiag.ingest.frames.FrameBatch` arrays; the same
code serves live batches and captures):

* :mod:`~candiag.health.errorframes` SocketCAN error frames: classes, sub-fields, TEC/REC
* :mod:`~candiag.health.busstate`    error-active/-warning/-passive, bus-off, restarts, time in state
* :mod:`~candiag.health.busload`     exact bits per frame (``canbusload -e``) and load ratios
* :mod:`~candiag.health.bitrate`     standard rates, the default, inference from timestamps
* :mod:`~candiag.health.windows`     10 s / 60 s / 300 s / 3600 s per-second ring windows
* :mod:`~candiag.health.ids`         per-id count, period, jitter and cycle-time keeping
* :mod:`~candiag.health.linkstats`   netlink link statistics (``ip -json``), interface drops
* :mod:`~candiag.health.pcan`        PCAN status codes, exceptions and PEAK error frames
* :mod:`~candiag.health.bus`         the frame-level parts above for one bus; split by channel
* :mod:`~candiag.health.nodes`, :mod:`~candiag.health.signals` node presence, firmware, signals
* :mod:`~candiag.health.pipeline`    everything for one bus, decoding included (analyze, daemon, monitor)
* :mod:`~candiag.health.arrays`      array steps the trackers share (runs of equal keys)
"""
