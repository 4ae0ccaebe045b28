"""DBC loading time: linear in file size, hostile files refused at once, the real corpus.

1. Generated DBCs of growing size (1,000 and 10,000 messages of one signal; 10,000 messages
   of ten signals = 100,000 signals, 4.4 MB; half of the messages with an overlap, so half
   of them carry a warning): candiag's lenient load, its strict load, and cantools'
   ``load_string(strict=False)`` alone, as CPU seconds and µs per kB, so linearity shows as
   a flat µs/kB column (before the line index, finding each message's line searched the
   whole text: 10,000 messages took 109 s).
2. Hostile one-liners (issue 13 item 12): a 999,999-bit signal (117 s inside cantools'
   strict check before), a DLC of 4e9 and a start bit of 99999999999 (an empty error
   before): time to the refusal.
3. The real-world corpus (opendbc + cantools' test DBCs, ``CANDIAG_REALWORLD_DBC`` or the
   unpacked copies, skipped when absent): total and slowest load, and how many load
   strict, only leniently, or are refused.

Times are CPU time of this process (the machine is shared), best of ``--repeat``.

``python -m bench.bench_dbc [--quick] [--repeat N]``
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cantools

from candiag.decode.dbc import load_dbc_paths, load_dbc_text
from candiag.errors import DbcError

clock = time.process_time
# The real-world corpus `make realworld` fetches (tests/realworld.py).
CORPUS = (
    Path(__file__).resolve().parents[1] / ".realworld" / "dbc" / "opendbc",
    Path(__file__).resolve().parents[1] / ".realworld" / "dbc" / "cantools",
)


def generated_dbc(messages: int, signals: int, length: int = 64) -> str:
    """``messages`` extended-id messages of ``signals`` 8-bit signals; every second message
    has one more signal overlapping its first (a warning each, strict refuses)."""
    out = ['VERSION ""', "", "NS_ :", "", "BS_:", "", "BU_: A", ""]
    for i in range(messages):
        out.append(f"BO_ {0x80000000 | (i + 1)} M{i}: {length} A")
        out.extend(f' SG_ S{i}_{k} : {k * 8}|8@1+ (1,0) [0|255] "" A' for k in range(signals))
        if i % 2:
            out.append(f' SG_ O{i} : 4|8@1+ (1,0) [0|255] "" A')
        out.append("")
    return "\n".join(out) + "\n"


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def _refused(text: str, strict: bool) -> None:
    try:
        load_dbc_text(text, "bench.dbc", strict=strict)
    except DbcError:
        return
    raise AssertionError("strict loading should refuse the generated DBC")


def _cantools(text: str) -> None:
    logging.disable(logging.CRITICAL)
    try:
        cantools.database.load_string(text, database_format="dbc", strict=False)
    finally:
        logging.disable(logging.NOTSET)


def bench_sizes(sizes: list[tuple[int, int]], repeat: int) -> None:
    print(f"{'generated DBC':<34}{'kB':>8}{'candiag':>10}{'strict':>9}{'cantools':>10}  µs/kB")
    for messages, signals in sizes:
        text = generated_dbc(messages, signals)
        kb = len(text) / 1000
        db = load_dbc_text(text, "bench.dbc")
        assert len(db) == messages and db.warnings
        lenient = _best(lambda t=text: load_dbc_text(t, "bench.dbc"), repeat)  # type: ignore[misc]
        strict = _best(lambda t=text: _refused(t, True), repeat)  # type: ignore[misc]
        alone = _best(lambda t=text: _cantools(t), repeat)  # type: ignore[misc]
        label = f"{messages:,} messages x {signals} signals"
        print(
            f"{label:<34}{kb:>8,.0f}{lenient:>9.2f}s{strict:>8.2f}s{alone:>9.2f}s"
            f"  {lenient / kb * 1e6:5.0f} (cantools alone {alone / kb * 1e6:.0f})"
        )


HOSTILE = {
    "signal 0|999999": 'BO_ 1 M: 8 X\n SG_ A : 0|999999@1+ (1,0) [0|0] "" X\n',
    "big-endian signal 7|999999": 'BO_ 1 M: 8 X\n SG_ A : 7|999999@0+ (1,0) [0|0] "" X\n',
    "DLC 4000000000": 'BO_ 1 M: 4000000000 X\n SG_ A : 0|8@1+ (1,0) [0|0] "" X\n',
    "start bit 99999999999": 'BO_ 1 M: 8 X\n SG_ A : 99999999999|8@1+ (1,0) [0|0] "" X\n',
    "SG_MUL_VAL_ 0-4000000000": (
        'BO_ 1 M: 8 X\n SG_ S M : 0|8@1+ (1,0) [0|0] "" X\n SG_ A m1 : 8|8@1+ (1,0) [0|0] "" X\n'
        "SG_MUL_VAL_ 1 A S 0-4000000000;\n"
    ),
}


def bench_hostile(repeat: int) -> None:
    for label, body in HOSTILE.items():
        text = 'VERSION ""\nBU_: X\n' + body
        message = ""

        def load(t: str = text, what: str = label) -> None:
            nonlocal message
            try:
                load_dbc_text(t, "hostile.dbc")
            except DbcError as err:
                message = str(err)
                return
            raise AssertionError(f"{what}: loaded")

        seconds = _best(load, repeat)
        print(f"{label:<28} refused in {seconds * 1000:7.2f} ms: {message[:90]}")


def bench_corpus() -> None:
    raw = os.environ.get("CANDIAG_REALWORLD_DBC")
    dirs = [Path(p) for p in raw.split(os.pathsep) if p] if raw else list(CORPUS)
    files = sorted(p for d in dirs if d.is_dir() for p in d.rglob("*.dbc"))
    if not files:
        print("real-world corpus: not found (set CANDIAG_REALWORLD_DBC); skipped")
        return
    kinds = {"strict": 0, "lenient only": 0, "refused": 0}
    total = 0.0
    slowest = (0.0, "")
    size = 0
    warnings = 0
    for path in files:
        size += path.stat().st_size
        started = clock()
        try:
            db = load_dbc_paths([path])
        except DbcError:
            kinds["refused"] += 1
            total += clock() - started
            continue
        seconds = clock() - started
        total += seconds
        slowest = max(slowest, (seconds, path.name))
        warnings += len(db.warnings)
        try:
            load_dbc_paths([path], strict=True)
            kinds["strict"] += 1
        except DbcError:
            kinds["lenient only"] += 1
    counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
    print(
        f"real-world corpus: {len(files)} DBCs, {size / 1e6:.1f} MB: {counts}; {warnings} "
        f"warnings; lenient load {total:.2f} s in all ({total / size * 1e9:.0f} µs/kB), "
        f"slowest {slowest[0] * 1000:.0f} ms ({slowest[1]})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_dbc", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=2)
    args, _ = parser.parse_known_args(argv)
    repeat = 1 if args.quick else args.repeat
    sizes = (
        [(500, 1), (2_000, 1), (1_000, 10)]
        if args.quick
        else [(1_000, 1), (10_000, 1), (10_000, 10)]
    )
    bench_sizes(sizes, repeat)
    bench_hostile(3)
    bench_corpus()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
