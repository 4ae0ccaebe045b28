"""Static checks that keep the field commands portable to Windows (docs/windows.md).

Read from the sources with ``ast``, nothing imported:

* no module on a field command's import path imports a POSIX-only module (or a
  Windows-only one) at module level, unless behind a platform check or ``ImportError``;
* no signal but the ones Windows has is named directly (SIGHUP & co. via ``getattr``);
* paths are built with pathlib: no ``os.path.join``/``dirname``/``basename``/``split``,
  no string joins with ``/``, no ``/tmp``, and absolute POSIX paths only where a
  Linux-only feature reads them (listed with the reason);
* text files are opened with an explicit encoding, and written with explicit newlines.

Each rule is also run on a small offending source, so a rule that can no longer fail fails.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "candiag"
# The technician's commands (everything but `run`, the Linux daemon); `probe` when present.
FIELD_COMMANDS = ("demo", "monitor", "record", "analyze", "decode", "simulate", "modbus", "probe")
POSIX_ONLY = frozenset(
    {"termios", "tty", "pty", "fcntl", "pwd", "grp", "resource", "posix", "syslog", "crypt"}
    | {"nis", "spwd", "curses", "readline", "ossaudiodev"}
)
WINDOWS_ONLY = frozenset({"msvcrt", "winreg", "winsound", "_winapi", "nt"})
# Signals Python defines on Windows as well as POSIX (signal module docs).
PORTABLE_SIGNALS = frozenset({"SIGINT", "SIGTERM", "SIGABRT", "SIGFPE", "SIGILL", "SIGSEGV"})
STRING_PATH_FUNCTIONS = frozenset({"join", "dirname", "basename", "split", "splitext", "abspath"})
# Absolute POSIX paths that only Linux-only features read, with the reason.
LINUX_ONLY_PATHS = {
    ("candiag/ingest/live.py", "/sys/class/net"): "SocketCAN link state (Linux sysfs)",
    ("candiag/modbus/profile.py", "/etc/candiag/meters"): "the daemon's profiles, POSIX only",
    ("candiag/cli/monitor.py", "/dev/tty"): "keys while stdin is a pipe (POSIX); else no keys",
}
PATH_NAMES = re.compile(r"(path|dir|folder|file|root|home|tmp)", re.IGNORECASE)
ABSOLUTE_POSIX = re.compile(r"^/(tmp|etc|dev|sys|proc|var|run|home|usr|opt|mnt|media|srv)(/|$)")


@dataclass(frozen=True)
class Problem:
    where: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.what}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def parse(source: str) -> ast.Module:
    """A source's tree, parsed once for all the checks (the checks only read it)."""
    return ast.parse(source)


@functools.cache
def text_of(path: Path) -> str:
    """A source's text, read once for all the checks."""
    return path.read_text("utf-8")


def imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module an ``import``/``from`` anywhere in ``tree`` names (relative ones resolved),
    and ``importlib.import_module(f"candiag.cli.{...}")`` prefixes as the package."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


@functools.cache
def field_import_closure() -> frozenset[str]:
    """candiag modules any field command can import (lazy imports in functions included)."""
    mods = sources()
    starts = ["candiag.__main__", "candiag.cli"]
    starts += [f"candiag.cli.{c}" for c in FIELD_COMMANDS if f"candiag.cli.{c}" in mods]
    # cli/__init__ imports every subcommand module by name (importlib): all of them load.
    starts += [m for m in mods if m.startswith("candiag.cli.")]
    seen: set[str] = set()
    todo = [m for m in starts if m in mods]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = mods[name]
        tree = parse(text_of(path))
        for target in imported_names(tree, name, path.name == "__init__.py"):
            # the module itself and every package on the way (their __init__ runs too)
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in mods and prefix not in seen:
                    todo.append(prefix)
    return frozenset(seen)


# -- rule 1: platform-only imports at module level ---------------------------------------------
def _guards_platform(node: ast.If) -> bool:
    text = ast.unparse(node.test)
    return "sys.platform" in text or "os.name" in text or "TYPE_CHECKING" in text


def _catches_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        names = ast.unparse(handler.type) if handler.type is not None else ""
        if "ImportError" in names or "ModuleNotFoundError" in names:
            return True
    return False


def module_level_platform_imports(source: str, where: str) -> list[Problem]:
    """Imports of POSIX-only or Windows-only modules that run when the module is imported."""
    problems: list[Problem] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if isinstance(node, ast.ClassDef):  # a class body runs at import
                    visit(node.body)
                continue
            if isinstance(node, ast.If):
                if not _guards_platform(node):
                    visit(node.body)
                    visit(node.orelse)
                continue
            if isinstance(node, ast.Try):
                if not _catches_import_error(node):
                    visit(node.body)
                for block in (node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(block)
                continue
            if isinstance(node, (ast.With, ast.For, ast.While)):
                visit(node.body)
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            for name in names:
                top = name.partition(".")[0]
                if top in POSIX_ONLY | WINDOWS_ONLY:
                    kind = "POSIX-only" if top in POSIX_ONLY else "Windows-only"
                    problems.append(
                        Problem(where, node.lineno, f"imports {kind} {name} at module level")
                    )

    visit(parse(source).body)
    return problems


def test_the_field_import_closure_holds_the_modules_that_were_not_portable() -> None:
    closure = field_import_closure()
    for name in ("candiag.tui.terminal", "candiag.modbus.link", "candiag.modbus.sim"):
        assert name in closure
    assert "candiag.daemon.service" in closure  # the demo runs the daemon
    assert len(closure) > 60


def test_no_field_command_module_imports_a_platform_only_module_at_module_level() -> None:
    mods = sources()
    problems = [
        p
        for name in sorted(field_import_closure())
        for p in module_level_platform_imports(
            text_of(mods[name]), str(mods[name].relative_to(REPO))
        )
    ]
    assert problems == [], "\n".join(map(str, problems))


def test_the_import_rule_finds_module_level_imports_and_allows_guarded_ones() -> None:
    source = """
import os
import termios
from fcntl import ioctl
if sys.platform == "win32":
    import msvcrt
else:
    import tty
try:
    import pwd
except ImportError:
    pwd = None
class K:
    import grp
def f():
    import resource
"""
    found = [(p.line, p.what) for p in module_level_platform_imports(source, "x.py")]
    assert found == [
        (3, "imports POSIX-only termios at module level"),
        (4, "imports POSIX-only fcntl at module level"),
        (14, "imports POSIX-only grp at module level"),
    ]


# -- rule 2: signals Windows does not have ---------------------------------------------------------
def posix_only_signals(source: str, where: str) -> list[Problem]:
    problems = []
    for node in ast.walk(parse(source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "signal"
            and node.attr.startswith("SIG")
            and not node.attr.startswith("SIG_")
            and node.attr not in PORTABLE_SIGNALS
        ):
            problems.append(
                Problem(where, node.lineno, f"signal.{node.attr} does not exist on Windows")
            )
    return problems


def test_field_commands_name_only_signals_windows_has() -> None:
    mods = sources()
    problems = [
        p
        for name in sorted(field_import_closure())
        for p in posix_only_signals(text_of(mods[name]), name)
    ]
    assert problems == [], "\n".join(map(str, problems))


def test_the_signal_rule_finds_sighup() -> None:
    source = "signal.signal(signal.SIGHUP, h)\ns = signal.SIGINT\ng = getattr(signal, 'SIGHUP')\n"
    assert [p.line for p in posix_only_signals(source, "x.py")] == [1]


# -- rule 3: paths through pathlib ------------------------------------------------------------------
def _docstring_nodes(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _slash_literal(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "://" not in node.value
        and (node.value.startswith("/") or node.value.endswith("/") or node.value == "\\")
    )


def _names(node: ast.AST) -> str:
    return " ".join(
        n.id if isinstance(n, ast.Name) else n.attr
        for n in ast.walk(node)
        if isinstance(n, (ast.Name, ast.Attribute))
    )


def string_path_problems(source: str, where: str) -> list[Problem]:
    tree = parse(source)
    docstrings = _docstring_nodes(tree)
    problems = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in STRING_PATH_FUNCTIONS
            and ast.unparse(node.func.value) == "os.path"
        ):
            problems.append(Problem(where, line, f"os.path.{node.func.attr}: use pathlib"))
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            if _slash_literal(node.left) or _slash_literal(node.right):
                problems.append(Problem(where, line, "path joined as a string with '/'"))
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            for i, part in enumerate(parts):
                if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                    continue
                text = part.value
                before = parts[i - 1] if i > 0 else None
                after = parts[i + 1] if i + 1 < len(parts) else None
                joined = (
                    text.startswith(("/", "\\"))
                    and isinstance(before, ast.FormattedValue)
                    and PATH_NAMES.search(_names(before.value))
                ) or (
                    text.endswith(("/", "\\"))
                    and isinstance(after, ast.FormattedValue)
                    and PATH_NAMES.search(_names(after.value))
                )
                if joined:
                    problems.append(Problem(where, line, "path joined in an f-string with '/'"))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            if re.match(r"^/(var/)?tmp(/|$)", node.value):
                problems.append(Problem(where, line, f"{node.value!r}: use tempfile"))
            elif ABSOLUTE_POSIX.match(node.value) and node.value.count(" ") == 0:
                key = (where, node.value)
                if key not in LINUX_ONLY_PATHS and _used_as_path(tree, node):
                    problems.append(Problem(where, line, f"hard-coded path {node.value!r}"))
    return problems


def _used_as_path(tree: ast.AST, constant: ast.Constant) -> bool:
    """The literal is given to Path()/open() or is a parameter's default."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and any(a is constant for a in node.args):
            if ast.unparse(node.func).split(".")[-1] in ("Path", "PurePath", "open"):
                return True
        if isinstance(node, ast.arguments):
            if any(d is constant for d in (*node.defaults, *node.kw_defaults)):
                return True
    return False


def test_candiag_builds_paths_with_pathlib_only() -> None:
    problems = []
    for path in sources().values():
        where = str(path.relative_to(REPO))
        problems += string_path_problems(text_of(path), where)
    assert problems == [], "\n".join(map(str, problems))


def test_the_path_rule_finds_string_joins_and_hard_coded_paths() -> None:
    source = r'''
"""Docstrings may say /tmp and /dev/ttyUSB0."""
a = os.path.join(folder, "x.log")
b = folder + "/x.log"
b2 = re.escape(stem) + r"\.(\d{4,})"
c = f"{out_dir}/report.html"
d = f"{bus}/{node}"
e = Path("/tmp/candiag")
f = Path("/dev/ttyUSB0")
def g(sysfs=Path("/sys/class/net")): ...
h = "tcp://" + host
i = "use --port /dev/ttyUSB0"
j = os.path.exists(p)
'''
    found = [(p.line, p.what) for p in string_path_problems(source, "x.py")]
    assert found == [
        (3, "os.path.join: use pathlib"),
        (4, "path joined as a string with '/'"),
        (6, "path joined in an f-string with '/'"),
        (8, "'/tmp/candiag': use tempfile"),
        (9, "hard-coded path '/dev/ttyUSB0'"),
        (10, "hard-coded path '/sys/class/net'"),
    ]


# -- rule 4: text files: explicit encoding and newlines -------------------------------------------
def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def text_file_problems(source: str, where: str) -> list[Problem]:
    """``open``/``Path.open``/``gzip.open``: text mode needs ``encoding=``, writing also
    ``newline=``; ``read_text`` needs an encoding, ``write_text`` an encoding and newline."""
    problems = []
    for node in ast.walk(parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Name, ast.Attribute)):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        owner = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        if owner == "os":
            continue  # os.open: a descriptor, bytes only
        line = node.lineno
        method = isinstance(node.func, ast.Attribute)
        if func == "read_text" and method:
            if not node.args and _keyword(node, "encoding") is None:
                problems.append(Problem(where, line, "read_text without an encoding"))
        elif func == "write_text" and method:
            if len(node.args) < 2 and _keyword(node, "encoding") is None:
                problems.append(Problem(where, line, "write_text without an encoding"))
            elif _keyword(node, "newline") is None:
                problems.append(Problem(where, line, "write_text without newline="))
        elif func == "open":
            mode_index = 1 if isinstance(node.func, ast.Name) or owner in ("gzip", "io") else 0
            mode_node = _keyword(node, "mode") or (
                node.args[mode_index] if len(node.args) > mode_index else None
            )
            if (
                mode_node is None
                and not isinstance(node.func, ast.Name)
                and owner
                not in (
                    "gzip",
                    "io",
                )
            ):
                continue  # obj.open() of something that is not a file (a link, a port)
            mode = (
                mode_node.value
                if isinstance(mode_node, ast.Constant) and isinstance(mode_node.value, str)
                else "r"
            )
            if "b" in mode:
                continue
            if _keyword(node, "encoding") is None and len(node.args) <= mode_index + 2:
                problems.append(Problem(where, line, f"open mode {mode!r} without an encoding"))
            if set(mode) & set("wax") and _keyword(node, "newline") is None:
                problems.append(Problem(where, line, f"open mode {mode!r} without newline="))
    return problems


def test_text_files_are_opened_with_an_encoding_and_written_with_explicit_newlines() -> None:
    problems = []
    for path in sources().values():
        problems += text_file_problems(text_of(path), str(path.relative_to(REPO)))
    assert problems == [], "\n".join(map(str, problems))


def test_the_text_file_rule_finds_implicit_encodings_and_newlines() -> None:
    source = """
open(p)
open(p, "rb")
open(p, "w", encoding="utf-8")
open(p, "w", encoding="utf-8", newline="\\n")
path.read_text()
path.read_text("utf-8")
path.write_text(s, "utf-8")
path.write_text(s, "utf-8", newline="\\n")
write_text(args.json, text)
gzip.open(p, "rt")
link.open()
os.open(p, os.O_RDONLY)
"""
    found = [(p.line, p.what) for p in text_file_problems(source, "x.py")]
    assert found == [
        (2, "open mode 'r' without an encoding"),
        (4, "open mode 'w' without newline="),
        (6, "read_text without an encoding"),
        (8, "write_text without newline="),
        (11, "open mode 'rt' without an encoding"),
    ]


@pytest.mark.parametrize("name", ["demo.toml"])
def test_the_packaged_demo_config_is_the_repository_one(name: str) -> None:
    """A wheel install has no config/ folder: `candiag demo` reads the packaged copy."""
    packaged = PACKAGE / "data" / name
    assert packaged.read_bytes() == (REPO / "config" / name).read_bytes(), (
        f"copy config/{name} to candiag/data/{name}"
    )
