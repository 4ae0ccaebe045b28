"""Where the protocol packs live and what their database attributes say.

The packs (``candiag/data/packs/*.dbc``, docs/protocols.md) declare each protocol's
controller address, poll period and timeouts in ``Candiag*`` database attributes; the
simulators read those from here rather than repeating the numbers in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cantools

from candiag.decode.dbc import packs_dir
from candiag.errors import DbcError

#: Pack file of every protocol the simulator plays (``--protocol NAME``).
PACK_FILES = {
    "infy": "infy_v113.dbc",
    "beg1k075g": "infy_beg1k075g.dbc",
    "uugreen": "uugreen_ur1000x0.dbc",
    "winline": "winline_v150.dbc",
    "dpm1000": "dpm1000.dbc",
    "huawei": "huawei_r100040gx.dbc",
    "sinexcel": "sinexcel.dbc",
}


def pack_path(protocol: str) -> Path:
    path = packs_dir() / PACK_FILES[protocol]
    if not path.is_file():
        raise DbcError(f"{path}: protocol pack missing; reinstall candiag")
    return path


@dataclass(frozen=True)
class PackInfo:
    """The database-level ``Candiag*`` attributes of one pack (0 or -1: not known)."""

    protocol: str
    controller_address: int
    poll_period_ms: int
    module_timeout_ms: int
    controller_timeout_ms: int
    reply_timeout_ms: int
    bitrate: int
    db: Any

    def message(self, name: str) -> Any:
        return self.db.get_message_by_name(name)


@cache
def pack_info(protocol: str) -> PackInfo:
    """The pack of ``protocol`` loaded (strictly) and its database attributes."""
    db: Any = cantools.database.load_file(str(pack_path(protocol)), strict=True)
    attrs = db.dbc.attributes if db.dbc else {}
    defaults = {k: d.default_value for k, d in db.dbc.attribute_definitions.items()}

    def value(name: str) -> Any:
        return attrs[name].value if name in attrs else defaults.get(name)

    return PackInfo(
        protocol=str(value("CandiagProtocol")),
        controller_address=int(value("CandiagControllerAddress")),
        poll_period_ms=int(value("CandiagPollPeriodMs")),
        module_timeout_ms=int(value("CandiagModuleTimeoutMs")),
        controller_timeout_ms=int(value("CandiagControllerTimeoutMs")),
        reply_timeout_ms=int(value("CandiagReplyTimeoutMs")),
        bitrate=int(value("CandiagBitrate")),
        db=db,
    )
