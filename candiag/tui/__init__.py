"""The technician's live terminal view (``candiag monitor``).

* :mod:`candiag.tui.view`      pure functions from bus reports, meters and findings to
                               rich renderables and to plain text lines (testable without
                               a terminal);
* :mod:`candiag.tui.session`   the live engine (:mod:`candiag.live`, the same the daemon
                               runs) for the sources (live adapter, config, simulated
                               charger), its reset and pause, the optional candump recording;
* :mod:`candiag.tui.idtracker` per-identifier counts, periods, last bytes and changed
                               bytes, fed batch by batch with numpy (the raw view);
* :mod:`candiag.tui.rawview`   the raw view's model: a tracker per bus, the ``--filter``,
                               names and decoded values of each identifier's last frame;
* :mod:`candiag.tui.terminal`  non-blocking key reading in cbreak mode, always restored;
* :mod:`candiag.tui.app`       the processing loop, key handling and output (rich ``Live``
                               on a terminal, periodic plain lines otherwise).

Nothing here transmits: buses are opened through :mod:`candiag.ingest.live` (listen-only,
``send`` refused); only the in-process simulator of ``--demo`` sends, on a ``virtual``
channel.
"""
