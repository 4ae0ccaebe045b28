"""The long fuzzing run (``make fuzz``): ``python -m fuzz [--minutes N] [--targets a,b]``.

The time budget (``--minutes``, default ``$FUZZ_MINUTES`` or 5) is shared equally by the
targets; each target spends half of its share in hypothesis (random and damaged-seed
inputs, large example counts) and half in atheris (coverage-guided, seeded with the
shipped files and a simulator capture), or all of it in hypothesis when atheris is not
installed.  Per target and engine it prints the inputs tried and the time spent; a
crashing input is saved under ``fuzz/crashes/`` and makes the run exit 1.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fuzz.targets import CRASH_DIR, ROOT, TARGETS, Target, strategy

CORPUS_DIR = ROOT / "fuzz" / "corpus"
ATHERIS_STARTUP_S = 3  # importing candiag under instrumentation, loading the corpus


@dataclass
class Outcome:
    target: str
    engine: str
    inputs: int
    seconds: float
    result: str  # "ok", "crash: <file>", "skipped: <why>"


def say(text: str) -> None:
    """One line of the report, flushed (the run is long; progress shows as it goes)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def atheris_available() -> bool:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def run_hypothesis(target: Target, seconds: float) -> Outcome:
    """Batches of hypothesis examples until ``seconds`` have passed."""
    from hypothesis import HealthCheck, Phase, given, settings

    count = [0]
    last: list[bytes] = [b""]

    def check(data: bytes) -> None:
        last[0] = data
        count[0] += 1
        target.check(data)

    begin = time.monotonic()
    batch = 50
    strat = strategy(target)
    while (remaining := seconds - (time.monotonic() - begin)) > 0:
        if count[0]:  # do not overshoot the budget by a whole batch of slow examples
            per_example = (time.monotonic() - begin) / count[0]
            batch = max(10, min(batch, int(remaining / per_example)))
        test = settings(
            max_examples=batch,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, Phase.shrink],
        )(given(strat)(check))
        started = time.monotonic()
        try:
            test()
        except Exception as err:  # the check failed: keep the (shrunk) input
            path = save_crash(target.name, "hypothesis", last[0])
            say(f"  {target.name}: hypothesis found {type(err).__name__}: {err}"[:2000])
            return Outcome(
                target.name, "hypothesis", count[0], time.monotonic() - begin, f"crash: {path}"
            )
        if time.monotonic() - started < 2.0:
            batch = min(batch * 2, 5000)
    return Outcome(target.name, "hypothesis", count[0], time.monotonic() - begin, "ok")


def save_crash(name: str, engine: str, data: bytes) -> Path:
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    path = CRASH_DIR / f"{name}-{engine}-{hashlib.sha1(data).hexdigest()[:12]}"
    path.write_bytes(data)
    return path


def seed_corpus(target: Target) -> Path:
    folder = CORPUS_DIR / target.name
    folder.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds():
        (folder / f"seed-{hashlib.sha1(seed).hexdigest()[:12]}").write_bytes(seed)
    return folder


_DONE_RE = re.compile(r"Done (\d+) runs in (\d+) second")
_UNITS_RE = re.compile(r"stat::number_of_executed_units:\s*(\d+)")
_ARTIFACT_RE = re.compile(r"(?:Test unit|artifact) written to (\S+)")


def run_atheris(target: Target, seconds: float) -> Outcome:
    """libFuzzer for ``seconds`` in a subprocess (a crash or hang cannot take us down)."""
    corpus = seed_corpus(target)
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "fuzz.harness",
        target.name,
        f"-max_total_time={max(1, int(seconds - ATHERIS_STARTUP_S))}",
        f"-artifact_prefix={CRASH_DIR}/{target.name}-atheris-",
        "-timeout=20",  # one input taking longer is a hang: reported as a crash
        "-rss_limit_mb=4096",
        "-max_len=65536",
        "-print_final_stats=1",
        str(corpus),
    ]
    begin = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, errors="replace", check=False
    )
    elapsed = time.monotonic() - begin
    log = proc.stderr + proc.stdout
    units = _UNITS_RE.findall(log) or [m[0] for m in _DONE_RE.findall(log)]
    inputs = int(units[-1]) if units else 0
    if proc.returncode == 0:
        return Outcome(target.name, "atheris", inputs, elapsed, "ok")
    artifact = _ARTIFACT_RE.findall(log)
    (CRASH_DIR / f"{target.name}-atheris.log").write_text(log[-20_000:])
    tail = "\n".join(log.strip().splitlines()[-15:])
    say(f"  {target.name}: atheris exited {proc.returncode}\n{tail}")
    where = artifact[-1] if artifact else f"see {CRASH_DIR}/{target.name}-atheris.log"
    return Outcome(target.name, "atheris", inputs, elapsed, f"crash: {where}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("FUZZ_MINUTES") or 5))
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated names")
    parser.add_argument("--engine", choices=("both", "hypothesis", "atheris"), default="both")
    args = parser.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    engines = ["hypothesis", "atheris"] if args.engine == "both" else [args.engine]
    if "atheris" in engines and not atheris_available():
        say("atheris is not installed (pip install atheris): hypothesis only")
        engines = ["hypothesis"]
    share = args.minutes * 60 / len(names) / len(engines)
    logging.disable(logging.CRITICAL)  # damaged inputs are logged by design; too noisy
    say(f"fuzzing {len(names)} targets for {args.minutes:g} min ({share:.0f} s per engine)")
    outcomes: list[Outcome] = []
    for name in names:
        for engine in engines:
            run = run_hypothesis if engine == "hypothesis" else run_atheris
            outcome = run(TARGETS[name], share)
            outcomes.append(outcome)
            say(
                f"{outcome.target:18} {outcome.engine:10} {outcome.inputs:>10,} inputs "
                f"{outcome.seconds:7.1f} s  {outcome.result}"
            )
    total = sum(o.inputs for o in outcomes)
    crashes = [o for o in outcomes if o.result.startswith("crash")]
    say(f"total: {total:,} inputs in {sum(o.seconds for o in outcomes):.0f} s, "
          f"{len(crashes)} crash(es)")  # fmt: skip
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
