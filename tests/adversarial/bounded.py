"""Run a candiag command in a child process with a bound on its time and its memory.

An attack test asserts behaviour (exit status, output); the bounds only turn a hang or a
memory blow-up into a failure instead of a stuck CI run.  They are generous on purpose:
speed itself is measured in ``make bench``, never asserted here.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

# Address space a child may use: python + numpy + cantools need ~0.5 GB of mappings.
DEFAULT_MEMORY_BYTES = 1536 * 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_bounded(
    args: Sequence[str],
    *,
    timeout_s: float = 60.0,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    stdin: bytes | None = None,
) -> Outcome:
    """``python -m candiag ARGS`` with RLIMIT_AS and a wall-clock timeout."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    proc = subprocess.run(
        [sys.executable, "-m", "candiag", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        preexec_fn=limit,
        check=False,
    )
    return Outcome(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )
