"""``candiag check-config FILE``: validate a configuration and list every problem at once."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    from candiag.cli.args import add_command

    parser = add_command(
        subparsers,
        "check-config",
        help="validate a candiag TOML config file (all problems at once)",
        description=(
            "Validate a candiag configuration with the same checks `candiag run` makes "
            "before it starts (the DBCs, the diagnosis thresholds file, the web config with "
            "its TLS certificate and key, the listen address): every problem is listed with "
            "its file, key path, what was expected and what was found. Exits 0 and prints a "
            "summary when fine, followed by the warnings of DBCs that load only leniently "
            "(file:line each). Not checked: whether the port is free."
        ),
        example_lines=(
            "candiag check-config /etc/candiag/candiag.toml",
            "candiag check-config config/candiag.example.toml && systemctl reload candiag",
        ),
    )
    parser.add_argument("file", help="the TOML configuration file, e.g. /etc/candiag/candiag.toml")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from candiag.config.check import dbc_warning_lines, load_and_check

    checked = load_and_check(args.file)  # exactly what `candiag run` and a reload call
    print(f"OK: {checked.config.summary()}")
    for line in dbc_warning_lines(checked.config, checked.databases):
        print(line)
    return 0
