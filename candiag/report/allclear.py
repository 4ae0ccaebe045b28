"""What "no findings" means for one report, in the one wording every output uses (the
HTML report and ``analyze``'s text summary), apart from the HTML so that the summary does
not import it."""

from __future__ import annotations

from typing import Any

from candiag.report import access


def all_clear_text(report: Any) -> str:
    """What "no findings" means for this report: only statements that are true of it.

    The one wording: ``analyze``'s text summary prints it too."""
    said = []
    if access.error_frame_count(report) == 0:
        said.append("zero error frames")
    nodes = access.nodes(report)
    if nodes and all(access.field(n, "status") == "online" for n in nodes):
        said.append(f"all {len(nodes)} nodes present")
    elif not nodes:
        said.append("no node known to the DBCs, so node liveness was not judged")
    if nodes and not access.firmware_mismatches(report):
        said.append("firmware consistent")
    head = f"No findings in {access.frames_total(report):,} frames"
    return f"{head}: {', '.join(said)}." if said else f"{head}."
