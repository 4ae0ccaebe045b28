"""The diagnosis rules: pure functions from a health report to conditions.

Each rule reads the JSON-shaped report (see :mod:`candiag.diagnosis.engine`)
and yields a :class:`~candiag.diagnosis.engine.Condition` per subject where its
fault is present *now*, with the figures that prove it.  Rules follow the
technician's order (``docs/field-diagnostics.md``): physical layer, liveness,
configuration, firmware, then the charger's own plausibility checks.

Keys a bus report may carry (missing keys mean "not known", never a fault):
``name, bitrate, up, state, error_frames{tec_last, rec_last, ...},
windows{"10s"|"60s": {error_frames{class: n}, error_frames_total,
protocol_type{type: n}, bus_off, load_ratio}}, error_bursts{burst_seconds,
in_bursts, protocol_total}, nodes[...], firmware_mismatches[...], ids{...},
dropped_recent, contactors[...], cooling{...}, currents{...}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from candiag.diagnosis.engine import Condition, RuleBook

TRANSCEIVER_PROTOCOL_TYPES = ("bit0", "bit1")


def evaluate(
    book: RuleBook,
    buses: Sequence[Mapping[str, Any]],
    modbus: Sequence[Mapping[str, Any]],
    modbus_past: Mapping[str, Mapping[str, Any]],
) -> list[Condition]:
    out: list[Condition] = []
    for bus in buses:
        out.extend(bus_conditions(book, bus))
    out.extend(plausibility_conditions(book, buses, modbus))
    for dev in modbus:
        out.extend(modbus_conditions(book, dev, modbus_past.get(str(dev.get("name", "")), {})))
    return out


# -- CAN bus -----------------------------------------------------------------------------


def bus_conditions(book: RuleBook, bus: Mapping[str, Any]) -> Iterator[Condition]:
    name = str(bus.get("name", "can"))
    base = {"bus": name, **_bitrate_fields(bus)}
    if bus.get("up") is False:
        yield Condition("CAN_BUS_DOWN", name, base, {"down_since": bus.get("down_since")})
        return
    yield from error_frame_conditions(book, bus, base)
    yield from load_and_drop_conditions(book, bus, base)
    yield from node_conditions(book, bus, base)
    yield from firmware_conditions(bus, base)
    yield from cycle_conditions(book, bus, base)
    yield from contactor_conditions(book, bus, base)
    yield from cooling_conditions(book, bus, base)


def _window(bus: Mapping[str, Any], w: str) -> Mapping[str, Any]:
    windows = bus.get("windows") or {}
    return windows.get(w) or {}


def _bitrate_fields(bus: Mapping[str, Any]) -> dict[str, Any]:
    """``bitrate`` and ``bus_bitrate`` for the texts; nothing bitrate-specific when unknown.

    A bitrate candiag only assumed must never become an instruction ("set it to ..."):
    acting on a wrong figure breaks the bus.
    """
    bitrate = bus.get("bitrate")
    if bus.get("bitrate_known") is False or not bitrate:
        return {
            "bitrate": "unknown",
            "bus_bitrate": "the bitrate the other nodes use (candiag does not know this "
            "bus's bitrate: give --bitrate, or read it from the charger's documentation)",
        }
    return {"bitrate": bitrate, "bus_bitrate": f"the bus bitrate ({int(bitrate):,} bit/s)"}


def error_frame_conditions(
    book: RuleBook, bus: Mapping[str, Any], base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    w60 = _window(bus, "60s")
    by_class: Mapping[str, int] = w60.get("error_frames") or {}
    ptype: Mapping[str, int] = w60.get("protocol_type") or {}
    total = int(w60.get("error_frames_total", max(by_class.values(), default=0)))
    evidence = {
        "error_frames_60s": total,
        "by_class_60s": {k: v for k, v in by_class.items() if v},
        "protocol_type_60s": {k: v for k, v in ptype.items() if v},
    }
    ef = bus.get("error_frames") or {}
    tec = int(ef.get("tec_last") or 0)
    rec = int(ef.get("rec_last") or 0)
    state = str(bus.get("state", "error_active"))
    counters = {"tec": tec, "rec": rec, "state": state}

    if int(w60.get("bus_off", by_class.get("bus_off", 0))) > 0 or state == "bus_off":
        yield Condition(
            "CAN_BUS_OFF",
            name,
            base,
            {**evidence, **counters, "bus_off_events": bus.get("bus_off_events")},
        )
    # The state tracker already derives the state from fresh TEC/REC; the last counters
    # alone are not evidence (a restart resets them without a new counter frame).
    if state == "error_passive":
        yield Condition("CAN_ERROR_PASSIVE", name, base, {**counters, **evidence})
    elif state == "error_warning" and bus.get("counters_falling") is not True:
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
        bursts = bus.get("error_bursts") or {}
        burst_seconds = int(bursts.get("burst_seconds", 0))
        in_bursts = int(bursts.get("in_bursts", 0))
        share = in_bursts / max(1, int(bursts.get("protocol_total", protocol)))
        ev = {**evidence, "burst_seconds_60s": burst_seconds, "share_in_bursts": round(share, 3)}
        if burst_seconds >= book.t("wrong_bitrate_min_bursts") and share >= book.t(
            "wrong_bitrate_burst_share"
        ):
            yield Condition("CAN_WRONG_BITRATE", name, base, ev)
        else:
            yield Condition("CAN_ERR_PHY", name, base, ev)


def load_and_drop_conditions(
    book: RuleBook, bus: Mapping[str, Any], base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    # The worst 10 s of the last minute: a high-load stretch is seen even if the
    # rules run less often than every 10 s (offline analysis of long captures).
    load = _window(bus, "60s").get("load_ratio_max_10s", _window(bus, "10s").get("load_ratio"))
    # A load under an assumed bitrate is not a fact about the bus: no finding from it.
    known = bus.get("bitrate_known") is not False
    if known and load is not None and float(load) >= book.t("bus_load_warning"):
        fields = {**base, "load": f"{float(load):.0%}"}
        yield Condition("CAN_LOAD_HIGH", name, fields, {"load_ratio_10s": round(float(load), 4)})
    dropped = int(bus.get("dropped_recent") or 0)
    if dropped > 0:
        yield Condition(
            "CAN_FRAMES_DROPPED",
            name,
            {**base, "dropped": dropped},
            {"dropped_recent": dropped, "dropped": bus.get("dropped")},
        )


def _node_subject(bus: str, node: Mapping[str, Any]) -> str:
    return f"{bus}/{node.get('family')}/{node.get('address')}"


def _node_fields(base: Mapping[str, Any], node: Mapping[str, Any]) -> dict[str, Any]:
    family = str(node.get("family", "node")).replace("_", " ")
    silent = node.get("silent_s")
    return {
        **base,
        "family": family,
        "address": node.get("address"),
        "silent": "never seen" if silent is None else f"silent for {float(silent):.1f} s",
        "dropouts": node.get("dropouts", 0),
        "rate_ratio": node.get("rate_ratio"),
    }


def node_conditions(
    book: RuleBook, bus: Mapping[str, Any], base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    alarm_codes = {
        "communication_interrupt": "CAN_NODE_ALARM_COMM",
        "over_temperature": "CAN_NODE_ALARM_TEMP",
        "fan": "CAN_NODE_ALARM_FAN",
    }
    nodes = list(bus.get("nodes") or [])
    bus_wide = _bus_wide_dropouts(nodes)
    seen = [n for n in nodes if n.get("last_seen") is not None]
    w60 = _window(bus, "60s")
    if bus.get("state") == "bus_off" or int(w60.get("bus_off", 0)) > 0:
        # The controller was off the bus: nodes were silent *to us*; CAN_BUS_OFF says why.
        nodes = [n for n in nodes if n.get("status") != "offline"]
    elif len(seen) >= 2 and all(n.get("status") == "offline" for n in seen):
        # Every node silent at once: the bus (or candiag's adapter), not the nodes.
        evidence = {"nodes": len(seen), "last_frame": max(n["last_seen"] for n in seen)}
        yield Condition("CAN_BUS_SILENT", name, base, evidence)
        return
    for node in nodes:
        if node.get("status") == "intermittent" and node.get("last_dropout_end") in bus_wide:
            continue  # every node dropped out together: a bus-level event explains it
        subject = _node_subject(name, node)
        fields = _node_fields(base, node)
        evidence = {
            k: node.get(k)
            for k in ("last_seen", "silent_s", "timeout_s", "frames", "dropouts", "rate_ratio")
        }
        status = node.get("status")
        if status == "offline":
            yield Condition("CAN_NODE_OFFLINE", subject, fields, evidence)
            continue
        if status == "duplicate":
            yield Condition("CAN_NODE_DUPLICATE", subject, fields, evidence)
        elif status == "intermittent":
            yield Condition("CAN_NODE_INTERMITTENT", subject, fields, evidence)
        for alarm in node.get("alarms") or []:
            code = alarm_codes.get(str(alarm))
            if code is not None:
                yield Condition(code, subject, fields, {**evidence, "alarm": alarm})


def _bus_wide_dropouts(nodes: list[Mapping[str, Any]]) -> set[Any]:
    """Return instants at which most nodes came back together (a bus-off, a cable pulled)."""
    ends: dict[Any, int] = {}
    for node in nodes:
        end = node.get("last_dropout_end")
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


def firmware_conditions(bus: Mapping[str, Any], base: Mapping[str, Any]) -> Iterator[Condition]:
    name = str(base["bus"])
    for mm in bus.get("firmware_mismatches") or []:
        family = str(mm.get("family", "node"))
        by_version: Mapping[str, list[int]] = mm.get("by_version") or {}
        majority = mm.get("majority")
        if len(by_version) > 1:
            outliers = sorted(a for v, addrs in by_version.items() if v != majority for a in addrs)
            fields = {
                **base,
                "family": family.replace("_", " "),
                "versions": "; ".join(f"{v}: {sorted(a)}" for v, a in sorted(by_version.items())),
                "majority": majority,
                "outliers": f"{family.replace('_', ' ')} {', '.join(map(str, outliers))}",
            }
            yield Condition("CAN_FW_MISMATCH", f"{name}/{family}", fields, dict(mm))
        for address, version in (mm.get("not_allowed") or {}).items():
            fields = {
                **base,
                "family": family.replace("_", " "),
                "address": address,
                "version": version,
                "allowed": ", ".join(mm.get("allowed") or []) or "see config",
            }
            yield Condition(
                "CAN_FW_NOT_ALLOWED", f"{name}/{family}/{address}", fields, {"version": version}
            )


def cycle_conditions(
    book: RuleBook, bus: Mapping[str, Any], base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    # A silent or duplicated node breaks its cycle times; its own finding explains it.
    offline = {
        (n.get("family"), n.get("address"))
        for n in bus.get("nodes") or []
        if n.get("status") in ("offline", "duplicate") or n.get("duplicate_recently")
    }
    if bus.get("state") == "bus_off" or int(_window(bus, "60s").get("bus_off", 0)) > 0:
        return  # a bus-off interrupts every cycle; CAN_BUS_OFF explains it
    for id_key, stats in (bus.get("ids") or {}).items():
        if stats.get("cycle_ok") is not False:
            continue
        if (stats.get("family"), stats.get("node")) in offline:
            continue  # the node-level finding explains it better
        fields = {**base, "id": stats.get("name") or id_key}
        evidence = {
            k: stats.get(k)
            for k in (
                "cycle_ms",
                "mean_period_s",
                "jitter_s",
                "count",
                "last_seen",
                "family",
                "node",
            )
        }
        yield Condition("CAN_CYCLE_VIOLATION", f"{name}/{id_key}", fields, evidence)


def contactor_conditions(
    book: RuleBook, bus: Mapping[str, Any], base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    for c in bus.get("contactors") or []:
        fields = {**base, "contactor": c.get("name", "contactor")}
        subject = f"{name}/{c.get('name')}"
        if c.get("weld"):
            yield Condition("CONTACTOR_WELD", subject, fields, dict(c))
        if float(c.get("mismatch_s") or 0.0) >= book.t("contactor_feedback_s"):
            yield Condition("CONTACTOR_MISMATCH", subject, fields, dict(c))


def cooling_conditions(
    book: RuleBook, bus: Mapping[str, Any], base: Mapping[str, Any]
) -> Iterator[Condition]:
    name = str(base["bus"])
    cooling = bus.get("cooling") or {}
    pump = cooling.get("pump_command")
    flow = cooling.get("flow")
    if (
        pump is not None
        and flow is not None
        and float(pump) >= book.t("pump_min_command")
        and float(flow) < book.t("min_flow_l_min")
    ):
        yield Condition("COOLING_NO_FLOW", f"{name}/cooling", base, dict(cooling))
    temp = cooling.get("coolant_temperature")
    if temp is not None and float(temp) >= book.t("coolant_warning_c"):
        fields = {**base, "temperature": f"{float(temp):.1f} degC"}
        yield Condition("COOLING_OVERTEMP", f"{name}/cooling", fields, dict(cooling))


# -- cross-source plausibility ---------------------------------------------------------------


def plausibility_conditions(
    book: RuleBook,
    buses: Sequence[Mapping[str, Any]],
    modbus: Sequence[Mapping[str, Any]],
) -> Iterator[Condition]:
    modules_a = 0.0
    meters: list[tuple[str, float]] = []
    for bus in buses:
        currents = bus.get("currents") or {}
        if currents.get("modules_output_a") is not None:
            modules_a += float(currents["modules_output_a"])
        if currents.get("meter_a") is not None:
            meters.append((f"{bus.get('name')}/dc_meter", float(currents["meter_a"])))
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


def capture_conditions(book: RuleBook, capture: Mapping[str, Any]) -> list[Condition]:
    """What reading a capture file found: nothing read must never look like nothing wrong.

    ``capture``: ``path, format, format_reason, lines, frames, malformed, first_malformed,
    first_reason, truncated, note`` (see :func:`candiag.analysis._capture_facts`).
    """
    path = str(capture.get("path", "capture"))
    frames = int(capture.get("frames") or 0)
    malformed = int(capture.get("malformed") or 0)
    lines = int(capture.get("lines") or 0)
    share = malformed / max(1, frames + malformed)
    fields = {
        "path": path,
        "format": capture.get("format") or "unknown",
        "frames": frames,
        "lines": lines,
        "malformed": malformed,
        "share": f"{share:.0%}",
        "first_reason": capture.get("first_reason") or "no line was recognized",
        "note": capture.get("note") or "",
    }
    evidence = {
        "frames": frames,
        "lines": lines,
        "malformed_lines": malformed,
        "malformed_share": round(share, 4),
        "format": fields["format"],
        "format_reason": capture.get("format_reason") or "",
        "first_malformed_line": capture.get("first_malformed"),
        "first_reason": capture.get("first_reason") or "",
    }
    if frames == 0:
        return [Condition("CAPTURE_UNREADABLE", path, fields, evidence)]
    if share >= book.t("capture_malformed_critical"):
        return [Condition("CAPTURE_MOSTLY_MALFORMED", path, fields, evidence)]
    incomplete = bool(capture.get("truncated")) or bool(capture.get("note"))
    if incomplete or share >= book.t("capture_malformed_warning"):
        return [Condition("CAPTURE_INCOMPLETE", path, fields, {**evidence, "note": fields["note"]})]
    return []
