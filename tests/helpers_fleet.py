"""The fleet path on 127.0.0.1, shared by tests/test_fleet_e2e.py and bench/bench_fleet.py.

Simulated chargers (``candiag run`` with a ``[simulator]`` section, one process each), one
Prometheus agent per site scraping its chargers and remote-writing, and a central
Prometheus with the remote-write receiver. Every Prometheus config is built from the
shipped file (config/prometheus/fleet/prometheus-agent.yml, prometheus-central.yml) with
only targets, URLs, storage and durations changed, so a run proves the shipped files:
``time_scale`` divides every duration of the shipped files (scrape interval and timeout,
batch deadline, retry backoffs, rule evaluation) to run production behaviour faster.
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from daemon_config import sim_config
from helpers_prom import ALERTS, PROM_DIR, PrometheusServer, free_port

FLEET = PROM_DIR / "fleet"
AGENT_CONFIG = FLEET / "prometheus-agent.yml"
CENTRAL_CONFIG = FLEET / "prometheus-central.yml"
RECORDING_RULES = FLEET / "recording-rules.yml"
FLEET_ALERTS = FLEET / "fleet-alerts.yml"
FLEET_ALERTS_TEST = FLEET / "fleet-alerts.test.yml"

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """A Prometheus duration (``30s``, ``1m``, ``100ms``) in seconds."""
    match = _DURATION.match(duration)
    if match is None:
        raise ValueError(f"not a simple Prometheus duration: {duration!r}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def scaled(duration: str, time_scale: float) -> str:
    """``duration`` divided by ``time_scale``, in whole milliseconds (at least 10 ms)."""
    return f"{max(10, round(1000 * seconds(duration) / time_scale))}ms"


@dataclass(frozen=True)
class Charger:
    """One simulated charger: its identity (target labels) and what its bus does."""

    charger_id: str
    site: str
    scenario: str = "healthy"
    meters: bool = False


@dataclass
class ChargerDaemon:
    """``candiag run`` on a simulated bus, its metrics on a free 127.0.0.1 port."""

    charger: Charger
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"candiag-{self.charger.charger_id}.log"

    def spawn(self) -> None:
        assert self.process is None, "already running"
        # One virtual channel per process (python-can's virtual bus never leaves a process).
        config = sim_config(
            f"fleet-{self.charger.charger_id}",
            scenario=self.charger.scenario,
            meters=self.charger.meters,
        ).replace('listen = "127.0.0.1:0"', f'listen = "{self.address}"')
        assert self.address in config
        config_file = self.workdir / f"candiag-{self.charger.charger_id}.toml"
        config_file.write_text(config)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "candiag", "run", "--config", str(config_file)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_listening(self, timeout: float = 30.0) -> None:
        assert self.process is not None, "not started"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"candiag exited: {self.log()}")
            if "event=metrics_listening" in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.1)
        raise RuntimeError(f"candiag not listening after {timeout}s: {self.log()}")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.address}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        finally:
            self.process = None
            if self._log is not None:
                self._log.close()
                self._log = None


def agent_config(
    site: str,
    chargers: Iterable[ChargerDaemon],
    remote_write_url: str,
    time_scale: float = 1.0,
) -> dict[str, Any]:
    """The shipped agent config for ``site``: its chargers as static targets with their
    ``charger_id`` (the inventory's file_sd is replaced), writing to ``remote_write_url``."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(AGENT_CONFIG.read_text()))
    glob = config["global"]
    for key in ("scrape_interval", "scrape_timeout"):
        glob[key] = scaled(glob[key], time_scale)
    glob["external_labels"]["site"] = site
    (job,) = config["scrape_configs"]
    job.pop("file_sd_configs", None)
    job["static_configs"] = [
        {"targets": [daemon.address], "labels": {"charger_id": daemon.charger.charger_id}}
        for daemon in chargers
    ]
    (remote,) = config["remote_write"]
    remote["url"] = remote_write_url
    queue = remote["queue_config"]
    for key in ("batch_send_deadline", "min_backoff", "max_backoff"):
        if key in queue:
            queue[key] = scaled(queue[key], time_scale)
    return config


def central_config(workdir: Path, time_scale: float = 1.0) -> dict[str, Any]:
    """The shipped central config; its rule files copied with scaled evaluation intervals."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(CENTRAL_CONFIG.read_text()))
    glob = config["global"]
    glob["evaluation_interval"] = scaled(glob["evaluation_interval"], time_scale)
    # No Alertmanager in the test: alerts are read from ALERTS and the rules API.
    config.pop("alerting", None)
    rule_files = []
    for name in config["rule_files"]:
        source = (FLEET / name).resolve()
        assert source in {p.resolve() for p in (ALERTS, RECORDING_RULES, FLEET_ALERTS)}, source
        rules = yaml.safe_load(source.read_text())
        for group in rules["groups"]:
            if "interval" in group:
                group["interval"] = scaled(group["interval"], time_scale)
        copied = workdir / source.name
        copied.write_text(yaml.safe_dump(rules))
        rule_files.append(str(copied))
    config["rule_files"] = rule_files
    return config


def central_server(workdir: Path, time_scale: float = 1.0) -> PrometheusServer:
    return PrometheusServer(
        central_config(workdir, time_scale),
        workdir,
        flags=("--web.enable-remote-write-receiver",),
    )


def agent_server(
    site: str,
    chargers: Iterable[ChargerDaemon],
    central: PrometheusServer,
    workdir: Path,
    time_scale: float = 1.0,
) -> PrometheusServer:
    config = agent_config(site, chargers, f"{central.url}/api/v1/write", time_scale)
    # A stopped agent flushes its queue for at most this long (default 1 m) before exiting.
    return PrometheusServer(
        config, workdir, agent=True, flags=("--storage.remote.flush-deadline=5s",)
    )


def exposition_label_names(text: str) -> set[str]:
    """Every label name on a sample of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for name in sample.labels
    }
