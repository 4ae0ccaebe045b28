"""Recording metadata: what a candiag recording says about its own bus (bitrate above all).

A capture file alone does not tell the bitrate, yet every load figure and every "wrong
bitrate" finding depends on it.  candiag's recorders (``candiag record``, the monitor's
``w``, ``candiag simulate -o``) therefore write a small typed record beside the frames,
where standard candump readers never see it (docs/bitrate.md):

* ``.log.gz``: the gzip header's FCOMMENT field (RFC 1952 §2.3.1), one line of ASCII JSON.
  zcat, gzip -t, python-can, cantools and can-utils' log2asc/log2long read the file as
  before;
* ``.log``: a sidecar ``<file>.meta.json`` with the same line, written atomically and never
  over an existing file.  A comment line inside the log would break python-can's
  ``CanutilsLogReader`` and can-utils' ``log2long``.

The text (:meth:`RecordingMetadata.to_text`)::

    {"candiag_recording": 1, "candiag_version": "0.1.0", "started_utc": "2026-01-15T09:30:00Z",
     "buses": [{"channel": "can0", "interface": "socketcan", "bitrate": 125000,
                "data_bitrate": null, "listen_only": true}]}

``channel`` is the name the log lines carry.  :func:`read_recording_metadata` never raises
on what it finds: a missing record is ``metadata=None``, a malformed one the same plus
``problem`` saying what is wrong with it.
"""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import candiag

FORMAT_KEY = "candiag_recording"
FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".meta.json"
MAX_TEXT = 16_384  # bytes: a real record is ~200; anything bigger is not ours
_MAX_NAME = 200
_MAX_BITRATE = 16_000_000  # above any CAN FD data phase

# gzip member header (RFC 1952 §2.3): ID1 ID2 CM FLG MTIME(4) XFL OS, then the optional fields.
GZIP_MAGIC = b"\x1f\x8b"
GZIP_DEFLATE = 8
FHCRC, FEXTRA, FNAME, FCOMMENT = 0x02, 0x04, 0x08, 0x10
_GZIP_FIXED = 10
_GZIP_OS_UNKNOWN = 255


class MetadataError(ValueError):
    """Metadata text that is not a valid candiag recording record (internal; see the reader)."""


@dataclass(frozen=True)
class BusMetadata:
    """One bus of a recording, as the recorder knew it.

    ``bitrate`` / ``data_bitrate`` in bit/s, ``None`` when the recorder did not know it (a
    SocketCAN interface set up outside candiag, a virtual bus).  ``listen_only``: whether
    the bus was opened listen-only (``None``: not a live bus, e.g. the simulator).
    """

    channel: str
    interface: str
    bitrate: int | None
    data_bitrate: int | None = None
    listen_only: bool | None = None


@dataclass(frozen=True)
class RecordingMetadata:
    """What a candiag recording says about itself: its buses, candiag's version, its start.

    ``started_utc`` (ISO 8601, ``Z``) is when the file was opened; the writer sets it for
    each file it opens (every rotated file has its own).
    """

    buses: tuple[BusMetadata, ...]
    candiag_version: str = candiag.__version__
    started_utc: str | None = None

    @classmethod
    def single(
        cls,
        *,
        channel: str,
        interface: str,
        bitrate: int | None,
        data_bitrate: int | None = None,
        listen_only: bool | None = None,
    ) -> RecordingMetadata:
        """The usual case: one bus."""
        return cls((BusMetadata(channel, interface, bitrate, data_bitrate, listen_only),))

    def bus(self, channel: str) -> BusMetadata | None:
        """The bus whose log lines carry ``channel``, or ``None``."""
        return next((b for b in self.buses if b.channel == channel), None)

    def bitrate_for(self, channel: str) -> int | None:
        """The recorded bitrate of ``channel``; a single-bus recording answers for any name."""
        bus = self.bus(channel)
        if bus is None and len(self.buses) == 1:
            bus = self.buses[0]
        return bus.bitrate if bus is not None else None

    @property
    def bitrate(self) -> int | None:
        """The bitrate all buses share, ``None`` when unknown or when they differ."""
        rates = {b.bitrate for b in self.buses}
        return rates.pop() if len(rates) == 1 else None

    def stamped(self, now: float | None = None) -> RecordingMetadata:
        """A copy with ``started_utc`` set to ``now`` (epoch seconds; default: the clock)."""
        moment = time.time() if now is None else now
        return replace(self, started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment)))

    def to_text(self) -> str:
        """One line of ASCII JSON (fits a gzip FCOMMENT: ISO 8859-1, no NUL)."""
        record: dict[str, Any] = {
            FORMAT_KEY: FORMAT_VERSION,
            "candiag_version": self.candiag_version,
            "started_utc": self.started_utc,
            "buses": [
                {
                    "channel": b.channel,
                    "interface": b.interface,
                    "bitrate": b.bitrate,
                    "data_bitrate": b.data_bitrate,
                    "listen_only": b.listen_only,
                }
                for b in self.buses
            ],
        }
        return json.dumps(record, ensure_ascii=True, separators=(", ", ": "))

    @classmethod
    def parse(cls, text: str) -> RecordingMetadata:
        """The record in ``text``; :class:`MetadataError` saying what is wrong otherwise."""
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise MetadataError(f"not JSON ({err})") from None
        if not isinstance(record, dict) or FORMAT_KEY not in record:
            raise MetadataError(f"not a candiag recording record (no {FORMAT_KEY!r} key)")
        version = record[FORMAT_KEY]
        if type(version) is not int or version < 1:
            raise MetadataError(f"{FORMAT_KEY} must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise MetadataError(
                f"written by a newer candiag (record format {version}, this one reads "
                f"{FORMAT_VERSION}); update candiag"
            )
        buses = record.get("buses")
        if not isinstance(buses, list) or not buses:
            raise MetadataError("'buses' must be a non-empty list")
        return cls(
            buses=tuple(_bus(item, i) for i, item in enumerate(buses)),
            candiag_version=_text(record, "candiag_version", "record", optional=False) or "",
            started_utc=_text(record, "started_utc", "record", optional=True),
        )


def _text(obj: dict[str, Any], key: str, where: str, *, optional: bool) -> str | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise MetadataError(f"{where}: {key!r} must be a text of 1..{_MAX_NAME} characters")
    return value


def _rate(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 < value <= _MAX_BITRATE:
        raise MetadataError(
            f"{where}: {key!r} must be bit/s as a whole number 1..{_MAX_BITRATE} or null, "
            f"got {value!r}"
        )
    return value


def _bus(item: object, index: int) -> BusMetadata:
    where = f"buses[{index}]"
    if not isinstance(item, dict):
        raise MetadataError(f"{where} must be an object")
    listen_only = item.get("listen_only")
    if listen_only is not None and not isinstance(listen_only, bool):
        raise MetadataError(f"{where}: 'listen_only' must be true, false or null")
    return BusMetadata(
        channel=_text(item, "channel", where, optional=False) or "",
        interface=_text(item, "interface", where, optional=False) or "",
        bitrate=_rate(item, "bitrate", where),
        data_bitrate=_rate(item, "data_bitrate", where),
        listen_only=listen_only,
    )


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetadataReading:
    """What :func:`read_recording_metadata` found.

    ``metadata`` is the record or ``None``; ``source`` says where it was (``"gzip comment"``,
    ``"sidecar <name>"``) or is empty; ``problem`` is empty unless a record was there but
    could not be used (it is then ignored, and ``problem`` says why and where).
    """

    metadata: RecordingMetadata | None
    source: str = ""
    problem: str = ""


def sidecar_path(log: str | os.PathLike[str]) -> Path:
    """``x.log`` -> ``x.log.meta.json``."""
    path = Path(log)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_recording_metadata(path: str | os.PathLike[str]) -> MetadataReading:
    """The recording metadata of a capture, from its gzip header or its sidecar; never raises.

    A gzip file's FCOMMENT comes first.  The sidecars tried are ``<file>.meta.json`` and,
    for ``x.log.gz``, also ``x.log.meta.json`` (a ``.log`` recording compressed later).
    """
    path = Path(path)
    try:
        comment = gzip_comment(path)
    except OSError as err:
        return MetadataReading(None, problem=f"{path}: cannot read ({err.strerror or err})")
    if comment is not None:
        return _parse(comment, "gzip comment", path)
    candidates = [sidecar_path(path)]
    if path.name.endswith(".gz"):
        candidates.append(path.with_name(path.name[: -len(".gz")] + SIDECAR_SUFFIX))
    for sidecar in candidates:
        try:
            with open(sidecar, "rb") as fh:
                raw = fh.read(MAX_TEXT + 1)
        except FileNotFoundError:
            continue
        except OSError as err:
            return MetadataReading(None, problem=f"{sidecar}: cannot read ({err.strerror or err})")
        if len(raw) > MAX_TEXT:
            return MetadataReading(
                None, problem=f"{sidecar}: longer than {MAX_TEXT} bytes, not candiag metadata"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return MetadataReading(None, problem=f"{sidecar}: not UTF-8 text, ignored")
        return _parse(text, f"sidecar {sidecar.name}", sidecar)
    return MetadataReading(None)


def _parse(text: str, source: str, where: Path) -> MetadataReading:
    try:
        return MetadataReading(RecordingMetadata.parse(text), source=source)
    except MetadataError as err:
        return MetadataReading(None, source=source, problem=f"{where}: {source}: {err}; ignored")


def gzip_comment(path: Path) -> str | None:
    """The FCOMMENT of the first gzip member of ``path`` (Latin-1), ``None`` if none or not gzip.

    Raises ``OSError`` only when the file cannot be opened or read.
    """
    with open(path, "rb") as fh:
        head = fh.read(_GZIP_FIXED + 2 * (MAX_TEXT + 1) + 2 + 65_535)
    if len(head) < _GZIP_FIXED or head[:2] != GZIP_MAGIC or head[2] != GZIP_DEFLATE:
        return None
    flags = head[3]
    if not flags & FCOMMENT:
        return None
    pos = _GZIP_FIXED
    if flags & FEXTRA:
        if pos + 2 > len(head):
            return None
        (extra,) = struct.unpack_from("<H", head, pos)
        pos += 2 + extra
    if flags & FNAME:
        end = head.find(b"\0", pos)
        if end < 0:
            return None
        pos = end + 1
    end = head.find(b"\0", pos, pos + MAX_TEXT + 1)
    if end < 0:
        return None
    return head[pos:end].decode("latin-1")


def gzip_header(metadata: RecordingMetadata | None, mtime: int = 0) -> bytes:
    """A gzip member header (deflate, no name) carrying ``metadata`` as its FCOMMENT."""
    flags, comment = 0, b""
    if metadata is not None:
        text = metadata.to_text().encode("latin-1")
        if b"\0" in text or len(text) > MAX_TEXT:  # to_text() is ASCII JSON: never happens
            raise MetadataError("metadata text does not fit a gzip comment")
        flags, comment = FCOMMENT, text + b"\0"
    xfl = 2  # compressed with the slowest, best algorithm (zlib level 9)
    return (
        GZIP_MAGIC
        + bytes([GZIP_DEFLATE, flags])
        + struct.pack("<I", mtime & 0xFFFFFFFF)
        + bytes([xfl, _GZIP_OS_UNKNOWN])
        + comment
    )


def write_sidecar(log: Path, metadata: RecordingMetadata, *, fsync: bool = True) -> Path:
    """Write ``<log>.meta.json`` atomically (complete or absent) and never over a file.

    The text goes to a temporary file that is then hard-linked to the final name (which
    fails if that name exists).  Where the file system has no hard links (FAT/exFAT
    sticks), the final name is created exclusively and written directly.  Raises
    ``FileExistsError`` when the sidecar exists, ``OSError`` otherwise.
    """
    target = sidecar_path(log)
    data = (metadata.to_text() + "\n").encode("ascii")
    temp = target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        _write_new(temp, data, fsync)
        try:
            os.link(temp, target)  # atomic, and refuses an existing name
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system: create the name exclusively
            _write_new(target, data, fsync)
    finally:
        temp.unlink(missing_ok=True)
    if fsync:
        _fsync_directory(target.parent)
    return target


def _write_new(path: Path, data: bytes, fsync: bool) -> None:
    # O_BINARY (Windows only): a text-mode descriptor would write each "\n" as "\r\n".
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories; the file itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
