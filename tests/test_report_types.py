"""Typed reports: no ``dict[str, Any]`` crosses a package boundary in the report path.

The bus report goes health -> diagnosis, tui, report (HTML), metrics and the analysis as
frozen dataclasses (:mod:`candiag.health.report`, :mod:`candiag.analysis_report`), so a
renamed field is a type error and not a rule silently turned off.  An AST check over the
public signatures of those packages holds that line; the few ``Any`` mappings left are
listed below with the reason, and must not be reached from another package.
"""

from __future__ import annotations

import ast
import dataclasses
import gzip
import json
import re
from pathlib import Path

import pytest

from candiag.analysis import analyze_capture
from candiag.capture import CaptureReader
from candiag.decode.dbc import load_reference_database
from candiag.diagnosis.engine import load_rulebook
from candiag.diagnosis.rules import bus_conditions
from candiag.health.pipeline import BusPipeline
from candiag.health.report import BusReport, CoolingReport, CurrentsReport
from candiag.ingest.frames import FrameBatch

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "candiag"
# The packages the bus report passes through, and the analysis that assembles it.
REPORT_PATH = ("health", "diagnosis", "report", "tui", "metrics")
REPORT_MODULES = ("analysis.py", "analysis_report.py")
CAPTURES = ROOT / "tests" / "data" / "golden" / "captures"

# Public signatures still taking or giving a str-keyed ``Any`` mapping, and why that is not
# a report crossing a package boundary.  Shrink this list; never grow it without a reason.
ALLOWED = {
    # Inside health: read by BusPipeline.report, which turns them into typed parts.
    "health/signals.py:SignalStats.facts": "health-internal",
    "health/windows.py:BusWindows.plot_series": "health-internal",
    # Inside diagnosis: a condition's text fields, rule-specific by nature; they leave
    # diagnosis only as a Finding (typed) and its JSON.
    "diagnosis/engine.py:render": "diagnosis-internal",
    **{
        f"diagnosis/rules.py:{name}": "diagnosis-internal"
        for name in (
            "error_frame_conditions",
            "load_and_drop_conditions",
            "node_conditions",
            "firmware_conditions",
            "cycle_conditions",
            "contactor_conditions",
            "cooling_conditions",
        )
    },
    # The Modbus device status (modbus.poller.DeviceSnapshot.as_dict): not the CAN bus
    # report; the typed DeviceSnapshot exists and is the next step.
    "diagnosis/engine.py:DiagnosisEngine.update": "modbus",
    "diagnosis/rules.py:evaluate": "modbus",
    "diagnosis/rules.py:plausibility_conditions": "modbus",
    "diagnosis/rules.py:modbus_conditions": "modbus",
    "tui/view.py:meter_readings_text": "modbus",
    "tui/view.py:meters_table": "modbus",
    "tui/plain.py:meter_line": "modbus",
    # The HTML report renders the document ``analyze --json`` writes (its keys are the golden
    # files' and the README's), so HTML and JSON of one analysis cannot disagree; report/
    # reads that JSON document through report/access.py.
    "report/html.py:render_report": "json-document",
    "report/access.py:ids": "json-document",
    "report/access.py:signals": "json-document",
    "report/evidence.py:evidence_rows": "json-document",
    "report/signals.py:signal_groups": "json-document",
}
ANY_MAPPING = re.compile(r"(dict|Mapping|MutableMapping)\[str, Any\]")


def _modules() -> list[Path]:
    out = [PACKAGE / m for m in REPORT_MODULES]
    for pkg in REPORT_PATH:
        out += sorted((PACKAGE / pkg).glob("*.py"))
    return out


def _public_functions(
    node: ast.AST, prefix: str = ""
) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef) and not child.name.startswith("_"):
            out += _public_functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            if not child.name.startswith("_") or child.name == "__init__":
                out.append((prefix + child.name, child))
    return out


def any_mappings_in_signatures(paths: list[Path]) -> dict[str, list[str]]:
    """``"pkg/module.py:Qual.name"`` -> the annotations with a str-keyed ``Any`` mapping."""
    found: dict[str, list[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for name, fn in _public_functions(tree):
            args = fn.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            annotations = [p.annotation for p in params if p is not None and p.annotation]
            if fn.returns is not None:
                annotations.append(fn.returns)
            bad = [ast.unparse(a) for a in annotations if ANY_MAPPING.search(ast.unparse(a))]
            if bad:
                where = path.relative_to(PACKAGE) if path.is_relative_to(PACKAGE) else path.name
                found[f"{Path(where).as_posix()}:{name}"] = bad
    return found


def test_no_any_mapping_crosses_the_report_path() -> None:
    found = any_mappings_in_signatures(_modules())
    new = {k: v for k, v in found.items() if k not in ALLOWED}
    assert new == {}, "a dict[str, Any] in a public signature of the report path: type it"
    gone = sorted(set(ALLOWED) - set(found))
    assert gone == [], "typed now: take these out of ALLOWED"


def test_internal_any_mappings_are_not_reached_from_another_package() -> None:
    """What ALLOWED calls internal is neither imported nor called outside its package."""
    imported: dict[str, set[str]] = {}  # top-level package -> names imported there
    called: dict[str, set[str]] = {}  # top-level package -> method names called there
    for path in PACKAGE.rglob("*.py"):
        package = path.relative_to(PACKAGE).parts[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                imported.setdefault(package, set()).update(a.name for a in node.names)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                called.setdefault(package, set()).add(node.func.attr)
    for key, why in ALLOWED.items():
        if not why.endswith("-internal"):
            continue
        where, qualname = key.split(":")
        package, name = where.split("/")[0], qualname.split(".")[-1]
        # Other packages' own ``render`` methods are not diagnosis's ``render`` function.
        uses = [imported] if name == "render" else [imported, called]
        outside = sorted(
            {p for u in uses for p, names in u.items() if p != package and name in names}
        )
        assert outside == [], f"{key} is reached from {outside}"


def test_the_check_sees_an_any_mapping(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        "from typing import Any\n"
        "class Report:\n"
        "    def to_json(self) -> dict[str, Any]: ...\n"
        "    def _private(self, x: dict[str, Any]) -> None: ...\n"
        "def read(report: 'Mapping[str, Any]', *, n: int = 0) -> int: ...\n"
        "def fine(report: Report) -> dict[str, int]: ...\n"
    )
    found = any_mappings_in_signatures([module])
    keys = {k.split(":")[1] for k in found}
    assert keys == {"Report.to_json", "read"}


# -- the typed report itself ----------------------------------------------------------------


def _pipeline(capture: Path) -> BusPipeline:
    pipeline = BusPipeline("can0", load_reference_database(), bitrate=125_000)
    batches = list(CaptureReader(capture).batches())
    pipeline.process(FrameBatch.concat(batches))
    return pipeline


def test_what_is_not_known_is_none_not_missing() -> None:
    pipeline = BusPipeline("can0", load_reference_database(), bitrate=125_000)
    report = pipeline.report(0.0)
    assert report.cooling == CoolingReport(None, None, None)
    assert report.currents == CurrentsReport(None, None)
    assert report.window("10s") is not None and report.window("2s") is None
    assert report.error_frames.counters.tec_last is None  # no frame carried a counter
    assert report.error_frames.tec_last == 0  # what diagnosis judges
    assert report.link is None and report.nodes == () and report.contactors == ()
    # The JSON keeps analyze's shape: unread cooling values are left out, as before.
    assert report.to_json()["cooling"] == {}


def test_reports_are_frozen() -> None:
    report = BusPipeline("can0", load_reference_database()).report(0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.state = "bus_off"  # type: ignore[misc]


@pytest.mark.parametrize("scenario", ["bus_off", "module_offline", "firmware_mismatch"])
def test_the_cheap_report_diagnoses_as_the_full_one(scenario: str) -> None:
    """One builder: ``detail=False`` leaves out what the rules do not read, nothing else."""
    pipeline = _pipeline(CAPTURES / f"sim_{scenario}.log.gz")
    now = pipeline.last_ts
    assert now is not None
    full, cheap = pipeline.report(now), pipeline.report(now, detail=False)
    assert cheap.signals is None and cheap.decode is None and cheap.bus_load is None
    assert set(cheap.windows) == {"10s", "60s"}
    assert set(cheap.ids) <= set(full.ids)  # only the ids breaking their cycle
    assert all(entry.cycle_ok is False for entry in cheap.ids.values())
    book = load_rulebook()
    codes_full = sorted((c.code, c.subject) for c in bus_conditions(book, full))
    codes_cheap = sorted((c.code, c.subject) for c in bus_conditions(book, cheap))
    assert codes_full == codes_cheap and codes_full


def test_a_bus_report_serializes_as_the_bus_in_analyze_json() -> None:
    """``buses.<name>`` of a two-bus analysis is each BusReport's to_json()."""
    result = analyze_capture(CAPTURES / "two_buses.log.gz")
    doc = result.report.to_json()
    buses = doc["buses"]
    assert isinstance(buses, dict) and set(buses) == {"can0", "can1"}
    for name, bus in result.report.buses.items():
        assert isinstance(bus, BusReport)
        assert buses[name] == json.loads(json.dumps(bus.to_json()))
    # The merged nodes say which bus they are on; the typed ones are each bus's own.
    nodes = doc["nodes"]
    assert isinstance(nodes, list) and {n["bus"] for n in nodes} == {"can0", "can1"}  # type: ignore[index]
    assert len(result.report.nodes) == len(nodes)


# -- the README documents the keys ----------------------------------------------------------


def _readme_keys(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"<!-- json-keys:{section} -->")
    end = text.index("<!-- /json-keys -->", start)
    return re.findall(r"^\| `([a-z_0-9]+)`", text[start:end], re.MULTILINE)


def test_readme_documents_every_top_level_key() -> None:
    golden = json.loads(
        gzip.decompress((ROOT / "tests/data/golden/two_buses.json.gz").read_bytes())
    )
    # ``liveness`` (only with a request/response protocol pack) is documented too.
    assert [k for k in _readme_keys("top") if k != "liveness"] == list(golden)


def test_readme_documents_every_bus_key() -> None:
    golden = json.loads(
        gzip.decompress((ROOT / "tests/data/golden/two_buses.json.gz").read_bytes())
    )
    bus = golden["buses"]["can0"]
    documented = _readme_keys("bus")
    # ``link`` (live SocketCAN only), ``down_since`` (live, while down) and ``liveness`` (only
    # with a request/response protocol pack) are documented too.
    assert [k for k in documented if k not in ("link", "down_since", "liveness")] == list(bus)


@pytest.mark.slow
def test_readme_documents_the_keys_of_a_protocol_pack_capture(tmp_path: Path) -> None:
    """A request/response pack adds ``liveness``: the README lists it, in its place."""
    import subprocess
    import sys

    from candiag.sim.protocols.packs import pack_path

    capture, out = tmp_path / "infy.log", tmp_path / "infy.json"
    cli = [sys.executable, "-m", "candiag"]
    subprocess.run([*cli, "simulate", "--protocol", "infy", "-o", str(capture), "-d", "20", "-q"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    subprocess.run([*cli, "analyze", str(capture), "--dbc", str(pack_path("infy")), "--json",
                    str(out), "-q"], check=False, capture_output=True, timeout=120)  # fmt: skip
    report = json.loads(out.read_text())
    assert "liveness" in report
    top = _readme_keys("top")
    assert [k for k in top if k in report] == list(report)
    assert set(report) <= set(top)
