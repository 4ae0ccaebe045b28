"""Modbus RS-485/TCP meters: profiles as data, read-only coalesced polling, link health, simulated meters.

* :mod:`candiag.modbus.profile`  meter profiles (``config/meters/*.toml``), block planning, decoding
* :mod:`candiag.modbus.config`   ``[[modbus.ports]]`` / ``[[modbus.ports.devices]]`` validation
* :mod:`candiag.modbus.link`     read-only RTU / RTU-over-TCP / Modbus TCP framing and classification
* :mod:`candiag.modbus.poller`   one thread per port, device health, fresh readings (``snapshot()``)
* :mod:`candiag.modbus.scan`     which unit ids answer at which serial settings
* :mod:`candiag.modbus.sim`      simulated meters (the only code that serves registers)
"""
