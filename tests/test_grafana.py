"""The Grafana dashboard and provisioning: valid JSON model, fixed uids, layout, and every
PromQL expression syntactically checked by promtool (wrapped as recording rules)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers_prom import (
    AGREED_METRICS,
    MODULE_METRICS,
    REPO,
    check_expressions,
    dashboard_and_alert_expressions,
    dashboard_expressions,
    iter_panels,
    load_dashboard,
    load_yaml,
    metric_names,
)

GRAFANA = REPO / "config" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "candiag.yml"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def _datasource_uid() -> str:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    uid: str = source["uid"]
    return uid


def _content_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard["panels"]) if p["type"] != "row"]


def test_fixed_uid_and_classic_model(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "candiag-overview"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard.get("id") is None, "exported/provisioned JSON must not carry a database id"
    assert "apiVersion" not in dashboard and "spec" not in dashboard, "classic JSON, not v2"


def test_template_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"instance", "bus"}
    assert "instance" in variables["instance"]["query"]["query"]
    assert "$instance" in variables["bus"]["query"]["query"], "bus must follow the charger"
    for variable in variables.values():
        assert variable["datasource"]["uid"] == _datasource_uid()
        assert variable["includeAll"] and variable["allValue"] == ".*"


def test_every_target_filters_by_charger(dashboard: dict[str, Any]) -> None:
    for panel in _content_panels(dashboard):
        for target in panel["targets"]:
            assert 'instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])


def test_panels_use_the_provisioned_datasource(dashboard: dict[str, Any]) -> None:
    uid = _datasource_uid()
    for panel in _content_panels(dashboard):
        assert panel["datasource"]["uid"] == uid, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid


def test_panel_ids_unique_and_layout_without_overlap(dashboard: dict[str, Any]) -> None:
    panels = list(iter_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_refids_unique_per_panel(dashboard: dict[str, Any]) -> None:
    for panel in _content_panels(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_dashboard_covers_the_required_views(dashboard: dict[str, Any]) -> None:
    used = {n for _, expr in dashboard_expressions() for n in metric_names(expr)}
    for metric in (
        "candiag_can_bus_state",
        "candiag_can_bus_load_ratio",
        "candiag_can_error_frames_total",
        "candiag_can_node_up",
        "candiag_can_node_info",
        "candiag_can_signal_volts",
        "candiag_can_signal_amperes",
        "candiag_can_signal_celsius",
        "candiag_modbus_up",
        "candiag_modbus_request_failures_total",
        "candiag_meter_voltage_volts",
        "candiag_finding_active",
        *MODULE_METRICS,
    ):
        assert metric in used, f"no panel shows {metric}"
    by_unit = {
        p["fieldConfig"]["defaults"].get("unit")
        for p in _content_panels(dashboard)
        if "candiag_can_signal_" in p["targets"][0]["expr"]
    }
    assert {"volt", "amp", "celsius"} <= by_unit


def test_dashboard_reads_only_agreed_metrics() -> None:
    for where, expr in dashboard_expressions():
        unknown = metric_names(expr) - AGREED_METRICS
        assert not unknown, f"{where}: {unknown}"


def test_every_expression_parses(tmp_path: Path) -> None:
    exprs = dashboard_and_alert_expressions()
    assert len(exprs) > 40
    assert not [e for e in exprs if "$" in e], "Grafana variables left unsubstituted"
    result = check_expressions(exprs, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_expression_check_catches_a_broken_query(tmp_path: Path) -> None:
    result = check_expressions(["sum by (bus (rate(candiag_can_frames_total[1m]))"], tmp_path)
    assert result.returncode != 0


def test_dashboard_provider() -> None:
    config = load_yaml(PROVIDERS)
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    assert provider["allowUiUpdates"] is False


def test_datasource_provisioning() -> None:
    config = load_yaml(DATASOURCES)
    (source,) = config["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "candiag-prometheus"
    assert source["url"].startswith("http")


# -- every panel shows one quantity, in its unit; module panels plot readings, per module ------

# What a query measures, by the suffix of the metric it reads (base units, as exported).
_SUFFIX_UNITS = (
    ("_ratio", {"percentunit"}),
    ("_volts", {"volt"}),
    ("_amperes", {"amp"}),
    ("_celsius", {"celsius"}),
    ("_watts", {"watt"}),
    ("_hertz", {"hertz"}),
    ("_ohms", {"ohm"}),
    ("_seconds", {"s"}),  # a duration as a gauge (time() - *_timestamp_seconds is above)
)
_PER_SECOND = {"cps", "reqps", "ops", "rps"}
_COUNT = {"none", "short"}


def measured_units(expr: str) -> set[str]:
    """The Grafana units that fit what ``expr`` measures (one quantity, or an error)."""
    names = metric_names(expr)
    if "histogram_quantile(" in expr or re.match(r"\s*time\(\)\s*-", expr):
        return {"s"}
    if re.search(r"\)\s*/\s*sum\b|\)\s*/\s*rate\(", expr):
        return {"percentunit"}  # a ratio of two rates
    if "rate(" in expr and "increase(" not in expr:
        # A rate of joules is watts; a rate of a count is per second.
        return {"watt"} if any(n.endswith("_joules_total") for n in names) else _PER_SECOND
    if "increase(" in expr:
        return _COUNT  # events per interval
    units = set()
    for name in names:
        found = [u for suffix, u in _SUFFIX_UNITS if name.endswith(suffix)]
        units.add(frozenset(found[0]) if found else frozenset(_COUNT))
    if not units:  # up{job="candiag"}
        return _COUNT
    assert len(units) == 1, f"{expr!r} mixes quantities {units}"
    return set(next(iter(units)))


def test_measured_units() -> None:
    assert measured_units('candiag_can_signal_volts{role="output_voltage"}') == {"volt"}
    assert measured_units("rate(candiag_meter_energy_joules_total[1m])") == {"watt"}
    assert measured_units("rate(candiag_can_frames_total[1m])") == _PER_SECOND
    assert measured_units("time() - candiag_loop_last_run_timestamp_seconds") == {"s"}
    assert measured_units("sum(rate(a_total[1m])) / sum(rate(b_total[1m]))") == {"percentunit"}
    assert measured_units("candiag_module_last_request_age_seconds") == {"s"}
    with pytest.raises(AssertionError, match="mixes quantities"):
        measured_units("candiag_meter_frequency_hertz or candiag_meter_temperature_celsius")


def test_every_panel_shows_one_quantity_in_its_unit(dashboard: dict[str, Any]) -> None:
    problems = []
    for panel in _content_panels(dashboard):
        if panel["type"] == "table":
            continue  # columns, not an axis: each column is its own query
        unit = panel["fieldConfig"]["defaults"].get("unit") or "none"
        fits = set.intersection(*(measured_units(t["expr"]) for t in panel["targets"]))
        if unit not in fits:
            problems.append(
                f"{panel['title']!r}: unit {unit}, its queries measure {fits or 'different things'}"
            )
    assert not problems, "\n".join(problems)


def test_frequency_and_temperature_have_axes_of_their_own(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p for p in _content_panels(dashboard)}
    assert panels["Grid frequency"]["fieldConfig"]["defaults"]["unit"] == "hertz"
    assert panels["Meter temperature"]["fieldConfig"]["defaults"]["unit"] == "celsius"
    for panel in panels.values():
        exprs = " ".join(t["expr"] for t in panel["targets"])
        assert not ("_hertz" in exprs and "_celsius" in exprs), panel["title"]


def test_module_panels_plot_readings_by_role_not_every_signal(dashboard: dict[str, Any]) -> None:
    panels = {p["title"]: p for p in _content_panels(dashboard)}
    for title, role in (
        ("Module output voltage", "output_voltage"),
        ("Module output current", "output_current"),
        ("Module temperature (hottest sensor)", "temperature"),
    ):
        (target,) = panels[title]["targets"]
        assert f'role="{role}"' in target["expr"], title
        assert "{{node}}" in target["legendFormat"], title
    # No panel plots a whole unit family (capabilities, input voltages, coil currents...).
    for panel in panels.values():
        for target in panel["targets"]:
            if "candiag_can_signal_" in target["expr"]:
                assert "role=" in target["expr"], (panel["title"], target["expr"])


def test_module_request_panels_are_per_module(dashboard: dict[str, Any]) -> None:
    """The request/response panels (issue 16): one series per bus, protocol and module, so a
    silent module, a rejecting one and the controller's silence are told apart."""
    panels = {p["title"]: p for p in _content_panels(dashboard)}
    expected = {
        "Requests and replies per module": ("reqps", ["candiag_module_requests_total",
                                                      "candiag_module_replies_total"]),
        "Unanswered requests per module": ("reqps", ["candiag_module_unanswered_total"]),
        "Reply latency p99 per module": ("s", ["candiag_module_reply_latency_seconds_bucket"]),
        "Error replies by code": ("reqps", ["candiag_module_error_replies_total"]),
        "Second answers (two modules at one address)": (
            "reqps", ["candiag_module_second_answers_total"]),
        "Time since the controller last asked": ("s", ["candiag_module_last_request_age_seconds"]),
    }  # fmt: skip
    for title, (unit, metrics) in expected.items():
        panel = panels[title]
        assert panel["fieldConfig"]["defaults"]["unit"] == unit, title
        assert [m for t in panel["targets"] for m in metrics if m in t["expr"]] == metrics, title
        for target in panel["targets"]:
            assert "{{module}}" in target["legendFormat"], title
            assert "protocol" in target["expr"] or "sum by" not in target["expr"], title
            assert 'bus=~"$bus"' in target["expr"], title
    p99 = panels["Reply latency p99 per module"]["targets"][0]["expr"]
    assert p99.startswith("histogram_quantile(0.99, sum by (instance, bus, protocol, module, le)")
    assert "code" in panels["Error replies by code"]["targets"][0]["expr"]


def test_each_stat_means_one_thing(dashboard: dict[str, Any]) -> None:
    for panel in _content_panels(dashboard):
        if panel["type"] == "stat":
            assert len(panel["targets"]) == 1, f"{panel['title']!r} mixes several figures"
    titles = {p["title"] for p in _content_panels(dashboard)}
    assert {"Exporter scraped", "Processing loop age", "candiag version"} <= titles


def test_signal_metrics_carry_the_dbc_role() -> None:
    from prometheus_client import CollectorRegistry

    from candiag.metrics.collectors import CandiagCollector
    from candiag.metrics.snapshot import BusSnapshot, SignalValue, Snapshot

    snap = Snapshot(
        version="x",
        buses=(
            BusSnapshot(
                name="can0",
                up=True,
                state="error_active",
                signals=(
                    SignalValue("M", "Read_Vout", "3", "V", 400.0, "output_voltage"),
                    SignalValue("M", "MaxVout", "3", "V", 1000.0),
                ),
            ),
        ),
    )
    registry = CollectorRegistry()
    registry.register(CandiagCollector(lambda: snap))
    lab = {"bus": "can0", "message": "M", "node": "3"}
    get = registry.get_sample_value
    assert (
        get("candiag_can_signal_volts", {**lab, "signal": "Read_Vout", "role": "output_voltage"})
        == 400
    )
    assert get("candiag_can_signal_volts", {**lab, "signal": "MaxVout", "role": ""}) == 1000
