"""The diagnosis rules: pure functions from a health report to conditions.

Each rule reads a bus report (:class:`candiag.health.report.BusReport`)
and yields a :class:`~candiag.diagnosis.engine.Condition` per subject where its
fault is present *now*, with the figures that prove it.  Rules follow the
technician's order (``docs/field-diagnostics.md``): physical layer, liveness,
configuration, firmware, then the charger's own plausibility checks.

What a report does not know is ``None`` in its typed field (a window not in the
report, a cooling value not read), and a rule reads ``None`` as "not known", never
as a fault.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from candiag.capture import CaptureStats
from candiag.diagnosis.engine import Condition, RuleBook
from candiag.health.nodes import NodeView
from candiag.health.report import BusReport, WindowReport
from candiag.liveness.rules import liveness_conditions

TRANSCEIVER_PROTOCOL_TYPES = ("bit0", "bit1")


def evaluate(
    book: RuleBook,
    buses: Sequence[BusReport],
    modbus: Sequence[Mapping[str, Any]],
    modbus_past: Mapping[str, Mapping[str, Any]],
    timeline_buses: Collection[str] = (),
) -> list[Condition]:
    """Conditions at this instant.  A bus in ``timeline_buses`` is judged by the interval
    rules (:mod:`candiag.diagnosis.intervals`, every CAN code but the link's state): only
    its link is judged here, the rest would be computed to be ignored."""
    out: list[Condition] = []
    for bus in buses:
        if bus.name in timeline_buses:
            out.extend(link_conditions(bus))
        else:
            out.extend(bus_conditions(book, bus))
    out.extend(plausibility_conditions(book, buses, modbus))
    for dev in modbus:
        out.extend(modbus_conditions(book, dev, modbus_past.get(str(dev.get("name", "")), {})))
    return out


# -- CAN bus -----------------------------------------------------------------------------


def link_conditions(bus: BusReport) -> Iterator[Condition]:
    """The link's state: down (live only; a capture has no link)."""
    if not bus.up:
        base = {"bus": bus.name, **_bitrate_fields(bus)}
        yield Condition("CAN_BUS_DOWN", bus.name, base, {"down_since": bus.down_since})


def bus_conditions(book: RuleBook, bus: BusReport) -> Iterator[Condition]:
    """Every CAN rule at this instant, for a report without a timeline (the interval rules
    judge the same codes over a timeline, exact to the frames)."""
    name = bus.name
    base = {"bus": name, **_bitrate_fields(bus)}
    if not bus.up:
        yield from link_conditions(bus)
        return
    yield from error_frame_conditions(book, bus, base)
    yield from load_and_drop_conditions(book, bus, base)
    yield from node_conditions(book, bus, base)
    yield from liveness_conditions(book, bus, base)  # candiag/liveness: polled modules
    yield from firmware_conditions(bus, base)
    yield from cycle_conditions(book, bus, base)
    yield from contactor_conditions(book, bus, base)
    yield from cooling_conditions(book, bus, base)


def _window(bus: BusReport, w: str) -> WindowReport | None:
    return bus.window(w)


def _bitrate_fields(bus: BusReport) -> dict[str, Any]:
    return bitrate_fields(bus.bitrate, bus.bitrate_known)


def bitrate_fields(bitrate: float | None, known: bool) -> dict[str, str | float]:
    """``bitrate`` and ``bus_bitrate`` for the texts; nothing bitrate-specific when unknown.

    A bitrate candiag only assumed must never become an instruction ("set it to ..."):
    acting on a wrong figure breaks the bus.
    """
    if not known or not bitrate:
        return {
            "bitrate": "unknown",
            "bus_bitrate": "the bitrate the other nodes use (candiag does not know this "
            "bus's bitrate: give --bitrate, or read it from the charger's documentation)",
        }
    return {"bitrate": bitrate, "bus_bitrate": f"the bus bitrate ({int(bitrate):,} bit/s)"}


def error_frame_conditions(
    book: RuleBook, bus: BusReport, base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    w60 = _window(bus, "60s")
    by_class: Mapping[str, int] = w60.error_frames if w60 else {}
    ptype: Mapping[str, int] = w60.protocol_type if w60 else {}
    total = w60.error_frames_total if w60 else 0
    evidence = {
        "error_frames_60s": total,
        "by_class_60s": {k: v for k, v in by_class.items() if v},
        "protocol_type_60s": {k: v for k, v in ptype.items() if v},
    }
    tec = bus.error_frames.tec_last
    rec = bus.error_frames.rec_last
    state = bus.state
    counters = {"tec": tec, "rec": rec, "state": state}

    if (w60.bus_off if w60 else 0) > 0 or state == "bus_off":
        yield Condition(
            "CAN_BUS_OFF",
            name,
            base,
            {**evidence, **counters, "bus_off_events": bus.bus_off_events},
        )
    # The state tracker already derives the state from fresh TEC/REC; the last counters
    # alone are not evidence (a restart resets them without a new counter frame).
    if state == "error_passive":
        yield Condition("CAN_ERROR_PASSIVE", name, base, {**counters, **evidence})
    elif state == "error_warning" and not bus.counters_falling:
        # On the way back from error-passive the counters pass the warning level too:
        # that is recovery, not errors building up.
        yield Condition("CAN_TEC_RISING", name, base, {**counters, **evidence})

    unclassified = int(by_class.get("unclassified", 0))
    if unclassified > 0:
        # The capture format recorded that error frames happened, not which kind: say so
        # instead of letting them pass without a finding (docs/capture-formats.md).
        yield Condition(
            "CAN_ERROR_FRAMES_UNCLASSIFIED",
            name,
            {**base, "count": unclassified},
            {**evidence, "unclassified_60s": unclassified},
        )
    if total < book.t("error_frames_warning_60s"):
        return
    trx = int(by_class.get("transceiver", 0)) + sum(
        int(ptype.get(t, 0)) for t in TRANSCEIVER_PROTOCOL_TYPES
    )
    ack = int(by_class.get("ack", 0))
    protocol = int(by_class.get("protocol", 0))
    if trx > 0:
        yield Condition("CAN_ERR_TRX", name, base, evidence)
    if ack > 0 and ack >= protocol:
        yield Condition("CAN_ERR_ACK", name, base, evidence)
    elif protocol > 0 and protocol > trx:
        bursts = bus.error_bursts
        burst_seconds = bursts.burst_seconds
        in_bursts = bursts.in_bursts
        share = in_bursts / max(1, bursts.protocol_total)
        ev = {**evidence, "burst_seconds_60s": burst_seconds, "share_in_bursts": round(share, 3)}
        if burst_seconds >= book.t("wrong_bitrate_min_bursts") and share >= book.t(
            "wrong_bitrate_burst_share"
        ):
            yield Condition("CAN_WRONG_BITRATE", name, base, ev)
        else:
            yield Condition("CAN_ERR_PHY", name, base, ev)


def load_and_drop_conditions(
    book: RuleBook, bus: BusReport, base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    # The worst 10 s of the last minute: a high-load stretch is seen even if the
    # rules run less often than every 10 s (offline analysis of long captures).
    w60, w10 = _window(bus, "60s"), _window(bus, "10s")
    load = w60.load_ratio_max_10s if w60 else (w10.load_ratio if w10 else None)
    # A load under an assumed bitrate is not a fact about the bus: no finding from it.
    known = bus.bitrate_known
    if known and load is not None and float(load) >= book.t("bus_load_warning"):
        fields = {**base, "load": f"{float(load):.0%}"}
        yield Condition("CAN_LOAD_HIGH", name, fields, {"load_ratio_10s": round(float(load), 4)})
    dropped = bus.dropped_recent
    if dropped > 0:
        yield Condition(
            "CAN_FRAMES_DROPPED",
            name,
            {**base, "dropped": dropped},
            {"dropped_recent": dropped, "dropped": dict(bus.dropped)},
        )


def _node_subject(bus: str, node: NodeView) -> str:
    return f"{bus}/{node.family}/{node.address}"


def _node_fields(base: Mapping[str, Any], node: NodeView) -> dict[str, Any]:
    family = node.family.replace("_", " ")
    silent = _round(node.silent_s)
    return {
        **base,
        "family": family,
        "address": node.address,
        "silent": "never seen" if silent is None else f"silent for {float(silent):.1f} s",
        "dropouts": node.dropouts,
        "rate_ratio": _round(node.rate_ratio),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    """As the report's JSON gives it (the evidence is shown and exported)."""
    return None if value is None else round(value, digits)


def _node_evidence(node: NodeView) -> dict[str, Any]:
    return {
        "last_seen": node.last_seen,
        "silent_s": _round(node.silent_s),
        "timeout_s": node.timeout_s,
        "frames": node.frames,
        "dropouts": node.dropouts,
        "rate_ratio": _round(node.rate_ratio),
    }


def node_conditions(book: RuleBook, bus: BusReport, base: Mapping[str, Any]) -> Iterator[Condition]:
    name = str(base["bus"])
    alarm_codes = {
        "communication_interrupt": "CAN_NODE_ALARM_COMM",
        "over_temperature": "CAN_NODE_ALARM_TEMP",
        "fan": "CAN_NODE_ALARM_FAN",
    }
    nodes = list(bus.nodes)
    bus_wide = _bus_wide_dropouts(nodes)
    seen = [n for n in nodes if n.last_seen is not None]
    w60 = _window(bus, "60s")
    if bus.state == "bus_off" or (w60.bus_off if w60 else 0) > 0:
        # The controller was off the bus: nodes were silent *to us*; CAN_BUS_OFF says why.
        nodes = [n for n in nodes if n.status != "offline"]
    elif len(seen) >= 2 and all(n.status == "offline" for n in seen):
        # Every node silent at once: the bus (or candiag's adapter), not the nodes.
        evidence = {"nodes": len(seen), "last_frame": max(n.last_seen or 0.0 for n in seen)}
        yield Condition("CAN_BUS_SILENT", name, base, evidence)
        return
    for node in nodes:
        if node.status == "intermittent" and node.last_dropout_end in bus_wide:
            continue  # every node dropped out together: a bus-level event explains it
        subject = _node_subject(name, node)
        fields = _node_fields(base, node)
        evidence = _node_evidence(node)
        status = node.status
        if status == "offline":
            yield Condition("CAN_NODE_OFFLINE", subject, fields, evidence)
            continue
        if status == "duplicate":
            yield Condition("CAN_NODE_DUPLICATE", subject, fields, evidence)
        elif status == "intermittent":
            yield Condition("CAN_NODE_INTERMITTENT", subject, fields, evidence)
        for alarm in node.alarms:
            code = alarm_codes.get(str(alarm))
            if code is not None:
                yield Condition(code, subject, fields, {**evidence, "alarm": alarm})


def _bus_wide_dropouts(nodes: list[NodeView]) -> set[Any]:
    """Return instants at which most nodes came back together (a bus-off, a cable pulled)."""
    ends: dict[Any, int] = {}
    for node in nodes:
        end = node.last_dropout_end
        if end is not None:
            ends[end] = ends.get(end, 0) + 1
    if len(nodes) < 3:
        return set()
    # Nodes return within a frame period of each other: cluster return instants 1 s apart.
    out: set[Any] = set()
    cluster: list[Any] = []
    for end in sorted(ends):
        if cluster and float(end) - float(cluster[-1]) > 1.0:
            out.update(_if_most(cluster, ends, len(nodes)))
            cluster = []
        cluster.append(end)
    out.update(_if_most(cluster, ends, len(nodes)))
    return out


def _if_most(cluster: list[Any], ends: Mapping[Any, int], total: int) -> list[Any]:
    return cluster if sum(ends[e] for e in cluster) >= 0.75 * total else []


def firmware_conditions(bus: BusReport, base: Mapping[str, Any]) -> Iterator[Condition]:
    name = str(base["bus"])
    for mm in bus.firmware_mismatches:
        family = mm.family
        by_version: Mapping[str, list[int]] = mm.by_version
        majority = mm.majority
        if len(by_version) > 1:
            outliers = sorted(a for v, addrs in by_version.items() if v != majority for a in addrs)
            fields = {
                **base,
                "family": family.replace("_", " "),
                "versions": "; ".join(f"{v}: {sorted(a)}" for v, a in sorted(by_version.items())),
                "majority": majority,
                "outliers": f"{family.replace('_', ' ')} {', '.join(map(str, outliers))}",
            }
            yield Condition("CAN_FW_MISMATCH", f"{name}/{family}", fields, mm.to_json())
        for number, version in sorted(mm.not_allowed.items()):
            address = str(number)  # as the report's JSON keys it
            fields = {
                **base,
                "family": family.replace("_", " "),
                "address": address,
                "version": version,
                "allowed": "see config",  # the mismatch does not carry the allowed list
            }
            yield Condition(
                "CAN_FW_NOT_ALLOWED", f"{name}/{family}/{address}", fields, {"version": version}
            )


def cycle_conditions(
    book: RuleBook, bus: BusReport, base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    # A silent or duplicated node breaks its cycle times; its own finding explains it.
    offline: set[tuple[str | None, int | None]] = {
        (n.family, n.address)
        for n in bus.nodes
        if n.status in ("offline", "duplicate") or n.duplicate_recently
    }
    w60 = _window(bus, "60s")
    if bus.state == "bus_off" or (w60.bus_off if w60 else 0) > 0:
        return  # a bus-off interrupts every cycle; CAN_BUS_OFF explains it
    for id_key, stats in bus.ids.items():
        if stats.cycle_ok is not False:
            continue
        if (stats.family, stats.node) in offline:
            continue  # the node-level finding explains it better
        fields = {**base, "id": stats.name or id_key}
        evidence = {
            "cycle_ms": stats.cycle_ms,
            "mean_period_s": stats.mean_period_s,
            "jitter_s": stats.jitter_s,
            "count": stats.count,
            "last_seen": stats.last_seen,
            "family": stats.family,
            "node": stats.node,
        }
        yield Condition("CAN_CYCLE_VIOLATION", f"{name}/{id_key}", fields, evidence)


def contactor_conditions(
    book: RuleBook, bus: BusReport, base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    for c in bus.contactors:
        fields = {**base, "contactor": c.name}
        subject = f"{name}/{c.name}"
        if c.weld:
            yield Condition("CONTACTOR_WELD", subject, fields, c.to_json())
        if c.mismatch_s >= book.t("contactor_feedback_s"):
            yield Condition("CONTACTOR_MISMATCH", subject, fields, c.to_json())


def cooling_conditions(
    book: RuleBook, bus: BusReport, base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    cooling = bus.cooling
    pump = cooling.pump_command
    flow = cooling.flow
    if (
        pump is not None
        and flow is not None
        and float(pump) >= book.t("pump_min_command")
        and float(flow) < book.t("min_flow_l_min")
    ):
        yield Condition("COOLING_NO_FLOW", f"{name}/cooling", base, cooling.to_json())
    temp = cooling.coolant_temperature
    if temp is not None and float(temp) >= book.t("coolant_warning_c"):
        fields = {**base, "temperature": f"{float(temp):.1f} degC"}
        yield Condition("COOLING_OVERTEMP", f"{name}/cooling", fields, cooling.to_json())


# -- cross-source plausibility ---------------------------------------------------------------


def plausibility_conditions(
    book: RuleBook,
    buses: Sequence[BusReport],
    modbus: Sequence[Mapping[str, Any]],
) -> Iterator[Condition]:
    modules_a = 0.0
    meters: list[tuple[str, float]] = []
    for bus in buses:
        currents = bus.currents
        if currents.modules_output_a is not None:
            modules_a += currents.modules_output_a
        if currents.meter_a is not None:
            meters.append((f"{bus.name}/dc_meter", currents.meter_a))
    for dev in modbus:
        if not dev.get("up") or not dev.get("dc"):
            continue
        reading = (dev.get("readings") or {}).get("current")
        if reading is not None:
            meters.append((f"modbus/{dev.get('name')}", float(reading["value"])))
    threshold = book.t("meter_reversed_min_a")
    if modules_a < threshold:
        return
    for subject, meter_a in meters:
        if meter_a <= -threshold:
            yield Condition(
                "METER_REVERSED",
                subject,
                {},
                {"modules_output_a": round(modules_a, 2), "meter_current_a": round(meter_a, 2)},
            )


# -- Modbus --------------------------------------------------------------------------------


def modbus_conditions(
    book: RuleBook, dev: Mapping[str, Any], past: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(dev.get("name", "meter"))
    fields = {
        "device": name,
        "port": dev.get("port"),
        "path": dev.get("path") or dev.get("port"),  # the device to open, not the port's name
        "id": dev.get("id"),
        "profile": dev.get("profile"),
    }
    requests = int(dev.get("requests", 0)) - int(past.get("requests", 0))
    fails_now: Mapping[str, int] = dev.get("failures") or {}
    fails_then: Mapping[str, int] = past.get("failures") or {}
    recent = {
        reason: int(fails_now.get(reason, 0))
        - (0 if past is dev else int(fails_then.get(reason, 0)))
        for reason in ("timeout", "crc", "exception", "wrong_device", "bad_reply", "io")
    }
    evidence = {"requests_recent": requests, "failures_recent": recent, "up": dev.get("up")}
    if requests <= 0:
        return
    if recent["wrong_device"] > 0:
        yield Condition("MODBUS_WRONG_ID", f"modbus/{dev.get('port')}", fields, evidence)
    crc_share = recent["crc"] / requests
    if recent["crc"] > 0 and crc_share >= book.t("modbus_crc_warning_share"):
        yield Condition(
            "MODBUS_CRC",
            f"modbus/{name}",
            {**fields, "crc": recent["crc"], "requests": requests},
            evidence,
        )
    if recent["bad_reply"] > 0:
        yield Condition(
            "MODBUS_BAD_REPLY",
            f"modbus/{name}",
            {**fields, "bad_reply": recent["bad_reply"], "requests": requests},
            evidence,
        )
    if recent["exception"] > 0:
        codes = ", ".join(str(c) for c in sorted((dev.get("exceptions") or {}).keys()))
        yield Condition("MODBUS_EXCEPTION", f"modbus/{name}", {**fields, "codes": codes}, evidence)
    if not dev.get("up") and recent["timeout"] + recent["io"] >= max(1, requests // 2):
        yield Condition("MODBUS_NO_ANSWER", f"modbus/{name}", fields, evidence)


# -- the capture file itself ----------------------------------------------------------------


def capture_conditions(book: RuleBook, capture: CaptureStats) -> list[Condition]:
    """What reading a capture file found: nothing read must never look like nothing wrong."""
    path = capture.path
    frames = capture.frames
    malformed = capture.malformed
    lines = capture.lines
    first = capture.examples[0] if capture.examples else None
    first_reason = first.reason if first else ""
    note = capture.stop_text() if capture.stopped_at is not None else capture.note
    share = malformed / max(1, frames + malformed)
    fields = {
        "path": path,
        "format": capture.format or "unknown",
        "frames": frames,
        "lines": lines,
        "malformed": malformed,
        "share": f"{share:.0%}",
        "first_reason": first_reason or "no line was recognized",
        "note": note or "",
    }
    evidence = {
        "frames": frames,
        "lines": lines,
        "malformed_lines": malformed,
        "malformed_share": round(share, 4),
        "format": fields["format"],
        "format_reason": capture.format_reason or "",
        "first_malformed_line": first.line if first else None,
        "first_reason": first_reason,
    }
    if frames == 0:
        return [Condition("CAPTURE_UNREADABLE", path, fields, evidence)]
    if share >= book.t("capture_malformed_critical"):
        return [Condition("CAPTURE_MOSTLY_MALFORMED", path, fields, evidence)]
    incomplete = capture.truncated or bool(note)
    if incomplete or share >= book.t("capture_malformed_warning"):
        return [Condition("CAPTURE_INCOMPLETE", path, fields, {**evidence, "note": fields["note"]})]
    return []
