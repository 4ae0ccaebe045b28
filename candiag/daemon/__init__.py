"""The daemon: ``candiag run`` (its configuration is :mod:`candiag.config`).

* :mod:`~candiag.daemon.monitor`     one bus's live analysis (the shared BusPipeline)
* :mod:`~candiag.daemon.service`     readers, pollers, the processing loop, /metrics, signals
* :mod:`~candiag.daemon.readers`     the bus reader as the daemon sees it
* :mod:`~candiag.daemon.adapters`    Modbus poller state to metric snapshots
* :mod:`~candiag.daemon.simulation`  the ``[simulator]`` section (demo and tests only)
* :mod:`~candiag.daemon.notify`      systemd notify (READY, STATUS, WATCHDOG, STOPPING)
* :mod:`~candiag.daemon.logging`     key=value event lines with repeat summaries
"""
