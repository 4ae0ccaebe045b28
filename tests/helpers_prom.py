"""Helpers shared by the Prometheus/Grafana tests: the shipped expressions, promtool, a real
Prometheus server.

``dashboard_and_alert_expressions()`` returns every PromQL expression candiag ships (alert
rules, site recording rules, dashboard panels, dashboard variables and annotations) with
Grafana's template variables replaced, so that a test can hand each one to promtool or to a
real Prometheus scraping ``candiag run``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PROM_DIR = REPO / "config" / "prometheus"
ALERTS = PROM_DIR / "candiag-alerts.yml"
ALERTS_TEST = PROM_DIR / "candiag-alerts.test.yml"
RECORDING = PROM_DIR / "fleet" / "recording-rules.yml"
RECORDING_TEST = PROM_DIR / "fleet" / "recording-rules.test.yml"
DASHBOARD = REPO / "config" / "grafana" / "dashboards" / "candiag.json"
OPERATIONS = REPO / "docs" / "operations.md"

# The metric names agreed project-wide (README "Prometheus metrics"); what rules and the
# dashboard may read.
# The request/response liveness metrics per module (candiag/metrics/liveness.py).
MODULE_METRICS = (
    "candiag_module_requests_total",
    "candiag_module_replies_total",
    "candiag_module_unanswered_total",
    "candiag_module_error_replies_total",
    "candiag_module_second_answers_total",
    "candiag_module_reply_latency_seconds",
    "candiag_module_last_request_age_seconds",
)
AGREED_METRICS = frozenset(
    {
        "candiag_build_info",
        "candiag_can_bus_up",
        "candiag_can_frames_total",
        "candiag_can_id_frames_total",
        "candiag_can_error_frames_total",
        "candiag_can_bus_off_total",
        "candiag_can_bus_restarts_total",
        "candiag_can_bus_load_ratio",
        "candiag_can_bus_state",
        "candiag_can_error_frames_window",
        "candiag_can_controller_tx_errors",
        "candiag_can_controller_rx_errors",
        "candiag_can_frames_dropped_total",
        "candiag_can_node_up",
        "candiag_can_node_last_seen_timestamp_seconds",
        "candiag_can_node_info",
        "candiag_can_firmware_mismatch",
        "candiag_can_signal_volts",
        "candiag_can_signal_amperes",
        "candiag_can_signal_celsius",
        "candiag_can_signal_watts",
        "candiag_can_signal_ratio",
        "candiag_can_signal_value",
        "candiag_modbus_up",
        "candiag_modbus_requests_total",
        "candiag_modbus_request_failures_total",
        "candiag_modbus_exception_replies_total",
        "candiag_modbus_last_success_timestamp_seconds",
        "candiag_modbus_request_duration_seconds",
        "candiag_meter_voltage_volts",
        "candiag_meter_current_amperes",
        "candiag_meter_power_watts",
        "candiag_meter_frequency_hertz",
        "candiag_meter_energy_joules_total",
        "candiag_meter_insulation_resistance_ohms",
        "candiag_meter_temperature_celsius",
        "candiag_finding_active",
        # Request/response liveness per module (candiag/metrics/liveness.py).
        *MODULE_METRICS,
        "candiag_loop_last_run_timestamp_seconds",
        "candiag_config_reload_failures_total",
        "candiag_config_last_reload_successful",
    }
)

# Grafana variables as a Prometheus would see them with "All" selected.
_ALL_VALUES = {"instance": ".*", "bus": ".*"}
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RECORDING)["groups"] for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def substitute_grafana(
    expr: str, rate_interval: str = "1m", values: Mapping[str, str] | None = None
) -> str:
    """Replace Grafana's built-in and dashboard variables by what Prometheus would receive:
    "All" for every variable, or the ``values`` given (``{"instance": "CH-0001"}`` is the
    dashboard with one charger selected)."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    expr = expr.replace("$__range", "1h")
    for name, value in {**_ALL_VALUES, **(values or {})}.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return expr


def dashboard_expressions(
    rate_interval: str = "1m", values: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """(where, expr) for every panel target, variable query and annotation of the dashboard,
    with the variables set to "All" or to ``values`` (see ``substitute_grafana``)."""
    dashboard = load_dashboard()
    found: list[tuple[str, str]] = []

    def substituted(expr: str) -> str:
        return substitute_grafana(expr, rate_interval, values)

    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            where = f"panel {panel['title']!r} target {target['refId']}"
            found.append((where, substituted(target["expr"])))
    for variable in dashboard["templating"]["list"]:
        match = _LABEL_VALUES.match(variable["query"]["query"])
        assert match, f"variable {variable['name']}: expected label_values(...)"
        selector = match.group("selector") or "up"
        found.append((f"variable {variable['name']}", substituted(selector)))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            where = f"annotation {annotation['name']!r}"
            found.append((where, substituted(annotation["expr"])))
    return found


def dashboard_and_alert_expressions(rate_interval: str = "1m") -> list[str]:
    """Every shipped PromQL expression (alerts, recording rules, dashboard), deduplicated."""
    exprs = [str(rule["expr"]).strip() for rule in alert_rules() + recording_rules()]
    exprs += [expr for _, expr in dashboard_expressions(rate_interval)]
    return list(dict.fromkeys(exprs))


def promtool() -> str:
    from external_tools import require_tool

    return require_tool("promtool")


def run_promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def check_expressions(exprs: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """promtool has no expression checker: wrap each expression in a recording rule."""
    rules = [{"record": f"candiag_check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = workdir / "expressions.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    return run_promtool("check", "rules", path)


def metric_names(expr: str) -> set[str]:
    """candiag_* metric names an expression reads (histogram suffixes folded to the family)."""
    names = set(re.findall(r"\b(candiag_[a-z0-9_]+)\b", expr))
    histogram = ("duration", "latency")
    return {
        re.sub(r"_(bucket|sum|count)$", "", n) if any(h in n for h in histogram) else n
        for n in names
    }


def markdown_anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of a Markdown file's headings (where runbook_url points)."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrometheusServer:
    """A real ``prometheus`` on 127.0.0.1 with a temporary config and storage.

    ``agent=True`` runs it in agent mode (``--enable-feature=agent`` in 2.x: scrape and
    remote-write only, storage is the agent's WAL); ``flags`` are added to the command line
    (e.g. ``--web.enable-remote-write-receiver``).  ``stop()`` then ``start()`` restarts it on
    the same port with the same storage, as after an outage.
    """

    config: dict[str, Any]
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    agent: bool = False
    flags: tuple[str, ...] = ()
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.workdir / "data"

    def command(self) -> list[str]:
        binary = shutil.which("prometheus")
        if binary is None:
            from external_tools import require_tool

            binary = require_tool("prometheus")
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        storage = "--storage.agent.path" if self.agent else "--storage.tsdb.path"
        return [
            binary,
            *(["--enable-feature=agent"] if self.agent else []),
            f"--config.file={config_file}",
            f"{storage}={self.storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            *self.flags,
        ]

    def spawn(self) -> None:
        """Start the process without waiting for it to be ready (see ``wait_ready``)."""
        assert self.process is None, "already running"
        command = self.command()
        self._log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self._log)

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.process is not None, "not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log()}")

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_ready(timeout)

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (at ``at``, Unix seconds, or now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def own_metrics(self) -> dict[str, float]:
        """Prometheus' own /metrics: ``name{labels}`` (as exposed) -> value."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            text = response.read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def own_metric(self, name: str) -> float:
        """Sum of one of Prometheus' own metrics over all its label sets (0 when absent)."""
        return sum(
            value
            for key, value in self.own_metrics().items()
            if key == name or key.startswith(name + "{")
        )

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        finally:
            self.process = None
            if self._log is not None:
                self._log.close()
                self._log = None
