"""The causal model: consequences folded under their root cause, causes ranked first.

The links are data (``candiag/data/causes.toml``): a cause code, the effect codes it
explains, how their subjects relate and how their episodes must meet in time.  Folding
is done on the engine's findings whenever they are listed (report, JSON, metrics, live
view), so every output leads with causes and shows consequences as their evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from candiag.config.toml import loads
from candiag.diagnosis.episodes import Episode

if TYPE_CHECKING:
    from candiag.diagnosis.engine import Finding

SUBJECT_RELATIONS = ("same_bus", "same_subject", "node_of_id", "same_address")


@dataclass(frozen=True)
class CausalLink:
    """``cause`` explains ``effects`` (same bus / subject / node of the id) in time."""

    cause: str
    effects: frozenset[str]
    subjects: str
    grace_s: float
    why: str


@cache
def load_causal_model() -> tuple[CausalLink, ...]:
    """The shipped links, in file order (the first matching cause takes an effect)."""
    text = resources.files("candiag.data").joinpath("causes.toml").read_text("utf-8")
    links = []
    for i, raw in enumerate(loads(text).get("link", [])):
        subjects = str(raw["subjects"])
        if subjects not in SUBJECT_RELATIONS:  # a packaging error, caught by the tests
            raise ValueError(f"causes.toml: link {i}: subjects {subjects!r} unknown")
        links.append(
            CausalLink(
                cause=str(raw["cause"]),
                effects=frozenset(str(e) for e in raw["effects"]),
                subjects=subjects,
                grace_s=float(raw.get("grace_s", 0.0)),
                why=str(raw.get("why", "")),
            )
        )
    return tuple(links)


def fold_consequences(findings: list[Finding], links: Sequence[CausalLink]) -> list[Finding]:
    """The top-level findings, ranked; each cause's ``consequences`` set (ranked too)."""
    for f in findings:
        f.consequences = []
        f.consequence_of = None
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        by_code.setdefault(f.code, []).append(f)
    parent: dict[int, Finding] = {}
    for effect in findings:
        cause = _first_cause(effect, by_code, links)
        if cause is not None and not _reaches(cause, effect, parent):
            parent[id(effect)] = cause
    for effect in findings:
        cause = parent.get(id(effect))
        if cause is not None:
            root = cause
            while id(root) in parent:
                root = parent[id(root)]
            link = _link_for(cause, effect, links)
            effect.consequence_of = f"{cause.code} {cause.subject}" + (
                f": {link.why}" if link is not None and link.why else ""
            )
            root.consequences.append(effect)
    for f in findings:
        f.consequences.sort(key=lambda c: (c.start, c.code, c.subject))
    top = [f for f in findings if id(f) not in parent]
    return sorted(top, key=lambda f: f.sort_key())


def _reaches(cause: Finding, effect: Finding, parent: dict[int, Finding]) -> bool:
    """True when ``effect`` already explains ``cause`` (a loop would hide both)."""
    node: Finding | None = cause
    while node is not None:
        if node is effect:
            return True
        node = parent.get(id(node))
    return False


def _first_cause(
    effect: Finding, by_code: dict[str, list[Finding]], links: Sequence[CausalLink]
) -> Finding | None:
    """The cause of ``effect``: only findings of each link's cause code are looked at, so
    thousands of findings (a capture of random ids) cost a pass, not a square."""
    for link in links:
        if effect.code not in link.effects:
            continue
        for cause in by_code.get(link.cause, ()):
            if cause is not effect and _explains(link, cause, effect):
                return cause
    return None


def _link_for(cause: Finding, effect: Finding, links: Sequence[CausalLink]) -> CausalLink | None:
    for link in links:
        if link.cause == cause.code and effect.code in link.effects:
            if _explains(link, cause, effect):
                return link
    return None


def _explains(link: CausalLink, cause: Finding, effect: Finding) -> bool:
    if not _subjects_relate(link.subjects, cause, effect):
        return False
    return bool(_each_follows(_episodes(effect), _episodes(cause), link.grace_s).all())


def _each_follows(
    effects: Sequence[Episode], causes: Sequence[Episode], grace_s: float
) -> npt.NDArray[np.bool_]:
    """Per effect episode: it overlaps a cause episode widened by the grace, and began
    before that cause was over (a node that went silent after the ACK errors had stopped,
    the other nodes acknowledging again, is not silent because of them: an adversarial
    review).

    Both conditions only need a cause that started early enough (before the effect ended,
    plus the grace) and ended late enough; among the causes started early enough, the one
    that ended last is the best, so a running maximum of the ends answers every effect
    with one search: a node that dropped out a thousand times, its offline and
    intermittent findings a thousand episodes each, costs a sort, not a million pairs."""
    c_start, c_end = _bounds(causes)
    e_start, e_end = _bounds(effects)
    if not c_start.size:
        return np.zeros(e_start.size, np.bool_)
    order = np.argsort(c_start, kind="stable")
    # The widened start, computed as the pairwise check computes it (no rounding apart).
    c_early = c_start[order] - grace_s
    latest_end = np.maximum.accumulate(c_end[order])
    started = np.searchsorted(c_early, e_end, side="left")  # c.start - grace < e.end
    best = latest_end[np.maximum(started - 1, 0)]
    return (started > 0) & (e_start < best + grace_s) & (e_start <= best + LATE_START_S)


def _bounds(episodes: Sequence[Episode]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Starts and ends (an open episode ends at infinity)."""
    start = np.array([e.start for e in episodes], np.float64)
    end = np.array([np.inf if e.end is None else e.end for e in episodes], np.float64)
    return start, end


# An effect that starts this long after its cause ended is not its consequence (a frame
# period's tolerance for effects bounded by the frame that ended the cause).
LATE_START_S = 1.0


def _episodes(f: Finding) -> list[Episode]:
    return f.episodes or [Episode(f.since, f.cleared_at)]


def _subjects_relate(relation: str, cause: Finding, effect: Finding) -> bool:
    if relation == "same_subject":
        return cause.subject == effect.subject
    cause_bus = cause.subject.split("/", 1)[0]
    if relation == "same_bus":
        return effect.subject.split("/", 1)[0] == cause_bus
    if relation == "same_address":
        # A polled module's findings (liveness) and its nodes' (replies, requests to it) share
        # the bus and the address, whatever the family; "<bus>/controller" is every module.
        if effect.subject.split("/", 1)[0] != cause_bus:
            return False
        mine, theirs = cause.subject.split("/"), effect.subject.split("/")
        return mine[-1] == "controller" or (len(theirs) == 3 and theirs[-1] == mine[-1])
    # node_of_id: the cause is "<bus>/<family>/<address>", the effect's evidence names
    # the family and node of the id it is about.
    parts = cause.subject.split("/")
    if len(parts) != 3 or effect.subject.split("/", 1)[0] != cause_bus:
        return False
    family, node = effect.evidence.get("family"), effect.evidence.get("node")
    node = 0 if node is None else node
    return family == parts[1] and str(node) == parts[2]
