"""Request/response liveness of polled power modules (docs/liveness.md).

Real power modules answer only when their controller asks (docs/protocols.md).  This package
owns what candiag concludes from the protocol packs' requests and replies:

* :mod:`~candiag.liveness.pairing`: each request paired with its reply, vectorized over a
  batch (by reply message, module address and command/register; docs/protocols.md rule 5);
* :mod:`~candiag.liveness.tracker`: per module, requests seen, replies seen, reply latency
  (median, p99), unanswered requests, error replies by code and meaning, second answers to
  one request, serial numbers and duplicate-address bits, streaming over batches;
* :mod:`~candiag.liveness.exchanges`: what the tracker records per module for the
  interval rules (every judged request with its latency, late and error replies, serial
  changes, duplicate-address bits; offline all of it, live the last hour);
* :mod:`~candiag.liveness.intervals`: the findings (module not answering, controller not
  polling, rejected requests, address conflict, slow replies) as interval rules over the
  bus timeline, episodes exact to the requests and replies;
* :mod:`~candiag.liveness.rules`: the same findings as instant conditions (a bus without a
  timeline) and their thresholds, the ``liveness_*`` keys of ``[thresholds]`` in
  ``candiag/data/diagnosis.toml`` (overridable), texts in its liveness section.
"""

from candiag.liveness.tracker import LivenessTracker, ModuleLiveness

__all__ = ["LivenessTracker", "ModuleLiveness"]
