"""``python -m bench`` (``make bench``): run every ``bench/bench_*.py`` module's ``main(argv)``.

Modules run in name order, each under a header, with the arguments given here passed
through (``--quick`` for a smoke run, ``--frames N`` for the frame count of the modules
that take it).  ``--only NAME`` (repeatable, e.g. ``--only decode``) runs a subset.  A
module that fails is reported and the others still run; the exit status says whether
all succeeded.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path


def discover() -> list[str]:
    """Names of the benchmark modules (``bench_*.py`` next to this file), sorted."""
    return sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per run (default per module: 1,000,000)"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="run bench_NAME only"
    )
    args, rest = parser.parse_known_args(argv)
    module_argv = list(rest)
    if args.quick:
        module_argv.append("--quick")
    if args.frames is not None:
        module_argv += ["--frames", str(args.frames)]
    names = discover()
    if args.only:
        wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in args.only}
        names = [n for n in names if n in wanted]
    failed: list[str] = []
    for name in names:
        print(f"\n=== {name} {' '.join(module_argv)} ".ljust(78, "="), flush=True)
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            module.main(module_argv)
        except SystemExit as stop:
            if stop.code not in (0, None):
                failed.append(name)
                print(f"{name}: exited with {stop.code}", flush=True)
        except Exception:
            failed.append(name)
            traceback.print_exc()
        print(f"--- {name}: {time.perf_counter() - started:.1f} s", flush=True)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
