"""Simulated Modbus meters: real pymodbus servers, plausible moving values, injected faults.

Owns the only code in candiag that serves or changes Modbus registers.  Each shipped
profile gets a simulated meter (a pymodbus 3.16 ``SimDevice`` whose registers are laid
out from the profile's read blocks); its values move (voltage and current wander,
energy integrates power).  A line of meters is one ``ModbusTcpServer`` on 127.0.0.1:

* ``transport="rtu"``: RTU framing behind a pseudo-terminal.  A forwarding thread
  bridges the pty master to the server, so the poller opens a real tty
  (``line.port``, a symlink that can vanish and return like ``/dev/serial/by-id``);
  the bridge drops requests sent at another baud rate than the meters' (parity cannot
  be checked: Linux ptys do not keep PARENB).
* ``transport="rtu+tcp"``: RTU framing on TCP (a serial gateway), ``line.port`` is
  ``rtu+tcp://127.0.0.1:PORT``;  ``transport="tcp"``: Modbus TCP.

Faults (per unit id, changeable while running): ``silent`` (no answer), ``bad_crc``
(reply with a corrupted CRC), ``crc_noise`` (probability of a corrupted reply),
``exception_code`` (exception replies), ``duplicate`` (a second meter with the same
id answers at the same time: garbled reply), ``reply_as`` (the reply carries another
unit id), ``delay_s`` (slow reply).  pymodbus answers unknown unit ids with exception
4; a real line stays silent, so replies for ids that are not simulated are dropped in
the server's ``trace_packet`` hook (docs/meters.md §5).
Named scenarios for the demo: ``healthy``, ``meter_wrong_id``, ``meter_crc_noise``,
``meter_reversed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import select
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from candiag.modbus.link import crc16, with_crc
from candiag.modbus.profile import (
    DATA_TYPES,
    MeterProfile,
    QuantityDef,
    encode_value,
    find_profile,
)
from candiag.sim.plant import Electrical
from candiag.sim.scenarios import meter_scenario_names

# The names are data (candiag/sim/meter_scenarios.toml), so configs are checked against them.
SCENARIOS = tuple(meter_scenario_names())


def _baud_constants() -> dict[int, int]:
    """termios' speed constants -> baud rates (POSIX only: ptys exist only there)."""
    import termios

    return {
        getattr(termios, f"B{b}"): b
        for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
        if hasattr(termios, f"B{b}")
    }


def ptys_available() -> bool:
    """Whether this platform has pseudo-terminals (not Windows): the ``rtu`` transport."""
    try:
        import termios  # noqa: F401
        import tty  # noqa: F401
    except ImportError:
        return False
    return hasattr(os, "openpty")


@dataclass
class DeviceFaults:
    """Faults of one simulated unit id; attributes may be changed while running."""

    silent: bool = False
    bad_crc: bool = False
    crc_noise: float = 0.0
    exception_code: int | None = None
    duplicate: bool = False
    reply_as: int | None = None
    delay_s: float = 0.0

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)


# -- the moving values --------------------------------------------------------------
#: Where meters on a simulated charger read its electrical state (``None``: the meters
#: move on their own, as on a test bench).
ChargerSource = Callable[[float], Electrical]


@dataclass
class MeterModel:
    """Plausible values of one meter in base units; energy integrates power.

    With ``charger``, the values are the charger's (DC output, AC input, insulation) at
    the time of the request, so the demo's Modbus meters agree with its CAN DC meter;
    without, they wander around a fixed operating point.
    """

    profile: MeterProfile
    reversed_current: bool = False
    seed: float = field(default_factory=random.random)
    energy_import_j: float = 1234.5 * 3.6e6
    energy_export_j: float = 0.8 * 3.6e6
    charger: ChargerSource | None = None
    _last: float | None = None

    def values(self, now: float) -> dict[str, float]:
        phase = self.seed * 10
        w = {i: math.sin(now / (5 + i) + phase + i) for i in range(1, 4)}
        if self.charger is not None:
            return self._charger_values(now, self.charger(now), w)
        kind = self.profile.kind
        out: dict[str, float] = {}
        if kind == "dc_meter":
            volts = 400.0 + 5 * w[1]
            amps = 120.0 + 10 * w[2]
            if self.reversed_current:
                amps = -amps
            out.update(voltage=volts, current=amps, power=volts * amps, temperature=38 + w[3])
            power_total = volts * amps
        elif kind == "imd":
            out.update(
                insulation_resistance=5e6 + 2e5 * w[1],
                voltage=400.0 + 5 * w[2],
                voltage_l1_earth=200.0 + 2 * w[2],
                voltage_l2_earth=200.0 - 2 * w[3],
            )
            power_total = 0.0
        else:
            power_total = 0.0
            for i in (1, 2, 3):
                volts, amps = 230.0 + 2 * w[i], 16.0 + 3 * w[(i % 3) + 1]
                out[f"voltage_l{i}"] = volts
                out[f"current_l{i}"] = amps
                out[f"power_l{i}"] = volts * amps * 0.95
                power_total += out[f"power_l{i}"]
            out["power_total"] = power_total
            out["frequency"] = 50.0 + 0.02 * w[1]
        self._integrate(now, power_total)
        out["energy_import"] = self.energy_import_j
        out["energy_export"] = self.energy_export_j
        for i in (1, 2, 3):
            out[f"energy_import_l{i}"] = self.energy_import_j / 3
        return out

    def _charger_values(self, now: float, e: Electrical, w: dict[int, float]) -> dict[str, float]:
        """The charger's figures as this meter reads them (a little measurement noise)."""
        kind = self.profile.kind
        out: dict[str, float] = {}
        if kind == "dc_meter":
            volts = max(0.0, e.dc_voltage + 0.05 * w[1])  # u16 registers: never below 0
            amps = (-1.0 if self.reversed_current else 1.0) * e.dc_current
            power_total = volts * amps
            out.update(voltage=volts, current=amps, power=power_total, temperature=30 + w[3])
        elif kind == "imd":
            volts = max(0.0, e.dc_voltage + 0.05 * w[2])
            out.update(
                insulation_resistance=e.insulation_ohm * (1 + 0.01 * w[1]),
                voltage=volts,
                voltage_l1_earth=volts / 2,
                voltage_l2_earth=volts / 2,
            )
            power_total = 0.0
        else:
            power_total = 0.0
            for i in (1, 2, 3):
                volts = e.ac_phase_voltage + 0.5 * w[i]
                amps = e.ac_power_w / 3.0 / (volts * e.power_factor)
                out[f"voltage_l{i}"] = volts
                out[f"current_l{i}"] = amps
                out[f"power_l{i}"] = e.ac_power_w / 3.0
                power_total += out[f"power_l{i}"]
            out["power_total"] = power_total
            out["frequency"] = 50.0 + 0.02 * w[1]
        self._integrate(now, power_total)
        out["energy_import"] = self.energy_import_j
        out["energy_export"] = self.energy_export_j
        for i in (1, 2, 3):
            out[f"energy_import_l{i}"] = self.energy_import_j / 3
        return out

    def _integrate(self, now: float, power_w: float) -> None:
        if self._last is not None and now > self._last:
            if power_w >= 0:
                self.energy_import_j += power_w * (now - self._last)
            else:
                self.energy_export_j += -power_w * (now - self._last)
        self._last = now


def _fit_exponent(q: QuantityDef, value: float) -> int:
    """The exponent register content that keeps ``value`` in range with the most digits."""
    limit = {"u16": 65535, "i16": 32767, "u32": 2**32 - 1, "i32": 2**31 - 1}[q.data_type]
    for exponent in range(-q.exponent_offset - 4, -q.exponent_offset + 10):
        raw = abs(value / q.factor / q.scale) / 10.0 ** (exponent + q.exponent_offset)
        if raw <= limit:
            return max(exponent, 0)
    return 9


# -- one simulated meter --------------------------------------------------------------
class SimulatedMeter:
    """A profile served at one unit id, with its model and faults."""

    def __init__(
        self,
        profile: MeterProfile,
        unit_id: int,
        *,
        reversed_current: bool = False,
        charger: ChargerSource | None = None,
    ):
        self.profile = profile
        self.unit_id = unit_id
        self.model = MeterModel(profile, reversed_current=reversed_current, charger=charger)
        self.faults = DeviceFaults()
        self.reads = 0

    def sim_device(self) -> SimDevice:
        blocks: dict[int, list[SimData]] = {3: [], 4: []}
        for block in self.profile.blocks:
            blocks[block.function].append(
                SimData(block.address, count=block.count, values=0, datatype=DataType.REGISTERS)
            )
        # pymodbus needs at least one entry per table; unused tables get a placeholder.
        for function in (3, 4):
            if not blocks[function]:
                blocks[function].append(SimData(0, values=0, datatype=DataType.REGISTERS))
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=self.unit_id,
            simdata=(bits, list(bits), blocks[3], blocks[4]),
            action=self._action,
        )

    async def _action(
        self,
        function: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.reads += 1
        if self.faults.delay_s:
            await asyncio.sleep(self.faults.delay_s)
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # a meter's measurements are read-only
        if self.faults.exception_code is not None:
            return ExcCodes(self.faults.exception_code)
        if count > self.profile.max_registers:
            return ExcCodes.ILLEGAL_ADDRESS  # Eastron: too many parameters in one request
        self.fill(function, start, registers, time.time())
        return None

    def fill(self, function: int, start: int, registers: list[int], now: float) -> None:
        values = self.model.values(now)
        for q in self.profile.quantities:
            if q.function != function or q.name not in values:
                continue
            exponent = 0
            if q.exponent_register is not None:
                exponent = _fit_exponent(q, values[q.name])
                registers[q.exponent_register - start] = exponent
            words = encode_value(q, values[q.name], exponent)
            offset = q.register - start
            registers[offset : offset + DATA_TYPES[q.data_type][0]] = words


# -- the line -----------------------------------------------------------------------
class SimulatedMeterLine:
    """Simulated meters on one line; a context manager running the server and bridge.

    ``devices`` are ``(profile name, unit id)`` pairs.  ``line.port`` is what a poller
    opens; ``line.faults(unit_id)`` the faults of one meter.
    """

    def __init__(
        self,
        devices: Sequence[tuple[str, int]],
        *,
        transport: str = "rtu",
        baudrate: int | None = None,
        scenario: str = "healthy",
        seed: int | None = None,
        charger: ChargerSource | None = None,
    ) -> None:
        if transport not in ("rtu", "rtu+tcp", "tcp"):
            raise ValueError(f"unknown transport {transport!r}")
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        self.transport = transport
        self.baudrate = baudrate
        self.scenario = scenario
        self._rng = random.Random(seed)
        self.meters: dict[int, SimulatedMeter] = {}
        for profile_name, unit_id in devices:
            profile = find_profile(profile_name)
            reversed_current = scenario == "meter_reversed" and profile.kind == "dc_meter"
            self.meters[unit_id] = SimulatedMeter(
                profile, unit_id, reversed_current=reversed_current, charger=charger
            )
        if scenario == "meter_crc_noise":
            for meter in self.meters.values():
                meter.faults.crc_noise = 0.3
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: ModbusTcpServer | None = None
        self._server_port = 0
        self._bridge: _PtyBridge | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.port = ""

    def faults(self, unit_id: int) -> DeviceFaults:
        return self.meters[unit_id].faults

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> SimulatedMeterLine:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        framer = FramerType.SOCKET if self.transport == "tcp" else FramerType.RTU
        devices = [m.sim_device() for m in self.meters.values()]
        # A catch-all device (id 0) answers ids that are not simulated instead of
        # pymodbus' KeyError path; _trace_packet drops those replies.
        regs = [SimData(0, count=2, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        devices.append(SimDevice(id=0, simdata=(bits, list(bits), regs, list(regs))))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="candiag-sim-modbus", daemon=True
        )
        self._thread.start()

        async def serve() -> ModbusTcpServer:
            # pymodbus binds the server to the running loop: create it inside the loop.
            server = ModbusTcpServer(
                devices,
                framer=framer,
                address=("127.0.0.1", 0),
                trace_packet=self._trace_packet,
            )
            await server.serve_forever(background=True)
            return server

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(5)
        listener: Any = self._server.transport
        self._server_port = int(listener.sockets[0].getsockname()[1])
        if self.transport == "rtu":
            self._tmpdir = tempfile.TemporaryDirectory(prefix="candiag-sim-")
            self.port = str(Path(self._tmpdir.name) / "ttyMODBUS0")
            self.restore()
        else:
            self.port = f"{self.transport}://127.0.0.1:{self._server_port}"

    def stop(self) -> None:
        self.vanish()
        if self._loop is not None and self._server is not None:
            server: Any = self._server
            asyncio.run_coroutine_threadsafe(server.shutdown(), self._loop).result(5)
            self._server = None
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def vanish(self) -> None:
        """The USB adapter is unplugged: the tty and its by-id symlink disappear."""
        if self._bridge is not None:
            self._bridge.stop()
            self._bridge = None
        if self.transport == "rtu" and self.port:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.port)

    def restore(self) -> None:
        """The adapter is plugged in again (a new pty behind the same symlink)."""
        if self.transport != "rtu" or self._bridge is not None:
            return
        self._bridge = _PtyBridge(self._server_port, self.baudrate)
        os.symlink(self._bridge.slave_name, self.port)

    # -- faults on the wire ---------------------------------------------------------------
    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        rtu = self.transport != "tcp"
        unit_id = data[0] if rtu else data[6] if len(data) > 6 else -1
        meter = self.meters.get(unit_id)
        if meter is None or meter.faults.silent:
            return b""  # a real line stays silent for an absent id
        faults = meter.faults
        if faults.reply_as is not None:
            data = self._readdress(data, faults.reply_as, rtu)
        if faults.bad_crc or faults.duplicate or self._rng.random() < faults.crc_noise:
            data = self._garble(data, rtu, collision=faults.duplicate)
        return data

    @staticmethod
    def _readdress(data: bytes, unit_id: int, rtu: bool) -> bytes:
        if rtu:
            return with_crc(bytes([unit_id]) + data[1:-2])
        return data[:6] + bytes([unit_id]) + data[7:]

    @staticmethod
    def _garble(data: bytes, rtu: bool, *, collision: bool) -> bytes:
        if not rtu:
            return data[:5]  # a truncated MBAP frame: Modbus TCP has no CRC to break
        if collision and len(data) > 5:
            # Two meters driving the line at once: the data bits of both mix.
            body = bytearray(data[:-2])
            for i in range(3, len(body)):
                body[i] |= 0x5A
            if crc16(bytes(body)) != crc16(data[:-2]):
                return bytes(body) + data[-2:]
        return data[:-1] + bytes([data[-1] ^ 0xFF])


class _PtyBridge:
    """Forwards bytes between a pty master and the RTU server's TCP socket."""

    def __init__(self, server_port: int, baudrate: int | None) -> None:
        import tty

        self.master_fd, self._slave_fd = os.openpty()
        tty.setraw(self._slave_fd)
        self.slave_name = os.ttyname(self._slave_fd)
        self.baudrate = baudrate
        self.sock = socket.create_connection(("127.0.0.1", server_port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="candiag-sim-modbus-pty", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.sock.close()

    def _settings_match(self) -> bool:
        """The tty's baud rate (as set by the poller) equals the meters'."""
        if self.baudrate is None:
            return True
        import termios

        ospeed = termios.tcgetattr(self.master_fd)[5]
        return _baud_constants().get(ospeed) == self.baudrate

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock_fd = self.sock.fileno()
                ready, _, _ = select.select([self.master_fd, sock_fd], [], [], 0.05)
                if self.master_fd in ready:
                    request = os.read(self.master_fd, 1024)
                    if request and self._settings_match():
                        self.sock.sendall(request)
                if sock_fd in ready:
                    reply = self.sock.recv(1024)
                    if not reply:
                        return
                    os.write(self.master_fd, reply)
            except OSError:
                return  # the pty or the server went away: the line is dead


def demo_line(
    scenario: str = "healthy", charger: ChargerSource | None = None
) -> tuple[SimulatedMeterLine, list[dict[str, Any]]]:
    """The demo charger's meter line and the device tables a config should use.

    AC meter (SDM630) at id 1, DC meter (DJSF1352-RN) at id 2, IMD (isoCHA425HV) at id 3.
    ``meter_wrong_id``: the AC meter answers at id 11 while the config expects 1.
    On a platform without ptys (Windows) the line is RTU through a TCP gateway on 127.0.0.1.
    The meters read ``charger``, by default :func:`demo_charger`: the simulated charger
    sending in this process, so the demo's CAN and Modbus figures are one charger's.
    """
    ac_id = 11 if scenario == "meter_wrong_id" else 1
    line = SimulatedMeterLine(
        [("sdm630", ac_id), ("djsf1352", 2), ("isocha425hv", 3)],
        scenario=scenario,
        transport="rtu" if ptys_available() else "rtu+tcp",
        charger=charger or demo_charger(),
    )
    devices = [
        {"name": "ac_meter", "profile": "sdm630", "unit_id": 1},
        {"name": "dc_meter", "profile": "djsf1352", "unit_id": 2},
        {"name": "imd", "profile": "isocha425hv", "unit_id": 3},
    ]
    return line, devices


#: A standalone demo line (no simulated charger running in the process) reads a charger
#: this far into its charging session: full current, as a charger on a test bench.
STANDALONE_SESSION_S = 120.0


def demo_charger() -> ChargerSource:
    """The running simulated charger's electrical state, read at each request.

    The charger is looked up at each read (:func:`candiag.sim.runner.running_charger`):
    the daemon starts the meters before the charger (its readers must listen first), and
    both are gone again after a reload.  With no charger running, a charger model of its
    own, mid-session, so a demo line alone still reads plausible charging figures.
    """
    from candiag.sim.plant import ChargerModel, Session, electrical
    from candiag.sim.runner import running_charger

    bench = Session(ChargerModel(), time.time() - STANDALONE_SESSION_S)

    def read(now: float) -> Electrical:
        charger = running_charger()
        if charger is not None:
            return charger.electrical(now)
        return electrical(bench, now)

    return read
