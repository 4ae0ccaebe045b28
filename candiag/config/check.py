"""Every check ``candiag run`` makes before it starts, in one function: :func:`check_config`.

``check-config``, ``run`` and a SIGHUP reload all call it (through :func:`load_and_check`),
so a config that ``check-config`` passes is one ``run`` starts with, and a mistake is found
before the daemon (re)starts, never as a silently empty node table or a daemon that dies on
reload.  It checks what :func:`~candiag.config.load.load_config` cannot see from the TOML
alone:

* the DBCs of each bus: families exist, expected addresses fit the mask
  (:func:`bus_database`);
* the diagnosis thresholds file (``[diagnosis] thresholds_file``), validated key by key
  (:func:`candiag.diagnosis.engine.load_rulebook`);
* the web config (``[metrics] web_config_file``) and its TLS material, loaded into an
  ``SSLContext`` exactly as the endpoint does (a key that does not match its certificate,
  an encrypted key, a file that is not PEM);
* the listen address: the host resolves and is an address of this machine.

Problems of every step are reported together, each in the one format of
:mod:`candiag.config.problems` with its own file.  The one thing left to ``run`` is whether
the port is free (the running daemon itself may hold it).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from candiag.config.model import BusConfig, Config, FamilyConfig
from candiag.config.problems import KeyPath, Problems
from candiag.errors import CandiagError, ConfigError, DbcError, one_line, shown

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase
    from candiag.diagnosis.engine import RuleBook
    from candiag.metrics.webconfig import WebConfig

T = TypeVar("T")


@dataclass(frozen=True)
class CheckedConfig:
    """A config with everything it names loaded and checked."""

    config: Config
    databases: Mapping[str, ChargerDatabase]
    rulebook: RuleBook
    web: WebConfig | None


def load_and_check(path: str | os.PathLike[str]) -> CheckedConfig:
    """Read the config file (meter profiles included) and :func:`check_config` it: what
    ``check-config``, ``run`` and a reload all call, so they can never disagree."""
    from candiag.config.load import load_config

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
        problems = Problems(os.fspath(file))
        problems.add((), f"{what} that candiag can use", f"an error ({reason})", "fix the file")
        raise problems.error() from err


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
    return ConfigError([p for err in errors for p in err.problems])


# -- the DBCs of each bus -------------------------------------------------------------------
def bus_dbc(bus: BusConfig) -> ChargerDatabase:
    """The bus's DBC files (default: the reference DBCs), as loaded."""
    from candiag.decode.dbc import load_dbc_paths, load_reference_database

    strict = bus.dbc_strict
    if bus.dbc:
        return load_dbc_paths(list(bus.dbc), strict=strict)
    return load_reference_database(strict=strict)


def apply_mask_overrides(db: ChargerDatabase, families: Iterable[FamilyConfig]) -> ChargerDatabase:
    """The database with the config's ``mask`` overrides applied to each family's messages."""
    from candiag.decode.dbc import ChargerDatabase, MessageDef

    masks = {f.name: f.mask for f in families if f.mask is not None}
    if not masks:
        return db
    messages: list[MessageDef] = []
    for m in db.messages:
        mask = masks.get(m.family or "")
        if mask is None:
            messages.append(m)
        else:
            messages.append(dataclasses.replace(m, node_mask=mask, frame_id=m.frame_id & ~mask))
    return ChargerDatabase(messages, sources=db.sources, warnings=db.warnings, strict=db.strict)


def bus_database(bus: BusConfig) -> ChargerDatabase:
    """The bus's database with the config's family mask overrides applied."""
    return apply_mask_overrides(bus_dbc(bus), bus.families)


def _check_dbcs(config: Config) -> dict[str, ChargerDatabase]:
    """Each bus's DBCs: families exist, expected addresses fit the address mask."""
    problems = Problems(config.source, config.positions)
    databases: dict[str, ChargerDatabase] = {}
    for i, bus in enumerate(config.buses):
        path: KeyPath = ("can", "buses", i)
        try:
            db = bus_dbc(bus)
        except DbcError as err:
            where = (*path, "dbc") if bus.dbc else path
            what = "DBC files" if bus.dbc else "the reference DBCs"
            # A DBC's own problems keep their file:line (docs/dbc.md), one per line.
            first, *more = str(err).splitlines() or [""]
            found = first.rstrip(":") + (" (listed next)" if more else "")
            problems.add(where, f"{what} candiag can load", found)
            problems.extend(line.strip() for line in more)
            continue
        try:
            db = apply_mask_overrides(db, bus.families)
        except DbcError as err:
            # Reported; the family checks below still run on the DBC as written.
            problems.add(
                (*path, "families"),
                "mask overrides that keep every message's identifier its own",
                f"two messages sharing one ({one_line(str(err))})",
                "use the DBC's CandiagNodeMask or a narrower mask",
            )
        databases[bus.name] = db
        _family_problems(problems, db, bus.families, path)
    problems.raise_if_any()
    return databases


def _family_problems(
    problems: Problems, db: ChargerDatabase, families: Iterable[FamilyConfig], bus_path: KeyPath
) -> None:
    for j, family in enumerate(families):
        path: KeyPath = (*bus_path, "families", j)
        messages = db.families.get(family.name)
        if not messages:
            known = ", ".join(sorted(db.families)) or "none"
            problems.add(
                (*path, "name"),
                f"a node family of the DBC files ({known})",
                repr(family.name),
                "check CandiagNodeFamily in the DBC or the name",
            )
            continue
        mask = family.mask if family.mask is not None else max(m.node_mask for m in messages)
        highest = mask >> ((mask & -mask).bit_length() - 1) if mask else 0
        too_big = [a for a in family.expected if a > highest]
        if too_big:
            problems.add(
                (*path, "expected"),
                f"addresses 0..{highest} (address mask 0x{mask:X})",
                str(too_big),
            )


def dbc_warning_lines(config: Config, databases: Mapping[str, ChargerDatabase]) -> list[str]:
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


# -- the web config and the listen address --------------------------------------------------
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
    problems = Problems(config.source, config.positions)
    host, port = config.metrics.host, config.metrics.port
    where: KeyPath = ("metrics", "listen")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        problems.add(
            where,
            "a host that resolves",
            f"{shown(host)}, which does not ({reason})",
            "use an IP address such as 127.0.0.1 or the controller's own address",
        )
        raise problems.error() from None
    family, _, _, _, sockaddr = infos[0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.bind((sockaddr[0], 0, *sockaddr[2:]))
    except OSError as err:
        problems.add(
            where,
            "an address of this machine",
            f"{host} ({err.strerror})",
            "give e.g. 127.0.0.1 or the controller's LAN address",
        )
        raise problems.error() from None
    finally:
        probe.close()
