"""``candiag check-config FILE``: validate a configuration and list every problem at once."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check-config",
        help="validate a candiag TOML config file (all problems at once)",
        description=(
            "Validate a candiag configuration: every problem is listed with its key path, "
            "what was expected and what was found. Exits 0 and prints a summary when fine, "
            "followed by the warnings of DBCs that load only leniently (file:line each)."
        ),
    )
    parser.add_argument("file", help="the TOML configuration file, e.g. /etc/candiag/candiag.toml")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.daemon.config import load_config
    from candiag.daemon.validate import check_against_dbc, dbc_warning_lines

    config = load_config(args.file)
    databases = check_against_dbc(config)
    print(f"OK: {config.summary()}")
    for line in dbc_warning_lines(config, databases):
        print(line)
    return 0
