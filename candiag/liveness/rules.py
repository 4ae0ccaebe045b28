"""The liveness findings: conditions for the diagnosis engine from a bus report's
``liveness`` section (:meth:`candiag.liveness.tracker.LivenessTracker.report`).

Which end is silent decides the cause (docs/liveness.md): requests going on without answers
are the module (its supply, its address setting, the wiring to it); no requests are the
controller (its software, its CAN port), or candiag listening on another segment.  A module
whose answers stopped *before* the controller stopped asking it stays "not answering" (the
controller gave it up: Infy drops a silent module after 15 s and never asks again).
Thresholds are the ``liveness_*`` keys of ``[thresholds]`` in ``candiag/data/diagnosis.toml``
(overridable by a user's ``thresholds_file`` like every other), the texts its appended
``[rules.CAN_MODULE_*]`` tables.  These instant conditions judge a bus without a timeline;
where the bus has one, :mod:`candiag.liveness.intervals` judges the same codes with
episodes exact to the requests and replies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from candiag.diagnosis.engine import Condition, RuleBook
from candiag.health.report import BusReport

CODES = (
    "CAN_MODULE_NOT_ANSWERING",
    "CAN_CONTROLLER_NOT_POLLING",
    "CAN_MODULE_REJECTS_REQUESTS",
    "CAN_MODULE_ADDRESS_CONFLICT",
    "CAN_MODULE_SLOW_REPLIES",
)


@dataclass(frozen=True)
class LivenessThresholds:
    """The ``liveness_*`` keys of ``[thresholds]`` in ``candiag/data/diagnosis.toml`` (the
    one place of their defaults; a user's ``thresholds_file`` overrides them)."""

    unanswered_in_a_row: int
    not_polled_periods: float
    default_poll_period_s: float
    slow_reply_ms: float
    slow_min_answers: int
    conflict_min_share: float

    @classmethod
    def from_book(cls, book: RuleBook) -> LivenessThresholds:
        return cls(
            unanswered_in_a_row=int(book.t("liveness_unanswered_in_a_row")),
            not_polled_periods=book.t("liveness_not_polled_periods"),
            default_poll_period_s=book.t("liveness_default_poll_period_s"),
            slow_reply_ms=book.t("liveness_slow_reply_ms"),
            slow_min_answers=int(book.t("liveness_slow_min_answers")),
            conflict_min_share=book.t("liveness_conflict_min_share"),
        )


def module_subject(bus: str, address: Any) -> str:
    """The same subject as the node tracker's findings about the module's answers."""
    return f"{bus}/power_module/{address}"


def liveness_conditions(
    book: RuleBook, bus: BusReport, base: Mapping[str, Any]
) -> Iterator[Condition]:
    """Conditions from ``bus.liveness`` (nothing when the bus has no exchanges)."""
    section = bus.liveness or {}
    modules = list(section.get("modules") or [])
    if not modules:
        return
    th = LivenessThresholds.from_book(book)
    name = str(base.get("bus", bus.name))
    protocols = section.get("protocols") or {}
    not_polled: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
    for mod in modules:
        proto = protocols.get(mod.get("protocol"), {})
        period_ms = proto.get("poll_period_ms")
        period = period_ms / 1000.0 if period_ms else th.default_poll_period_s
        fields = {
            **base,
            "address": mod.get("address"),
            "protocol": mod.get("protocol"),
            "poll_period": f"{period:g} s" + ("" if period_ms else " (assumed: not declared)"),
        }
        subject = module_subject(name, mod.get("address"))
        run = int(mod.get("unanswered_run") or 0)
        age = mod.get("last_request_age_s")
        limit = th.not_polled_periods * period
        since = mod.get("unanswered_since")
        reply_age = mod.get("last_reply_age_s")
        now = section.get("now")
        answers_go_on = (
            since is not None
            and reply_age is not None
            and now is not None
            and float(now) - float(reply_age) > float(since)
        )
        if run >= th.unanswered_in_a_row and answers_go_on:
            # Answers keep coming, but after the controller asked again: too late to count.
            yield Condition(
                "CAN_MODULE_SLOW_REPLIES",
                subject,
                {
                    **fields,
                    "median_ms": "more than one poll period",
                    "limit_ms": f"{th.slow_reply_ms:g}",
                },
                {"unanswered_in_a_row": run, "last_reply_age_s": reply_age},
            )
        elif run >= th.unanswered_in_a_row:
            given_up = age is not None and age > limit
            evidence = {
                "unanswered_in_a_row": run,
                "since": mod.get("unanswered_since"),
                "requests": mod.get("requests"),
                "answered": mod.get("answered"),
                "last_reply_age_s": mod.get("last_reply_age_s"),
                "controller_gave_up": given_up,
            }
            fields["asked"] = (
                "the controller asked until it gave the module up"
                if given_up
                else "the controller keeps asking"
            )
            fields["run"] = run
            yield Condition("CAN_MODULE_NOT_ANSWERING", subject, fields, evidence)
        elif age is not None and age > limit:
            evidence = {
                "last_request_age_s": age,
                "limit_s": limit,
                "requests": mod.get("requests"),
            }
            which = {"silent_s": f"{age:.1f}", "which": f"module {mod.get('address')}"}
            not_polled.append((mod, {**fields, **which, "evidence": evidence}))
        yield from _recent_conditions(th, subject, fields, mod)
    yield from _not_polled(name, base, modules, not_polled, th)


def _not_polled(
    bus: str,
    base: Mapping[str, Any],
    modules: list[Mapping[str, Any]],
    not_polled: list[tuple[Mapping[str, Any], dict[str, Any]]],
    th: LivenessThresholds,
) -> Iterator[Condition]:
    if not not_polled:
        return
    asked_before = [m for m in modules if m.get("requests")]
    if len(not_polled) == len(asked_before) and len(asked_before) > 1:
        addresses = ", ".join(str(m.get("address")) for m, _ in not_polled)
        fields = {**base, "which": f"any module (modules {addresses})", "address": "all"}
        ages = [float(f["evidence"]["last_request_age_s"]) for _, f in not_polled]
        fields["silent_s"] = f"{min(ages):.1f}"
        evidence = {"modules": [m.get("address") for m, _ in not_polled], "silent_s": min(ages)}
        yield Condition("CAN_CONTROLLER_NOT_POLLING", f"{bus}/controller", fields, evidence)
        return
    for mod, fields in not_polled:
        evidence = fields.pop("evidence")
        yield Condition(
            "CAN_CONTROLLER_NOT_POLLING", module_subject(bus, mod.get("address")), fields, evidence
        )


def _recent_conditions(
    th: LivenessThresholds, subject: str, fields: Mapping[str, Any], mod: Mapping[str, Any]
) -> Iterator[Condition]:
    recent = mod.get("recent") or {}
    errors = recent.get("errors") or {}
    if errors:
        words = ", ".join(
            f"{int(code):#x} {e.get('meaning', 'unknown code')} ({e.get('count')}x)"
            for code, e in errors.items()
        )
        yield Condition(
            "CAN_MODULE_REJECTS_REQUESTS",
            subject,
            {**fields, "codes": words},
            {"errors": errors, "window_s": recent.get("window_s")},
        )
    serials = recent.get("serials") or []
    second = int(recent.get("second_answers") or 0)
    answered = int(recent.get("answered") or 0)
    # A few extra answers happen when late answers bunch up; a twin answers most requests.
    if second < max(2.0, th.conflict_min_share * answered):
        second = 0
    bit = bool(recent.get("duplicate_address_bit"))
    if second or bit or len(serials) > 1:
        how = []
        if second:
            how.append(f"{second} second answers to one request")
        if len(serials) > 1:
            how.append(f"{len(serials)} serial numbers under one address")
        if bit:
            how.append("the module's duplicate-address bit is set")
        yield Condition(
            "CAN_MODULE_ADDRESS_CONFLICT",
            subject,
            {**fields, "how": "; ".join(how)},
            {"second_answers": second, "serials": serials, "duplicate_address_bit": bit},
        )
    median = recent.get("latency_median_ms")
    if (
        median is not None
        and int(recent.get("answered") or 0) >= th.slow_min_answers
        and float(median) > th.slow_reply_ms
    ):
        yield Condition(
            "CAN_MODULE_SLOW_REPLIES",
            subject,
            {**fields, "median_ms": f"{float(median):.0f}", "limit_ms": f"{th.slow_reply_ms:g}"},
            {"latency_median_ms": median, "answered": recent.get("answered")},
        )
