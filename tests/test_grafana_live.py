"""Every panel of the Grafana dashboard, queried as Grafana queries it, against a real
Prometheus scraping a real ``candiag run`` (the simulated charger of config/demo.toml).

Per target: a range query (``"range": true``, what time-series and stat panels draw) must
come back as a ``matrix``, an instant query (tables) as a ``vector``, each non-empty unless
every metric it reads is a family the healthy simulation has no sample for.  The module
panels must come back with one series per power module (the demo charger has eight), not
one per decoded volt signal.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers_prom import (
    PrometheusServer,
    iter_panels,
    load_dashboard,
    metric_names,
    substitute_grafana,
)

from tests.test_prometheus_integration import (  # noqa: F401  (fixtures)
    SAMPLELESS_IN_SIMULATION,
    candiag_target,
    prometheus,
)

pytestmark = pytest.mark.slow

MODULES = {str(n) for n in range(1, 9)}  # config/demo.toml: power_module expected 1-8
RANGE_S = 20


def _panels() -> list[dict[str, Any]]:
    return [p for p in iter_panels(load_dashboard()["panels"]) if p["type"] != "row"]


def _run(server: PrometheusServer, target: dict[str, Any]) -> dict[str, Any]:
    expr = substitute_grafana(target["expr"], rate_interval="10s")
    if target.get("instant"):
        data: dict[str, Any] = server.api("query", query=expr)
        return data
    end = time.time()
    data = server.api(
        "query_range", query=expr, start=f"{end - RANGE_S:.3f}", end=f"{end:.3f}", step="1"
    )
    return data


def test_every_panel_query_returns_its_result_type(prometheus: PrometheusServer) -> None:  # noqa: F811
    rendered = []
    problems = []
    for panel in _panels():
        for target in panel["targets"]:
            data = _run(prometheus, target)
            expected = "vector" if target.get("instant") else "matrix"
            where = f"{panel['title']!r} {target['refId']}"
            rendered.append(f"{where}: {data['resultType']}, {len(data['result'])} series")
            if data["resultType"] != expected:
                problems.append(f"{where}: {data['resultType']}, expected {expected}")
            names = metric_names(target["expr"])
            may_be_empty = bool(names) and names <= SAMPLELESS_IN_SIMULATION
            if not data["result"] and not may_be_empty:
                problems.append(f"{where}: no data for {target['expr']}")
    assert not problems, "\n".join([*problems, "", *rendered])
    print("\n".join(rendered))  # the rendering, seen with pytest -s
    assert len(rendered) >= 30


@pytest.mark.parametrize(
    "title",
    ["Module output voltage", "Module output current", "Module temperature (hottest sensor)"],
)
def test_module_panels_have_one_series_per_module(
    prometheus: PrometheusServer,  # noqa: F811
    title: str,
) -> None:
    (panel,) = [p for p in _panels() if p["title"] == title]
    (target,) = panel["targets"]
    data = _run(prometheus, target)
    nodes = [series["metric"].get("node") for series in data["result"]]
    assert sorted(nodes) == sorted(MODULES), nodes
    for series in data["result"]:
        assert "Capabilit" not in series["metric"].get("message", ""), series["metric"]


def test_modules_sum_and_dc_meter_are_one_series_each(prometheus: PrometheusServer) -> None:  # noqa: F811
    (panel,) = [
        p for p in _panels() if p["title"] == "DC output current: modules' sum and DC meter"
    ]
    for target in panel["targets"]:
        assert len(_run(prometheus, target)["result"]) == 1, target["expr"]
