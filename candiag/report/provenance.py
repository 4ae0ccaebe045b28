"""What identifies a report for a manufacturer: the files it rests on, with their hashes.

The capture file's size and SHA-256 (so the recipient can tell they hold the same file),
the adapter and channel the recording names in its metadata, the DBCs used with their
SHA-256, and the message families of those DBCs (the signals table groups by node).
A file that cannot be read (a capture read from standard input, a DBC moved since) is
said to be so, never given a made-up size or hash.  The size is that of the bytes hashed.
See docs/report.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from candiag.report import access

HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileFacts:
    path: str
    size: int | None = None
    sha256: str | None = None
    problem: str = ""  # why size and hash are not known

    @property
    def name(self) -> str:
        return Path(self.path).name or self.path


@dataclass(frozen=True)
class Provenance:
    capture: FileFacts
    adapter: str  # in words: interface and channel as recorded, or that they are not
    dbcs: tuple[FileFacts, ...] = ()
    families: Mapping[str, str] = field(default_factory=dict)  # message -> node family
    load_warning: float | None = None  # bus load ratio the diagnosis warns at


def file_facts(path: str) -> FileFacts:
    """Size and SHA-256 of ``path`` (``-``: standard input, not kept, so not hashed)."""
    if path == "-":
        return FileFacts(path, problem="read from standard input: not kept, so not hashed")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as handle:  # hashlib.file_digest is 3.11+; 3.10 is supported
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return FileFacts(path, size, digest.hexdigest())
    except OSError as err:
        return FileFacts(path, problem=f"not readable now ({err.strerror})")


def gather(report: Any, *, load_warning: float | None = None) -> Provenance:
    """The provenance of ``report``, read from the files it names."""
    path = access.capture_path(report)
    dbcs = tuple(file_facts(p) for p in access.dbc_files(report))
    return Provenance(
        capture=file_facts(path),
        adapter=_adapter(path, access.capture_channels(report)),
        dbcs=dbcs,
        families=_families([d.path for d in dbcs if d.sha256]),
        load_warning=load_warning,
    )


def _adapter(path: str, channels: list[str]) -> str:
    named = ", ".join(channels) or "none"
    if path == "-":
        return f"not recorded (standard input); channel as named in the capture: {named}"
    from candiag.capture.metadata import read_recording_metadata

    reading = read_recording_metadata(path)
    if reading.metadata is None:
        why = f" ({reading.problem})" if reading.problem else ""
        return f"not recorded with the capture{why}; channel as named in the capture: {named}"
    parts = []
    for bus in reading.metadata.buses:
        listen = {True: ", listen-only", False: ", not listen-only", None: ""}[bus.listen_only]
        parts.append(f"{bus.interface}, channel {bus.channel}{listen}")
    version = reading.metadata.candiag_version
    return "; ".join(parts) + f" (recorded by candiag {version})"


def _families(paths: list[str]) -> dict[str, str]:
    """Message name -> node family, from the DBCs (empty when they cannot be read again)."""
    if not paths:
        return {}
    from candiag.decode.dbc import load_dbc_paths
    from candiag.errors import CandiagError

    try:
        db = load_dbc_paths(paths)
    except CandiagError:
        return {}
    return {m.name: m.family for m in db.messages if m.family}
