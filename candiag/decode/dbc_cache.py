"""Parsed DBC files kept between runs, so a command that reads one starts without cantools.

Reading a DBC file means importing cantools (and python-can, which cantools imports: about
55 ms) and parsing the text (the reference charger's five files: about 20 ms), on every
``analyze``, ``decode`` and ``check-config``: a fifth of their start-up
(``bench/bench_startup.py``).  What a file becomes, a :class:`LoadedFile` (candiag's
messages and signals and the problems found in them), is pickled in the user's cache folder
under a key of the file's path and bytes, the strictness and the versions of Python,
numpy, cantools (its installed files) and candiag's DBC code (its files), so a change to
any of them reads the file again.  Only successful loads are kept: a file that does not
load is read (and refused) every time.  The cantools message objects are not kept:
:attr:`candiag.decode.dbc_model.MessageDef.cantools_message` reads the file again if asked.

Where: ``$CANDIAG_CACHE_DIR`` (``off`` disables the cache), else ``$XDG_CACHE_HOME/
candiag``, else ``~/.cache/candiag``.  A pickle is code, so a folder or file that is not the
user's own, or that others may write, is not read, and a folder is created only where its
nearest existing parent is the user's (root with another user's HOME leaves it alone).  An
entry carries the SHA-256 of its pickle: a damaged one is read from the text, never
unpickled into a different database.  The service (``systemd/
candiag.service``: a dynamic user, the home hidden) has no such folder and reads its files
as before.  Every failure to read or write the cache is silent: the file is then read from
its text, which is always right.  At most :data:`MAX_FILES` files are kept (the oldest
go).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import pickle
import stat
import sys
from importlib.util import find_spec
from pathlib import Path

from candiag import __version__
from candiag.decode.dbc_model import LoadedFile

ENV = "CANDIAG_CACHE_DIR"
OFF = "off"
MAX_FILES = 256
# Raised when what a file becomes changes shape without any file below changing.
FORMAT = 2
SUFFIX = ".dbc.pickle"
# An entry: MAGIC, the SHA-256 of the pickle, the pickle.
MAGIC = b"candiag-dbc-cache\n"
DIGEST_BYTES = 32
MAX_ENTRY_BYTES = 64 << 20  # a DBC of 100,000 signals pickles to about 30 MB


def cache_dir() -> Path | None:
    """The cache folder, or None when disabled."""
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in (OFF, "") else Path(chosen)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "candiag"
    try:
        return Path.home() / ".cache" / "candiag"
    except (RuntimeError, KeyError):  # no home to find (a service's dynamic user)
        return None


def cached(path: Path, data: bytes, strict: bool) -> LoadedFile | None:
    """What ``path`` (whose bytes are ``data``) became when last read, if kept."""
    folder = cache_dir()
    if folder is None:
        return None
    entry = folder / (_key(path, data, strict) + SUFFIX)
    try:
        with entry.open("rb") as f:
            if not (_trusted(os.fstat(f.fileno())) and _trusted(folder.stat())):
                return None
            raw = f.read(MAX_ENTRY_BYTES + 1)
    except OSError:
        return None  # absent or unreadable: read the text
    payload = _checked(raw)
    if payload is None:
        return None  # damaged (a flipped byte unpickled into a different database: a review)
    try:
        loaded = pickle.loads(payload)
    except Exception:  # written by other code (an edit the key did not see): read the text
        return None
    return loaded if isinstance(loaded, LoadedFile) else None


def _checked(raw: bytes) -> bytes | None:
    """The pickle of an entry whose header and SHA-256 of the pickle hold, else None."""
    head = len(MAGIC) + DIGEST_BYTES
    if len(raw) > MAX_ENTRY_BYTES or not raw.startswith(MAGIC) or len(raw) <= head:
        return None
    payload = raw[head:]
    return payload if hashlib.sha256(payload).digest() == raw[len(MAGIC) : head] else None


def keep(path: Path, data: bytes, strict: bool, loaded: LoadedFile) -> None:
    """Keep what ``path`` became (without its cantools objects) for the next run."""
    folder = cache_dir()
    if folder is None:
        return
    lean = LoadedFile(
        [dataclasses.replace(m, cantools_object=None) for m in loaded.messages],
        loaded.problems,
    )
    import tempfile  # only when writing (start-up)

    with contextlib.suppress(OSError, pickle.PicklingError, TypeError, AttributeError):
        if not _ours(folder):
            return
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(folder.stat()):
            return
        payload = pickle.dumps(lean, protocol=pickle.HIGHEST_PROTOCOL)
        if len(payload) + len(MAGIC) + DIGEST_BYTES > MAX_ENTRY_BYTES:
            return
        fd, partial = tempfile.mkstemp(dir=folder, suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(partial, folder / (_key(path, data, strict) + SUFFIX))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
        _trim(folder)


def _ours(folder: Path) -> bool:
    """The folder, or the nearest of its parents that exists, belongs to this user: root
    running with another user's HOME (``sudo -E``) must not create a root-owned
    ``~/.cache`` there (a review)."""
    for candidate in (folder, *folder.parents):
        try:
            return candidate.stat().st_uid == os.geteuid()
        except FileNotFoundError:
            continue
    return False


def _trusted(st: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _trim(folder: Path) -> None:
    entries = sorted(folder.glob("*" + SUFFIX), key=lambda p: p.stat().st_mtime_ns)
    for old in entries[: max(0, len(entries) - MAX_FILES)]:
        with contextlib.suppress(OSError):
            old.unlink()


def _key(path: Path, data: bytes, strict: bool) -> str:
    digest = hashlib.sha256()
    for part in (str(path), str(strict), _versions()):
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(data)
    return digest.hexdigest()


@functools.cache
def _versions() -> str:
    """Python, numpy, cantools and textparser (their files, without importing them) and
    candiag's DBC code."""
    import numpy as np

    files = [Path(__file__).with_name(n) for n in _CODE]
    spec = find_spec("cantools")
    if spec is not None and spec.origin:
        package = Path(spec.origin).parent
        # Its installed metadata changes with every install; the parser's files with an
        # edit in place.
        files += sorted(package.parent.glob("cantools-*.dist-info/RECORD"))
        files += sorted((package / "database" / "can" / "formats").glob("*.py"))
    grammar = find_spec("textparser")  # cantools' DBC grammar engine
    if grammar is not None and grammar.origin:
        files.append(Path(grammar.origin))
        files += sorted(Path(grammar.origin).parent.parent.glob("textparser-*.dist-info/RECORD"))
    stamps = []
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            stamps.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join([sys.version, np.__version__, __version__, str(FORMAT), *stamps])


# candiag's modules that decide what a DBC file becomes.
_CODE = (
    "dbc.py",
    "dbc_cache.py",
    "dbc_catalogue.py",
    "dbc_cantools.py",
    "dbc_conventions.py",
    "dbc_layout.py",
    "dbc_model.py",
    "dbc_read.py",
    "dbc_text.py",
)
