"""Helpers of the SocketCAN suite: raw AF_CAN sockets, frames, and the candiag CLI.

A raw socket is the independent witness: it writes frames exactly as a charger
module (or the kernel) would, and it sees exactly what went on the wire, so a
test never relies on candiag to check candiag.  Python's ``socket`` module has
AF_CAN but not ``CAN_RAW_ERR_FILTER``, hence the constants from ``linux/can/raw.h``.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.waiting import wait_for

CAN_EFF_FLAG = 0x80000000
CAN_RTR_FLAG = 0x40000000
CAN_ERR_FLAG = 0x20000000
CAN_EFF_MASK = 0x1FFFFFFF
CAN_SFF_MASK = 0x7FF
CAN_ERR_MASK = 0x1FFFFFFF
SOL_CAN_RAW = 101  # SOL_CAN_BASE + CAN_RAW
CAN_RAW_ERR_FILTER = 2
CAN_RAW_RECV_OWN_MSGS = 4
CAN_RAW_FD_FRAMES = 5
SO_RCVBUFFORCE = 33  # root may exceed rmem_max: a witness must not drop what it did not read yet
_CAN_FRAME = struct.Struct("=IB3x8s")

# The ten error classes in bit order (linux/can/error.h), as candiag names them.
ERROR_CLASS_BITS: dict[str, int] = {
    name: 1 << i
    for i, name in enumerate(
        (
            "tx_timeout",
            "lost_arbitration",
            "controller",
            "protocol",
            "transceiver",
            "ack",
            "bus_off",
            "bus_error",
            "restarted",
            "counters",
        )
    )
}


@dataclass(frozen=True)
class Frame:
    """One classic CAN frame as on the wire; ``can_id`` carries no flag bits."""

    can_id: int
    data: bytes = b""
    extended: bool = False
    remote: bool = False
    error: bool = False
    dlc: int | None = None  # for remote frames: the requested length

    @property
    def length(self) -> int:
        return self.dlc if self.dlc is not None else len(self.data)

    def raw_id(self) -> int:
        if self.error:
            return CAN_ERR_FLAG | (self.can_id & CAN_ERR_MASK)
        raw = self.can_id
        if self.extended:
            raw |= CAN_EFF_FLAG
        if self.remote:
            raw |= CAN_RTR_FLAG
        return raw

    def pack(self) -> bytes:
        payload = b"" if self.remote else self.data
        return _CAN_FRAME.pack(self.raw_id(), self.length, payload)

    @classmethod
    def unpack(cls, raw: bytes) -> Frame:
        can_id, length, payload = _CAN_FRAME.unpack(raw[: _CAN_FRAME.size])
        if can_id & CAN_ERR_FLAG:
            return cls(can_id & CAN_ERR_MASK, bytes(payload[:length]), error=True)
        extended = bool(can_id & CAN_EFF_FLAG)
        ident = can_id & (CAN_EFF_MASK if extended else CAN_SFF_MASK)
        if can_id & CAN_RTR_FLAG:
            return cls(ident, b"", extended=extended, remote=True, dlc=length)
        return cls(ident, bytes(payload[:length]), extended=extended)


def error_frame(classes: int, data: Sequence[int] = (0,) * 8) -> Frame:
    """An error frame with the given class bits and its 8 payload bytes."""
    return Frame(classes, bytes(data).ljust(8, b"\0"), error=True)


class RawSocket:
    """A CAN_RAW socket on one interface; optionally subscribed to error frames."""

    def __init__(self, channel: str, *, err_mask: int = 0, rcvbuf: int = 32 << 20) -> None:
        self.channel = channel
        self.sock = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        if err_mask:
            self.sock.setsockopt(SOL_CAN_RAW, CAN_RAW_ERR_FILTER, struct.pack("=I", err_mask))
        self.sock.bind((channel,))

    def send(self, frames: Iterable[Frame], gap: float = 0.0) -> int:
        sent = 0
        for frame in frames:
            self.sock.send(frame.pack())
            sent += 1
            if gap:
                time.sleep(gap)
        return sent

    def receive(self, timeout: float = 0.5, limit: int | None = None) -> list[Frame]:
        """Frames received until ``timeout`` s of silence (or ``limit`` frames)."""
        out: list[Frame] = []
        while limit is None or len(out) < limit:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                break
            out.append(Frame.unpack(self.sock.recv(_CAN_FRAME.size)))
        return out

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def link(channel: str, state: str) -> None:
    """``ip link set CHANNEL up|down`` (the VM runs the suite as root)."""
    subprocess.run(["ip", "link", "set", channel, state], check=True, timeout=10)


def candiag_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "candiag", *args]


def run_candiag(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        candiag_cmd(*args), capture_output=True, text=True, timeout=timeout, check=False
    )


def start(cmd: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a background process with stdout+stderr into ``log``."""
    fh = log.open("wb")
    try:
        return subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT)
    finally:
        fh.close()


def stop(proc: subprocess.Popen[bytes], sig: int = 2, timeout: float = 30.0) -> int:
    """Stop a background process (SIGINT by default, as Ctrl-C) and return its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return int(proc.returncode)


def wait_for_text(
    path: Path, text: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None
) -> str:
    """Wait until ``text`` appears in the file ``path``; return the file's content.

    With ``proc`` (the process writing the file), fail at once when it exits first.
    """

    def content() -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    def appeared() -> bool:
        if text in content():
            return True
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"exited with {proc.returncode} before {text!r} appeared in {path}:\n{content()}"
            )
        return False

    wait_for(appeared, f"{text!r} in {path}", timeout=timeout, interval=0.1, diagnose=content)
    return content()


def in_vm() -> bool:
    return os.environ.get("CANDIAG_SOCKETCAN") == "1"
