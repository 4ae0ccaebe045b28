"""The simulated reference charger: its traffic, in simulated time, as FrameBatch chunks.

:class:`ChargerSimulator` emits what the reference DBCs (``dbc/``) describe:
N power modules (addresses 1..N in the identifier), the contactor board, the
IVT-S DC meter, the cooling unit and the IMD, every message at its DBC cycle
time with a fixed random phase, values from :mod:`candiag.sim.plant`, and the
faults of :mod:`candiag.sim.faults`.  Frames share one wire: each leaves it after the
one before at the configured bitrate and is stamped at its end (:class:`_Wire`), so a
capture has physically possible timing.  ``generate(t0, t1)`` is pure numpy per
message (no per-frame Python) and encodes with :class:`MessageEncoder`, which
is byte-identical to cantools.  Chunks must be requested in increasing time
order for the plant state to carry over (an earlier ``t0`` restarts the plant).

Why one file of ~700 lines: one message model per reference-DBC family, each a few lines
of numpy, read best side by side with the wire model that stamps them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import cantools
import numpy as np
import numpy.typing as npt

from candiag.errors import DbcError, InputError
from candiag.health.bitrate import DEFAULT_BITRATE
from candiag.health.busload import frame_bits as busload_frame_bits
from candiag.ingest.frames import FLAG_ERROR, FLAG_EXTENDED, FrameBatch
from candiag.sim.encode import MessageEncoder
from candiag.sim.faults import (
    ERROR_FRAME_CLASSES,
    Fault,
    controller_payload,
    error_class_payload,
    error_frame_batch,
    regular_times,
)
from candiag.sim.plant import (
    ChargerModel,
    Electrical,
    Plant,
    PlantFaults,
    Session,
    Window,
    any_window,
    electrical,
)
from candiag.socketcan_errors import (
    CAN_ERR_BUSOFF,
    CAN_ERR_CNT,
    CAN_ERR_CRTL,
    CAN_ERR_RESTARTED,
    ERROR_PASSIVE_THRESHOLD,
    ERROR_WARNING_THRESHOLD,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
IntpArray = npt.NDArray[np.intp]
Values = dict[str, Any]

DEFAULT_START_TIME = 1_700_000_000.0
FIRMWARE = {"DCDC_Major": 1, "DCDC_Minor": 4, "PFC_Major": 2, "PFC_Minor": 0}
CONTACTOR_OPERATIONS_BASE = 1520
FEEDBACK_DELAY_S = 0.010
OPEN, CLOSED = 0, 1
CONTACTOR_SIGNALS = {"dc_plus": "DCPlus", "dc_minus": "DCMinus", "precharge": "Precharge"}
FILLER_ID = 0x7F0
# IVT-S result identifiers (byte 0 of each result message).
METER_RESULT_ID = {
    "Current": 0,
    "Voltage1": 1,
    "Temperature": 4,
    "Power": 5,
    "Charge": 6,
    "Energy": 7,
}


def frame_bits(extended: bool, dlc: int) -> int:
    """Bits on the wire without stuffing (canbusload ``-i``): 47 + 8n (11-bit), 67 + 8n (29-bit)."""
    return (67 if extended else 47) + 8 * dlc


def reference_dbc_files() -> list[Path]:
    """The reference charger DBCs shipped in ``candiag/data/dbc``."""
    folder = Path(str(resources.files("candiag").joinpath("data", "dbc")))
    files = sorted(folder.glob("*.dbc"))
    if not files:
        raise DbcError(f"{folder}: no reference DBC files; reinstall candiag")
    return files


@dataclass(frozen=True)
class SimConfig:
    """What to simulate: module count, seed, start time, bitrate, channel name and faults."""

    modules: int = 8
    seed: int = 0
    start_time: float = DEFAULT_START_TIME
    bitrate: int = DEFAULT_BITRATE
    channel: str = "can0"
    faults: tuple[Fault, ...] = ()
    model: ChargerModel = field(default_factory=ChargerModel)
    dbc_files: tuple[Path, ...] = ()


@dataclass
class _Emitter:
    """One transmitter of a message: a power module (address 1..N, or a twin) or node 0."""

    address: int
    module: int  # index into the physical modules, -1 when not a power module
    off: list[Window]  # no frames at all in these windows
    jitter: list[tuple[Window, float]]


@dataclass
class _Stream:
    message: Any
    encoder: MessageEncoder
    period: float
    extended: bool
    masked: bool
    emitters: list[_Emitter]
    phase: F64
    values: Callable[[F64, IntpArray, I64], Values]

    @property
    def address(self) -> I64:
        return np.array([e.address for e in self.emitters], np.int64)

    @property
    def module(self) -> IntpArray:
        return np.array([e.module for e in self.emitters], np.intp)


class _Wire:
    """The bus: frames leave it one after the other, first queued first sent.

    A frame starts no earlier than its queue time and the end of the frame before it, and
    lasts its exact bit count (:func:`candiag.health.busload.frame_bits`, interframe space
    included) at the bitrate; its timestamp is its end, as SocketCAN stamps a received
    frame.  With ``S_i`` the cumulative durations up to frame ``i`` and ``t_j`` the queue
    times, ``end_i = S_i + max(free, max_{j<=i}(t_j - S_{j-1}))``: one
    ``np.maximum.accumulate``, no per-frame loop.  ``free`` (the end of the last frame) and
    the frames that end after a chunk carry over to the next chunk, which must start where
    the last one ended (otherwise the wire starts idle).  Arbitration by identifier is not
    modelled: queued frames go out in queue order.
    """

    def __init__(self, bitrate: int, channel: str) -> None:
        self.bitrate = bitrate
        self.channel = channel
        self.free_at = -math.inf
        self.until = math.nan
        self.pending = FrameBatch.empty(channels=[channel])

    def send(
        self, queued: FrameBatch, bits: npt.NDArray[np.int32], t_start: float, t_end: float
    ) -> FrameBatch:
        """``queued`` (sorted by queue time, ``bits`` long each) stamped at their ends; those
        ending before ``t_end``."""
        if t_start != self.until:
            self.free_at, self.pending = -math.inf, FrameBatch.empty(channels=[self.channel])
        self.until = t_end
        if len(queued):
            duration = bits / self.bitrate
            done = np.cumsum(duration)
            start_bound = np.maximum.accumulate(queued.timestamp - (done - duration))
            ends = done + np.maximum(start_bound, self.free_at)
            self.free_at = float(ends[-1])
            queued = dataclasses.replace(queued, timestamp=ends)
            queued = FrameBatch.concat([self.pending, queued]) if len(self.pending) else queued
        else:
            queued = self.pending
        ready = queued.timestamp < t_end
        self.pending = queued.take(~ready)
        return queued.take(ready)


class ChargerSimulator:
    """The reference charger's CAN traffic, generated in simulated time."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        cfg = self.config
        if cfg.modules < 1 or cfg.modules > 255:
            raise ValueError("modules must be 1..255 (the address is one identifier byte)")
        self.start_time = cfg.start_time
        self.channel = cfg.channel
        self.db = cantools.database.Database()
        for path in cfg.dbc_files or reference_dbc_files():
            self.db.add_dbc_file(str(path))
        self._rng = np.random.default_rng(cfg.seed)
        self.model = cfg.model
        self.session = Session(cfg.model, cfg.start_time)
        self._faults = list(cfg.faults)
        self._build_modules()
        self.plant = Plant(
            cfg.model,
            self.session,
            self._imbalance,
            PlantFaults(
                no_flow=self._windows("cooling_no_flow"),
                meter_reversed=self._windows("meter_reversed"),
                module_off=[e.off for e in self._modules],
            ),
        )
        self._streams = [self._stream(m) for m in self.db.messages]
        self._wire = _Wire(cfg.bitrate, self.channel)
        self._filler_sent: dict[int, int] = {}  # overload fault index -> filler frames so far
        self._filler_carry: dict[int, float] = {}  # ... and the fraction of one still due
        self.nominal_bits_per_second = sum(
            len(s.emitters) * frame_bits(s.extended, s.message.length) / s.period
            for s in self._streams
        )

    # -- set-up -------------------------------------------------------------------
    def _windows(self, kind: str, **match: int) -> list[Window]:
        out = []
        for f in self._faults:
            if f.kind != kind:
                continue
            if any(f.integer(k, v) != v for k, v in match.items()):
                continue
            out.append(Window(*f.window(self.start_time)))
        return out

    def _build_modules(self) -> None:
        n = self.config.modules
        self._modules: list[_Emitter] = []
        for address in range(1, n + 1):
            self._modules.append(
                _Emitter(address, address - 1, self._silent(address), self._jitter(address))
            )
        for f in self._faults:
            if f.kind != "duplicate_address":
                continue
            address = f.integer("module", 2)
            begin, end = f.window(self.start_time)
            absent = [Window(-math.inf, begin), Window(end, math.inf)]
            self._modules.append(
                _Emitter(address, len(self._modules), absent, self._jitter(address))
            )
        self._imbalance = self._rng.uniform(0.97, 1.03, len(self._modules))
        self.duplicate_windows = [
            (f.integer("module", 2), Window(*f.window(self.start_time)))
            for f in self._faults
            if f.kind == "duplicate_address"
        ]

    def _silent(self, address: int) -> list[Window]:
        return [
            Window(*f.window(self.start_time))
            for f in self._faults
            if f.kind == "module_silent" and f.integer("module", 3) == address
        ]

    def _jitter(self, address: int) -> list[tuple[Window, float]]:
        return [
            (Window(*f.window(self.start_time)), f.number("ratio", 0.5))
            for f in self._faults
            if f.kind == "jitter" and f.integer("module", 4) == address
        ]

    def _stream(self, message: Any) -> _Stream:
        attrs = message.dbc.attributes if message.dbc else {}
        family = str(attrs["CandiagNodeFamily"].value) if "CandiagNodeFamily" in attrs else ""
        mask = int(attrs["CandiagNodeMask"].value) if "CandiagNodeMask" in attrs else 0
        if not message.cycle_time:
            raise DbcError(f"{message.name}: no GenMsgCycleTime; the simulator needs one")
        producer = self._producers().get(message.name)
        if producer is None:
            raise DbcError(
                f"{message.name}: the simulator has no model for this message "
                "(it simulates the reference charger DBCs in dbc/)"
            )
        emitters = self._modules if family == "power_module" else [_Emitter(0, -1, [], [])]
        period = message.cycle_time / 1000.0
        return _Stream(
            message=message,
            encoder=MessageEncoder(message),
            period=period,
            extended=bool(message.is_extended_frame),
            masked=mask != 0,
            emitters=emitters,
            phase=self._rng.uniform(0.0, period, len(emitters)),
            values=producer,
        )

    # -- what other simulated devices read -----------------------------------------
    def electrical(self, t: float) -> Electrical:
        """DC output and AC input at ``t``, as this charger's modules deliver them (the
        Modbus meters of the demo read them, :mod:`candiag.modbus.sim`).  A reversed CAN
        DC meter (fault ``meter_reversed``) reverses its own frames only."""
        return electrical(self.session, t)

    # -- generation ---------------------------------------------------------------
    def nominal_bus_load(self) -> float:
        """Load ratio of the healthy traffic at the configured bitrate (no-stuffing estimate)."""
        return self.nominal_bits_per_second / self.config.bitrate

    def chunks(self, duration: float, chunk_seconds: float = 10.0) -> Iterator[FrameBatch]:
        """``duration`` seconds from the start, in chunks of ``chunk_seconds``."""
        steps = max(1, math.ceil(duration / chunk_seconds))
        for k in range(steps):
            t0 = self.start_time + k * chunk_seconds
            t1 = self.start_time + min(duration, (k + 1) * chunk_seconds)
            yield self.generate(t0, t1)

    def generate(self, t_start: float, t_end: float) -> FrameBatch:
        """All frames with ``t_start <= timestamp < t_end`` (absolute seconds), sorted by time.

        Data frames are queued at their cycle times and leave the wire one after the other
        (:class:`_Wire`): a timestamp is the end of the frame, and a frame still on the wire
        at ``t_end`` comes with the next chunk.
        """
        if t_end <= t_start:
            return FrameBatch.empty(channels=[self.channel])
        self.plant.ensure(t_start, t_end)
        parts = [self._stream_frames(s, t_start, t_end) for s in self._streams]
        streams = FrameBatch.concat([p for p in parts if len(p)] or [parts[0]])
        stream_bits = busload_frame_bits(streams)[0]
        faults = self._fault_frames(t_start, t_end, streams, stream_bits)
        fillers = [p for p in faults if not p.is_error.any()]
        errors = [p for p in faults if p.is_error.any()]
        queued = FrameBatch.concat([streams, *fillers])
        bits = np.concatenate([stream_bits, *(busload_frame_bits(p)[0] for p in fillers)])
        order = np.argsort(queued.timestamp, kind="stable")
        sent = self._wire.send(queued.take(order), bits[order], t_start, t_end)
        batch = FrameBatch.concat([sent, *errors]) if errors else sent
        batch = self._apply_bus_off(batch, t_start, t_end)
        order = np.argsort(batch.timestamp, kind="stable")
        return batch.take(order)

    def _times(self, s: _Stream, t0: float, t1: float) -> tuple[F64, IntpArray, I64]:
        base = self.start_time + s.phase
        j_lo = np.ceil((t0 - base) / s.period).astype(np.int64)
        j_hi = np.ceil((t1 - base) / s.period).astype(np.int64)
        j_lo = np.maximum(j_lo, 0)
        counts = np.maximum(j_hi - j_lo, 0)
        total = int(counts.sum())
        emitter = np.repeat(np.arange(len(s.emitters), dtype=np.intp), counts)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        j = j_lo[emitter] + (np.arange(total, dtype=np.int64) - offsets[emitter])
        t = base[emitter] + j * s.period
        keep = np.ones(total, bool)
        for e_index, e in enumerate(s.emitters):
            mine = emitter == e_index
            if e.off:
                keep &= ~(mine & any_window(t, e.off))
            for window, ratio in e.jitter:
                hit = mine & window.contains(t)
                delay = self._rng.uniform(0.0, ratio * s.period, int(hit.sum()))
                t[hit] = np.minimum(t[hit] + delay, np.nextafter(t1, -math.inf))
        return t[keep], emitter[keep], j[keep]

    def _stream_frames(self, s: _Stream, t0: float, t1: float) -> FrameBatch:
        t, emitter, j = self._times(s, t0, t1)
        n = t.shape[0]
        values = s.values(t, s.module[emitter], j) if n else {}
        data = s.encoder.encode(values, n)
        can_id = np.full(n, s.message.frame_id, np.uint32)
        if s.masked:
            can_id |= s.address[emitter].astype(np.uint32)
        return FrameBatch(
            timestamp=t,
            can_id=can_id,
            flags=np.full(n, FLAG_EXTENDED if s.extended else 0, np.uint8),
            dlc=np.full(n, s.message.length, np.uint8),
            data=data,
            channel=np.zeros(n, np.int16),
            channels=[self.channel],
        )

    # -- faults that add or remove frames -------------------------------------------
    def _fault_frames(
        self, t0: float, t1: float, traffic: FrameBatch, traffic_bits: npt.NDArray[np.int32]
    ) -> list[FrameBatch]:
        out: list[FrameBatch] = []
        for index, f in enumerate(self._faults):
            begin, end = f.window(self.start_time)
            if begin >= t1 or end < t0:
                continue
            if f.kind == "error_frames":
                name = f.text("class", "ack", ERROR_FRAME_CLASSES)
                times = regular_times(begin, end, f.number("rate", 1.0), t0, t1)
                bits, data = error_class_payload(name, times.shape[0], f)
                out.append(error_frame_batch(times, bits, data, self.channel))
            elif f.kind == "wrong_bitrate":
                out.append(self._wrong_bitrate(f, begin, end, t0, t1))
            elif f.kind == "controller":
                out.append(self._controller(f, begin, end, t0, t1))
            elif f.kind == "overload":
                lo, hi = max(begin, t0), min(end, t1)
                taken = traffic_bits[(traffic.timestamp >= lo) & (traffic.timestamp < hi)]
                out.append(self._overload(index, f, lo, hi, float(taken.sum())))
        return out

    def _wrong_bitrate(
        self, f: Fault, begin: float, end: float, t0: float, t1: float
    ) -> FrameBatch:
        interval = f.number("interval", 0.5)
        burst = f.integer("burst", 8)
        spacing = f.number("spacing", 0.002)
        starts = regular_times(begin, end, 1.0 / interval, t0 - burst * spacing, t1)
        times = (starts[:, None] + spacing * np.arange(burst)).ravel()
        kinds = np.tile(np.arange(burst) % 3, starts.shape[0])
        keep = (times >= t0) & (times < t1) & (times < end)
        times, kinds = times[keep], kinds[keep]
        bits, _ = error_class_payload("stuff", 0, f)
        data = np.zeros((times.shape[0], 8), np.uint8)
        # Cycle stuff / form / CRC errors, as a receiver sampling at the wrong rate sees them.
        for k, name in enumerate(("stuff", "form", "crc")):
            _, rows = error_class_payload(name, int((kinds == k).sum()), f)
            data[kinds == k] = rows
        return error_frame_batch(times, bits, data, self.channel)

    def _controller(self, f: Fault, begin: float, end: float, t0: float, t1: float) -> FrameBatch:
        state = f.text("state", "warning", ("warning", "passive"))
        tec, rec = f.integer("tec", 100 if state == "warning" else 136), f.integer("rec", 0)
        limit = ERROR_WARNING_THRESHOLD if state == "warning" else ERROR_PASSIVE_THRESHOLD
        if max(tec, rec) < limit:
            raise InputError(
                f"fault controller: state={state} needs tec or rec >= {limit} (got tec={tec}, "
                f"rec={rec}); warning is >= {ERROR_WARNING_THRESHOLD}, "
                f"passive >= {ERROR_PASSIVE_THRESHOLD}"
            )
        rows, times = [], []
        if t0 <= begin < t1:
            times.append(begin)
            rows.append(controller_payload(state, tec, rec))
        if t0 <= end < t1:
            times.append(end)
            rows.append(controller_payload("active", f.integer("end_tec", 0), 0))
        data = np.array(rows, np.uint8).reshape(len(rows), 8)
        return error_frame_batch(np.array(times), CAN_ERR_CRTL | CAN_ERR_CNT, data, self.channel)

    def _overload(self, index: int, f: Fault, lo: float, hi: float, taken: float) -> FrameBatch:
        """Filler frames that bring the wire to ``load`` over ``[lo, hi)``.

        ``load`` is the exact load, stuff bits included, as candiag and ``canbusload -e``
        measure it: the filler takes the bit time the other frames of this stretch leave
        (``taken`` bits) up to the target, so the wire is never asked for more than it has;
        evenly spaced, the fraction of a frame carried to the next chunk.  Payload: the
        filler's running count (8 bytes, little-endian).
        """
        n = 0
        sent = self._filler_sent.get(index, 0)
        if hi > lo:
            target_bits = f.number("load", 0.9) * self.config.bitrate * (hi - lo)
            probe = self._filler(f, lo, hi, 16, sent)
            filler_bits = float(busload_frame_bits(probe)[0].mean())
            wanted = max(0.0, target_bits - taken) / filler_bits + self._filler_carry.get(
                index, 0.0
            )
            n = int(wanted)
            self._filler_carry[index] = wanted - n
        self._filler_sent[index] = sent + n
        return self._filler(f, lo, hi, n, sent)

    def _filler(self, f: Fault, lo: float, hi: float, n: int, first: int) -> FrameBatch:
        times = lo + (np.arange(n, dtype=np.float64) + 0.5) * ((hi - lo) / max(n, 1))
        counter = np.arange(first, first + n, dtype=np.uint64)
        return FrameBatch(
            timestamp=times,
            can_id=np.full(n, f.integer("id", FILLER_ID), np.uint32),
            flags=np.zeros(n, np.uint8),
            dlc=np.full(n, 8, np.uint8),
            data=counter.astype("<u8").view(np.uint8).reshape(n, 8),
            channel=np.zeros(n, np.int16),
            channels=[self.channel],
        )

    def _apply_bus_off(self, batch: FrameBatch, t0: float, t1: float) -> FrameBatch:
        """Nothing is received while the controller is bus-off; mark entry and restart."""
        markers: list[FrameBatch] = []
        for window in self._windows("bus_off"):
            batch = batch.take(~window.contains(batch.timestamp))
            for at, bits in ((window.begin, CAN_ERR_BUSOFF), (window.end, CAN_ERR_RESTARTED)):
                if t0 <= at < t1:
                    markers.append(error_frame_batch(np.array([at]), bits, None, self.channel))
        return FrameBatch.concat([batch, *markers]) if markers else batch

    # -- signal values per message -------------------------------------------------
    def _producers(self) -> Mapping[str, Callable[[F64, IntpArray, I64], Values]]:
        return {
            "ModuleTelemetry": self._module_telemetry,
            "ModuleStatus": self._module_status,
            "ModuleCapabilities": self._module_capabilities,
            "ModuleVersion": self._module_version,
            "ModuleRegister": self._module_register,
            "ContactorCommand": self._contactor_command,
            "ContactorFeedback": self._contactor_feedback,
            "ContactorCounters": self._contactor_counters,
            "Meter_Current": self._meter("Current", lambda t: self._meter_current(t)),
            "Meter_Voltage1": self._meter("Voltage1", lambda t: self._meter_voltage(t)),
            "Meter_Temperature": self._meter(
                "Temperature", lambda t: self.plant.sample("t_meter", t) + self._noise(t, 0.05)
            ),
            "Meter_Power": self._meter(
                "Power", lambda t: self.plant.sample("meter_i", t) * self.plant.sample("v", t)
            ),
            "Meter_Charge": self._meter("Charge", lambda t: self.plant.sample("charge_as", t)),
            "Meter_Energy": self._meter(
                "Energy", lambda t: self.plant.sample("energy_j", t) / 3600.0
            ),
            "CoolingStatus": self._cooling_status,
            "CoolingActuators": self._cooling_actuators,
            "IMD_Info": self._imd_info,
        }

    def _noise(self, t: F64, sigma: float) -> F64:
        noise: F64 = self._rng.normal(0.0, sigma, size=(t.shape[0],))
        return noise

    def _address(self, module: IntpArray) -> I64:
        return np.array([e.address for e in self._modules], np.int64)[module]

    def _module_telemetry(self, t: F64, module: IntpArray, j: I64) -> Values:
        on = self.session.modules_on(t)
        return {
            "OutputVoltage": self.plant.sample("v", t) + on * self._noise(t, 0.1),
            "OutputCurrent": self.plant.sample_module("i_mod", t, module)
            + on * self._noise(t, 0.05),
        }

    def _module_status(self, t: F64, module: IntpArray, j: I64) -> Values:
        temperature = self.plant.sample_module("t_mod", t, module)
        address = self._address(module)
        duplicate = np.zeros(t.shape[0], bool)
        for dup_address, window in self.duplicate_windows:
            duplicate |= (address == dup_address) & window.contains(t)
        off = ~self.session.modules_on(t)
        return {
            "ModuleGroup": 0,
            "ModuleTemperature": np.clip(np.rint(temperature), -128, 127),
            "id_repeat_alarm": duplicate,
            "over_temperature_alarm": temperature > 85.0,
            "dc_side_off": off,
            "sleeping": off,
        }

    def _module_capabilities(self, t: F64, module: IntpArray, j: I64) -> Values:
        return {
            "MaxOutputVoltage": 1000,
            "MinOutputVoltage": 150,
            "MaxOutputCurrent": 60.0,
            "RatedPower": 40000,
        }

    def _module_version(self, t: F64, module: IntpArray, j: I64) -> Values:
        values: Values = {k: np.full(t.shape[0], v, np.float64) for k, v in FIRMWARE.items()}
        values["HardwareRevision"] = 0x0102
        address = self._address(module)
        for f in self._faults:
            if f.kind != "firmware_mismatch":
                continue
            hit = (address == f.integer("module", 5)) & Window(*f.window(self.start_time)).contains(
                t
            )
            for name, default in FIRMWARE.items():
                key = name.lower()
                fallback = default - 1 if name == "DCDC_Minor" else default
                values[name][hit] = f.integer(key, fallback)
        return values

    def _module_register(self, t: F64, module: IntpArray, j: I64) -> Values:
        return {
            "Register": np.where(j % 2 == 0, 0x1103, 0x1106),
            "InputVoltageAB": self.model.ac_line_v + self._noise(t, 1.0),
            "AmbientTemperature": self.model.ambient_c + self._noise(t, 0.05),
        }

    def _commands(self, t: F64) -> dict[str, F64]:
        return {
            "DCPlus": self.session.dc_plus_closed(t).astype(np.float64),
            "DCMinus": self.session.dc_minus_closed(t).astype(np.float64),
            "Precharge": self.session.precharge_closed(t).astype(np.float64),
        }

    def _contactor_command(self, t: F64, module: IntpArray, j: I64) -> Values:
        values: Values = {f"{k}Command": v for k, v in self._commands(t).items()}
        values["CommandCounter"] = j % 16
        return values

    def _contactor_feedback(self, t: F64, module: IntpArray, j: I64) -> Values:
        commanded = self._commands(t)
        feedback = self._commands(t - FEEDBACK_DELAY_S)
        welded = {k: np.zeros(t.shape[0]) for k in feedback}
        for f in self._faults:
            if f.kind != "contactor_mismatch":
                continue
            name = CONTACTOR_SIGNALS[f.text("contactor", "dc_plus", tuple(CONTACTOR_SIGNALS))]
            mode = f.text("mode", "stuck_open", ("stuck_open", "stuck_closed"))
            hit = Window(*f.window(self.start_time)).contains(t)
            if mode == "stuck_open":
                feedback[name] = np.where(hit, OPEN, feedback[name])
            else:
                feedback[name] = np.where(hit, CLOSED, feedback[name])
                welded[name] = np.where(hit & (commanded[name] == OPEN), 1.0, welded[name])
        hold = {"DCPlus": 0.25, "DCMinus": 0.25, "Precharge": 0.15}
        values: Values = {}
        for name, state in feedback.items():
            values[f"{name}Feedback"] = state
            values[f"{name}Welded"] = welded[name]
            coil = commanded[name] * (hold[name] + self._noise(t, 0.005))
            values[f"{name}CoilCurrent"] = np.clip(coil, 0.0, 2.55)
        values["LinkVoltage"] = np.clip(self.plant.sample("v", t) + self._noise(t, 0.2), 0, None)
        values["FeedbackCounter"] = j % 16
        return values

    def _contactor_counters(self, t: F64, module: IntpArray, j: I64) -> Values:
        m = self.model
        return {
            "DCPlusOperations": CONTACTOR_OPERATIONS_BASE
            + self.session.sessions_begun(t, m.dc_plus_at),
            "DCMinusOperations": CONTACTOR_OPERATIONS_BASE
            + self.session.sessions_begun(t, m.precharge_at),
            "PrechargeOperations": CONTACTOR_OPERATIONS_BASE
            + self.session.sessions_begun(t, m.precharge_at),
        }

    def _meter_current(self, t: F64) -> F64:
        return self.plant.sample("meter_i", t) + self._noise(t, 0.02)

    def _meter_voltage(self, t: F64) -> F64:
        return self.plant.sample("v", t) + self._noise(t, 0.05)

    def _meter(
        self, prefix: str, value: Callable[[F64], F64]
    ) -> Callable[[F64, IntpArray, I64], Values]:
        def produce(t: F64, module: IntpArray, j: I64) -> Values:
            return {
                prefix: value(t),
                f"{prefix}_MsgCount": j % 16,
                f"{prefix}_ResultId": METER_RESULT_ID[prefix],
            }

        return produce

    def _cooling_status(self, t: F64, module: IntpArray, j: I64) -> Values:
        flow = self.plant.sample("flow", t)
        t_in = self.plant.sample("t_in", t)
        t_out = t_in + self.plant.sample("rise", t)
        pump = self.session.pump_command(t)
        no_flow = (pump > 0) & (flow < 2.0)
        over_temperature = t_out > 55.0
        return {
            "CoolantInletTemperature": t_in + self._noise(t, 0.05),
            "CoolantOutletTemperature": t_out + self._noise(t, 0.05),
            "CoolantFlow": np.clip(flow + self._noise(t, 0.05), 0.0, None),
            "StatusCounter": j % 16,
            "NoFlowAlarm": no_flow,
            "OverTemperatureAlarm": over_temperature,
            "CoolingState": np.where(no_flow | over_temperature, 4, 2),
        }

    def _cooling_actuators(self, t: F64, module: IntpArray, j: I64) -> Values:
        pump = self.session.pump_command(t)
        t_out = self.plant.sample("t_in", t) + self.plant.sample("rise", t)
        fan = 20.0 + 70.0 * np.clip((t_out - 30.0) / 20.0, 0.0, 1.0)
        return {
            "PumpSpeedCommand": np.rint(pump * 2) / 2,
            "PumpSpeedActual": np.rint(pump * 40.0 + self._noise(t, 5.0)),
            "FanSpeedCommand": np.rint(fan * 2) / 2,
            "FanSpeedActual": np.rint(fan * 30.0 + self._noise(t, 5.0)),
            "ActuatorCounter": j % 16,
        }

    def _imd_info(self, t: F64, module: IntpArray, j: I64) -> Values:
        r_iso_kohm = np.clip(
            np.rint(self.model.insulation_ohm / 1000.0 + self._noise(t, 40.0)), 0, 65535
        )
        return {"IMD_R_ISO": r_iso_kohm * 1000.0}


def message_periods(sim: ChargerSimulator) -> dict[str, float]:
    """Cycle time in seconds of every simulated message (from the DBCs)."""
    return {s.message.name: s.period for s in sim._streams}


def error_frames(batch: FrameBatch) -> FrameBatch:
    """The error frames of a batch (helper for callers and tests)."""
    return batch.take((batch.flags & FLAG_ERROR) != 0)


def simulate(duration: float, faults: Sequence[Fault] = (), **config: Any) -> FrameBatch:
    """``duration`` seconds of traffic as one batch (convenience for tests and demos)."""
    sim = ChargerSimulator(SimConfig(faults=tuple(faults), **config))
    return FrameBatch.concat(list(sim.chunks(duration)))
