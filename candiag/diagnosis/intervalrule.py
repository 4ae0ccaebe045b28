"""What an interval rule is: a pure function from a bus's timeline to findings with episodes.

Kept apart from :mod:`candiag.diagnosis.intervals` (the registry of every interval rule)
so that each group of rules lives in its own module and imports only this and the
timeline, without an import cycle through the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from candiag.diagnosis.episodes import Episode

if TYPE_CHECKING:
    from candiag.diagnosis.engine import RuleBook
    from candiag.diagnosis.timeline import BusTimeline


@dataclass(frozen=True)
class IntervalFinding:
    """One (code, subject) with its episodes, and the fields its texts are filled with."""

    code: str
    subject: str
    episodes: tuple[Episode, ...]
    fields: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    # How long after an episode's start the evidence proves it (its raise threshold).
    proof_s: float = 0.0


@dataclass(frozen=True)
class IntervalRule:
    """A group of codes and the function that finds them on one bus's timeline.

    For its ``codes`` the timeline is the whole truth: the instant rules' conditions of
    those codes are ignored on a bus that has a timeline (the engine's
    :meth:`~candiag.diagnosis.engine.DiagnosisEngine.apply_timelines`).
    """

    codes: frozenset[str]
    find: Callable[[RuleBook, BusTimeline], list[IntervalFinding]]
