"""Reading a config-like file: the problems every loader words the same way.

A file that is missing, not a regular file (a FIFO would block the reader forever), too
large for what it claims to be, or not UTF-8 becomes a problem in the one format
(:mod:`candiag.config.problems`), never an exception of its own.
"""

from __future__ import annotations

import stat
from pathlib import Path

from candiag.config.problems import Problems


def read_bytes(
    path: Path, problems: Problems, *, hint: str, max_bytes: int | None = None
) -> bytes | None:
    """The file's bytes, or None with a problem saying why not (``hint``: how to fix it)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            problems.add((), "a regular file", _kind(info.st_mode), hint)
            return None
        if max_bytes is not None and info.st_size > max_bytes:
            problems.add((), f"at most {_size(max_bytes)}", f"{info.st_size} bytes", hint)
            return None
        with path.open("rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    except FileNotFoundError:
        problems.add((), "an existing file", "no such file", hint)
        return None
    except (OSError, ValueError) as err:  # permissions; a name too long or with a NUL byte
        reason = getattr(err, "strerror", None) or str(err)
        problems.add((), "a readable file", f"an error reading it ({reason})", hint)
        return None
    if max_bytes is not None and len(data) > max_bytes:  # it grew while we read it
        problems.add((), f"at most {_size(max_bytes)}", "more", hint)
        return None
    return data


def decode_utf8(data: bytes, problems: Problems, *, bom: bool = False) -> str | None:
    """``data`` as text, or None with a problem at the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        problems.add(
            (),
            "UTF-8 text",
            f"byte 0x{data[err.start]:02x}",
            "save the file as UTF-8",
            at=(line, column),
        )
        return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "something else"


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"
