"""The demo's configuration: ``config/demo.toml`` with the command line's changes.

``candiag demo`` and ``candiag monitor --demo`` both start from it (one function, so the
two commands accept the same scenarios and say the same thing about a bad one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from candiag.config.listen import split_listen
from candiag.config.load import load_config
from candiag.config.model import Config
from candiag.config.problems import did_you_mean
from candiag.errors import InputError


def default_demo_config() -> Path:
    """``config/demo.toml`` of the source tree (the editable install ``make`` sets up), or
    the copy packaged in the wheel (candiag/data/demo.toml) when candiag was installed
    with pip or pipx: ``candiag demo`` works in both."""
    source_tree = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
    if source_tree.is_file():
        return source_tree
    return Path(__file__).resolve().parents[1] / "data" / "demo.toml"


def demo_config(
    path: str | Path | None = None, *, scenario: str | None = None, listen: str | None = None
) -> Config:
    """The demo config at ``path`` (default: :func:`default_demo_config`), its simulator
    playing ``scenario`` and its metrics on ``listen`` when given."""
    path = Path(path) if path else default_demo_config()
    config = load_config(path)
    simulator = config.simulator
    if simulator is None:
        raise InputError(
            f"{path}: a demo config needs a [simulator] section (see config/demo.toml)"
        )
    if listen:
        try:
            host, port = split_listen(listen)
        except ValueError as err:
            raise InputError(
                f"--listen {listen!r}: {err}; use HOST:PORT, e.g. 127.0.0.1:9847"
            ) from None
        config = dataclasses.replace(
            config, metrics=dataclasses.replace(config.metrics, host=host, port=port)
        )
    if scenario:
        from candiag.sim.scenarios import all_scenario_names

        names = all_scenario_names()
        if scenario not in names:
            hint = did_you_mean(scenario, names)
            raise InputError(
                f"unknown scenario {scenario!r}; choose one of {', '.join(names)}"
                + (f" ({hint})" if hint else "")
            )
        config = dataclasses.replace(
            config, simulator=dataclasses.replace(simulator, scenario=scenario)
        )
    return config
