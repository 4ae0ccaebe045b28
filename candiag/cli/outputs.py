"""Output files of the CLI: checked before any work starts, never an input, written whole.

A technician who types ``candiag analyze b.log --json b.log`` must not lose the recording,
and one who mistypes a folder must hear it before a ten-minute analysis, not after.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from candiag.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

STDIO = "-"


def check_outputs(outputs: Iterable[str | None], inputs: Iterable[str | None]) -> None:
    """Refuse outputs that are an input (same file, hard links included) or cannot be written.

    ``-`` (standard output/input) and ``None`` (not asked for) are skipped.
    """
    sources = [Path(p) for p in inputs if p and p != STDIO]
    for raw in outputs:
        if not raw or raw == STDIO:
            continue
        out = Path(raw)
        for source in sources:
            if _same_file(out, source):
                raise InputError(
                    f"{out}: this output is the input {source}; writing it would destroy the "
                    "capture. Choose another output file name"
                )
        parent = out.parent if str(out.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(
                f"{out}: the folder {parent} does not exist; create it or choose another path"
            )
        if out.is_dir():
            raise InputError(f"{out}: is a folder; give a file name for the output")
        if not os.access(parent, os.W_OK):
            raise InputError(f"{out}: the folder {parent} is not writable; choose another path")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole: a temporary file renamed over it, so a failure
    (full disk) never leaves a half-written report."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, "utf-8", newline="\n")  # the same bytes on Windows
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {path}: {err.strerror}; choose another path") from err


def wrote(path: str) -> None:
    """The line that ends each written output: ``wrote report.html`` (stderr: stdout may be
    a pipe carrying the command's own output)."""
    print(f"wrote {path}", file=sys.stderr)


#: Width of text written to a file or pipe: wide enough that no line is cut or folded.
REDIRECTED_WIDTH = 10_000


def text_console(*, stderr: bool = False) -> Console:
    """A rich console for a command's text: the terminal's width on a terminal; written to
    a file or pipe, lines are never folded at 80 columns (``> summary.txt``, ``| grep``)."""
    from rich.console import Console

    class TextConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich exits with status 1 here; the command line ends a closed pipe quietly
            # with 0, as for every other command (candiag.cli.main).
            self.quiet = True
            raise BrokenPipeError

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return TextConsole(file=stream, highlight=False)
    return TextConsole(file=stream, highlight=False, width=REDIRECTED_WIDTH, soft_wrap=True)
