"""Config checks that need other files: the DBCs (families exist, expected addresses fit
the mask) and the metrics web config.

:func:`check_against_dbc` loads each bus's DBCs and reports, with key paths like the
rest of the config validation, a family name the DBC does not define or an
expected address the family's address bits cannot carry.  ``check-config``,
``run`` and SIGHUP reloads all call it, so such a mistake is found before the
daemon (re)starts, never as a silently empty node table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from candiag.daemon.config import Config
from candiag.errors import ConfigError, DbcError

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase


def check_against_dbc(config: Config) -> dict[str, ChargerDatabase]:
    """The database of each bus (mask overrides applied); :class:`ConfigError` lists problems."""
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
        for j, family in enumerate(bus.families):
            path = f"can.buses[{i}].families[{j}]"
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
    if problems:
        raise ConfigError(problems, path=config.source)
    check_web_config(config)
    return databases


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


def check_web_config(config: Config) -> None:
    """Load ``[metrics] web_config_file`` (TLS files, bcrypt hashes) so its errors show now."""
    if config.metrics.web_config_file is not None:
        from candiag.metrics.webconfig import load_web_config

        load_web_config(config.metrics.web_config_file)
