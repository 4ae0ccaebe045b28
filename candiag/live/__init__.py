"""The live engine: buses and meters analysed as frames arrive, for every front-end.

Owns the runtime ``candiag run`` (the daemon), ``candiag monitor`` and ``candiag demo``
share: sources -> one bus object per bus -> diagnosis -> snapshot, one loop for all three
(python-can's single ``Notifier`` serving a logger, a viewer and a bridge is the model).
The front-ends only decide what to do with the result: :mod:`candiag.daemon` exports it
as a systemd service, :mod:`candiag.tui` shows it, ``candiag demo`` prints it.

* :mod:`~candiag.live.engine`      :class:`LiveEngine`: start/stop the parts, one
                                   :meth:`~LiveEngine.step`, hooks for reset, pause, recording
* :mod:`~candiag.live.bus`         :class:`LiveBus`: one bus's source, analysis, link state,
                                   its one report and its metrics snapshot
* :mod:`~candiag.live.readers`     frame sources (listen-only readers, SocketCAN link statistics)
* :mod:`~candiag.live.clock`       live time that never steps; frame timestamps mapped onto it
* :mod:`~candiag.live.adapters`    Modbus poller state to metric snapshots
* :mod:`~candiag.live.simulation`  the ``[simulator]`` section's in-process charger and meters
                                   (demo and tests only; the only code here that transmits,
                                   on a ``virtual`` bus)
"""
