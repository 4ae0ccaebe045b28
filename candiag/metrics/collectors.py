"""Prometheus collectors: metric families built fresh from one snapshot per scrape.

:class:`CandiagCollector` asks a snapshot source (the daemon state, under its
lock) for a :class:`~candiag.metrics.snapshot.Snapshot` once per scrape and
yields ``*MetricFamily`` objects with exactly the names of the project-wide
interface.  No global ``Counter``/``Gauge`` objects: a scrape sees one
consistent picture, nothing leaks between registries (tests use a fresh
``CollectorRegistry``), and no ``_created`` series are produced.

Series known in advance are exported at 0 (all ten error classes, every bus
state, every window, frame kinds, drop sources, Modbus failure reasons), as the
Prometheus instrumentation guide asks ("Avoid missing metrics",
docs/standards.md §1).  Label cardinality is bounded: ids per bus are capped by
:class:`~candiag.health.ids.CappedIdCounter` (the first
``MAX_IDS_PER_BUS`` ids keep their series, the rest count as ``overflow``).

Sample exposition::

    # HELP candiag_can_bus_up 1 when the CAN interface is open and reading.
    # TYPE candiag_can_bus_up gauge
    candiag_can_bus_up{bus="can0"} 1.0
    # TYPE candiag_can_error_frames_total counter
    candiag_can_error_frames_total{bus="can0",class="ack"} 12.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from candiag.metrics.snapshot import (
    BUS_STATES,
    DROP_SOURCES,
    ERROR_CLASSES,
    FRAME_KINDS,
    MODBUS_FAILURE_REASONS,
    WINDOW_LABELS,
    BusSnapshot,
    ModbusDeviceSnapshot,
    Snapshot,
)

# DBC unit -> (metric suffix, factor to the base unit).  Anything else is exported
# as candiag_can_signal_value{unit=...} unchanged.
_SIGNAL_UNITS: dict[str, tuple[str, float]] = {
    "V": ("volts", 1.0),
    "mV": ("volts", 1e-3),
    "kV": ("volts", 1e3),
    "A": ("amperes", 1.0),
    "mA": ("amperes", 1e-3),
    "°C": ("celsius", 1.0),
    "degC": ("celsius", 1.0),
    "C": ("celsius", 1.0),
    "W": ("watts", 1.0),
    "kW": ("watts", 1e3),
    "%": ("ratio", 1e-2),
}
_SIGNAL_HELP = {
    "volts": "Decoded CAN signal in volts (fresh values only).",
    "amperes": "Decoded CAN signal in amperes (fresh values only).",
    "celsius": "Decoded CAN signal in degrees Celsius (fresh values only).",
    "watts": "Decoded CAN signal in watts (fresh values only).",
    "ratio": "Decoded CAN signal as a ratio 0..1 (fresh values only).",
}
_METER_METRICS: dict[str, tuple[str, str]] = {
    "voltage": ("candiag_meter_voltage_volts", "Meter voltage in volts."),
    "current": ("candiag_meter_current_amperes", "Meter current in amperes."),
    "power": ("candiag_meter_power_watts", "Meter active power in watts."),
    "frequency": ("candiag_meter_frequency_hertz", "Meter line frequency in hertz."),
}

SnapshotSource = Callable[[], Snapshot]


class CandiagCollector(Collector):
    """Every candiag metric, from one snapshot per scrape."""

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # Registration must not take a snapshot (the daemon may not be running yet).
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self._source()
        yield _build_info(snap)
        yield from _can_metrics(snap.buses)
        yield from _signal_metrics(snap.buses)
        yield from _modbus_metrics(snap.modbus)
        yield from _meter_metrics(snap.modbus)
        yield _finding_metric(snap)
        loop = GaugeMetricFamily(
            "candiag_loop_last_run_timestamp_seconds",
            "Unix time the processing loop last completed (liveness).",
        )
        if snap.loop_last_run is not None:
            loop.add_metric([], snap.loop_last_run)
        yield loop
        yield from _config_metrics(snap)


def _config_metrics(snap: Snapshot) -> Iterator[Metric]:
    failures = CounterMetricFamily(
        "candiag_config_reload_failures_total",
        "Reloads (SIGHUP) whose new configuration was refused; the old one kept running.",
    )
    failures.add_metric([], snap.config_reload_failures)
    yield failures
    ok = GaugeMetricFamily(
        "candiag_config_last_reload_successful",
        "1 when the last reload worked (or none was asked for), 0 when it failed.",
    )
    ok.add_metric([], 1.0 if snap.config_last_reload_ok else 0.0)
    yield ok


def _build_info(snap: Snapshot) -> Metric:
    info = GaugeMetricFamily(
        "candiag_build_info", "candiag build information (always 1).", labels=["version"]
    )
    info.add_metric([snap.version], 1.0)
    return info


def _gauge(name: str, doc: str, labels: Sequence[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _can_metrics(buses: Sequence[BusSnapshot]) -> Iterator[Metric]:
    up = _gauge("candiag_can_bus_up", "1 when the CAN interface is open and reading.", ["bus"])
    frames = _counter("candiag_can_frames_total", "CAN frames received, by kind.", ["bus", "kind"])
    ids = _counter(
        "candiag_can_id_frames_total",
        "CAN frames received per identifier (first 256 ids per bus; then id=overflow).",
        ["bus", "id"],
    )
    errors = _counter(
        "candiag_can_error_frames_total", "CAN error frames, by error class.", ["bus", "class"]
    )
    bus_off = _counter("candiag_can_bus_off_total", "Bus-off events.", ["bus"])
    restarts = _counter("candiag_can_bus_restarts_total", "Controller restarts.", ["bus"])
    load = _gauge(
        "candiag_can_bus_load_ratio",
        "Bus load (exact frame bits / bitrate) over the sliding window.",
        ["bus", "window"],
    )
    state = _gauge(
        "candiag_can_bus_state",
        "1 for the current bus state (error_active..bus_off, down), 0 for the others.",
        ["bus", "state"],
    )
    err_window = _gauge(
        "candiag_can_error_frames_window",
        "Error frames of the class in the sliding window.",
        ["bus", "class", "window"],
    )
    tec = _gauge(
        "candiag_can_controller_tx_errors", "Controller transmit error counter (TEC).", ["bus"]
    )
    rec = _gauge(
        "candiag_can_controller_rx_errors", "Controller receive error counter (REC).", ["bus"]
    )
    dropped = _counter(
        "candiag_can_frames_dropped_total",
        "Frames lost before candiag saw them (socket buffer, interface).",
        ["bus", "source"],
    )
    node_up = _gauge(
        "candiag_can_node_up",
        "1 while the node transmits within its timeout.",
        ["bus", "family", "node"],
    )
    node_seen = _gauge(
        "candiag_can_node_last_seen_timestamp_seconds",
        "Unix time of the node's last frame.",
        ["bus", "family", "node"],
    )
    node_info = _gauge(
        "candiag_can_node_info",
        "Node firmware version (always 1).",
        ["bus", "family", "node", "firmware"],
    )
    mismatch = _gauge(
        "candiag_can_firmware_mismatch",
        "1 when nodes of the family report different or disallowed firmware.",
        ["bus", "family"],
    )
    for bus in buses:
        b = bus.name
        up.add_metric([b], 1.0 if bus.up else 0.0)
        for kind in FRAME_KINDS:
            frames.add_metric([b, kind], float(bus.frames.get(kind, 0)))
        for can_id, count in sorted(bus.id_frames.items()):
            ids.add_metric([b, can_id], float(count))
        for cls in ERROR_CLASSES:
            errors.add_metric([b, cls], float(bus.error_frames.get(cls, 0)))
        bus_off.add_metric([b], float(bus.bus_off_total))
        restarts.add_metric([b], float(bus.restarts_total))
        for window in WINDOW_LABELS:
            load.add_metric([b, window], float(bus.load_ratio.get(window, 0.0)))
            counts = bus.error_window.get(window, {})
            for cls in ERROR_CLASSES:
                err_window.add_metric([b, cls, window], float(counts.get(cls, 0)))
        for s in BUS_STATES:
            state.add_metric([b, s], 1.0 if s == bus.state else 0.0)
        if bus.tx_errors is not None:
            tec.add_metric([b], float(bus.tx_errors))
        if bus.rx_errors is not None:
            rec.add_metric([b], float(bus.rx_errors))
        for source in DROP_SOURCES:
            dropped.add_metric([b, source], float(bus.dropped.get(source, 0)))
        for node in bus.nodes:
            labels = [b, node.family, node.node]
            node_up.add_metric(labels, 1.0 if node.up else 0.0)
            if node.last_seen is not None:
                node_seen.add_metric(labels, node.last_seen)
            if node.firmware is not None:
                node_info.add_metric([*labels, node.firmware], 1.0)
        for family, flag in sorted(bus.firmware_mismatch.items()):
            mismatch.add_metric([b, family], 1.0 if flag else 0.0)
    yield from (up, frames, ids, errors, bus_off, restarts, load, state, err_window)
    yield from (tec, rec, dropped, node_up, node_seen, node_info, mismatch)


def _signal_metrics(buses: Sequence[BusSnapshot]) -> Iterator[Metric]:
    # role: the DBC's CandiagRole, so a dashboard selects "each module's output voltage"
    # whatever the protocol calls the signal (docs/operations.md).
    labels = ["bus", "message", "signal", "node", "role"]
    families = {
        suffix: _gauge(f"candiag_can_signal_{suffix}", doc, labels)
        for suffix, doc in _SIGNAL_HELP.items()
    }
    other = _gauge(
        "candiag_can_signal_value",
        "Decoded CAN signal without a base unit (fresh values only); unit as in the DBC.",
        [*labels, "unit"],
    )
    for bus in buses:
        for sig in bus.signals:
            key = [bus.name, sig.message, sig.signal, sig.node, sig.role]
            mapped = _SIGNAL_UNITS.get(sig.unit.strip())
            if mapped is None:
                other.add_metric([*key, sig.unit.strip()], sig.value)
            else:
                suffix, factor = mapped
                families[suffix].add_metric(key, sig.value * factor)
    yield from families.values()
    yield other


def _modbus_metrics(devices: Sequence[ModbusDeviceSnapshot]) -> Iterator[Metric]:
    pd = ["port", "device"]
    up = _gauge("candiag_modbus_up", "1 while the Modbus device answers its polls.", pd)
    requests = _counter("candiag_modbus_requests", "Modbus read requests sent.", pd)
    failures = _counter(
        "candiag_modbus_request_failures",
        "Failed Modbus requests by reason (timeout, crc, exception, wrong_device, bad_reply, io).",
        [*pd, "reason"],
    )
    exceptions = _counter(
        "candiag_modbus_exception_replies",
        "Modbus exception replies by exception code.",
        [*pd, "code"],
    )
    last = _gauge(
        "candiag_modbus_last_success_timestamp_seconds",
        "Unix time of the device's last successful poll.",
        pd,
    )
    duration = HistogramMetricFamily(
        "candiag_modbus_request_duration_seconds",
        "Modbus request round-trip time in seconds.",
        labels=pd,
    )
    for dev in devices:
        key = [dev.port, dev.device]
        up.add_metric(key, 1.0 if dev.up else 0.0)
        requests.add_metric(key, float(dev.requests))
        for reason in MODBUS_FAILURE_REASONS:
            failures.add_metric([*key, reason], float(dev.failures.get(reason, 0)))
        for code, count in sorted(dev.exceptions.items()):
            exceptions.add_metric([*key, code], float(count))
        if dev.last_success is not None:
            last.add_metric(key, dev.last_success)
        if dev.duration is not None:
            duration.add_metric(
                key,
                buckets=[(_le(bound), float(c)) for bound, c in dev.duration.buckets],
                sum_value=dev.duration.total,
            )
    yield from (up, requests, failures, exceptions, last, duration)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def _meter_metrics(devices: Sequence[ModbusDeviceSnapshot]) -> Iterator[Metric]:
    phased = {
        q: _gauge(name, doc, ["device", "phase"]) for q, (name, doc) in _METER_METRICS.items()
    }
    energy = _counter(
        "candiag_meter_energy_joules",
        "Meter energy register in joules.",
        ["device", "direction"],
    )
    insulation = _gauge(
        "candiag_meter_insulation_resistance_ohms",
        "Insulation resistance from the insulation monitor, in ohms.",
        ["device"],
    )
    temperature = _gauge(
        "candiag_meter_temperature_celsius", "Device temperature in degrees Celsius.", ["device"]
    )
    for dev in devices:
        if not dev.up:
            continue  # readings of a down device are withdrawn, never stale
        for r in dev.readings:
            if r.quantity in phased:
                phased[r.quantity].add_metric([dev.device, r.phase], r.value)
            elif r.quantity == "energy":
                energy.add_metric([dev.device, r.direction or "import"], r.value)
            elif r.quantity == "insulation":
                insulation.add_metric([dev.device], r.value)
            elif r.quantity == "temperature":
                temperature.add_metric([dev.device], r.value)
    yield from phased.values()
    yield from (energy, insulation, temperature)


def _finding_metric(snap: Snapshot) -> Metric:
    active = _gauge(
        "candiag_finding_active",
        "1 while a diagnosis finding is active.",
        ["code", "severity", "subject"],
    )
    for f in snap.findings:
        active.add_metric([f.code, f.severity, f.subject], 1.0)
    return active
