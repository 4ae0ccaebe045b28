"""Every check ``candiag run`` makes before it starts, in one function: :func:`check_config`.

``check-config``, ``run`` and a SIGHUP reload all call it, so a config that ``check-config``
passes is one ``run`` starts with, and a mistake is found before the daemon (re)starts,
never as a silently empty node table or a daemon that dies on reload. It checks what
:func:`~candiag.daemon.config.load_config` cannot see from the TOML alone:

* the DBCs of each bus: families exist, expected addresses fit the mask
  (:func:`check_against_dbc`);
* the diagnosis thresholds file (``[diagnosis] thresholds_file``), validated key by key
  (:func:`candiag.diagnosis.engine.load_rulebook`);
* the web config (``[metrics] web_config_file``) and its TLS material, loaded into an
  ``SSLContext`` exactly as the endpoint does (a key that does not match its certificate,
  an encrypted key, a file that is not PEM);
* the listen address: the host resolves and is an address of this machine.

Problems of every step are reported together, each with its file. The one thing left to
``run`` is whether the port is free (the running daemon itself may hold it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from candiag.daemon.config import Config
from candiag.errors import CandiagError, ConfigError, DbcError, one_line

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase
    from candiag.diagnosis.engine import RuleBook
    from candiag.metrics.webconfig import WebConfig

T = TypeVar("T")


@dataclass(frozen=True)
class CheckedConfig:
    """A config with everything it names loaded and checked."""

    config: Config
    databases: dict[str, ChargerDatabase]
    rulebook: RuleBook
    web: WebConfig | None


def load_and_check(path: str | os.PathLike[str]) -> CheckedConfig:
    """Read the config file (meter profiles included) and :func:`check_config` it: what
    ``check-config``, ``run`` and a reload all call, so they can never disagree."""
    from candiag.daemon.config import load_config

    config = loading(path, "the configuration", lambda: load_config(path))
    return check_config(config)


def check_config(config: Config) -> CheckedConfig:
    """Run every check ``run`` runs; one :class:`ConfigError` lists all problems found."""
    from candiag.diagnosis.engine import load_rulebook

    source = config.source or "<config>"
    dbc = ", ".join(str(p) for bus in config.buses for p in bus.dbc) or source
    thresholds = config.diagnosis.thresholds_file or source
    web_file = config.metrics.web_config_file or source
    errors: list[ConfigError] = []
    databases = _step(errors, dbc, "the DBC files", lambda: _check_dbcs(config))
    rulebook = _step(
        errors,
        thresholds,
        "the diagnosis thresholds",
        lambda: load_rulebook(config.diagnosis.thresholds_file),
    )
    web = _step(errors, web_file, "the metrics web config", lambda: _check_web_config(config))
    _step(errors, source, "the listen address", lambda: _check_listen(config))
    if errors:
        raise _together(errors)
    assert databases is not None and rulebook is not None
    return CheckedConfig(config, databases, rulebook, web)


def check_against_dbc(config: Config) -> dict[str, ChargerDatabase]:
    """The database of each bus (mask overrides applied), after every :func:`check_config`
    check passed (the name is older than the other checks; callers keep it)."""
    return check_config(config).databases


def loading(file: str | os.PathLike[str], what: str, load: Callable[[], T]) -> T:
    """``load()``; anything it raises becomes a :class:`ConfigError` naming ``file``.

    The one place config loading catches ``Exception``: a file can make a loader fail in a
    way it did not foresee (a YAML list where a string belongs: ``TypeError``; a non-ASCII
    bcrypt hash: ``UnicodeEncodeError``), and that must neither end a daemon running fine on
    its old configuration nor print a traceback at start.  Errors candiag words itself pass
    unchanged; ``BaseException`` (KeyboardInterrupt, SystemExit) is not caught.
    """
    try:
        return load()
    except CandiagError:
        raise
    except Exception as err:  # the boundary described above
        reason = one_line(f"{type(err).__name__}: {err}")
        raise ConfigError(f"{what} cannot be used ({reason}); fix the file", str(file)) from err


def _step(
    errors: list[ConfigError],
    file: str | os.PathLike[str],
    what: str,
    check: Callable[[], T],
) -> T | None:
    try:
        return loading(file, what, check)
    except ConfigError as err:
        errors.append(err)
        return None


def _together(errors: list[ConfigError]) -> ConfigError:
    if len(errors) == 1:
        return errors[0]
    return ConfigError(
        [f"{err.path}: {p}" if err.path else p for err in errors for p in err.problems]
    )


def _check_dbcs(config: Config) -> dict[str, ChargerDatabase]:
    """Each bus's DBCs: families exist, expected addresses fit the address mask."""
    from candiag.daemon.monitor import apply_mask_overrides
    from candiag.daemon.service import load_dbc

    problems: list[str] = []
    databases: dict[str, ChargerDatabase] = {}
    for i, bus in enumerate(config.buses):
        try:
            db = load_dbc(bus)
        except DbcError as err:
            where = f"can.buses[{i}].dbc" if bus.dbc else "reference DBCs"
            problems.append(f"{where}: {err}")
            continue
        try:
            db = apply_mask_overrides(db, bus.families)
        except DbcError as err:
            # Reported; the family checks below still run on the DBC as written.
            problems.append(
                f"can.buses[{i}].families: a mask override makes two messages share an "
                f"identifier ({err}); use the DBC's CandiagNodeMask or a narrower mask"
            )
        databases[bus.name] = db
        problems.extend(_family_problems(db, bus.families, f"can.buses[{i}]"))
    if problems:
        raise ConfigError(problems, path=config.source)
    return databases


def _family_problems(db: ChargerDatabase, families: Any, bus_path: str) -> list[str]:
    problems: list[str] = []
    for j, family in enumerate(families):
        path = f"{bus_path}.families[{j}]"
        messages = db.families.get(family.name)
        if not messages:
            known = ", ".join(sorted(db.families)) or "none"
            problems.append(
                f"{path}.name: expected a node family of the DBC files ({known}), "
                f"found {family.name!r}; check CandiagNodeFamily in the DBC or the name"
            )
            continue
        mask = family.mask if family.mask is not None else max(m.node_mask for m in messages)
        highest = mask >> ((mask & -mask).bit_length() - 1) if mask else 0
        too_big = [a for a in family.expected if a > highest]
        if too_big:
            problems.append(
                f"{path}.expected: expected addresses 0..{highest} (address mask 0x{mask:X}), "
                f"found {too_big}"
            )
    return problems


def _check_web_config(config: Config) -> WebConfig | None:
    """``[metrics] web_config_file`` with its TLS files loaded as the endpoint loads them."""
    if config.metrics.web_config_file is None:
        return None
    from candiag.metrics.webconfig import load_web_config

    web = load_web_config(config.metrics.web_config_file)
    web.ssl_context()
    return web


def _check_listen(config: Config) -> None:
    """``[metrics] listen`` resolves to an address of this machine (port 0: any port)."""
    from candiag.metrics.http import resolve_listen

    listen = config.metrics.listen
    try:
        family, sockaddr = resolve_listen(listen)
    except ConfigError as err:
        raise ConfigError(err.problems, path=config.source) from None
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.bind((sockaddr[0], 0, *sockaddr[2:]))
    except OSError as err:
        raise ConfigError(
            f"metrics.listen: cannot listen on {config.metrics.host} ({err.strerror}); give "
            "an address of this machine, e.g. 127.0.0.1 or the controller's LAN address",
            path=config.source,
        ) from None
    finally:
        probe.close()


def dbc_warning_lines(config: Config, databases: dict[str, ChargerDatabase]) -> list[str]:
    """Each bus's DBC warnings as text (``check-config``): a head line per bus, then
    ``file:line: what`` per warning."""
    lines: list[str] = []
    for i, bus in enumerate(config.buses):
        db = databases.get(bus.name)
        if db is None or not db.warnings:
            continue
        where = f"can.buses[{i}].dbc" if bus.dbc else f"can.buses[{i}] reference DBCs"
        lines.append(
            f"warning: {where}: {len(db.warnings)} DBC problems; the DBC loads as "
            f"cantools --no-strict loads it (dbc_strict = true refuses it):"
        )
        lines.extend(f"  {w}" for w in db.warnings)
    return lines
