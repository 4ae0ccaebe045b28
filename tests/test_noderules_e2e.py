"""Issue 15, nodes group, end to end: faults that come and go late in a long capture,
between the old 10 s evaluation grid's points, found by the real ``candiag analyze`` with
their true bounds; healthy captures and independent logs give none of these findings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from candiag.analysis import analyze_capture
from candiag.cli import main
from candiag.decode.dbc import load_reference_database
from candiag.diagnosis.noderules import CODES
from tests.realworld import pycan_dir

T0 = 1_700_000_000.0  # the simulator's start (docs/reference-bus.md)
FRAME = 0.1  # the reference charger's shortest cycle
STEP = 10.0  # the cycle verdicts' step (a minute judged every 10 s)

pytestmark = pytest.mark.slow


def flat(findings: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for f in findings:
        out[(f["code"], f["subject"])] = f
        out.update(flat(f.get("consequences", [])))
    return out


def bounds(f: dict[str, Any]) -> list[tuple[float, float | None]]:
    return [(e["start"] - T0, None if e["end"] is None else e["end"] - T0) for e in f["episodes"]]


def analyze(capture: Path) -> dict[str, Any]:
    out = capture.with_suffix(".json")
    main(["analyze", str(capture), "--json", str(out)])
    report: dict[str, Any] = json.loads(out.read_text())
    return report


def simulate(path: Path, seconds: float, *faults: str, extra: tuple[str, ...] = ()) -> Path:
    args = ["simulate", "-o", str(path), "-d", str(seconds), *extra]
    for fault in faults:
        args += ["--fault", fault]
    assert main(args) == 0
    return path


@pytest.fixture(scope="module")
def late(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 400 s capture, every fault after minute 2 and off the 10 s grid."""
    capture = simulate(
        tmp_path_factory.mktemp("late") / "late.log",
        400,
        "duplicate_address@133.43+20:module=2",
        "duplicate_address@251.37+15:module=2",
        "jitter@150+30:module=4,ratio=0.9",
        "module_silent@200.33+5:module=3",
        "firmware_mismatch@300.55+30:module=5,dcdc_minor=3",
    )
    return analyze(capture)


def test_a_duplicate_address_twice_is_one_finding_with_both_episodes(late: dict[str, Any]) -> None:
    """Bounded by the second sender's frames and the alarm bit's frames: the simulated
    module sets its id_repeat alarm in ModuleStatus (every 200 ms), whose first frame with
    the bit clear ends the episode."""
    f = flat(late["findings"])[("CAN_NODE_DUPLICATE", "can0/power_module/2")]
    assert f["occurrences"] == 2
    status_period = 0.2
    for (start, end), (want_start, want_end) in zip(
        bounds(f), [(133.43, 153.43), (251.37, 266.37)], strict=True
    ):
        assert abs(start - want_start) <= FRAME and end is not None
        assert abs(end - want_end) <= status_period
    assert f["evidence"]["alarm"] is True
    assert f["evidence"]["rate_ratio"] == pytest.approx(2.0, rel=0.1)


def test_a_dropout_makes_the_node_intermittent_from_its_return_and_breaks_no_cycle(
    late: dict[str, Any],
) -> None:
    found = flat(late["findings"])
    offline = found[("CAN_NODE_OFFLINE", "can0/power_module/3")]
    intermittent = found[("CAN_NODE_INTERMITTENT", "can0/power_module/3")]
    ((back, end),) = bounds(intermittent)
    assert back == pytest.approx(bounds(offline)[0][1]) and end is None  # within 600 s
    assert abs(back - 205.33) <= FRAME
    assert intermittent["consequence_of"].startswith("CAN_NODE_OFFLINE")
    # The silence's broken periods are not cycle violations of its ids.
    assert not [k for k in found if k[0] == "CAN_CYCLE_VIOLATION" and k[1].endswith("F003")]


def test_jitter_for_half_a_minute_breaks_the_cycle_of_that_module_only(
    late: dict[str, Any],
) -> None:
    found = flat(late["findings"])
    cycles = {k[1]: f for k, f in found.items() if k[0] == "CAN_CYCLE_VIOLATION"}
    assert cycles and all(subject.endswith("F004") for subject in cycles)
    telemetry = cycles["can0/0x0283F004"]
    ((start, end),) = bounds(telemetry)
    assert end is not None and abs(start - 150) <= STEP and abs(end - 180) <= STEP
    assert telemetry["evidence"]["family"] == "power_module" and telemetry["evidence"]["node"] == 4


def test_a_firmware_mismatch_lasts_from_the_outliers_first_version_frame(
    late: dict[str, Any],
) -> None:
    f = flat(late["findings"])[("CAN_FW_MISMATCH", "can0/power_module")]
    ((start, end),) = bounds(f)
    version_period = 1.0  # ModuleVersion is sent every second
    assert end is not None
    assert abs(start - 300.55) <= version_period and abs(end - 330.55) <= version_period
    assert "power module 5" in f["fix"]


def test_every_node_silent_at_once_is_one_bus_silence_with_the_nodes_under_it(
    tmp_path: Path,
) -> None:
    """A cable pulled for 7.5 s late in the capture: the frames of that stretch are gone."""
    full = simulate(tmp_path / "full.log", 300)
    lines = full.read_text().splitlines()
    hole = [ln for ln in lines if not T0 + 212.34 <= float(ln[1 : ln.index(")")]) < T0 + 219.87]
    capture = tmp_path / "hole.log"
    capture.write_text("\n".join(hole) + "\n")
    report = analyze(capture)
    top = report["findings"][0]
    assert top["code"] == "CAN_BUS_SILENT" and top["occurrences"] == 1
    ((start, end),) = bounds(top)
    assert abs(start - 212.34) <= FRAME and end is not None and abs(end - 219.87) <= FRAME
    under = {c["code"] for c in top.get("consequences", [])}
    assert "CAN_NODE_OFFLINE" in under
    assert [f["code"] for f in report["findings"]].count("CAN_NODE_OFFLINE") == 0
    assert not [f for f in report["findings"] if f["code"] == "CAN_CYCLE_VIOLATION"]


def test_a_healthy_capture_with_fewer_modules_than_the_dbc_allows_has_none(
    tmp_path: Path,
) -> None:
    capture = simulate(tmp_path / "healthy.log", 400, extra=("--modules", "3", "--seed", "7"))
    report = analyze(capture)
    assert not [k for k in flat(report["findings"]) if k[0] in CODES]


def test_python_can_logs_give_none_of_these_findings() -> None:
    """Independent captures (python-can's test logs) on the reference DBC: nothing of its
    nodes is heard, so nothing may be said about them."""
    folder = pycan_dir()
    if folder is None:
        pytest.skip("python-can's test logs not found")
    db = load_reference_database()
    logs = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix in (".asc", ".blf", ".trc", ".log", ".csv")
    )
    assert logs
    for log in logs:
        try:
            result = analyze_capture(log, db)
        except Exception as err:
            pytest.fail(f"{log.name}: {err}")
        codes = {k[0] for k in flat(result.report.to_json()["findings"])}
        assert not codes & CODES, (log.name, codes & CODES)
