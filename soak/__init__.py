"""Soak test of the daemon: ``make soak`` (``python -m soak``); see :mod:`soak.harness`."""
