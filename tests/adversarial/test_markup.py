"""Text from files is never rich markup (issue 13 §1 item 5).

Two halves.  A static check reads every module that renders with rich and refuses an f-string
handed to a rich sink (``print``, ``add_row``, ``Table``/``Panel`` titles, ...) unless each of
its values is escaped (``escape(...)``), formatted as a number (``{n:,}``, ``{x:.1f}``, ``len``,
``int``...) or a style from a ``*_STYLE`` table inside a tag (``[{style}]``): anything else
could be a family name, a path or a profile's model, and ``[/]`` in it would end the command.
Plain strings reaching a sink through a variable cannot be judged statically; the other half
drives the real commands with hostile names end to end (a DBC family ``[/]``, an alarm role
``alarm:[bold]x``, a capture named ``trace[red].log``, a meter model ``[/]``).
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adversarial.bounded import run_bounded

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "candiag"
SINK_METHODS = {"print", "log", "add_row", "add_column", "update", "from_markup", "rule"}
SINK_CLASSES = {"Table", "Panel", "Rule", "Column"}
SINK_KEYWORDS = {"title", "caption", "subtitle", "header", "footer", "description"}
NUMERIC_CALLS = {"len", "int", "float", "round", "sum", "min", "max", "abs"}
# Calls whose argument is never read as markup: rich's Text, escape, and the view's helper.
SAFE_WRAPPERS = {"Text", "escape", "_plain"}


def _rich_modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if re.search(r"^\s*from rich\b|^\s*import rich\b",
                                                    p.read_text(), re.MULTILINE)
    )  # fmt: skip


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _is_sink(node: ast.Call) -> bool:
    name = _callee(node)
    if isinstance(node.func, ast.Attribute) and name in SINK_METHODS:
        return True
    return isinstance(node.func, ast.Name) and name in SINK_CLASSES


def _markup_off(node: ast.Call) -> bool:
    return any(
        k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
        for k in node.keywords
    )


def _safe_value(value: ast.FormattedValue, before: str, after: str, source: str) -> bool:
    if value.format_spec is not None:  # {n:,} {x:.1f}: a number, whatever it holds
        return True
    expr = value.value
    if isinstance(expr, ast.Call) and _callee(expr) in ({"escape"} | NUMERIC_CALLS):
        return True
    in_tag = before.endswith("[") and after.startswith("]")
    text = ast.get_source_segment(source, expr) or ""
    return in_tag and re.fullmatch(r"style|[A-Z_]+_STYLE\.get\(.*\)", text) is not None


def _outside_text(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and what it contains, except inside ``Text(...)``/``escape(...)`` (safe)."""
    yield node
    if isinstance(node, ast.Call) and _callee(node) in SAFE_WRAPPERS:
        return
    for child in ast.iter_child_nodes(node):
        yield from _outside_text(child)


def _unsafe_fstrings(arg: ast.expr, source: str) -> Iterator[str]:
    for node in _outside_text(arg):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for i, part in enumerate(parts):
            if not isinstance(part, ast.FormattedValue):
                continue
            prev, nxt = (
                (parts[i - 1] if i else None),
                (parts[i + 1] if i + 1 < len(parts) else None),
            )
            before = prev.value if isinstance(prev, ast.Constant) else ""
            after = nxt.value if isinstance(nxt, ast.Constant) else ""
            if not _safe_value(part, str(before), str(after), source):
                yield ast.get_source_segment(source, part.value) or "?"


def markup_problems(path: Path) -> list[str]:
    """``file:line: {value}`` for every unescaped value of an f-string given to a rich sink."""
    source = path.read_text()
    problems = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not _is_sink(node) or _markup_off(node):
            continue
        args = [*node.args, *(k.value for k in node.keywords if k.arg in SINK_KEYWORDS)]
        for arg in args:
            for value in _unsafe_fstrings(arg, source):
                problems.append(f"{path.name}:{node.lineno}: {{{value}}}")
    return problems


def test_the_check_finds_what_it_is_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from rich.table import Table\n"
        "def show(console, table, family, n, style):\n"
        "    console.print(f'[bold]{family}[/] {n:,} {len(family)}')\n"
        "    table.add_row(f'{family}', escape(family), f'[{style}]x[/]', f'[{family}]x[/]')\n"
        "    Table(title=f'nodes of {family}')\n"
        "    console.print(f'{family}', markup=False)\n"
        "    console.print(Text(f'{family}'), escape(f'{family}'))\n"
        "    table.add_row(Text(f'{n}') + f' {family}')\n"
    )
    found = [p.split(": ", 1)[1] for p in markup_problems(bad)]
    assert found == ["{family}"] * 5


def test_no_rich_sink_gets_an_unescaped_fstring() -> None:
    modules = _rich_modules()
    assert {p.name for p in modules} >= {"analyze.py", "modbus.py", "demo.py", "view.py"}
    problems = [p for m in modules for p in markup_problems(m)]
    assert problems == [], "escape these (rich.markup.escape) or pass a Text:\n" + "\n".join(
        problems
    )


# -- end to end: hostile names through the real commands ---------------------------------------
HOSTILE_FAMILY = "[/]"
HOSTILE_ALARM = "alarm:[bold]x"


def _hostile_dbc(folder: Path) -> Path:
    """The reference cooling DBC with a family ``[/]`` and an alarm role ``alarm:[bold]x``."""
    text = (PACKAGE / "data" / "dbc" / "cooling.dbc").read_text()
    text = text.replace('"cooling";', f'"{HOSTILE_FAMILY}";')
    text = text.replace('"alarm:no_flow"', f'"{HOSTILE_ALARM}"')
    assert HOSTILE_FAMILY in text and HOSTILE_ALARM in text
    path = folder / "hostile.dbc"
    path.write_text(text)
    return path


def _cooling_capture(path: Path) -> Path:
    """CoolingStatus with the alarm of role ``alarm:[bold]x`` raised (bit 52), and the actuators."""
    lines = []
    for k in range(100):
        ts = 1_700_000_000 + k * 0.2
        lines.append(f"({ts:.6f}) can0 300#0000000000001000")
        lines.append(f"({ts:.6f}) can0 301#0000000000000000")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    return _hostile_dbc(tmp_path), _cooling_capture(tmp_path / "trace[red].log")


def test_analyze_shows_hostile_names_as_they_are(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    dbc, capture = hostile
    out = tmp_path / "r.json"
    result = run_bounded(
        ["analyze", str(capture), "--dbc", str(dbc), "--bitrate", "125000", "--json", str(out)],
        stdin=b"",
    )
    assert result.code == 0, result.stderr[-3000:]
    assert f"{capture}:" in result.stdout  # not ".../trace.log"
    assert HOSTILE_FAMILY in result.stdout and "[bold]x" in result.stdout
    nodes = json.loads(out.read_text())["nodes"]
    assert nodes[0]["family"] == HOSTILE_FAMILY and nodes[0]["alarms"] == ["[bold]x"]


def test_decode_names_a_hostile_capture_as_it_is(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    dbc, capture = hostile
    result = run_bounded(["decode", str(capture), "--dbc", str(dbc), "-o", str(tmp_path / "d")])
    assert result.code == 0, result.stderr[-3000:]
    assert f"candiag decode: {capture}: 200 frames" in result.stderr


def _monitor_config(folder: Path, dbc: Path) -> Path:
    """The demo's simulated charger and meters, read with the hostile cooling DBC."""
    dbcs = folder / "dbc"
    dbcs.mkdir()
    for ref in (PACKAGE / "data" / "dbc").glob("*.dbc"):
        if ref.name != "cooling.dbc":
            (dbcs / ref.name).write_text(ref.read_text())
    (dbcs / "cooling.dbc").write_text(dbc.read_text())
    config = (REPO / "config" / "demo.toml").read_text()
    config = config.replace("bitrate = 125000\n", f'bitrate = 125000\ndbc = ["{dbcs}"]\n', 1)
    config = config.replace('[[can.buses.families]]\nname = "cooling"\nexpected = [0]\n', "")
    config = config.replace('listen = "127.0.0.1:9847"', 'listen = "127.0.0.1:0"')
    path = folder / "hostile.toml"
    path.write_text(config)
    return path


def test_monitor_plain_lines_show_a_hostile_family(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    config = _monitor_config(tmp_path, hostile[0])
    args = ["monitor", "--config", str(config), "--plain", "--duration", "3", "--interval", "1"]
    result = run_bounded(args, timeout_s=60)
    assert result.code == 0, result.stderr[-3000:]
    assert f"{HOSTILE_FAMILY} 1/1" in result.stdout  # nodes per family in the bus line


@pytest.mark.slow
def test_the_live_view_on_a_terminal_shows_a_hostile_family(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    """``monitor`` on a pseudo-terminal draws the rich view: a family ``[/]`` in its node table."""
    config = _monitor_config(tmp_path, hostile[0])
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    argv = [sys.executable, "-m", "candiag", "monitor", "--config", str(config), "--duration", "6"]
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, start_new_session=True
    )
    shown = bytearray()
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    shown.extend(os.read(master, 1 << 16))
                except OSError:
                    break
        code = proc.wait(10)
        while select.select([master], [], [], 0.2)[0]:
            try:
                shown.extend(os.read(master, 1 << 16))
            except OSError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    text = shown.decode(errors="replace")
    assert code == 0, text[-3000:]
    assert "MarkupError" not in text and "Traceback" not in text
    assert "Nodes" in text and f" {HOSTILE_FAMILY} " in text  # the family cell, as it is


def test_every_field_of_the_live_view_is_text_not_markup() -> None:
    """The live view from hostile values in every field a file or a bus can fill."""
    from rich.console import Console

    from candiag.diagnosis.engine import Finding
    from candiag.tui.view import BusView, KeySignal, ScreenState, render_screen
    from tests.bus_reports import bus_report

    evil = "[/]"
    node = {
        "family": f"{evil}fam",
        "address": 1,
        "status": "online",
        "last_seen": 99.0,
        "firmware": f"v[bold]{evil}",
        "alarms": [f"[red]{evil}"],
    }
    report = bus_report({"name": f"{evil}bus", "state": "down", "nodes": [node], "windows": {}})
    bus = BusView(
        f"{evil}bus", f"pcan {evil}", report, {(f"{evil}fam", 1): {"voltage": KeySignal(1.0, evil)}},
        last_error=f"gone {evil}",
    )  # fmt: skip
    meter = {
        "port": f"/dev/tty{evil}",
        "name": f"{evil}m",
        "up": True,
        "failures": {"bad_reply": 1},
        "readings": {"voltage": {"value": 1.0, "unit": evil}},
    }
    finding = Finding(f"{evil}CODE", "critical", 1, evil, f"title {evil}", {}, [], f"fix {evil}",
                      None, 90.0)  # fmt: skip
    state = ScreenState(
        now=100.0, title=f"config {evil}.toml", buses=[bus, bus], meters=[meter],
        findings=[finding], recording=f"./{evil}.log.gz", message=f"msg {evil}",
    )  # fmt: skip
    console = Console(record=True, width=250, color_system=None)
    console.print(render_screen(state))
    text = console.export_text()
    for shown in (
        f"{evil}fam",
        f"v[bold]{evil}",
        f"[red]{evil}",
        f"pcan {evil}",
        f"gone {evil}",
        f"/dev/tty{evil}",
        f"{evil}m",
        f"1.0 {evil}",
        f"title {evil}",
        f"fix {evil}",
        f"config {evil}.toml",
        f"./{evil}.log.gz",
    ):
        assert shown in text, shown
