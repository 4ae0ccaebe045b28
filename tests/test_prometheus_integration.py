"""A real Prometheus scraping a real ``candiag run`` (the simulated charger of config/demo.toml)
evaluates every expression candiag ships: alert rules, site recording rules, dashboard panels.

How "returns data" is judged, per expression:

* A trailing comparison with a number (``... > 0.7``, ``... == 1``) is removed first: a
  healthy simulated charger must not fire alerts, but what the alert compares must exist.
* ``absent(...)`` must return nothing while candiag is scraped (that is its meaning).
* Queries of Prometheus' own ``ALERTS`` (dashboard annotations) only need to be valid: a
  healthy run fires no alert.
* Everything else must return at least one series, except where every metric it reads is a
  family the simulated run legitimately has no sample for (``SAMPLELESS_IN_SIMULATION``);
  then the exporter must still declare the family (HELP/TYPE, seen in Prometheus' metadata),
  so a renamed or dropped metric is caught either way.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from external_tools import require_tool
from helpers_prom import (
    ALERTS,
    MODULE_METRICS,
    PROM_DIR,
    RECORDING,
    REPO,
    PrometheusServer,
    dashboard_and_alert_expressions,
    free_port,
    metric_names,
)

from tests.waiting import wait_for

pytestmark = pytest.mark.slow

# Families the healthy simulated charger has no samples for: python-can's virtual bus has no
# controller error counters, healthy simulated meters send no exception replies, and a
# healthy charger has no active finding (once start-up findings have cleared).
SAMPLELESS_IN_SIMULATION = frozenset(
    {
        "candiag_can_controller_tx_errors",
        "candiag_can_controller_rx_errors",
        "candiag_modbus_exception_replies_total",
        "candiag_finding_active",
        # The demo charger has no request/response protocol pack (test_grafana_live adds one).
        *MODULE_METRICS,
    }
)
SCRAPES_BEFORE_QUERYING = 6
_TRAILING_COMPARISON = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*[0-9.eE+-]+\s*$")


def strip_comparison(expr: str) -> str:
    return _TRAILING_COMPARISON.sub("", expr.strip())


@pytest.fixture(scope="module")
def candiag_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("candiag-run")
    port = free_port()
    config = (REPO / "config" / "demo.toml").read_text()
    assert 'listen = "127.0.0.1:9847"' in config
    config_file = workdir / "candiag.toml"
    config_file.write_text(config.replace("127.0.0.1:9847", f"127.0.0.1:{port}"))
    log = (workdir / "candiag.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "candiag", "run", "--config", str(config_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def _scrape_config(target: str, workdir: Path) -> dict[str, Any]:
    shipped = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    (job,) = shipped["scrape_configs"]
    # The site aggregates are evaluated every 30 s in production; every second here.
    recording = yaml.safe_load(RECORDING.read_text())
    for group in recording["groups"]:
        group["interval"] = "1s"
    fast_recording = workdir / RECORDING.name
    fast_recording.write_text(yaml.safe_dump(recording))
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS), str(fast_recording)],
        "scrape_configs": [
            {
                "job_name": "candiag",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [target], "labels": {"site": "test-site"}}],
                # The shipped relabeling: charger_id from the host name when not given.
                "relabel_configs": job["relabel_configs"],
            }
        ],
    }


@pytest.fixture(scope="module")
def prometheus(
    candiag_target: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("prom")
    server = PrometheusServer(_scrape_config(candiag_target, workdir), workdir)
    server.start()
    try:
        _wait_for_scrapes(server, SCRAPES_BEFORE_QUERYING, timeout=45.0)
        yield server
    finally:
        server.stop()


def _wait_for_scrapes(server: PrometheusServer, count: int, timeout: float) -> None:
    query = f'count_over_time(up{{job="candiag"}}[1m]) >= {count} and up{{job="candiag"}} == 1'
    wait_for(
        lambda: server.query(query) and server.query("candiag_can_bus_up == 1"),
        f"candiag scraped {count} times",
        timeout=timeout,
        interval=0.5,
        diagnose=lambda: f"{server.targets()}\n{server.log()}",
    )


def test_target_is_up_with_relabelled_identity(prometheus: PrometheusServer) -> None:
    (series,) = prometheus.query('up{job="candiag"}')
    assert series["value"][1] == "1"
    # 127.0.0.1:port has no charger_id label: the shipped rule takes the first host label.
    assert series["metric"]["charger_id"] == "127"
    assert series["metric"]["site"] == "test-site"


def test_every_shipped_expression_returns_data(prometheus: PrometheusServer) -> None:
    # Metadata is keyed by family: OpenMetrics counters are declared without "_total".
    families = set(prometheus.api("metadata"))
    declared = families | {f"{name}_total" for name in families}
    problems = []
    exprs = dashboard_and_alert_expressions(rate_interval="10s")
    for expr in exprs:
        query = strip_comparison(expr)
        result = prometheus.query(query)
        if query.startswith("absent("):
            if result:
                problems.append(f"absent() returned data while candiag is up: {query}")
            continue
        if query.startswith("ALERTS{"):
            continue
        if result:
            continue
        names = metric_names(query)
        undeclared = names - declared
        if names and names <= SAMPLELESS_IN_SIMULATION and not undeclared:
            continue
        problems.append(f"no data: {query} (undeclared metrics: {sorted(undeclared)})")
    assert not problems, "\n".join(problems)
    assert len(exprs) > 40


def test_site_recording_rules_produce_aggregates(prometheus: PrometheusServer) -> None:
    deadline = time.monotonic() + 10
    while not prometheus.query("site:candiag_chargers:count") and time.monotonic() < deadline:
        time.sleep(0.5)
    (chargers,) = prometheus.query("site:candiag_chargers:count")
    assert chargers["metric"]["site"] == "test-site"
    assert chargers["value"][1] == "1"
    (bus_off,) = prometheus.query("site:candiag_chargers_bus_off:sum")
    assert bus_off["value"][1] == "0", "the healthy simulated charger has no bus in bus-off"


def test_no_candiag_infrastructure_alert_on_a_healthy_run(prometheus: PrometheusServer) -> None:
    firing = prometheus.query('ALERTS{alertname=~"CandiagDown|CandiagAbsent|CandiagCanBusDown"}')
    assert not firing, firing


def test_strip_comparison() -> None:
    assert strip_comparison("candiag_can_node_up == 0") == "candiag_can_node_up"
    assert strip_comparison("a / ignoring (reason) b > 0.05") == "a / ignoring (reason) b"
    assert strip_comparison("time() - x > 60") == "time() - x"
    assert strip_comparison("absent(up)") == "absent(up)"
