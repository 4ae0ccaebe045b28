"""Alert rules, recording rules and scrape configs: promtool checks, promtool unit tests and
the conventions (names, severities, annotations, runbooks) checked over every alert."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers_prom import (
    AGREED_METRICS,
    ALERTS,
    ALERTS_TEST,
    OPERATIONS,
    PROM_DIR,
    RECORDING,
    RECORDING_TEST,
    alert_rules,
    load_yaml,
    metric_names,
    recording_rules,
    run_promtool,
)

FLEET = PROM_DIR / "fleet"
SERVER_CONFIGS = [
    PROM_DIR / "prometheus.yml",
    FLEET / "prometheus-file-sd.yml",
    FLEET / "prometheus-http-sd.yml",
    FLEET / "prometheus-federation.yml",
]
AGENT_CONFIGS = [FLEET / "prometheus-agent.yml"]
SEVERITIES = {"critical", "warning", "info"}


def _ok(result: Any) -> str:
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("rules", [ALERTS, RECORDING], ids=lambda p: p.name)
def test_promtool_check_rules(rules: Path) -> None:
    output = _ok(run_promtool("check", "rules", "--lint=all", "--lint-fatal", rules))
    assert "SUCCESS" in output


@pytest.mark.parametrize("tests", [ALERTS_TEST, RECORDING_TEST], ids=lambda p: p.name)
def test_promtool_test_rules(tests: Path) -> None:
    output = _ok(run_promtool("test", "rules", tests.name, cwd=tests.parent))
    assert "SUCCESS" in output


@pytest.mark.parametrize("config", SERVER_CONFIGS, ids=lambda p: p.name)
def test_promtool_check_config(config: Path) -> None:
    # Run from the file's folder so relative rule_files/file_sd paths resolve as they would.
    output = _ok(run_promtool("check", "config", config.name, cwd=config.parent))
    assert "is valid prometheus config file syntax" in output


@pytest.mark.parametrize("config", AGENT_CONFIGS, ids=lambda p: p.name)
def test_promtool_check_agent_config(config: Path) -> None:
    output = _ok(run_promtool("check", "config", "--agent", config.name, cwd=config.parent))
    assert "is valid prometheus config file syntax" in output


def test_promtool_checks_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: CandiagBroken\n"
        "        expr: rate(candiag_can_frames_total[5m] > 0\n"
    )
    assert run_promtool("check", "rules", bad).returncode != 0
    # A unit test expecting an alert that never fires must fail too.
    test_file = tmp_path / "t.yml"
    test_file.write_text(
        f"rule_files: [{ALERTS}]\nevaluation_interval: 15s\ntests:\n"
        "  - interval: 15s\n    input_series:\n"
        '      - series: \'candiag_can_node_up{bus="can0",family="x",node="1"}\'\n'
        "        values: '1x20'\n    alert_rule_test:\n      - eval_time: 4m\n"
        "        alertname: CandiagCanNodeOffline\n        exp_alerts:\n"
        "          - exp_labels: {severity: critical, bus: can0, family: x, node: '1'}\n"
    )
    assert run_promtool("test", "rules", test_file).returncode != 0


def _alert_tests() -> list[dict[str, Any]]:
    return [case for test in load_yaml(ALERTS_TEST)["tests"] for case in test["alert_rule_test"]]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_is_tested_firing_and_not_firing(rule: dict[str, Any]) -> None:
    cases = [c for c in _alert_tests() if c["alertname"] == rule["alert"]]
    assert any(c.get("exp_alerts") for c in cases), f"{rule['alert']}: no firing case"
    assert any(not c.get("exp_alerts") for c in cases), f"{rule['alert']}: no silent case"
    for case in cases:
        for expected in case.get("exp_alerts") or []:
            assert "exp_annotations" in expected, f"{rule['alert']}: annotations not checked"


def _anchors(markdown: str) -> set[str]:
    """GitHub-style heading anchors."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_conventions(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"Candiag(?:[A-Z][a-z0-9]+)+", name), f"{name}: CamelCase, prefix Candiag"
    assert "for" in rule, f"{name}: state the pending duration explicitly"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    summary = annotations["summary"]
    assert summary.endswith(".") and "{{" not in summary, f"{name}: static summary sentence"
    assert "{{" in annotations["description"], f"{name}: description must name labels/value"
    url = annotations["runbook_url"]
    assert url.startswith("https://") and "/docs/operations.md#" in url
    anchor = url.rsplit("#", 1)[1]
    assert anchor in _anchors(OPERATIONS.read_text()), f"{name}: no section #{anchor}"


def test_alert_names_are_unique() -> None:
    names = [r["alert"] for r in alert_rules()]
    assert len(names) == len(set(names))


def test_required_alerts_exist() -> None:
    # The alert set the operations brief asks for, by the metric each one watches.
    watched = {n for r in alert_rules() for n in metric_names(r["expr"])}
    exprs = " ".join(r["expr"] for r in alert_rules())
    for metric in (
        "candiag_can_bus_state",
        "candiag_can_bus_off_total",
        "candiag_can_error_frames_total",
        "candiag_can_node_up",
        "candiag_can_firmware_mismatch",
        "candiag_modbus_up",
        "candiag_modbus_request_failures_total",
        "candiag_can_bus_load_ratio",
        "candiag_can_frames_dropped_total",
        "candiag_finding_active",
    ):
        assert metric in watched, metric
    assert 'up{job="candiag"} == 0' in exprs and 'absent(up{job="candiag"})' in exprs
    assert 'state="error_passive"' in exprs and 'reason="crc"' in exprs


@pytest.mark.parametrize(
    "rule", alert_rules() + recording_rules(), ids=lambda r: r.get("alert") or r["record"]
)
def test_rules_read_only_agreed_metrics(rule: dict[str, Any]) -> None:
    unknown = metric_names(rule["expr"]) - AGREED_METRICS
    assert not unknown, f"not in the agreed metric names: {unknown}"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in recording_rules():
        assert re.fullmatch(r"site(_class)?:candiag_[a-z0-9_]+:[a-z0-9]+", rule["record"]), rule


def test_federation_matches_the_recording_rules() -> None:
    config = load_yaml(FLEET / "prometheus-federation.yml")
    (job,) = config["scrape_configs"]
    selector = job["params"]["match[]"][0]
    pattern = re.search(r'__name__=~"([^"]+)"', selector)
    assert pattern
    for rule in recording_rules():
        assert re.fullmatch(pattern.group(1), rule["record"]), rule["record"]


def test_file_sd_targets_are_well_formed() -> None:
    groups = json.loads((FLEET / "targets" / "chargers.json").read_text())
    assert groups
    for group in groups:
        assert set(group) <= {"targets", "labels"}
        for target in group["targets"]:
            host, _, port = target.rpartition(":")
            assert host and port.isdigit(), target
        for name, value in group.get("labels", {}).items():
            assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) and not name.startswith("__")
            assert isinstance(value, str)
        assert "site" in group["labels"]


def test_charger_identity_is_a_target_label_not_an_exported_one() -> None:
    config = load_yaml(PROM_DIR / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "candiag"
    assert all("charger_id" in group["labels"] for group in job["static_configs"])
    relabel_targets = {r.get("target_label") for r in job["relabel_configs"]}
    assert "charger_id" in relabel_targets
    assert not any(m.startswith("candiag_charger") for m in AGREED_METRICS)
