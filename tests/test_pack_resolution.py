"""The decoder resolves protocol-pack frames of any address (docs/protocols.md, "Resolving an
identifier"): one message per frame with its node, peer, group, serial, direction and error,
checked frame by frame against the spec's reference resolver (tests/pack_resolver.py) on
simulated captures of every pack, healthy and with rejected and duplicated answers."""

from __future__ import annotations

import numpy as np
import pytest

from candiag.decode.dbc import load_dbc_paths
from candiag.decode.decoder import DIRECTION_NAMES, BatchDecoder
from candiag.ingest.frames import FLAG_EXTENDED, FrameBatch
from candiag.sim.faults import parse_fault
from candiag.sim.protocols import PROTOCOL_NAMES
from candiag.sim.protocols.engine import ProtocolSimConfig, ProtocolSimulator
from candiag.sim.protocols.packs import pack_path
from tests.pack_resolver import PackResolver

CASES = [
    (protocol, fault)
    for protocol in PROTOCOL_NAMES
    for fault in ("", "rejected_requests@3+4", "duplicate_address@3+4")
    if not (protocol == "uugreen" and fault.startswith("rejected"))  # UUGreen cannot reject
]


def _simulate(protocol: str, fault: str) -> FrameBatch:
    faults = (parse_fault(fault),) if fault else ()
    sim = ProtocolSimulator(ProtocolSimConfig(protocol, faults=faults))
    return FrameBatch.concat(list(sim.chunks(8.0)))


@pytest.mark.parametrize(("protocol", "fault"), CASES)
def test_decoder_resolves_like_the_spec(protocol: str, fault: str) -> None:
    batch = _simulate(protocol, fault)
    result = BatchDecoder(load_dbc_paths([pack_path(protocol)])).decode(batch)
    reference = PackResolver(pack_path(protocol))
    assert not result.unknown_ids and result.decoded_frames == len(batch)
    errors = set()
    for name, decoded in result.messages.items():
        ex = decoded.exchange
        assert ex is not None
        for k, i in enumerate(decoded.index.tolist()):
            can_id = int(batch.can_id[i])
            payload = bytes(batch.data[i, : batch.dlc[i]])
            ref = reference.resolve(can_id, payload, bool(batch.flags[i] & FLAG_EXTENDED))
            assert ref is not None and ref.message.name == name, (hex(can_id), name)
            got = (
                int(decoded.node[k]),
                int(ex.peer[k]) if ref.peer != -1 else -1,  # no peer field: the pack's controller
                int(ex.group[k]),
                int(ex.serial[k]),
                DIRECTION_NAMES[int(ex.direction[k])],
            )
            assert got == (ref.node, ref.peer, ref.group, ref.serial, ref.direction), hex(can_id)
            if ref.error:
                assert int(ex.error[k]) == ref.error
        errors |= set(np.unique(ex.error).tolist())
    if fault.startswith("rejected"):
        invalid_command = 2 if protocol in ("infy", "beg1k075g", "huawei") else 0xF2
        assert invalid_command in errors
    else:
        assert errors == {0}


def test_another_controller_address_is_matched_after_substitution() -> None:
    # Infy request to module 3 from a controller at 0xF1 instead of the pack's 0xF0.
    db = load_dbc_paths([pack_path("infy")])
    ids = np.array([0x028303F1, 0x0283F103], np.uint32)
    ext = np.ones(2, np.bool_)
    message, _ = db.match(ids, ext)
    assert (message < 0).all()
    moved = db.with_controller_address(0xF1)
    message, node = moved.match(ids, ext)
    names = [moved.messages[i].name for i in message.tolist()]
    assert names == ["Infy_ReadVI_Request", "Infy_ReadVI_Reply"]
    assert node.tolist() == [3, 3]
    assert moved.field_of("peer_mask", message, ids).tolist() == [0xF1, 0xF1]
