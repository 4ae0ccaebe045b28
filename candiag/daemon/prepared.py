"""A configuration with every file it names loaded and checked: all a (re)start needs.

The same loader serves the start (a bad file is a clean error exit) and ``SIGHUP``
reloads (a bad file is logged and counted, the running configuration kept): the config,
the buses' DBCs, the diagnosis thresholds, the metrics web config (:mod:`candiag.config.check`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from candiag.config.check import check_config, load_and_check
from candiag.config.model import Config

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase
    from candiag.diagnosis.engine import DiagnosisEngine
    from candiag.metrics.webconfig import WebConfig


@dataclass(frozen=True)
class PreparedConfig:
    """A config with every file it names loaded and checked: all a (re)start needs."""

    config: Config
    databases: Mapping[str, ChargerDatabase]
    engine: DiagnosisEngine
    web: WebConfig | None


def prepare(config: Config) -> PreparedConfig:
    """Load and check every file ``config`` names, as ``check-config`` does
    (:func:`candiag.config.check.check_config`)."""
    from candiag.diagnosis.engine import DiagnosisEngine

    checked = check_config(config)
    return PreparedConfig(
        config, checked.databases, DiagnosisEngine(book=checked.rulebook), checked.web
    )


def prepare_config(path: str | os.PathLike[str]) -> PreparedConfig:
    """Read the config file (meter profiles included) and :func:`prepare` it.

    Raises :class:`ConfigError` (or another :class:`CandiagError`) naming the file and
    what is wrong, whatever the loaders raised.
    """
    from candiag.diagnosis.engine import DiagnosisEngine

    checked = load_and_check(path)
    return PreparedConfig(
        checked.config, checked.databases, DiagnosisEngine(book=checked.rulebook), checked.web
    )
