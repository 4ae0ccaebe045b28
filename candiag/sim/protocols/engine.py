"""The request/response bus engine shared by the protocol simulators.

A protocol (:class:`Protocol`) says what its controller sends and when (``schedule``), who
answers each request (``responders``) and what an answer looks like (``reply``); this
module does the rest for every protocol alike:

* **faults** (:mod:`candiag.sim.faults` syntax, docs/protocols.md): a module that does not
  answer (``module_silent``), a controller that stops asking one module or all
  (``controller_silent``), rejected requests (``rejected_requests``: the protocol's error
  byte or identifier bits), an address conflict (``duplicate_address``: two answers per
  request), slow answers (``slow_replies``), and the module's own reaction to silence: it
  switches its output off after the pack's ``CandiagModuleTimeoutMs`` without a request
  (self-off) and reports the communication alarm until it has been asked again for 2 s.  Error frames
  and bus-off work as in the reference simulator.
* **timing**: every frame goes through the reference simulator's wire model (one frame at a
  time at the bitrate, first queued first sent, stamped at its end: :func:`wire_ends`), and
  an answer is queued a module latency (1-4 ms, modelled) after its request has left the
  wire, which needs the wire's answer first: the chunk is put on the wire, the answers are
  queued after their requests' ends, and again until the times settle (a few passes).
  Latencies, the plant's noise and which requests are rejected come from a hash
  of (time, module, kind), not from a random stream, so a protocol's schedule can ask
  whether a request will be answered in time (DPM1000 waits for each answer) and the
  output does not depend on how the simulation is cut into chunks.
* **the plant**: the reference charger's charging session (:class:`candiag.sim.plant.Session`)
  drives the output voltage and total current, shared by the modules that deliver (on,
  answering, not switched off) with a fixed imbalance of +-3 %; module temperature
  follows its power.

Everything is numpy over the requests or answers of a chunk; Python loops run over
modules, fault windows or controller cycles, never over frames.

Why one file of ~880 lines: requests, answers, the context and the cycle protocols are
the one engine every protocol simulator subclasses; apart, each would import all the others.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from candiag.errors import InputError
from candiag.health.busload import frame_bits as busload_frame_bits
from candiag.health.defaults import DEFAULT_BITRATE
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch
from candiag.sim.charger import DEFAULT_START_TIME
from candiag.sim.faults import (
    ERROR_FRAME_CLASSES,
    Fault,
    error_class_payload,
    error_frame_batch,
    regular_times,
)
from candiag.sim.plant import ChargerModel, Session, Window, any_window
from candiag.sim.protocols.packs import PackInfo, pack_info
from candiag.socketcan_errors import CAN_ERR_BUSOFF, CAN_ERR_RESTARTED

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
U8 = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]
IntpArray = npt.NDArray[np.intp]

#: Fault kinds the protocol simulators play (the rest belong to the reference charger).
PROTOCOL_FAULT_KINDS = (
    "module_silent",
    "controller_silent",
    "rejected_requests",
    "duplicate_address",
    "slow_replies",
    "error_frames",
    "bus_off",
)
#: Faults that decide, at the time of a request, whether and how it is answered.
PROTOCOL_ONLY_KINDS_AT_REQUEST = (
    "module_silent",
    "controller_silent",
    "slow_replies",
    "rejected_requests",
)
#: A module's time to answer a request, seconds (modelled: no source states it).
REPLY_LATENCY_S = (0.001, 0.004)
#: Extra latency of ``slow_replies`` by default, seconds.
SLOW_REPLY_DEFAULT_MS = 200.0
#: How long a module keeps reporting its communication alarm once it is asked again, seconds
#: (modelled: no source says when the alarm clears).
ALARM_HOLD_S = 2.0
#: Passes of "wire, then queue the answers after their requests' ends" per chunk (the times
#: settle in two or three on a healthy bus).
MAX_WIRE_PASSES = 6
#: The modules' output current imbalance (as the reference charger's +-3 %).
IMBALANCE = 0.03
BROADCAST = -1


def frame_seconds(bitrate: int, dlc: int = 8) -> float:
    """Duration of an extended data frame without stuffing (67 + 8 n bits)."""
    return (67 + 8 * dlc) / bitrate


def wire_ends(queued: FrameBatch, free_at: float, bitrate: int) -> F64:
    """End times of ``queued`` (sorted by queue time) on one wire, first queued first sent.

    The reference simulator's model (:mod:`candiag.sim.charger`): a frame starts no earlier
    than its queue time and the end of the frame before, and lasts its exact bit count
    (stuffing and interframe space included) at the bitrate.  With ``S_i`` the cumulative
    durations: ``end_i = S_i + max(free_at, max_{j<=i}(t_j - S_{j-1}))``, one
    ``np.maximum.accumulate``.
    """
    if not len(queued):
        return np.empty(0, np.float64)
    duration = busload_frame_bits(queued)[0] / bitrate
    done = np.cumsum(duration)
    start_bound = np.maximum.accumulate(queued.timestamp - (done - duration))
    ends: F64 = done + np.maximum(start_bound, free_at)
    return ends


# -- deterministic noise -------------------------------------------------------------------


def _mix(x: U64) -> U64:
    """splitmix64 finaliser: a well-spread 64-bit hash of each element."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def unit_hash(seed: int, salt: int, *keys: npt.ArrayLike) -> F64:
    """Uniform [0, 1) numbers, one per element, a pure function of the keys."""
    arrays = [np.asarray(k).astype(np.int64).view(np.uint64) for k in keys]
    shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    h = np.full(shape, np.uint64((seed * 1_000_003 + salt) & 0xFFFFFFFFFFFFFFFF), np.uint64)
    for a in arrays:
        h = _mix(h ^ a)
    out: F64 = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return out


_MASK64 = (1 << 64) - 1


def _mix_int(x: int) -> int:
    """:func:`_mix` on one Python integer (the same bits)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def unit_hash_scalar(seed: int, salt: int, *keys: int) -> float:
    """:func:`unit_hash` of scalar keys, in plain Python (for a dependency chain walked one
    exchange at a time, where numpy's per-call cost would dominate)."""
    h = (seed * 1_000_003 + salt) & _MASK64
    for key in keys:
        h = _mix_int(h ^ (int(key) & _MASK64))
    return (h >> 11) / float(1 << 53)


# -- payload packing -------------------------------------------------------------------------


def be_bytes(values: npt.ArrayLike, nbytes: int) -> U8:
    """Integers as ``nbytes`` big-endian bytes each (two's complement): ``(n, nbytes)``."""
    raw = np.atleast_1d(np.asarray(values)).astype(np.int64).view(np.uint64)
    shifts = np.arange(nbytes - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    out: U8 = ((raw[:, None] >> shifts[None, :]) & np.uint64(0xFF)).astype(np.uint8)
    return out


def f32_bytes(values: npt.ArrayLike) -> U8:
    """IEEE-754 float32 big-endian bytes: ``(n, 4)``."""
    out: U8 = (
        np.atleast_1d(np.asarray(values, np.float64)).astype(">f4").view(np.uint8).reshape(-1, 4)
    )
    return out


def rows(n: int) -> U8:
    return np.zeros((n, 8), np.uint8)


# -- requests --------------------------------------------------------------------------------


@dataclass
class Requests:
    """Frames the controller sends: queue time, addressed module (index, -1 broadcast),
    protocol-specific kind, identifier and payload."""

    t: F64
    module: I64
    kind: I64
    can_id: U32
    data: U8

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @classmethod
    def empty(cls) -> Requests:
        return cls(
            np.empty(0, np.float64),
            np.empty(0, np.int64),
            np.empty(0, np.int64),
            np.empty(0, np.uint32),
            np.empty((0, 8), np.uint8),
        )

    @classmethod
    def build(
        cls, t: npt.ArrayLike, module: npt.ArrayLike, kind: npt.ArrayLike, can_id: npt.ArrayLike,
        data: U8,
    ) -> Requests:  # fmt: skip
        times = np.asarray(t, np.float64)
        n = times.shape[0]
        return cls(
            times,
            np.broadcast_to(np.asarray(module, np.int64), (n,)).copy(),
            np.broadcast_to(np.asarray(kind, np.int64), (n,)).copy(),
            np.broadcast_to(np.asarray(can_id, np.uint32), (n,)).copy(),
            data,
        )

    @classmethod
    def concat(cls, parts: Sequence[Requests]) -> Requests:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.t for p in parts]),
            np.concatenate([p.module for p in parts]),
            np.concatenate([p.kind for p in parts]),
            np.concatenate([p.can_id for p in parts]),
            np.concatenate([p.data for p in parts]),
        )

    def take(self, index: IntpArray | BoolArray) -> Requests:
        return Requests(
            self.t[index],
            self.module[index],
            self.kind[index],
            self.can_id[index],
            self.data[index],
        )

    def sorted(self) -> Requests:
        return self.take(np.argsort(self.t, kind="stable"))


@dataclass
class Answers:
    """Who answers which request: request row, module index, frame of a multi-frame answer
    (0 first), twin flag (the second module of a duplicate address)."""

    request: IntpArray
    module: I64
    part: I64
    twin: BoolArray


@dataclass
class Values:
    """What the plant says about the answering modules at the answer times."""

    voltage: F64
    current: F64
    temperature: F64
    on: BoolArray
    comm_alarm: BoolArray
    duplicate_alarm: BoolArray
    serial: I64
    noise: F64  # a fresh [0, 1) number per answer, for protocol-specific values


# -- the simulation context --------------------------------------------------------------------


@dataclass
class Context:
    """What a protocol may ask: its modules, the pack, the session and the faults."""

    pack: PackInfo
    addresses: list[int]
    start_time: float
    seed: int
    bitrate: int
    session: Session
    faults: list[Fault]
    imbalance: F64
    self_off: list[list[Window]] = field(default_factory=list)
    comm_alarm: list[list[Window]] = field(default_factory=list)

    @property
    def modules(self) -> int:
        return len(self.addresses)

    def hash01(self, salt: int, *keys: npt.ArrayLike) -> F64:
        return unit_hash(self.seed, salt, *keys)

    def micros(self, t: F64) -> I64:
        return np.rint((t - self.start_time) * 1e6).astype(np.int64)

    # fault windows -------------------------------------------------------------------------
    def windows(self, kind: str, module: int | None = None) -> list[Window]:
        """Windows of faults of ``kind`` that concern module index ``module`` (None: any)."""
        out = []
        for f in self.faults:
            if f.kind != kind:
                continue
            target = fault_module(f, self.addresses)
            if module is None or target is None or target == module:
                out.append(Window(*f.window(self.start_time)))
        return out

    def module_mask(self, kind: str, t: F64, module: I64) -> BoolArray:
        """Per element: is module ``module[i]`` under a fault of ``kind`` at ``t[i]``."""
        hit = np.zeros(t.shape, bool)
        for f in self.faults:
            if f.kind != kind:
                continue
            begin, end = f.window(self.start_time)
            target = fault_module(f, self.addresses)
            inside = (t >= begin) & (t < end)
            hit |= inside if target is None else inside & (module == target)
        return hit

    def silent(self, t: F64, module: I64) -> BoolArray:
        return self.module_mask("module_silent", t, module)

    def not_asked(self, t: F64, module: I64) -> BoolArray:
        """Requests the controller does not send (``controller_silent``); a broadcast is
        dropped only when the controller is silent towards every module."""
        hit = np.zeros(t.shape, bool)
        for f in self.faults:
            if f.kind != "controller_silent":
                continue
            begin, end = f.window(self.start_time)
            target = fault_module(f, self.addresses)
            inside = (t >= begin) & (t < end)
            hit |= inside if target is None else inside & (module == target)
        return hit

    def latency(self, t: F64, module: I64, kind: I64, twin: BoolArray) -> F64:
        """Seconds between the end of a request and the queueing of its answer."""
        lo, hi = REPLY_LATENCY_S
        u = self.hash01(11, self.micros(t), module, kind, twin)
        out: F64 = lo + (hi - lo) * u
        for f in self.faults:
            if f.kind != "slow_replies":
                continue
            begin, end = f.window(self.start_time)
            target = fault_module(f, self.addresses)
            hit = (t >= begin) & (t < end)
            if target is not None:
                hit &= module == target
            out = out + np.where(hit, f.number("latency", SLOW_REPLY_DEFAULT_MS) / 1000.0, 0.0)
        return out

    def error_code(
        self, t: F64, module: I64, kind: I64, default: int | None, largest: int = 0xFF
    ) -> I64:
        """The error an answer carries (0: none) under ``rejected_requests``."""
        code = np.zeros(t.shape, np.int64)
        for f in self.faults:
            if f.kind != "rejected_requests":
                continue
            if default is None:
                raise InputError(
                    f"fault rejected_requests: the {self.pack.protocol} protocol has no error "
                    "reply (no error byte or bits are published), so no request can be rejected"
                )
            begin, end = f.window(self.start_time)
            target = fault_module(f, self.addresses)
            hit = (t >= begin) & (t < end)
            if target is not None:
                hit &= module == target
            ratio = f.number("ratio", 1.0)
            if not 0.0 < ratio <= 1.0:
                raise InputError(f"fault rejected_requests: ratio must be in (0, 1], got {ratio}")
            hit &= self.hash01(13, self.micros(t), module, kind) < ratio
            value = f.integer("code", default)
            if not 0 < value <= largest:
                raise InputError(
                    f"fault rejected_requests: code={value} does not fit the "
                    f"{self.pack.protocol} error field (1..{largest})"
                )
            code = np.where(hit, value, code)
        return code

    def exchange(
        self, t: float, module: int, kind: int, default: int | None, largest: int = 0xFF
    ) -> tuple[bool, float, int]:
        """One request at ``t``: whether it is sent and answered, the answer's latency and its
        error code; the scalar twin of :meth:`not_asked`, :meth:`silent`, :meth:`latency`
        and :meth:`error_code` for one request without a twin (tests keep them equal)."""
        us = round((t - self.start_time) * 1e6)
        lo, hi = REPLY_LATENCY_S
        latency = lo + (hi - lo) * unit_hash_scalar(self.seed, 11, us, module, kind, 0)
        answered, code = True, 0
        for f in self.faults:
            begin, end = f.window(self.start_time)
            if not begin <= t < end or f.kind not in PROTOCOL_ONLY_KINDS_AT_REQUEST:
                continue
            target = fault_module(f, self.addresses)
            if target is not None and target != module:
                continue
            if f.kind in ("module_silent", "controller_silent"):
                answered = False
            elif f.kind == "slow_replies":
                latency += f.number("latency", SLOW_REPLY_DEFAULT_MS) / 1000.0
            else:  # rejected_requests
                hit = self.error_code(
                    np.array([t]), np.array([module]), np.array([kind]), default, largest
                )
                code = int(hit[0]) or code
        return answered, latency, code

    def twin_windows(self, module: int) -> list[Window]:
        return self.windows("duplicate_address", module)

    # the plant -------------------------------------------------------------------------------
    def delivering(self, t: F64, module: int) -> BoolArray:
        m = np.full(t.shape, module, np.int64)
        on = self.session.modules_on(t)
        off = any_window(t, self.self_off[module]) if self.self_off else np.zeros(t.shape, bool)
        return on & ~self.silent(t, m) & ~off

    def values(self, t: F64, module: I64, twin: BoolArray) -> Values:
        n = t.shape[0]
        share_sum = np.zeros(n)
        delivering = np.zeros(n, bool)
        for k in range(self.modules):
            d = self.delivering(t, k)
            share_sum += d * self.imbalance[k]
            delivering |= d & (module == k)
        twin_factor = np.where(twin, 1.0 + IMBALANCE, 1.0)
        imb = self.imbalance[module] * twin_factor
        total = self.session.current(t)
        share = np.divide(imb, share_sum, out=np.zeros(n), where=share_sum > 0)
        noise = self.hash01(17, self.micros(t), module, twin)
        current = np.where(delivering, total * share + (noise - 0.5) * 0.2, 0.0)
        current = np.clip(current, 0.0, None)
        voltage = np.where(delivering, self.session.voltage(t) + (noise - 0.5) * 0.6, 0.0)
        power_kw = voltage * current / 1000.0
        temperature = self.session.m.ambient_c + 0.8 * power_kw + (noise - 0.5) * 0.4
        comm = np.zeros(n, bool)
        for k in range(self.modules):
            if self.comm_alarm and self.comm_alarm[k]:
                comm |= (module == k) & any_window(t, self.comm_alarm[k])
        dup = np.zeros(n, bool)
        for k in range(self.modules):
            for w in self.twin_windows(k):
                dup |= (module == k) & w.contains(t)
        address = np.asarray(self.addresses, np.int64)[module]
        serial = 100_000 + address * 17 + twin.astype(np.int64) * 5000
        return Values(
            voltage=voltage,
            current=current,
            temperature=temperature,
            on=delivering,
            comm_alarm=comm,
            duplicate_alarm=dup,
            serial=serial,
            noise=self.hash01(19, self.micros(t), module, twin),
        )

    # session commands ------------------------------------------------------------------------
    def session_times(self, t0: float, t1: float, at: float) -> F64:
        """Times in [t0, t1) of the event at session time ``at`` (every session)."""
        cycle = self.session.m.cycle_s
        k0 = math.ceil((t0 - self.start_time - at) / cycle)
        k1 = math.ceil((t1 - self.start_time - at) / cycle)
        return self.start_time + at + cycle * np.arange(max(k0, 0), max(k1, 0), dtype=np.float64)

    def target_voltage(self, t: F64) -> F64:
        """The voltage setpoint a controller sends: the battery's voltage while pre-charging,
        then the output voltage a second ahead (modelled)."""
        out: F64 = np.maximum(self.session.voltage(t + 1.0), self.session.battery_voltage(t))
        return out

    def setpoint_times(self, t0: float, t1: float, period: float = 1.0) -> F64:
        """Setpoint updates while the modules are on: every ``period`` s of session time
        (modelled: EvseManager's update rate is not a protocol fact)."""
        k0 = math.ceil((t0 - self.start_time) / period)
        k1 = math.ceil((t1 - self.start_time) / period)
        t = self.start_time + period * np.arange(max(k0, 0), max(k1, 0), dtype=np.float64)
        return t[self.session.modules_on(t)]


def fault_module(f: Fault, addresses: Sequence[int]) -> int | None:
    """Module index a fault concerns: ``module=ADDRESS``, ``first``, ``last`` or ``all``
    (None).  Default ``all`` for controller_silent and rejected_requests, else ``last``."""
    default = "all" if f.kind in ("controller_silent", "rejected_requests") else "last"
    raw = str(f.params.get("module", default))
    if raw == "all":
        return None
    if raw == "first":
        return 0
    if raw == "last":
        return len(addresses) - 1
    address = f.integer("module", 0)
    if address not in addresses:
        raise InputError(
            f"fault {f.kind}: module={address} is not one of the simulated module addresses "
            f"({', '.join(str(a) for a in addresses)}); use one of them, first, last or all"
        )
    return addresses.index(address)


# -- protocols ---------------------------------------------------------------------------------


class Protocol(ABC):
    """One protocol's controller and modules (see the module docstring)."""

    #: ``--protocol`` name, pack key.
    name: str = ""
    default_modules: int = 4
    max_modules: int = 60
    #: Current one module delivers at full load, A (sizes the session's total current).
    module_current_a: float = 40.0
    #: Error code ``rejected_requests`` sets by default (None: the protocol has none), and the
    #: largest code its error field holds.
    default_error: int | None = None
    max_error: int = 0xFF

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @staticmethod
    def addresses(n: int) -> list[int]:
        """Module addresses 1..n (protocols with another convention override this)."""
        return list(range(1, n + 1))

    def silence_windows(self, module: int) -> list[Window]:
        """When the controller sends nothing to module index ``module`` (for self-off)."""
        return self.ctx.windows("controller_silent", module)

    @abstractmethod
    def schedule(self, t_end: float) -> Requests:
        """Every request queued before ``t_end`` not returned yet (called with increasing
        ``t_end``; the requests come back in time order)."""

    @abstractmethod
    def responders(self, req: Requests) -> tuple[IntpArray, I64, I64]:
        """(request row, module index, frame number) of every answer frame the requests
        expect; the frames of one answer follow each other on the wire.  A rejected request
        gets its first frame only (carrying the error)."""

    @abstractmethod
    def reply(self, req: Requests, ans: Answers, t: F64, error: I64, v: Values) -> tuple[U32, U8]:
        """Identifiers and payloads of the answers (``req`` rows aligned with ``ans``)."""


# -- the simulator ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProtocolSimConfig:
    """What to simulate: protocol, modules (None: the protocol's default), seed, start time,
    bitrate (None: the pack's, else 125 kbit/s), channel and faults."""

    protocol: str
    modules: int | None = None
    seed: int = 0
    start_time: float = DEFAULT_START_TIME
    bitrate: int | None = None
    channel: str = "can0"
    faults: tuple[Fault, ...] = ()


class ProtocolSimulator:
    """A protocol's controller and modules on one bus, in simulated time (FrameBatch chunks).

    Same interface as :class:`candiag.sim.charger.ChargerSimulator` (``generate``,
    ``chunks``, ``nominal_bus_load``, ``start_time``) so the live runner and the CLI drive
    either.  Chunks must follow each other (an earlier or later ``t_start`` than the last
    ``t_end`` restarts the simulation and runs it up to ``t_start``).
    """

    def __init__(self, config: ProtocolSimConfig) -> None:
        from candiag.sim.protocols import protocol_class

        self.config = config
        self.protocol_class = protocol_class(config.protocol)
        cls = self.protocol_class
        n = cls.default_modules if config.modules is None else config.modules
        if not 1 <= n <= cls.max_modules:
            raise InputError(
                f"--modules must be 1..{cls.max_modules} for --protocol {cls.name}, got {n}"
            )
        for f in config.faults:
            if f.kind not in PROTOCOL_FAULT_KINDS:
                raise InputError(
                    f"fault {f.kind} belongs to the reference charger; with --protocol choose "
                    f"one of {', '.join(PROTOCOL_FAULT_KINDS)}"
                )
        self.pack = pack_info(cls.name)
        self.bitrate = config.bitrate or self.pack.bitrate or DEFAULT_BITRATE
        self.modules = n
        self.start_time = config.start_time
        self.channel = config.channel
        self._reset()

    def _reset(self) -> None:
        cfg, cls = self.config, self.protocol_class
        rng = np.random.default_rng(cfg.seed)
        addresses = cls.addresses(self.modules)
        model = ChargerModel(target_current_a=cls.module_current_a * self.modules)
        self.ctx = Context(
            pack=self.pack,
            addresses=addresses,
            start_time=cfg.start_time,
            seed=cfg.seed,
            bitrate=self.bitrate,
            session=Session(model, cfg.start_time),
            faults=list(cfg.faults),
            imbalance=rng.uniform(1.0 - IMBALANCE, 1.0 + IMBALANCE, self.modules),
        )
        for f in cfg.faults:  # validate module parameters before any frame is made
            fault_module(f, addresses)
        self.protocol = cls(self.ctx)
        self.ctx.self_off, self.ctx.comm_alarm = self._self_off_windows()
        self._free_at = -math.inf  # when the last frame put on the wire ends
        self._on_wire = FrameBatch.empty(channels=[self.channel])  # stamped, ending later
        self._queued = FrameBatch.empty(channels=[self.channel])  # answers due in a later chunk
        self._cursor = self.start_time

    def _self_off_windows(self) -> tuple[list[list[Window]], list[list[Window]]]:
        """Per module: output off (no request for the pack's module timeout, until the next
        session switches it on) and the communication alarm (until asked again for
        ``ALARM_HOLD_S``)."""
        timeout = self.pack.module_timeout_ms / 1000.0
        off: list[list[Window]] = [[] for _ in range(self.modules)]
        alarm: list[list[Window]] = [[] for _ in range(self.modules)]
        if timeout <= 0:
            return off, alarm
        m = self.ctx.session.m
        for k in range(self.modules):
            for w in self.protocol.silence_windows(k):
                if w.end - w.begin <= timeout:
                    continue
                begin = w.begin + timeout
                back_on = math.inf
                if math.isfinite(w.end):  # switched on again by the next session's start
                    starts = self.ctx.session_times(w.end, w.end + m.cycle_s, m.precharge_at)
                    back_on = float(starts[0]) if starts.size else math.inf
                off[k].append(Window(begin, back_on))
                alarm[k].append(Window(begin, w.end + ALARM_HOLD_S))
        return off, alarm

    # -- generation ------------------------------------------------------------------------
    def nominal_bus_load(self) -> float:
        """Load ratio of the healthy traffic (the first 10 s of a fault-free run)."""
        healthy = ProtocolSimulator(replace(self.config, faults=()))
        batch = healthy.generate(healthy.start_time, healthy.start_time + 10.0)
        bits = float(busload_frame_bits(batch)[0].sum())
        return bits / 10.0 / self.bitrate

    def chunks(self, duration: float, chunk_seconds: float = 10.0) -> Iterator[FrameBatch]:
        steps = max(1, math.ceil(duration / chunk_seconds))
        for k in range(steps):
            t0 = self.start_time + k * chunk_seconds
            t1 = self.start_time + min(duration, (k + 1) * chunk_seconds)
            yield self.generate(t0, t1)

    def generate(self, t_start: float, t_end: float) -> FrameBatch:
        """All frames with ``t_start <= timestamp < t_end`` (absolute seconds), sorted."""
        if t_end <= t_start:
            return FrameBatch.empty(channels=[self.channel])
        if t_start != self._cursor:
            self._reset()
            while self._cursor < t_start:
                self._step(min(self._cursor + 10.0, t_start))
        return self._step(t_end)

    def _step(self, t_end: float) -> FrameBatch:
        t_start = self._cursor
        self._cursor = t_end
        req = self.protocol.schedule(t_end)
        req = req.take(~self.ctx.not_asked(req.t, req.module))
        requests = self._request_frames(req)
        answers, row, offset = self._answers(req)
        earlier = self._queued  # answers to requests of earlier chunks: their times are known
        for last_pass in range(MAX_WIRE_PASSES + 1):
            due = answers.timestamp < t_end
            queued = FrameBatch.concat([earlier, requests, answers.take(due)])
            order = np.argsort(queued.timestamp, kind="stable")
            queued = queued.take(order)
            ends = wire_ends(queued, self._free_at, self.bitrate)
            if last_pass == MAX_WIRE_PASSES:
                break  # not settled (a very busy bus): keep this wire, answers as they are
            request_end = np.empty(len(req))
            is_request = (order >= len(earlier)) & (order < len(earlier) + len(req))
            request_end[order[is_request] - len(earlier)] = ends[is_request]
            moved = request_end[row] + offset
            if np.array_equal(moved, answers.timestamp):
                break
            answers = replace(answers, timestamp=moved)
        self._queued = answers.take(~due)
        if len(queued):
            self._free_at = float(ends[-1])
        stamped = replace(queued, timestamp=ends)
        both = FrameBatch.concat([self._on_wire, stamped])
        done = both.timestamp < t_end
        self._on_wire = both.take(~done)
        sent = both.take(done)
        extra = self._fault_frames(t_start, t_end)
        batch = FrameBatch.concat([sent, *extra]) if extra else sent
        batch = self._apply_bus_off(batch, t_start, t_end)
        return batch.take(np.argsort(batch.timestamp, kind="stable"))

    def _request_frames(self, req: Requests) -> FrameBatch:
        n = len(req)
        return FrameBatch(
            timestamp=req.t,
            can_id=req.can_id,
            flags=np.full(n, FLAG_EXTENDED, np.uint8),
            dlc=np.full(n, 8, np.uint8),
            data=req.data,
            channel=np.zeros(n, np.int16),
            channels=[self.channel],
        )

    def _answers(self, req: Requests) -> tuple[FrameBatch, IntpArray, F64]:
        """The answers to ``req``: frames (stamped as if each request ended at once), the
        request row of each, and its delay after the end of its request."""
        ctx, proto = self.ctx, self.protocol
        row, module, part = proto.responders(req)
        t_req = req.t[row]
        answering = ~ctx.silent(t_req, module)
        row, module, part, t_req = (
            row[answering],
            module[answering],
            part[answering],
            t_req[answering],
        )
        twin = np.zeros(row.size, bool)
        extra = [(row, module, part, twin)]
        for k in range(ctx.modules):
            for w in ctx.twin_windows(k):
                hit = (module == k) & w.contains(t_req)
                extra.append((row[hit], module[hit], part[hit], np.ones(int(hit.sum()), bool)))
        row = np.concatenate([e[0] for e in extra]).astype(np.intp)
        module = np.concatenate([e[1] for e in extra]).astype(np.int64)
        part = np.concatenate([e[2] for e in extra]).astype(np.int64)
        twin = np.concatenate([e[3] for e in extra])
        sub = req.take(row)
        error = ctx.error_code(sub.t, module, sub.kind, proto.default_error, proto.max_error)
        keep = (error == 0) | (part == 0)
        row, module, part, twin, error = (
            row[keep],
            module[keep],
            part[keep],
            twin[keep],
            error[keep],
        )
        sub = sub.take(keep)
        one = frame_seconds(self.bitrate)
        offset = one * part + ctx.latency(sub.t, module, sub.kind, twin)
        t = sub.t + one + offset
        values = ctx.values(t, module, twin)
        can_id, data = proto.reply(sub, Answers(row, module, part, twin), t, error, values)
        n = t.shape[0]
        frames = FrameBatch(
            timestamp=t,
            can_id=can_id.astype(np.uint32),
            flags=np.full(n, FLAG_EXTENDED, np.uint8),
            dlc=np.full(n, 8, np.uint8),
            data=data,
            channel=np.zeros(n, np.int16),
            channels=[self.channel],
        )
        return frames, row, offset

    # -- bus-level faults, as in the reference simulator ---------------------------------------
    def _fault_frames(self, t0: float, t1: float) -> list[FrameBatch]:
        out = []
        for f in self.config.faults:
            if f.kind != "error_frames":
                continue
            begin, end = f.window(self.start_time)
            name = f.text("class", "ack", ERROR_FRAME_CLASSES)
            times = regular_times(begin, end, f.number("rate", 1.0), t0, t1)
            bits, data = error_class_payload(name, times.shape[0], f)
            out.append(error_frame_batch(times, bits, data, self.channel))
        return out

    def _apply_bus_off(self, batch: FrameBatch, t0: float, t1: float) -> FrameBatch:
        markers: list[FrameBatch] = []
        for f in self.config.faults:
            if f.kind != "bus_off":
                continue
            window = Window(*f.window(self.start_time))
            batch = batch.take(~window.contains(batch.timestamp))
            for at, bits in ((window.begin, CAN_ERR_BUSOFF), (window.end, CAN_ERR_RESTARTED)):
                if t0 <= at < t1:
                    markers.append(error_frame_batch(np.array([at]), bits, None, self.channel))
        return FrameBatch.concat([batch, *markers]) if markers else batch


def next_cycle(t: float, first: float, period: float) -> float:
    """The first cycle start (``first + k * period``, k >= 0) at or after ``t``."""
    if not math.isfinite(t):
        return t
    return first + max(math.ceil((t - first) / period), 0) * period


def periodic_times(t0: float, t1: float, first: float, period: float) -> F64:
    """``first + k * period`` inside ``[t0, t1)``, k >= 0."""
    k0 = max(math.ceil((t0 - first) / period), 0)
    k1 = max(math.ceil((t1 - first) / period), 0)
    times: F64 = first + period * np.arange(k0, k1, dtype=np.float64)
    return times[(times >= t0) & (times < t1)]


def burst(
    times: F64, per_cycle: int, spacing: float = 20e-6
) -> tuple[F64, I64, I64]:  # fmt: skip
    """Expand cycle start times into ``per_cycle`` frames queued ``spacing`` apart (the order a
    driver writes them in): (queue time, cycle index, position in the cycle)."""
    cycle = np.repeat(np.arange(times.shape[0], dtype=np.int64), per_cycle)
    pos = np.tile(np.arange(per_cycle, dtype=np.int64), times.shape[0])
    return times[cycle] + pos * spacing, cycle, pos


def take_window(req: Requests, t_lo: float, t_hi: float) -> Requests:
    return req.take((req.t >= t_lo) & (req.t < t_hi))


def values_dict(v: Values) -> dict[str, Any]:
    """A Values as a plain dict (tests, debugging)."""
    return {k: getattr(v, k) for k in v.__dataclass_fields__}


class CycleProtocol(Protocol):
    """A protocol whose controller works in cycles that do not wait for answers: the
    subclass lists the requests of the cycles starting in ``[t_lo, t_hi)``; requests a cycle
    queues after ``t_hi`` are kept for the next call."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._done = ctx.start_time
        self._pending = Requests.empty()

    @abstractmethod
    def cycle_requests(self, t_lo: float, t_hi: float) -> Requests:
        """Requests of the cycles (and commands) that start in ``[t_lo, t_hi)``."""

    def schedule(self, t_end: float) -> Requests:
        fresh = self.cycle_requests(self._done, t_end)
        self._done = t_end
        both = Requests.concat([self._pending, fresh]).sorted()
        now = both.t < t_end
        self._pending = both.take(~now)
        return both.take(now)

    def first_poll_outside(
        self, windows: list[Window], first: float, period: float, start: float
    ) -> float:
        """The first poll time (``first + k * period``) at or after ``start`` that lies in
        none of ``windows`` (inf if none does); one step per window, not per poll."""
        t = start
        for _ in range(len(windows) + 1):
            inside = [w for w in windows if w.begin <= t < w.end]
            if not inside:
                return t
            end = max(w.end for w in inside)
            if not math.isfinite(end):
                return math.inf
            t = first + max(math.ceil((end - first) / period), 0) * period
        return t if not any(w.begin <= t < w.end for w in windows) else math.inf

    def first_cycle(self, period: float, salt: int = 3) -> float:
        """When the controller's first cycle starts: a seed-dependent phase in one period."""
        return self.ctx.start_time + 0.05 + float(self.ctx.hash01(salt, np.array([0]))[0]) * period
