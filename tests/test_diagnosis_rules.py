"""Diagnosis rules and engine on hand-built health reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from candiag.config.problems import MAX_LISTED
from candiag.diagnosis.engine import THRESHOLD_LIMITS, DiagnosisEngine, load_rulebook
from candiag.errors import ConfigError
from candiag.health.errorframes import ERROR_CLASSES
from tests.bus_reports import bus_report

CLASSES = ERROR_CLASSES


def healthy_bus(**overrides: Any) -> dict[str, Any]:
    bus: dict[str, Any] = {
        "name": "can0",
        "bitrate": 500000,
        "up": True,
        "state": "error_active",
        "error_frames": {"tec_last": 0, "rec_last": 0},
        "windows": {
            "10s": {"error_frames": dict.fromkeys(CLASSES, 0), "load_ratio": 0.31},
            "60s": {
                "error_frames": dict.fromkeys(CLASSES, 0),
                "error_frames_total": 0,
                "protocol_type": {},
                "bus_off": 0,
                "load_ratio": 0.30,
            },
        },
        "error_bursts": {"burst_seconds": 0, "in_bursts": 0, "protocol_total": 0},
        "nodes": [
            {"family": "power_module", "address": a, "status": "online", "alarms": []}
            for a in range(1, 9)
        ],
        "firmware_mismatches": [],
        "ids": {"0x0283F001": {"cycle_ok": True}},
        "dropped_recent": 0,
        "contactors": [{"name": "DCPlus", "command": 1, "feedback": 1, "mismatch_s": 0.0}],
        "cooling": {"pump_command": 0.8, "flow": 12.0, "coolant_temperature": 35.0},
        "currents": {"modules_output_a": 120.0, "meter_a": 119.0},
    }
    bus.update(overrides)
    return bus


def with_errors(bus: dict[str, Any], **classes: int) -> dict[str, Any]:
    w60 = bus["windows"]["60s"]
    w60["error_frames"].update(classes)
    w60["error_frames_total"] = max(classes.values())
    return bus


def typed(buses: list[dict[str, Any]]) -> list[Any]:
    """The hand-built JSON-shaped buses as the typed reports the engine reads."""
    return [bus_report(b) for b in buses]


def codes(buses: list[dict[str, Any]], modbus: list[dict[str, Any]] = ()) -> list[str]:  # type: ignore[assignment]
    engine = DiagnosisEngine()
    engine.update(100.0, typed(buses), modbus)
    return [f.code for f in engine.findings()]


def codes_and_consequences(buses: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Top-level codes, each with the codes folded under it (issue 15: causes first)."""
    engine = DiagnosisEngine()
    engine.update(100.0, typed(buses), [])
    return {f.code: [c.code for c in f.consequences] for f in engine.findings()}


def test_healthy_bus_has_no_findings() -> None:
    assert codes([healthy_bus()]) == []


def test_ack_errors_alone_give_ack_finding() -> None:
    bus = with_errors(healthy_bus(), ack=40, bus_error=40)
    assert codes([bus]) == ["CAN_ERR_ACK"]


def test_sporadic_stuff_errors_are_physical_layer() -> None:
    bus = with_errors(healthy_bus(), protocol=3, bus_error=3)
    bus["windows"]["60s"]["protocol_type"] = {"stuff": 2, "form": 1}
    bus["error_bursts"] = {"burst_seconds": 0, "in_bursts": 0, "protocol_total": 3}
    assert codes([bus]) == ["CAN_ERR_PHY"]


def test_bursty_protocol_errors_point_to_wrong_bitrate() -> None:
    bus = with_errors(healthy_bus(), protocol=120, bus_error=120)
    bus["error_bursts"] = {"burst_seconds": 6, "in_bursts": 110, "protocol_total": 120}
    found = codes([bus])
    assert found[0] == "CAN_WRONG_BITRATE"
    assert "CAN_ERR_PHY" not in found


def test_bit0_errors_point_to_transceiver() -> None:
    bus = with_errors(healthy_bus(), protocol=5)
    bus["windows"]["60s"]["protocol_type"] = {"bit0": 5}
    assert codes([bus])[0] == "CAN_ERR_TRX"


def test_counters_and_bus_off_rank_above_error_class() -> None:
    bus = with_errors(healthy_bus(state="error_passive"), protocol=10, bus_off=1)
    bus["windows"]["60s"]["bus_off"] = 1
    bus["error_frames"] = {"tec_last": 140, "rec_last": 0}
    found = codes([bus])
    assert found[0] == "CAN_BUS_OFF"
    # Error-passive is how the controller got to bus-off: shown under it, not beside it.
    assert "CAN_ERROR_PASSIVE" in codes_and_consequences([bus])["CAN_BUS_OFF"]


def test_tec_warning_level() -> None:
    bus = healthy_bus(state="error_warning")
    bus["error_frames"] = {"tec_last": 100, "rec_last": 3}
    assert codes([bus]) == ["CAN_TEC_RISING"]


def test_stale_counters_after_a_restart_are_not_a_finding() -> None:
    bus = healthy_bus(state="error_active")
    bus["error_frames"] = {"tec_last": 136, "rec_last": 0}
    assert codes([bus]) == []


def test_bus_down_suppresses_everything_else_on_that_bus() -> None:
    bus = healthy_bus(up=False)
    bus["nodes"][0]["status"] = "offline"
    assert codes([bus]) == ["CAN_BUS_DOWN"]


def test_node_states_and_alarms() -> None:
    bus = healthy_bus()
    bus["nodes"][2].update(status="offline", silent_s=42.0)
    bus["nodes"][3].update(status="duplicate", rate_ratio=2.0)
    bus["nodes"][4].update(status="intermittent", dropouts=3)
    bus["nodes"][5].update(alarms=["over_temperature", "fan", "communication_interrupt"])
    engine = DiagnosisEngine()
    engine.update(10.0, typed([bus]))
    found = {(f.code, f.subject) for f in engine.findings()}
    assert ("CAN_NODE_OFFLINE", "can0/power_module/3") in found
    assert ("CAN_NODE_DUPLICATE", "can0/power_module/4") in found
    assert ("CAN_NODE_INTERMITTENT", "can0/power_module/5") in found
    assert {c for c, s in found if s == "can0/power_module/6"} == {
        "CAN_NODE_ALARM_TEMP",
        "CAN_NODE_ALARM_FAN",
        "CAN_NODE_ALARM_COMM",
    }
    offline = next(f for f in engine.findings() if f.code == "CAN_NODE_OFFLINE")
    assert offline.title == "power module 3 stopped transmitting (silent for 42.0 s)"
    assert offline.mrec == "CX015"
    assert offline.evidence["silent_s"] == 42.0


def test_firmware_mismatch_names_outliers() -> None:
    bus = healthy_bus(
        firmware_mismatches=[
            {
                "family": "power_module",
                "majority": "V=1.4",
                "by_version": {"V=1.4": [1, 2, 3], "V=1.2": [4]},
                "not_allowed": {},
            }
        ]
    )
    engine = DiagnosisEngine()
    engine.update(0.0, typed([bus]))
    (finding,) = engine.findings()
    assert finding.code == "CAN_FW_MISMATCH"
    assert "power module 4" in finding.fix and "V=1.4" in finding.fix


def test_load_cycle_contactor_cooling_and_meter_rules() -> None:
    bus = healthy_bus()
    bus["windows"]["10s"]["load_ratio"] = 0.93
    bus["ids"]["0x0283F003"] = {"cycle_ok": False, "cycle_ms": 100, "family": "x", "node": 1}
    bus["contactors"][0].update(command=1, feedback=0, mismatch_s=2.0)
    bus["cooling"] = {"pump_command": 0.9, "flow": 0.0, "coolant_temperature": 58.0}
    bus["currents"] = {"modules_output_a": 150.0, "meter_a": -149.0}
    found = codes_and_consequences([bus])
    assert {
        "CAN_LOAD_HIGH",
        "CAN_CYCLE_VIOLATION",
        "CONTACTOR_MISMATCH",
        "COOLING_NO_FLOW",
        "METER_REVERSED",
    } <= set(found)
    # The heat is the missing flow's consequence (candiag/data/causes.toml).
    assert found["COOLING_NO_FLOW"] == ["COOLING_OVERTEMP"]


def meter(**overrides: Any) -> dict[str, Any]:
    dev: dict[str, Any] = {
        "name": "ac_meter",
        "port": "/dev/ttyUSB0",
        "id": 1,
        "profile": "sdm630",
        "up": True,
        "requests": 100,
        "failures": {"timeout": 0, "crc": 0, "exception": 0, "wrong_device": 0, "io": 0},
        "exceptions": {},
        "readings": {},
    }
    dev.update(overrides)
    return dev


def test_modbus_rules_tell_timeouts_from_crc_from_exceptions() -> None:
    assert codes([], [meter()]) == []
    silent = meter(up=False, failures={"timeout": 100})
    assert codes([], [silent]) == ["MODBUS_NO_ANSWER"]
    noisy = meter(failures={"crc": 20})
    assert codes([], [noisy]) == ["MODBUS_CRC"]
    rejected = meter(failures={"exception": 30}, exceptions={2: 30})
    assert codes([], [rejected]) == ["MODBUS_EXCEPTION"]
    clash = meter(failures={"wrong_device": 5})
    assert codes([], [clash]) == ["MODBUS_WRONG_ID"]


def test_modbus_rules_judge_recent_counters_not_lifetime() -> None:
    engine = DiagnosisEngine()
    engine.update(0.0, [], [meter(requests=100, failures={"crc": 50})])
    assert [f.code for f in engine.findings()] == ["MODBUS_CRC"]
    # 70 s later, 100 more requests and no new CRC errors: the condition is gone ...
    engine.update(70.0, [], [meter(requests=200, failures={"crc": 50})])
    engine.update(130.0, [], [meter(requests=300, failures={"crc": 50})])
    # ... and after the hysteresis time the finding has cleared.
    assert engine.findings() == []
    assert [f.code for f in engine.history] == ["MODBUS_CRC"]


def test_hysteresis_keeps_a_flapping_finding_and_clears_after_quiet_time() -> None:
    engine = DiagnosisEngine()
    bad = with_errors(healthy_bus(), ack=10)
    raised, _ = engine.update(0.0, typed([bad]))
    assert [f.code for f in raised] == ["CAN_ERR_ACK"]
    _, cleared = engine.update(5.0, typed([healthy_bus()]))
    assert cleared == [] and [f.code for f in engine.findings()] == ["CAN_ERR_ACK"]
    engine.update(10.0, typed([with_errors(healthy_bus(), ack=10)]))
    _, cleared = engine.update(39.0, typed([healthy_bus()]))
    assert cleared == []
    _, cleared = engine.update(41.0, typed([healthy_bus()]))
    assert [f.code for f in cleared] == ["CAN_ERR_ACK"]
    assert cleared[0].since == 0.0 and cleared[0].cleared_at == 41.0


def test_findings_are_sorted_most_severe_first_and_serialise() -> None:
    bus = with_errors(healthy_bus(), protocol=3)
    bus["nodes"][0].update(status="offline")
    engine = DiagnosisEngine()
    engine.update(1.0, typed([bus]))
    found = engine.findings()
    assert [f.severity for f in found] == sorted(
        (f.severity for f in found), key=["critical", "warning", "info"].index
    )
    doc = found[0].to_json()
    assert set(doc) >= {"code", "severity", "title", "evidence", "causes", "fix", "mrec", "since"}


def test_threshold_override_file(tmp_path: Path) -> None:
    override = tmp_path / "t.toml"
    override.write_text("[thresholds]\nbus_load_warning = 0.2\n")
    book = load_rulebook(override)
    assert book.t("bus_load_warning") == 0.2
    assert book.t("bus_load_critical") == 0.9
    engine = DiagnosisEngine(book=book)
    engine.update(0.0, typed([healthy_bus()]))
    assert [f.code for f in engine.findings()] == ["CAN_LOAD_HIGH"]


def test_bad_threshold_override_names_the_key(tmp_path: Path) -> None:
    override = tmp_path / "t.toml"
    override.write_text('[thresholds]\nbus_load_warnin = 0.2\nburst_errors_per_s = "x"\n')
    with pytest.raises(ConfigError) as err:
        load_rulebook(override)
    # The known keys are listed while they are few (config/problems.py MAX_LISTED).
    known = sorted(THRESHOLD_LIMITS)
    listed = f" ({', '.join(known)})" if len(known) <= MAX_LISTED else ""
    assert err.value.problems == [
        f"{override}:2:1: thresholds.bus_load_warnin: expected a key of thresholds{listed}"
        ", found an unknown key; did you mean 'bus_load_warning'?",
        f"{override}:3:1: thresholds.burst_errors_per_s: expected a whole number in 1..1000000 "
        "(protocol errors in one second), found a string 'x'",
    ]


def test_all_nodes_silent_at_once_is_one_bus_level_finding() -> None:
    bus = healthy_bus()
    for node in bus["nodes"]:
        node.update(status="offline", last_seen=100.0, silent_s=5.0)
    assert codes([bus]) == ["CAN_BUS_SILENT"]


def test_dropouts_of_every_node_together_are_not_node_findings() -> None:
    bus = healthy_bus()
    for i, node in enumerate(bus["nodes"]):
        node.update(status="intermittent", dropouts=1, last_dropout_end=15.0 + 0.01 * i)
    assert codes([bus]) == []
    bus["nodes"][0].update(last_dropout_end=300.0)  # this one dropped out on its own too
    assert codes([bus]) == ["CAN_NODE_INTERMITTENT"]


def test_load_high_reads_the_worst_ten_seconds_of_the_last_minute() -> None:
    bus = healthy_bus()
    bus["windows"]["10s"]["load_ratio"] = 0.25  # the overload ended a few seconds ago
    bus["windows"]["60s"]["load_ratio_max_10s"] = 0.93
    assert codes([bus]) == ["CAN_LOAD_HIGH"]


def test_unclassified_error_frames_are_a_warning_not_silence() -> None:
    bus = with_errors(healthy_bus(), unclassified=3)
    engine = DiagnosisEngine()
    engine.update(100.0, typed([bus]), [])
    findings = engine.findings()
    assert [f.code for f in findings] == ["CAN_ERROR_FRAMES_UNCLASSIFIED"]
    finding = findings[0]
    assert finding.severity == "warning"
    assert finding.title.startswith("3 error frames on can0")
    assert finding.evidence["unclassified_60s"] == 3
    assert finding.causes and finding.fix


def test_unclassified_beside_known_classes_keeps_both_findings() -> None:
    found = codes([with_errors(healthy_bus(), unclassified=2, ack=5)])
    assert "CAN_ERROR_FRAMES_UNCLASSIFIED" in found and "CAN_ERR_ACK" in found
    assert "CAN_ERROR_FRAMES_UNCLASSIFIED" not in codes([healthy_bus()])
