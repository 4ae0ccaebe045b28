"""Security review as tests: no transmit or write path, safe defaults, no secret in logs.

The threat model these tests back is docs/security.md.  Three layers:

1. a static scan (AST, not grep) of every module of ``candiag/`` except the
   simulator (``candiag/sim/``, ``candiag/modbus/sim.py``) for code that could
   transmit on CAN or write on Modbus; the scanner is itself tested on snippets
   so that it cannot silently pass;
2. runtime checks: the buses the recorder and the daemon really open refuse
   ``send``; every non-read Modbus function code is refused; configs that would
   weaken this are rejected;
3. the daemon as a process with a basic-auth web config: neither the password,
   a wrong password tried by a client, nor the bcrypt hash appear in its log or in
   ``/metrics``.

Covered elsewhere (not repeated here): TLS and basic auth of the endpoint
(tests/test_http.py, tests/test_http_tls.py, tests/test_http_webconfig.py), the
systemd sandbox exposure score (tests/test_systemd.py), pymodbus-free write scan
by name (tests/test_modbus_link.py::test_no_write_call_exists_outside_the_simulator).
"""

from __future__ import annotations

import ast
import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import can
import pytest

from candiag.errors import ConfigError, SafetyError

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "candiag"

# The simulator is the only code allowed to transmit (README, project rule 1).
SIMULATOR = ("candiag/sim/", "candiag/modbus/sim.py")
# Where a python-can bus may be constructed: the listen-only opener, and the demo
# simulator's in-process virtual bus (start_charger refuses any other interface).
BUS_CONSTRUCTORS_ALLOWED = {"candiag/ingest/live.py", "candiag/live/simulation.py"}
# Only the listen-only opener may touch a bus's send attributes (to replace them).
SEND_ASSIGN_ALLOWED = {"candiag/ingest/live.py"}
# pymodbus client write calls and request classes (pymodbus 3.16 names).
MODBUS_WRITE_NAMES = re.compile(
    r"^(write_coils?|write_registers?|mask_write_register|readwrite_registers|"
    r"write_file_record|Write\w*(Request|PDU)|ReadWrite\w*)$"
)
CAN_BUS_CLASSES = re.compile(r"^(Bus|BusABC|\w+Bus)$")
# Foreign calls bypass every check above: only the bulk SocketCAN receive path may use
# ctypes, and a module that does may not even name a C function that writes or sends.
CTYPES_ALLOWED = {"candiag/ingest/socketcan_bulk.py"}
C_TRANSMIT_NAMES = frozenset(
    {"send", "sendto", "sendmsg", "sendmmsg", "sendfile", "write", "writev", "pwrite"}
    | {"pwritev", "pwritev2", "pwrite64", "ioctl", "syscall"}
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for Name/Attribute chains, '' otherwise."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


class _Scanner(ast.NodeVisitor):
    """Collects transmit/write code paths in one module."""

    def __init__(self, path: str, uses_ctypes: bool = False) -> None:
        self.path = path
        self.uses_ctypes = uses_ctypes
        self.findings: list[Finding] = []
        self.can_names: set[str] = set()  # names bound to python-can bus classes by import
        self._classes: list[ast.ClassDef] = []

    def _add(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    # -- imports -------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "pymodbus":
                self._add(node, f"imports {alias.name} (pymodbus is for the simulator only)")
            self._check_ctypes(node, alias.name)
        self.generic_visit(node)

    def _check_ctypes(self, node: ast.AST, module: str) -> None:
        if module.split(".")[0] == "ctypes" and self.path not in CTYPES_ALLOWED:
            self._add(node, f"imports {module} (foreign calls; only the bulk receive path may)")

    def visit_Constant(self, node: ast.Constant) -> None:
        if self.uses_ctypes and node.value in C_TRANSMIT_NAMES:
            self._add(node, f"names the C function {node.value!r} in a module using ctypes")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if module.split(".")[0] == "pymodbus":
            self._add(node, f"imports from {module} (pymodbus is for the simulator only)")
        self._check_ctypes(node, module)
        if module.split(".")[0] == "can":
            for alias in node.names:
                if CAN_BUS_CLASSES.match(alias.name):
                    self.can_names.add(alias.asname or alias.name)
        self.generic_visit(node)

    # -- classes: `self.send(...)` is fine in a class that defines its own send -----------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._classes.append(node)
        self.generic_visit(node)
        self._classes.pop()

    def _own_send_method(self) -> bool:
        if not self._classes:
            return False
        cls = self._classes[-1]
        bases = {_dotted(b).split(".")[-1] for b in cls.bases}
        if bases & {"BusABC", "Bus"}:
            return False  # a CAN bus subclass: its send transmits
        return any(isinstance(item, ast.FunctionDef) and item.name == "send" for item in cls.body)

    # -- attributes and calls -------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.uses_ctypes and node.attr in C_TRANSMIT_NAMES and node.attr != "send":
            self._add(node, f"uses .{node.attr} in a module using ctypes")
        if node.attr in ("send", "send_periodic"):
            receiver = _dotted(node.value)
            if isinstance(node.ctx, ast.Store):
                if self.path not in SEND_ASSIGN_ALLOWED:
                    self._add(node, f"assigns {receiver}.{node.attr}")
            elif not (receiver == "self" and node.attr == "send" and self._own_send_method()):
                self._add(node, f"uses {receiver or '<expr>'}.{node.attr} (CAN transmit)")
        if MODBUS_WRITE_NAMES.match(node.attr):
            self._add(node, f"uses .{node.attr} (Modbus write)")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if MODBUS_WRITE_NAMES.match(node.id):
            self._add(node, f"uses {node.id} (Modbus write)")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        last = name.split(".")[-1]
        is_can_bus = (name.startswith("can.") and CAN_BUS_CLASSES.match(last)) or (
            name in self.can_names
        )
        if is_can_bus and self.path not in BUS_CONSTRUCTORS_ALLOWED:
            self._add(node, f"constructs a python-can bus with {name}() outside the opener")
        for kw in node.keywords:
            if kw.arg == "receive_own_messages" and not _is_false(kw.value):
                self._add(node, "receive_own_messages is not False")
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "receive_own_messages"
                and not _is_false(value)
            ):
                self._add(node, "receive_own_messages is not False")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # A table of allowed Modbus function codes must stay within the read codes.
        for target in node.targets:
            if isinstance(target, ast.Name) and "FUNCTION_CODES" in target.id:
                codes = {
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, int)
                }
                if not codes <= {1, 2, 3, 4}:
                    self._add(node, f"{target.id} allows function codes {sorted(codes)}")
        self.generic_visit(node)


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def scan_source(source: str, path: str) -> list[Finding]:
    tree = ast.parse(source, path)
    uses_ctypes = any(
        (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "ctypes" for a in n.names))
        or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "ctypes")
        for n in ast.walk(tree)
    )
    scanner = _Scanner(path, uses_ctypes)
    scanner.visit(tree)
    return scanner.findings


def production_modules() -> list[Path]:
    modules = []
    for module in sorted(PACKAGE.rglob("*.py")):
        rel = module.relative_to(REPO).as_posix()
        if not rel.startswith(SIMULATOR):
            modules.append(module)
    return modules


# --------------------------------------------------------------------------------------------
# 1. Static scan
# --------------------------------------------------------------------------------------------
def test_no_transmit_or_write_path_outside_the_simulator() -> None:
    modules = production_modules()
    assert len(modules) > 40, "the scan must see the whole package"
    assert not any(m.relative_to(REPO).as_posix().startswith("candiag/sim/") for m in modules)
    findings = [
        str(f)
        for m in modules
        for f in scan_source(m.read_text("utf-8"), m.relative_to(REPO).as_posix())
    ]
    assert findings == []


@pytest.mark.parametrize(
    ("snippet", "what"),
    [
        ("bus.send(msg)", "bus.send (CAN transmit)"),
        ("self.bus.send_periodic(msg, 0.1)", "self.bus.send_periodic"),
        ("can.BusABC.send(bus, msg)", "can.BusABC.send"),
        ("f = bus.send", "bus.send (CAN transmit)"),
        ("bus.send = other", "assigns bus.send"),
        ("import can\nb = can.Bus(channel='x', interface='pcan')", "constructs a python-can bus"),
        ("from can import Bus\nb = Bus('x')", "constructs a python-can bus with Bus()"),
        ("import can\nb = can.interface.Bus('x')", "can.interface.Bus()"),
        ("open_bus(receive_own_messages=True)", "receive_own_messages is not False"),
        ("kw = {'receive_own_messages': flag}", "receive_own_messages is not False"),
        ("client.write_register(1, 2)", ".write_register (Modbus write)"),
        ("client.write_coils(1, [True])", ".write_coils (Modbus write)"),
        ("from pymodbus.client import ModbusSerialClient", "imports from pymodbus.client"),
        ("import pymodbus.pdu", "imports pymodbus.pdu"),
        ("x = WriteSingleRegisterRequest(1, 2)", "WriteSingleRegisterRequest (Modbus write)"),
        ("READ_FUNCTION_CODES = frozenset({3, 4, 6})", "allows function codes [3, 4, 6]"),
        ("class Bus(can.BusABC):\n    def send(self, m): ...\n    def go(self): self.send(1)",
         "self.send (CAN transmit)"),
        ("import ctypes\nlibc = ctypes.CDLL(None)", "imports ctypes (foreign calls"),
        ("from ctypes import CDLL", "imports ctypes (foreign calls"),
        ("import ctypes\nf = getattr(libc, 'sendmmsg')", "names the C function 'sendmmsg'"),
        ("import ctypes\nlibc.write(fd, buf, n)", "uses .write in a module using ctypes"),
        ("import ctypes\nsock.sendmsg([b'x'])", "uses .sendmsg in a module using ctypes"),
    ],
)  # fmt: skip
def test_the_scanner_catches_each_transmit_and_write_pattern(snippet: str, what: str) -> None:
    findings = scan_source(snippet, "candiag/somewhere.py")
    assert any(what in f.what for f in findings), findings


@pytest.mark.parametrize(
    "snippet",
    [
        "class Notifier:\n    def send(self, *f): ...\n    def ready(self): self.send('READY=1')",
        "sock.sendall(data)",
        "Path(p).write_text('x')",
        "open_bus(receive_own_messages=False)",
        "READ_FUNCTION_CODES = frozenset({1, 2, 3, 4})",
        "f = getattr(libc, 'sendmmsg')  # no ctypes here: another rule's business",
    ],
)
def test_the_scanner_leaves_harmless_code_alone(snippet: str) -> None:
    assert scan_source(snippet, "candiag/somewhere.py") == []


def test_the_bulk_receive_path_may_use_ctypes_to_receive_only() -> None:
    from candiag.ingest import socketcan_bulk

    assert (
        scan_source("import ctypes\nf = getattr(libc, 'recvmmsg')", sorted(CTYPES_ALLOWED)[0]) == []
    )
    assert scan_source("import ctypes\n", "candiag/daemon/service.py") != []
    assert socketcan_bulk.LIBC_FUNCTIONS == ("recvmmsg",)


def test_the_opener_may_replace_send_but_nobody_else() -> None:
    code = "bus.send = _refuse_send\n"
    assert scan_source(code, "candiag/ingest/live.py") == []
    assert scan_source(code, "candiag/daemon/service.py") != []


# --------------------------------------------------------------------------------------------
# 2. Runtime: the buses candiag really opens cannot send
# --------------------------------------------------------------------------------------------
def _assert_refuses_to_send(bus: can.BusABC, channel: str) -> None:
    witness = can.Bus(interface="virtual", channel=channel, ignore_config=True)
    try:
        msg = can.Message(arbitration_id=0x123, data=[1, 2, 3], is_extended_id=False)
        with pytest.raises(SafetyError, match="never transmits"):
            bus.send(msg)
        with pytest.raises(SafetyError, match="never transmits"):
            bus.send_periodic(msg, 0.01)
        assert witness.recv(timeout=0.2) is None, "a frame reached the bus"
    finally:
        witness.shutdown()


@pytest.fixture
def opened_buses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[can.BusABC]]:
    """Every bus opened through candiag.ingest.live.open_listen_only_bus during the test."""
    from candiag.ingest import live

    real = live.open_listen_only_bus
    opened: list[can.BusABC] = []

    def spy(*args: Any, **kwargs: Any) -> can.BusABC:
        bus = real(*args, **kwargs)
        opened.append(bus)
        return bus

    monkeypatch.setattr(live, "open_listen_only_bus", spy)
    yield opened


def test_the_recorders_bus_refuses_to_send(
    tmp_path: Path, opened_buses: list[can.BusABC], capsys: pytest.CaptureFixture[str]
) -> None:
    from candiag.cli import main

    out = tmp_path / "rec.log"
    args = ["record", "-i", "virtual", "-c", "sec-rec", "-o", str(out), "--duration", "0.3"]
    assert main(args) == 0
    assert "recorded 0 frames" in capsys.readouterr().err
    assert len(opened_buses) == 1
    # The recorder shut its bus down; the object still carries the refusing send.
    _assert_refuses_to_send(opened_buses[0], "sec-rec")


def test_the_daemons_bus_refuses_to_send(tmp_path: Path, opened_buses: list[can.BusABC]) -> None:
    from candiag.config.load import load_config
    from candiag.daemon.service import Daemon

    config_file = tmp_path / "c.toml"
    config_file.write_text(
        '[[can.buses]]\nname = "b"\ninterface = "virtual"\nchannel = "sec-daemon"\n'
    )
    daemon = Daemon(load_config(config_file), serve_metrics=False)
    daemon.start()
    try:
        deadline = time.monotonic() + 5
        while not opened_buses and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(opened_buses) == 1
        _assert_refuses_to_send(opened_buses[0], "sec-daemon")
    finally:
        daemon.stop()


def test_every_non_read_function_code_is_refused() -> None:
    from candiag.modbus.link import read_pdu, read_request

    for function in range(256):
        if function in (1, 2, 3, 4):
            assert read_pdu(function, 0, 1)[0] == function
            continue
        with pytest.raises(SafetyError, match="only reads"):
            read_pdu(function, 0, 1)
        with pytest.raises(SafetyError):
            read_request(1, function, 0, 1)


def test_the_simulator_is_refused_on_a_real_interface() -> None:
    from candiag.config.model import BusConfig
    from candiag.live.simulation import start_charger

    with pytest.raises(ConfigError, match='only runs on interface = "virtual"'):
        start_charger(BusConfig(name="can0", interface="socketcan", channel="can0"), "healthy")


def test_configs_that_would_transmit_are_rejected(tmp_path: Path) -> None:
    from candiag.config.load import load_config

    config = tmp_path / "c.toml"
    config.write_text(
        '[[can.buses]]\nname = "can0"\ninterface = "socketcan"\nchannel = "can0"\n'
        '[[can.buses]]\nname = "p"\ninterface = "pcan"\nchannel = "PCAN_USBBUS1"\n'
        "listen_only = false\n"
        '[simulator]\nbuses = ["can0"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(config)
    problems = "\n".join(info.value.problems)
    assert "can.buses[1].listen_only" in problems
    assert "simulator.buses[0]" in problems and "never on real links" in problems


def test_metrics_bind_to_loopback_by_default(tmp_path: Path) -> None:
    from candiag.config.load import load_config
    from candiag.metrics.http import DEFAULT_LISTEN

    config = tmp_path / "c.toml"
    config.write_text('[[can.buses]]\nname = "b"\ninterface = "virtual"\nchannel = "x"\n')
    assert load_config(config).metrics.listen == "127.0.0.1:9847"
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
    example = load_config(REPO / "config" / "candiag.example.toml")
    assert example.metrics.host in ("127.0.0.1", "::1")


# --------------------------------------------------------------------------------------------
# 3. No secret in logs, /metrics or captures
# --------------------------------------------------------------------------------------------
PASSWORD = "Sup3r-Secret-Scrape-Pw"
WRONG_PASSWORD = "Typo-0f-The-Real-Pw"


def _get(url: str, user: str | None = None, password: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode(errors="replace")


@pytest.mark.slow
def test_daemon_log_and_metrics_contain_no_password_or_hash(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {hashed}\n")
    config = tmp_path / "candiag.toml"
    config.write_text(
        '[[can.buses]]\nname = "sim0"\ninterface = "virtual"\nchannel = "sec-e2e"\n'
        f'[metrics]\nlisten = "127.0.0.1:0"\nweb_config_file = "{web}"\n'
        '[simulator]\nbuses = ["sim0"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", "run", "--config", str(config), "--log-level", "debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=pump, name="test-log-pump")
    reader.start()
    try:
        deadline = time.monotonic() + 20
        url = ""
        while not url and time.monotonic() < deadline and proc.poll() is None:
            found = [m for line in list(lines) if (m := re.search(r"url=(\S+)", line))]
            url = found[0].group(1) if found else ""
            time.sleep(0.05)
        assert url, "".join(lines)
        assert _get(url + "/metrics")[0] == 401
        assert _get(url + "/metrics", "prometheus", WRONG_PASSWORD)[0] == 401
        assert _get(url + "/metrics", "intruder", PASSWORD)[0] == 401
        status, text = _get(url + "/metrics", "prometheus", PASSWORD)
        assert status == 200 and "candiag_can_bus_up" in text
        # A malformed header with the password in it must not be echoed either.
        bad = urllib.request.Request(url + "/metrics", headers={"Authorization": PASSWORD})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=5)
        body = info.value.read().decode(errors="replace")
        info.value.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    log = "".join(lines)
    assert "event=stopped" in log, log
    salt_and_hash = hashed[7:]  # "$2b$04$" prefix, then 53 characters of salt and hash
    for secret in (PASSWORD, WRONG_PASSWORD, hashed, salt_and_hash, hashed[7:29]):
        assert secret not in log, f"secret material in the daemon log: {secret[:6]}..."
        assert secret not in text, "secret material in /metrics"
        assert secret not in body, "secret material in an error page"
    token = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    assert token not in log


def test_a_capture_holds_only_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recording attached to a ticket carries frames and the channel name, nothing else."""
    from candiag.cli import main

    out = tmp_path / "ticket.log"
    bus = can.Bus(interface="virtual", channel="sec-cap", ignore_config=True)
    stop = threading.Event()

    def send() -> None:
        while not stop.wait(0.01):
            bus.send(can.Message(arbitration_id=0x18FF50E5, data=[1, 2, 3, 4]))

    sender = threading.Thread(target=send, name="test-sender")
    sender.start()
    try:
        assert main(["record", "-i", "virtual", "-c", "sec-cap", "-o", str(out),
                     "--duration", "0.5"]) == 0  # fmt: skip
    finally:
        stop.set()
        sender.join(5)
        bus.shutdown()
    capsys.readouterr()
    lines = out.read_text().splitlines()
    assert lines
    line_re = re.compile(r"^\(\d{10}\.\d{6}\) sec-cap 18FF50E5#01020304$")
    assert [line for line in lines if not line_re.match(line)] == []


# --------------------------------------------------------------------------------------------
# 4. A hostile capture or DBC from a ticket
# --------------------------------------------------------------------------------------------
def _peak_bytes_reading(path: Path) -> tuple[int, Any]:
    import tracemalloc

    from candiag.capture import CaptureReader

    tracemalloc.start()
    try:
        reader = CaptureReader(path, chunk_lines=16_384, block_bytes=1 << 20)
        frames = sum(len(b) for b in reader.batches())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames == reader.stats.frames
    return peak, reader.stats


def test_a_gzip_bomb_is_read_in_bounded_memory(tmp_path: Path) -> None:
    import gzip

    bomb = tmp_path / "ticket.log.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        f.write(b"(1700000000.000000) can0 123#01\n")
        for _ in range(8):
            f.write(b"0" * (16 << 20))  # 128 MiB without a newline, from 128 kB on disk
        f.write(b"\n(1700000000.000100) can0 123#02\n")
    assert bomb.stat().st_size < 1 << 20
    peak, stats = _peak_bytes_reading(bomb)
    assert (stats.frames, stats.malformed) == (2, 1)
    assert stats.examples[0].line == 2 and len(stats.examples[0].text) <= 200
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB while reading a 128 MiB line"


def test_an_endless_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    capture = tmp_path / "ticket.log"
    with capture.open("wb") as f:
        f.write(b"(1700000000.000000) can0 123#" + b"A" * (48 << 20) + b"\n")
        f.write(b"(1700000000.000100) can0 123#02\n")
    peak, stats = _peak_bytes_reading(capture)
    assert (stats.frames, stats.malformed, stats.lines) == (1, 1, 2)
    assert peak < 16 << 20, f"peak {peak / 2**20:.0f} MiB while reading a 48 MiB line"


def test_markup_in_a_capture_or_dbc_does_not_reach_the_html_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A channel name or a DBC unit string with HTML in it is shown as text, never as markup."""
    import shutil

    from candiag.cli import main
    from candiag.decode.dbc import reference_dbc_dir

    payload = "<script>alert(1)</script>"
    dbc = tmp_path / "dbc"
    shutil.copytree(reference_dbc_dir(), dbc)
    for path in dbc.glob("*.dbc"):
        text = path.read_text()
        path.write_text(re.sub(r'(SG_ .*\)\s+\[[^\]]*\]\s+)"[^"]*"', rf'\1"{payload}"', text))
    assert payload in (dbc / "power_module.dbc").read_text()
    capture = tmp_path / "ticket.log"
    channel = "X<img/src=x/onerror=alert(1)>"
    assert main(["simulate", "-o", str(capture), "-d", "15", "-c", channel]) == 0
    assert channel.replace(")", "_") in capture.read_text()  # a valid candump channel token
    report = tmp_path / "report.html"
    assert main(["analyze", str(capture), "--dbc", str(dbc), "--html", str(report)]) in (0, 1)
    capsys.readouterr()
    html = report.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, "the unit must be shown, escaped"
    assert "<script>alert" not in html and "<img/src" not in html


@pytest.mark.slow
def test_candiag_run_without_metrics_keys_listens_on_loopback(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[can.buses]]\nname = "b"\ninterface = "virtual"\nchannel = "sec-def"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "candiag", "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = ""
        for line in proc.stdout:
            if "metrics_listening" in line or "error" in line:
                first = line
                break
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Either it listens, or port 9847 is taken on this host (another candiag): both name
    # the address it tried, which must be loopback.
    assert "127.0.0.1:9847" in first, first
