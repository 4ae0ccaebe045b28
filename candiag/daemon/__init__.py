"""The daemon: ``candiag run`` as a systemd service (its work is :mod:`candiag.live`).

* :mod:`~candiag.daemon.service`   the processing loop around the live engine, /metrics,
                                   signals (SIGTERM stops, SIGHUP reloads), reloads
* :mod:`~candiag.daemon.prepared`  a configuration with every file it names loaded and checked
* :mod:`~candiag.daemon.notify`    systemd notify (READY, STATUS, WATCHDOG, STOPPING)
* :mod:`~candiag.daemon.logging`   key=value event lines with repeat summaries

Its configuration is :mod:`candiag.config`.
"""
