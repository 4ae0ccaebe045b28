"""candiag: diagnostics for the internal CAN and Modbus RS-485 links of DC fast EV chargers.

Packages, one per concern:

* :mod:`candiag.ingest`    frames in: live python-can buses, capture readers and recorders
* :mod:`candiag.decode`    DBC loading (with address masks) and the vectorized decoder
* :mod:`candiag.health`    error frames, bus state, bus load, sliding windows, nodes, firmware
* :mod:`candiag.modbus`    meter profiles, polling, link health, simulated meters
* :mod:`candiag.metrics`   Prometheus collectors and the HTTP(S) endpoint
* :mod:`candiag.diagnosis` findings with causes and fixes
* :mod:`candiag.sim`       the simulated charger (the only code that transmits)
* :mod:`candiag.config`    configuration: the model, loading, checks, one problems format
* :mod:`candiag.daemon`    ``candiag run``
* :mod:`candiag.cli`       the command line
"""

__version__ = "0.1.0"
