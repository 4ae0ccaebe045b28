"""Configuration in one place: the model, its loading and checks, and the problems toolkit.

Everything a config-like file of candiag goes through, so the daemon, the live view
(:mod:`candiag.tui`) and the command line read configs without importing
:mod:`candiag.daemon`:

* :mod:`~candiag.config.problems`  the one problems collector and message format
  (``file:line:col: key.path: expected X, found Y; fix``), used by every loader:
  ``candiag.toml`` (here), ``[[modbus.ports]]`` (:mod:`candiag.modbus.config`), meter
  profiles (:mod:`candiag.modbus.profile`), health thresholds
  (:mod:`candiag.health.thresholds`), diagnosis overrides (:mod:`candiag.diagnosis.engine`)
  and the YAML web config (:mod:`candiag.metrics.webconfig`)
* :mod:`~candiag.config.files`     reading a file: missing, not regular, too large, not UTF-8
* :mod:`~candiag.config.toml`      the one ``tomllib`` import, syntax errors at line:col,
  64-bit integers, where each key is
* :mod:`~candiag.config.model`     the frozen dataclasses (:class:`~candiag.config.model.Config`
  and its sections), typed all the way down
* :mod:`~candiag.config.load`      ``candiag.toml`` to a :class:`~candiag.config.model.Config`
* :mod:`~candiag.config.check`     every check ``run`` makes before it starts (the DBCs, the
  thresholds, the web config, the listen address): ``check-config``, ``run`` and a reload
  call :func:`~candiag.config.check.load_and_check`
* :mod:`~candiag.config.demo`      ``config/demo.toml`` with the command line's changes

Nothing here imports the daemon or a simulator: scenario names are read from the data files
(:mod:`candiag.sim.scenarios`).
"""
