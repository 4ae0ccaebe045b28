"""The fleet path, run end to end with real binaries on 127.0.0.1 (issue 13 §3).

Three ``candiag run`` daemons on simulated buses -- CH-A goes bus-off, CH-B is healthy with
its Modbus meters, CH-C loses power module 3 -- are scraped by one Prometheus in agent mode
per site (north: CH-A and CH-B from static targets; south: CH-C from a file_sd JSON), which
remote-write to a central Prometheus with the remote-write receiver and the shipped alert and
recording rules. The central server is then stopped for 60 s while the agents keep
scraping, and restarted on the same port and storage.

Every config is the shipped one (config/prometheus/fleet/prometheus-agent.yml,
prometheus-central.yml, candiag-alerts.yml, recording-rules.yml) with targets, URLs and the
cadence changed: scrape interval, scrape timeout, batch deadline and rule evaluation run
``TIME_SCALE`` times faster than shipped (30 s -> 1 s). The retry backoffs stay as shipped:
they pace the recovery from an outage, and the outage runs in real time.

Fast checks of the same files (promtool, what the agent drops, how soon it retries) come
first and need no running server.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from external_tools import require_tool
from helpers_fleet import (
    AGENT_CONFIG,
    CENTRAL_CONFIG,
    FLEET,
    FLEET_ALERTS,
    FLEET_ALERTS_TEST,
    RECORDING_RULES,
    Charger,
    ChargerDaemon,
    agent_server,
    central_server,
    exposition_label_names,
    seconds,
)
from helpers_prom import (
    ALERTS,
    MODULE_METRICS,
    OPERATIONS,
    PROM_DIR,
    PrometheusServer,
    alert_rules,
    dashboard_and_alert_expressions,
    dashboard_expressions,
    load_yaml,
    markdown_anchors,
    metric_names,
    run_promtool,
)

from tests.waiting import wait_for

TIME_SCALE = 30.0  # the shipped 30 s scrape and evaluation intervals run every 1 s
OUTAGE_S = 60.0
CHARGERS = (
    Charger("CH-A", "north", scenario="bus_off"),
    Charger("CH-B", "north", scenario="healthy", meters=True),
    Charger("CH-C", "south", scenario="module_offline"),
)
FILE_SD_SITES = {"south"}  # this site's agent reads its chargers from a file_sd JSON
# Families every charger exports on every scrape from its start.
FAMILIES_ALWAYS_EXPORTED = (
    "candiag_build_info",
    "candiag_loop_last_run_timestamp_seconds",
    "candiag_can_frames_total",
    "candiag_can_node_up",
)
# Labels that name a charger or a site: target labels, never exported by candiag itself.
IDENTITY_LABELS = {"charger", "charger_id", "site", "instance", "job"}
# Families a simulated charger has no sample for: python-can's virtual bus has no
# controller error counters, healthy simulated meters send no exception replies, a
# charger without a fault has no active finding.
SAMPLELESS = frozenset(
    {
        "candiag_can_controller_tx_errors",
        "candiag_can_controller_rx_errors",
        "candiag_modbus_exception_replies_total",
        "candiag_finding_active",
        # The simulated reference chargers poll no protocol pack (test_grafana_live has one).
        *MODULE_METRICS,
    }
)


def _agent_queue() -> dict[str, str]:
    (remote,) = load_yaml(AGENT_CONFIG)["remote_write"]
    queue: dict[str, str] = remote["queue_config"]
    return queue


# -- fast checks of the shipped fleet files ------------------------------------------------
def test_central_config_passes_promtool() -> None:
    result = run_promtool("check", "config", CENTRAL_CONFIG.name, cwd=CENTRAL_CONFIG.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 3 rule files found" in result.stdout


def test_central_config_loads_the_shipped_rules() -> None:
    config = load_yaml(CENTRAL_CONFIG)
    loaded = {(FLEET / name).resolve() for name in config["rule_files"]}
    assert loaded == {p.resolve() for p in (ALERTS, RECORDING_RULES, FLEET_ALERTS)}


def test_fleet_alerts_pass_promtool_and_their_unit_tests() -> None:
    checked = run_promtool("check", "rules", "--lint=all", "--lint-fatal", FLEET_ALERTS)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool("test", "rules", FLEET_ALERTS_TEST.name, cwd=FLEET)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_fleet_alerts_follow_the_alert_conventions() -> None:
    rules = [r for g in load_yaml(FLEET_ALERTS)["groups"] for r in g["rules"]]
    cases = [c for t in load_yaml(FLEET_ALERTS_TEST)["tests"] for c in t["alert_rule_test"]]
    shipped = {r["alert"] for r in alert_rules()}
    anchors = markdown_anchors(OPERATIONS.read_text())
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"Candiag(?:[A-Z][a-z0-9]+)+", name) and name not in shipped
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"].endswith(".")
        assert "{{" in rule["annotations"]["description"]
        assert rule["annotations"]["runbook_url"].rsplit("#", 1)[1] in anchors, name
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine) and any(
            not c.get("exp_alerts") for c in mine
        ), f"{name}: tested firing and silent"


def test_agent_sends_every_metric_the_dashboard_and_rules_read() -> None:
    # The agent used to drop the Modbus duration histogram, which the dashboard's p95 panel
    # reads: that panel was empty for every charger in the central store.
    (remote,) = load_yaml(AGENT_CONFIG)["remote_write"]
    dropped = [
        re.compile(rule["regex"])
        for rule in remote.get("write_relabel_configs", [])
        if rule.get("action") == "drop" and rule.get("source_labels") == ["__name__"]
    ]
    assert dropped, "the agent is expected to drop the per-identifier frame counters"
    read = {
        name
        for expr in dashboard_and_alert_expressions()
        for name in re.findall(r"\b(candiag_[a-z0-9_]+)\b", expr)
    }
    wrongly = sorted(n for n in read for rx in dropped if rx.fullmatch(n))
    assert not wrongly, f"the agent drops series the dashboard or the rules read: {wrongly}"


def test_agent_resumes_sending_before_staleness_alerts_fire() -> None:
    # Alerts on time() - <exported timestamp> go pending on every charger as soon as the
    # central store has been without data for their threshold; after an outage the agent
    # must be sending again well within their `for` (it waited up to its max_backoff: 1m
    # left the central store without data for ~30 s more after a 60 s outage).
    queue = _agent_queue()
    resume_s = seconds(queue["max_backoff"]) + seconds(queue["batch_send_deadline"])
    staleness = [rule for rule in alert_rules() if "time()" in str(rule["expr"])]
    assert staleness
    shortest_for = min(seconds(rule["for"]) for rule in staleness)
    assert resume_s <= shortest_for / 2, (resume_s, shortest_for)


def test_agent_derives_charger_id_like_the_site_configs() -> None:
    (agent_job,) = load_yaml(AGENT_CONFIG)["scrape_configs"]
    for path in (PROM_DIR / "prometheus.yml", FLEET / "prometheus-file-sd.yml"):
        (job,) = load_yaml(path)["scrape_configs"]
        charger_id_rule = next(
            r for r in job["relabel_configs"] if r.get("target_label") == "charger_id"
        )
        assert charger_id_rule in agent_job["relabel_configs"], path.name


# -- the fleet, run end to end ------------------------------------------------------------
@dataclass
class Fleet:
    central: PrometheusServer
    agents: dict[str, PrometheusServer]
    daemons: dict[str, ChargerDaemon]
    interval_s: float
    started: float
    stopped: float  # central stopped (wall clock)
    restarted: float  # central started again
    retried_during_outage: dict[str, float]


def _write_file_sd(directory: Path, daemons: list[ChargerDaemon]) -> str:
    directory.mkdir()
    groups = [
        {"targets": [d.address], "labels": {"charger_id": d.charger.charger_id}} for d in daemons
    ]
    (directory / "chargers.json").write_text(json.dumps(groups))
    return str(directory / "*.json")


def _fresh(central: PrometheusServer, within_s: float) -> int:
    """How many chargers' latest ``up`` sample in the central store is at most ``within_s`` old."""
    return len(central.query(f'time() - timestamp(up{{job="candiag"}}) < {within_s}'))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    require_tool("prometheus")
    workdir = tmp_path_factory.mktemp("fleet")
    daemons = {c.charger_id: ChargerDaemon(c, workdir) for c in CHARGERS}
    (workdir / "central").mkdir()
    central = central_server(workdir / "central", TIME_SCALE)
    agents: dict[str, PrometheusServer] = {}
    for site in sorted({c.site for c in CHARGERS}):
        site_daemons = [d for d in daemons.values() if d.charger.site == site]
        (workdir / site).mkdir()
        agent = agent_server(site, site_daemons, central, workdir / site, TIME_SCALE)
        if site in FILE_SD_SITES:
            (job,) = agent.config["scrape_configs"]
            del job["static_configs"]
            job["file_sd_configs"] = [
                {"files": [_write_file_sd(workdir / site / "targets", site_daemons)]}
            ]
        agents[site] = agent
    interval_s = seconds(agents["north"].config["global"]["scrape_interval"])
    everything: list[PrometheusServer | ChargerDaemon] = [central, *agents.values()]
    everything += daemons.values()
    try:
        # The central store and the agents first: the agents must scrape each charger
        # before its fault (from 10 s of simulation on), so that counters start at 0.
        central.start()
        for agent in agents.values():
            agent.spawn()
        for daemon in daemons.values():
            daemon.spawn()
        for agent in agents.values():
            agent.wait_ready()
        for daemon in daemons.values():
            daemon.wait_listening()
        started = time.time()
        wait_for(
            lambda: (
                len(central.query('up{job="candiag"} == 1')) == len(CHARGERS)
                and len(central.query("candiag_can_bus_up == 1")) == len(CHARGERS)
            ),
            "every charger scraped and its bus up, in the central store",
            timeout=45,
            interval=0.25,
            diagnose=lambda: [agent.targets() for agent in agents.values()],
        )

        # A few scrapes of every charger before the outage begins.
        time.sleep(3 * interval_s)
        retried_before = {
            site: agent.own_metric("prometheus_remote_storage_samples_retried_total")
            for site, agent in agents.items()
        }
        central.stop()
        stopped = time.time()
        time.sleep(OUTAGE_S)
        retried = {
            site: agent.own_metric("prometheus_remote_storage_samples_retried_total")
            - retried_before[site]
            for site, agent in agents.items()
        }
        central.start()
        restarted = time.time()
        # The agents retry within max_backoff, then send the backlog from their WAL.
        wait_for(
            lambda: (
                _fresh(central, 2 * interval_s) == len(CHARGERS)
                and time.time() > restarted + 5 * interval_s
            ),
            "the agents' backlog in the central store",
            timeout=seconds(_agent_queue()["max_backoff"]) + 30,
            interval=0.25,
            diagnose=lambda: "\n".join(a.log() for a in agents.values()),
        )
        yield Fleet(central, agents, daemons, interval_s, started, stopped, restarted, retried)
    finally:
        # Chargers first, then the agents while the central store still answers (a stopped
        # agent flushes its queue), the central store last.
        for process in reversed(everything):
            process.stop()


@pytest.mark.slow
def test_candiag_exports_no_identity_labels(fleet: Fleet) -> None:
    for charger_id, daemon in fleet.daemons.items():
        names = exposition_label_names(daemon.metrics_text())
        assert "bus" in names, charger_id  # the parse saw labelled samples
        assert not names & IDENTITY_LABELS, (charger_id, names & IDENTITY_LABELS)
    # Prometheus renames a scraped label that clashes with a target label to exported_*.
    for label in IDENTITY_LABELS:
        clash = fleet.central.query(f'{{__name__=~"candiag_.+", exported_{label}!=""}}')
        assert not clash, clash[:3]


@pytest.mark.slow
def test_identity_comes_from_target_labels_and_external_labels(fleet: Fleet) -> None:
    central = fleet.central
    identities = {
        (r["metric"]["charger_id"], r["metric"]["site"], r["metric"]["instance"])
        for r in central.query("group by (charger_id, site, instance) (candiag_build_info)")
    }
    # instance is the charger: an agent on each charger would scrape 127.0.0.1:9847 everywhere.
    assert identities == {(c.charger_id, c.site, c.charger_id) for c in CHARGERS}
    for label in ("charger_id", "site"):
        unnamed = central.query(f'count({{__name__=~"candiag_.+", {label}=""}})')
        assert not unnamed, f"candiag series without {label}: {unnamed}"


def _may_be_empty(name: str, charger: Charger) -> bool:
    """Whether the simulated ``charger`` legitimately has no sample of family ``name``."""
    if name in SAMPLELESS:
        return True
    # A charger without meters has no Modbus or meter series.
    return not charger.meters and name.startswith(("candiag_modbus_", "candiag_meter_"))


@pytest.mark.slow
def test_dashboard_answers_per_charger(fleet: Fleet) -> None:
    central = fleet.central
    (variable,) = [e for w, e in dashboard_expressions() if w == "variable instance"]
    listed = {r["metric"]["instance"] for r in central.query(variable)}
    assert listed == {c.charger_id for c in CHARGERS}, "the dashboard's Charger variable"
    rate = f"{10 * fleet.interval_s:.0f}s"
    problems = []
    for charger in CHARGERS:
        for where, expr in dashboard_expressions(rate, {"instance": charger.charger_id}):
            if expr.startswith("ALERTS") or where == "variable instance":
                continue  # the annotation: the alert tests; the Charger variable: above
            result = central.query(expr)
            others = {r["metric"].get("instance") for r in result} - {charger.charger_id, None}
            if others:
                problems.append(f"{charger.charger_id} {where}: data of {others}")
            if not result and not all(_may_be_empty(n, charger) for n in metric_names(expr)):
                problems.append(f"{charger.charger_id} {where}: no data for {expr}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_site_aggregates_are_recorded_centrally(fleet: Fleet) -> None:
    central = fleet.central

    def by_site(record: str) -> dict[str, float]:
        return {r["metric"]["site"]: float(r["value"][1]) for r in central.query(record)}

    wait_for(
        lambda: by_site("site:candiag_can_nodes_offline:sum"),
        "site aggregates",
        timeout=10,
        interval=0.25,
    )
    assert by_site("site:candiag_chargers:count") == {"north": 2, "south": 1}
    assert by_site("site:candiag_chargers_up:sum") == {"north": 2, "south": 1}
    assert by_site("site:candiag_can_nodes_offline:sum") == {"north": 0, "south": 1}
    bus_off = by_site("site:candiag_can_bus_off:increase1h")
    assert bus_off["south"] == 0 and bus_off["north"] >= 0.9, bus_off


def _alerts(central: PrometheusServer, selector: str) -> list[dict[str, str]]:
    return [r["metric"] for r in central.query(f"ALERTS{{{selector}}}")]


@pytest.mark.slow
def test_bus_off_alert_fires_for_the_faulty_charger_only(fleet: Fleet) -> None:
    central = fleet.central
    firing = 'alertname="CandiagCanBusOffEvents", alertstate="firing"'
    wait_for(
        lambda: _alerts(central, firing), "CandiagCanBusOffEvents firing", timeout=20, interval=0.25
    )
    assert {a["charger_id"] for a in _alerts(central, firing)} == {"CH-A"}
    # The same from the rules API (what Grafana's and Alertmanager's views read).
    with urllib.request.urlopen(f"{central.url}/api/v1/rules?type=alert", timeout=10) as r:
        groups = json.loads(r.read())["data"]["groups"]
    (rule,) = [x for g in groups for x in g["rules"] if x["name"] == "CandiagCanBusOffEvents"]
    assert rule["state"] == "firing"
    assert {a["labels"]["instance"] for a in rule["alerts"]} == {"CH-A"}


@pytest.mark.slow
def test_node_offline_alert_is_raised_for_the_silent_module(fleet: Fleet) -> None:
    central = fleet.central
    selector = 'alertname="CandiagCanNodeOffline"'
    wait_for(lambda: _alerts(central, selector), "CandiagCanNodeOffline", timeout=20, interval=0.25)
    raised = {(a["charger_id"], a["node"]) for a in _alerts(central, selector)}
    # Pending (its `for` is 1 minute of wall clock, begun when the central store returned).
    assert raised == {("CH-C", "3")}


@pytest.mark.slow
def test_the_healthy_charger_stays_quiet(fleet: Fleet) -> None:
    central = fleet.central
    assert not _alerts(central, 'charger_id="CH-B"')
    since = time.time() - fleet.started + 10
    ever = central.query(f'ALERTS{{charger_id="CH-B", alertstate="firing"}}[{since:.0f}s]')
    assert not ever, ever


@pytest.mark.slow
def test_a_central_outage_loses_no_samples(fleet: Fleet) -> None:
    central = fleet.central
    for site, retried in fleet.retried_during_outage.items():
        assert retried > 0, f"the {site} agent never had to retry: was the outage real?"
        failed = fleet.agents[site].own_metric("prometheus_remote_storage_samples_failed_total")
        assert failed == 0, site
    outage = fleet.restarted - fleet.stopped
    assert outage >= OUTAGE_S
    # From 2 scrape intervals before the stop to 5 intervals after the restart.
    span = outage + 7 * fleet.interval_s
    window = f"{1000 * span:.0f}ms"
    at = fleet.restarted + 5 * fleet.interval_s
    expected: dict[str, float] = {}
    for charger in CHARGERS:
        me = f'charger_id="{charger.charger_id}"'
        (up,) = central.query(f"up{{{me}}}[{window}]", at=at)
        stamps = [float(t) for t, _ in up["values"]]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert stamps[0] < fleet.stopped and stamps[-1] > fleet.restarted, charger
        assert max(gaps) < 1.5 * fleet.interval_s, (charger.charger_id, max(gaps))
        # Every scrape that succeeded during the outage arrived with all its series.
        (scrapes,) = central.query(f"sum_over_time(up{{{me}}}[{window}])", at=at)
        succeeded = float(scrapes["value"][1])
        assert succeeded >= 0.9 * len(stamps), (charger.charger_id, succeeded, len(stamps))
        expected[charger.charger_id] = succeeded

    def incomplete() -> list[str]:
        found = []
        for charger_id, succeeded in expected.items():
            for name in FAMILIES_ALWAYS_EXPORTED:
                counts = central.query(
                    f'count_over_time({name}{{charger_id="{charger_id}"}}[{window}])', at=at
                )
                got = sorted({float(c["value"][1]) for c in counts})
                if got != [succeeded]:
                    found.append(f"{charger_id} {name}: {got} samples, {succeeded} scrapes")
        return found

    # up arrives in order, so all of it is in; the agent sends other series on other
    # shards, which may still be sending the backlog.
    wait_for(
        lambda: not incomplete(),
        "every series of every scrape",
        timeout=30,
        interval=0.25,
        diagnose=incomplete,
    )
