"""Start-up of every ``candiag`` command, whole process, as a technician's shell sees it.

For each command: ``candiag COMMAND --help`` (parser and the command's own imports), and the
commands that start working at once on a tiny input: ``analyze`` and ``decode`` of a one-frame
candump file, ``check-config`` of the shipped example.  Each is run ``--repeats`` times in a
fresh interpreter (best and median wall time, ``time.perf_counter`` around ``subprocess.run``);
byte code is compiled first, as ``pip install`` does.  It also reports which optional heavy
modules each run imported (``-X importtime``): python-can's MF4 support pulls ``asammdf``
and pandas when they are installed (:mod:`candiag.deferred_imports`).  Goal: 0.3 s.

The commands that read DBC files keep them parsed between runs (``candiag/decode/
dbc_cache.py``, in a fresh folder here): the first run after the folder is emptied (a new
install, or a DBC changed) parses them with cantools, and is shown on its own ("cold").
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import candiag

GOAL_S = 0.3
HEAVY = ("asammdf", "pandas", "cantools", "can", "rich")
COMMANDS = ("run", "demo", "monitor", "check-config", "decode", "analyze", "record", "probe",
            "modbus", "simulate")  # fmt: skip


def _runs(tiny: Path) -> list[tuple[str, list[str]]]:
    root = Path(candiag.__file__).resolve().parent.parent
    example = root / "config" / "candiag.example.toml"
    runs = [("--version", ["--version"])]
    runs += [(f"{c} --help", [c, "--help"]) for c in COMMANDS]
    runs += [
        ("analyze 1 frame", ["analyze", str(tiny)]),
        ("decode 1 frame", ["decode", str(tiny)]),
    ]
    if example.exists():
        runs.append(("check-config example", ["check-config", str(example)]))
    return runs


_CACHE: list[Path] = []  # this run's DBC cache folder


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its byte code
    if _CACHE:
        env["CANDIAG_CACHE_DIR"] = str(_CACHE[0])
    return env


def _cold(args: list[str]) -> float:
    """One run with the DBC cache emptied first."""
    shutil.rmtree(_CACHE[0], ignore_errors=True)
    return _time(args, 1)[0]


def _time(args: list[str], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "candiag", *args],
            capture_output=True, env=_env(), timeout=120, check=False,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
    return times


def _heavy_imports(args: list[str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "candiag", *args],
        capture_output=True, text=True, env=_env(), timeout=120, check=False,
    )  # fmt: skip
    names = set()
    for line in out.stderr.splitlines():
        if "|" in line:
            name = line.split("|")[-1].strip()
            cumulative = line.split("|")[1].strip()
            if name in HEAVY and cumulative.isdigit() and int(cumulative) > 100:
                names.add(name)  # a failed import of a deferred module costs ~5 µs
    return sorted(names)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=7)
    args, _ = parser.parse_known_args(argv)
    repeats = 2 if args.quick else args.repeats
    compileall.compile_dir(Path(candiag.__file__).parent, quiet=1)
    installed = {m: importlib.util.find_spec(m) is not None for m in ("asammdf", "pandas")}
    print(f"optional packages installed: {installed}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        _CACHE.append(Path(tmp) / "dbc-cache")
        tiny = Path(tmp) / "one.log"
        tiny.write_text("(1.000000) can0 123#0102\n", encoding="utf-8")
        print(f"{'command':28} {'best s':>7} {'median s':>9} {'cold s':>7}  heavy modules imported")
        for label, cmd in _runs(tiny):
            cold = _cold(cmd)
            times = _time(cmd, repeats)
            best, median = min(times), statistics.median(times)
            worst = max(worst, median)
            heavy = ", ".join(_heavy_imports(cmd)) or "-"
            print(f"{label:28} {best:7.3f} {median:9.3f} {cold:7.3f}  {heavy}")
        _CACHE.clear()
    verdict = "met" if worst <= GOAL_S else "NOT met"
    print(
        f"slowest median {worst:.3f} s; goal {GOAL_S} s: {verdict} (cold: the first run with an empty DBC cache)"
    )


if __name__ == "__main__":
    main()
