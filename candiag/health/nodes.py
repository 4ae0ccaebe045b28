"""Node presence, duplicate addresses, alarm bits and firmware inventory.

A *node* is one transmitting unit: ``(family, address)``, e.g. power module 3.
Families and addresses come from the DBC (``CandiagNodeFamily`` and the
``CandiagNodeMask`` address bits) and, optionally, from the config (expected
addresses, timeouts, allowed firmware).  Nodes seen in traffic are learned,
so a module that vanishes is reported even without a config.

Status of a node at a given time:

* ``offline``: silent for longer than its timeout (default: 3 x the shortest
  cycle time of its family's messages, at least 1 s), or expected but never seen;
* ``duplicate``: two senders share the address: its periodic messages arrive
  at (about) a multiple of their cycle time, or its own duplicate-address
  alarm bit (role ``alarm:duplicate_address``) is set;
* ``intermittent``: online now, but it dropped out (a gap longer than its
  timeout) within the last 10 minutes;
* ``online`` otherwise.

Work per batch is a few array operations over the batch sorted by (family, node,
time), never per frame; Python then touches each node once.

Why one file of ~610 lines: presence, gaps, duplicates and firmware of nodes come from
one sort of each batch by (family, node, time).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from candiag.health.arrays import run_bounds
from candiag.health.jsontypes import JsonObject

if TYPE_CHECKING:
    from candiag.decode.dbc import ChargerDatabase
    from candiag.decode.dbc_model import MessageDef
    from candiag.decode.decoder import DecodedMessage, DecodeResult

NODE_STATUSES = ("online", "offline", "intermittent", "duplicate")

# A message whose rate is at least this multiple of its nominal rate is sent twice.
DUPLICATE_RATE_FACTOR = 1.7
# Floor of the default node timeout: a host busy for a few hundred milliseconds (a loaded
# controller, a laptop) must not turn every 100 ms node "offline".
MIN_DEFAULT_TIMEOUT_S = 1.0
# Cycle-time verdicts look back a minute or two: a node that was duplicated is remembered
# as such this long, so its doubled periods are not reported as a separate fault.
DUPLICATE_MEMORY_S = 180.0
# A node that dropped out and came back stays "intermittent" this long after its return.
INTERMITTENT_MEMORY_S = 600.0
# The rate is judged over the last arrivals only, so a duplicate that goes away clears.
RATE_TAIL = 32
# Arrivals needed before a rate is trusted for duplicate detection.
MIN_FRAMES_FOR_RATE = 8
# Gaps remembered per node (exact bounds for the diagnosis's episodes); a node that flaps
# for months keeps its newest ones.
MAX_GAPS = 1000
# Duplicate stretches and firmware changes remembered per node (the newest ones).
MAX_DUPLICATES = 1000
MAX_FIRMWARE_CHANGES = 256


@dataclass
class FamilyPolicy:
    """What is expected of one node family (from the config, else defaults)."""

    name: str
    expected: frozenset[int] = frozenset()
    timeout_s: float | None = None
    allowed_firmware: frozenset[str] = frozenset()


@dataclass
class _MessageTrack:
    """Arrival bookkeeping of one message from one node."""

    cycle_s: float | None
    count: int = 0
    tail: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))


@dataclass
class NodeState:
    """Everything known about one node."""

    family: str
    address: int
    first_seen: float | None = None
    last_seen: float | None = None
    frames: int = 0
    dropouts: int = 0
    last_dropout_end: float | None = None  # when the node came back after its last dropout
    longest_gap_s: float = 0.0
    firmware: str | None = None
    firmware_key: Any = None  # the raw values ``firmware`` was rendered from
    alarms: dict[str, bool] = field(default_factory=dict)
    duplicate_alarm: bool = False
    duplicate_seen_at: float | None = None  # last view that judged it duplicate
    rate_ratio: float | None = None
    messages: dict[str, _MessageTrack] = field(default_factory=dict)
    # Every silence longer than the node's timeout: (last frame before, first frame after).
    gaps: list[tuple[float, float]] = field(default_factory=list)
    # -- interval evidence of the nodes group (candiag/diagnosis/noderules.py) --
    # Stretches two senders shared the address, judged at every arrival of the rate
    # message: (start, end, peak rate ratio); ``duplicate_open`` the one still going on.
    duplicates: list[tuple[float, float, float]] = field(default_factory=list)
    duplicate_open: tuple[float, float] | None = None  # (start, peak ratio so far)
    last_short: float | None = None  # last arrival ending an interval < cycle / factor
    # Stretches its duplicate-address alarm bit was set (exact to the frames).
    alarm_duplicates: list[tuple[float, float]] = field(default_factory=list)
    alarm_open: float | None = None
    # Per firmware message, every change of the version it reports: (first frame with it,
    # version text), oldest first; and the raw values of the latest change.
    firmware_changes: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    firmware_change_keys: dict[str, Any] = field(default_factory=dict)

    def active_alarms(self) -> list[str]:
        return sorted(name for name, on in self.alarms.items() if on)


@dataclass(frozen=True)
class NodeView:
    """A node's status at one instant, ready for JSON, metrics and diagnosis."""

    family: str
    address: int
    status: str
    online: bool
    last_seen: float | None
    silent_s: float | None
    timeout_s: float
    frames: int
    dropouts: int
    last_dropout_end: float | None
    firmware: str | None
    alarms: tuple[str, ...]
    rate_ratio: float | None
    expected: bool
    duplicate_recently: bool = False

    def to_json(self) -> JsonObject:
        return {
            "family": self.family,
            "address": self.address,
            "status": self.status,
            "online": self.online,
            "last_seen": self.last_seen,
            "silent_s": None if self.silent_s is None else round(self.silent_s, 3),
            "timeout_s": self.timeout_s,
            "frames": self.frames,
            "dropouts": self.dropouts,
            "last_dropout_end": self.last_dropout_end,
            "firmware": self.firmware,
            "alarms": list(self.alarms),
            "rate_ratio": None if self.rate_ratio is None else round(self.rate_ratio, 3),
            "expected": self.expected,
            "duplicate_recently": self.duplicate_recently,
        }


@dataclass(frozen=True)
class FirmwareMismatch:
    """Modules of one family disagree, or run a version not in the allowed list."""

    family: str
    majority: str | None
    by_version: dict[str, list[int]]
    not_allowed: dict[int, str]

    def to_json(self) -> JsonObject:
        return {
            "family": self.family,
            "majority": self.majority,
            "by_version": {v: sorted(a) for v, a in self.by_version.items()},
            "not_allowed": {str(a): v for a, v in sorted(self.not_allowed.items())},
        }


def firmware_string(msg: DecodedMessage, row: int) -> str | None:
    """Render the firmware-role signals of one decoded frame as ``Name=value ...``."""
    parts = []
    for sig in sorted((s for s in msg.message.signals if s.role == "firmware"), key=_start_bit):
        present = msg.present.get(sig.name)
        if present is not None and not bool(present[row]):
            continue
        value = msg.signals[sig.name][row]
        parts.append(f"{sig.name}={_fmt(value)}")
    return " ".join(parts) or None


def _start_bit(sig: Any) -> int:
    return int(getattr(sig, "start", 0))


def _fmt(value: Any) -> str:
    v = value.item() if hasattr(value, "item") else value
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class NodeTracker:
    """Tracks the nodes of one bus from successive decode results."""

    def __init__(
        self,
        db: ChargerDatabase,
        policies: Iterable[FamilyPolicy] = (),
        timeout_factor: float = 3.0,
    ) -> None:
        self._db = db
        self._policies = {p.name: p for p in policies}
        self._default_timeout = self._family_timeouts(db, timeout_factor)
        self._role_messages = {
            m.name
            for m in db.messages
            if any(
                s.role and (s.role == "firmware" or s.role.startswith("alarm:")) for s in m.signals
            )
        }
        self._multiplexed = {m.name for m in db.messages if m.is_multiplexed}
        self._firmware_messages = {
            m.name for m in db.messages if any(s.role == "firmware" for s in m.signals)
        }
        # Messages whose last frames had an alarm bit set (their clearing must be recorded).
        self._alarming: dict[str, bool] = {}
        self._alarm_signals = {
            m.name: [
                (s.name, s.role.removeprefix("alarm:"))
                for s in m.signals
                if s.role and s.role.startswith("alarm:")
            ]
            for m in db.messages
        }
        self._rate_defs = {
            family: min(
                (m for m in messages if m.cycle_time_ms),
                key=lambda m: m.cycle_time_ms or 0,
            )
            for family, messages in db.families.items()
            if any(m.cycle_time_ms for m in messages)
        }
        self._family_codes: dict[str, int] = {}
        self._family_names: list[str] = []
        self.nodes: dict[tuple[str, int], NodeState] = {}
        for policy in self._policies.values():
            for address in policy.expected:
                self.nodes.setdefault((policy.name, address), NodeState(policy.name, address))

    @staticmethod
    def _family_timeouts(db: ChargerDatabase, factor: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for family, messages in db.families.items():
            # A polled module answers once per poll: the poll period is its cycle, so a
            # module is offline after 3 unanswered polls, after the liveness rules said
            # "not answering" (2 in a row), and a slow answer is no dropout.
            cycles = [c for c in map(_cycle_or_poll_ms, messages) if c]
            if cycles:
                out[family] = max(MIN_DEFAULT_TIMEOUT_S, factor * min(cycles) / 1000.0)
        return out

    def is_expected(self, family: str, address: int) -> bool:
        """True when the config lists this node (so never seeing it is a fault)."""
        policy = self._policies.get(family)
        return policy is not None and address in policy.expected

    def allowed_firmware(self, family: str) -> frozenset[str]:
        """The firmware versions the config allows for ``family`` (empty: any)."""
        policy = self._policies.get(family)
        return policy.allowed_firmware if policy is not None else frozenset()

    def timeout_for(self, family: str) -> float:
        policy = self._policies.get(family)
        if policy is not None and policy.timeout_s is not None:
            return policy.timeout_s
        return self._default_timeout.get(family, 1.0)

    # -- ingest ------------------------------------------------------------------
    def update(self, result: DecodeResult) -> None:
        groups: list[DecodedMessage] = []
        for decoded in result.messages.values():
            family = decoded.message.family
            if family is None or len(decoded.index) == 0:
                continue
            decoded = _without_broadcasts(decoded)  # liveness: a broadcast names no node
            if len(decoded.index) == 0:
                continue
            groups.append(decoded)
            if decoded.message.name in self._role_messages:
                self._note_roles(family, decoded)
        if groups:
            self._ingest(groups)

    def _family_code(self, family: str) -> int:
        code = self._family_codes.get(family)
        if code is None:
            code = self._family_codes[family] = len(self._family_names)
            self._family_names.append(family)
        return code

    def _ingest(self, messages: list[DecodedMessage]) -> None:
        """Presence and arrival rates of every node in this batch, in one sort.

        Gaps are judged on each node's merged traffic: a 1 s message between 100 ms
        ones is not a dropout.  The arrival rate (for duplicate detection) is tracked
        on the family's shortest-cycle message, which a second sender doubles too.
        All nodes are handled with array operations over the batch sorted by
        (family, address, time); Python touches each node once, not each frame.
        """
        ts = np.concatenate([m.timestamp for m in messages])
        keys = np.concatenate(
            [_addresses(m) + (self._family_code(m.message.family or "") << 32) for m in messages]
        )
        rate = np.concatenate(
            [
                np.full(
                    len(m.timestamp),
                    self._is_rate_message(m.message),
                )
                for m in messages
            ]
        )
        order = np.lexsort((ts, keys))
        ts, keys, rate = ts[order], keys[order], rate[order]
        starts, ends = run_bounds(keys)
        nodes = [
            self._node(self._family_names[k >> 32], k & 0xFFFFFFFF) for k in keys[starts].tolist()
        ]
        presence = _presence(
            ts,
            starts,
            ends,
            np.array([-np.inf if n.last_seen is None else n.last_seen for n in nodes]),
            np.array([self.timeout_for(n.family) for n in nodes]),
        )
        late_counts, last_lates, longests, any_gaps, gap_rows, gap_from = presence
        self._keep_gaps(nodes, _group_of(gap_rows, starts), ts[gap_rows], gap_from)
        for node, start, end, late, last_late, longest, any_gap in zip(
            nodes,
            starts.tolist(),
            ends.tolist(),
            late_counts,
            last_lates,
            longests,
            any_gaps,
            strict=True,
        ):
            if any_gap:
                if late:
                    node.dropouts += late
                    node.last_dropout_end = float(ts[last_late])
                node.longest_gap_s = max(node.longest_gap_s, longest)
            if node.first_seen is None:
                node.first_seen = float(ts[start])
            newest = float(ts[end - 1])
            node.last_seen = newest if node.last_seen is None else max(newest, node.last_seen)
            node.frames += end - start
        if rate.any():
            self._note_rates(nodes, keys, ts, rate)

    @staticmethod
    def _keep_gaps(
        nodes: list[NodeState],
        groups: list[int],
        ends: npt.NDArray[np.float64],
        starts: Sequence[float],
    ) -> None:
        """Each node's gaps of the batch (rows by node, then time), appended a node at a
        time: a sparse capture makes every frame a gap, and a Python step per gap was the
        largest cost of 100 h of the benchmark capture."""
        if not groups:
            return
        cut = (np.flatnonzero(np.diff(np.asarray(groups))) + 1).tolist()
        end_list = ends.tolist()
        for lo, hi in zip([0, *cut], [*cut, len(groups)], strict=True):
            node = nodes[groups[lo]]
            node.gaps.extend(zip(starts[lo:hi], end_list[lo:hi], strict=True))
            if len(node.gaps) > MAX_GAPS:
                del node.gaps[: len(node.gaps) - MAX_GAPS]

    def _is_rate_message(self, message: Any) -> bool:
        rate = self._rate_defs.get(message.family or "")
        return rate is not None and rate.name == message.name

    def _note_rates(
        self,
        nodes: list[NodeState],
        keys: npt.NDArray[np.int64],
        ts: npt.NDArray[np.float64],
        rate: npt.NDArray[np.bool_],
    ) -> None:
        """Append each node's rate-message arrivals (sorted by node, then time) to its tail."""
        rows = np.flatnonzero(rate)
        r_keys, r_ts = keys[rows], ts[rows]
        starts, ends = run_bounds(r_keys)
        by_key = {(n.family, n.address): n for n in nodes}
        for k, start, end in zip(
            r_keys[starts].tolist(), starts.tolist(), ends.tolist(), strict=True
        ):
            node = by_key[(self._family_names[k >> 32], k & 0xFFFFFFFF)]
            message = self._rate_defs[node.family]
            track = node.messages.get(message.name)
            if track is None:
                cycle = message.cycle_time_ms / 1000.0 if message.cycle_time_ms else None
                track = node.messages[message.name] = _MessageTrack(cycle)
            track.count += end - start
            if track.cycle_s:
                _note_duplicate_rates(node, track.tail, r_ts[start:end], track.cycle_s)
            track.tail = np.concatenate((track.tail, r_ts[max(start, end - RATE_TAIL) : end]))[
                -RATE_TAIL:
            ]

    def _node(self, family: str, address: int) -> NodeState:
        node = self.nodes.get((family, address))
        if node is None:
            node = self.nodes[(family, address)] = NodeState(family, address)
        return node

    def _note_roles(self, family: str, decoded: DecodedMessage) -> None:
        """Alarm bits and firmware from each node's latest frame of this message."""
        name = decoded.message.name
        alarms = self._alarm_signals[name]
        has_firmware = name in self._firmware_messages
        multiplexed = name in self._multiplexed
        if (
            not multiplexed
            and not has_firmware
            and not self._alarming.get(name)
            and not (alarms and np.stack([decoded.signals[sig] for sig, _ in alarms]).any())
        ):
            return  # all clear, as before: nothing to record (the usual case)
        addresses = _addresses(decoded)
        order = np.lexsort((decoded.timestamp, addresses))
        addr = addresses[order]
        last_rows = order[run_bounds(addr)[1] - 1]
        if multiplexed:
            for row in last_rows.tolist():
                self._note_signals(self._node(family, int(addresses[row])), decoded, row)
            return
        self._note_changes(family, decoded, order, addr)
        bits = (
            np.column_stack([decoded.signals[sig][last_rows] != 0 for sig, _ in alarms])
            if alarms
            else None
        )
        if bits is not None and not bits.any() and not has_firmware:
            self._alarming[name] = False
        elif bits is not None:
            self._alarming[name] = True
        versions = self._firmware_keys(decoded, last_rows) if has_firmware else None
        for i, row in enumerate(last_rows.tolist()):
            node = self._node(family, int(addresses[row]))
            if bits is not None:
                node.alarms.update(zip((a for _, a in alarms), bits[i].tolist(), strict=True))
                node.duplicate_alarm = bool(node.alarms.get("duplicate_address", False))
            if versions is not None and versions[i] != node.firmware_key:
                # Rendering the version text is the costly part: only when it changed.
                node.firmware_key = versions[i]
                version = firmware_string(decoded, row)
                if version is not None:
                    node.firmware = version

    def _note_changes(
        self,
        family: str,
        decoded: DecodedMessage,
        order: npt.NDArray[np.intp],
        addr: npt.NDArray[np.int64],
    ) -> None:
        """Exact edges of the duplicate-address alarm and of the firmware, frame by frame.

        ``order`` sorts the frames by (address, time), ``addr`` is the sorted addresses.
        Only the rows where a value changes (a few per batch) reach Python.
        """
        name = decoded.message.name
        dup_alarm = [
            sig for sig, alarm in self._alarm_signals[name] if alarm == "duplicate_address"
        ]
        fw_signals = [s for s in decoded.message.signals if s.role == "firmware"]
        if not dup_alarm and not fw_signals:
            return
        ts = decoded.timestamp[order]
        starts = run_bounds(addr)[0]
        first_row = np.zeros(addr.size, np.bool_)
        first_row[starts] = True
        if dup_alarm:
            bits = decoded.signals[dup_alarm[0]][order] != 0
            edges = first_row.copy()
            edges[1:] |= bits[1:] != bits[:-1]
            for row in np.flatnonzero(edges).tolist():
                node = self._node(family, int(addr[row]))
                _alarm_edge(node, bool(bits[row]), float(ts[row]))
        if fw_signals:
            columns = [np.asarray(decoded.signals[s.name])[order] for s in fw_signals]
            columns += [
                np.asarray(decoded.present[s.name])[order]
                for s in fw_signals
                if s.name in decoded.present
            ]
            edges = first_row.copy()
            for column in columns:
                edges[1:] |= column[1:] != column[:-1]
            rows = np.flatnonzero(edges)
            keys = list(zip(*(c[rows].tolist() for c in columns), strict=True))
            for row, key in zip(rows.tolist(), keys, strict=True):
                node = self._node(family, int(addr[row]))
                if key == node.firmware_change_keys.get(name):
                    continue
                node.firmware_change_keys[name] = key
                version = firmware_string(decoded, int(order[row]))
                if version is not None:
                    _firmware_edge(node, name, version, float(ts[row]))

    @staticmethod
    def _firmware_keys(decoded: DecodedMessage, rows: npt.NDArray[np.intp]) -> list[Any]:
        """Per row, the raw firmware-role values (and presence): equal keys, equal text."""
        columns = [
            decoded.signals[s.name][rows] for s in decoded.message.signals if s.role == "firmware"
        ]
        columns += [
            decoded.present[s.name][rows]
            for s in decoded.message.signals
            if s.role == "firmware" and s.name in decoded.present
        ]
        return list(zip(*(c.tolist() for c in columns), strict=True))

    def _note_signals(self, node: NodeState, decoded: DecodedMessage, row: int) -> None:
        for sig in decoded.message.signals:
            role = sig.role
            if role is None:
                continue
            present = decoded.present.get(sig.name)
            if present is not None and not bool(present[row]):
                continue
            if role.startswith("alarm:"):
                on = bool(decoded.signals[sig.name][row])
                node.alarms[role.removeprefix("alarm:")] = on
                if role == "alarm:duplicate_address":
                    node.duplicate_alarm = on
                    _alarm_edge(node, on, float(decoded.timestamp[row]))
        if any(s.role == "firmware" for s in decoded.message.signals):
            version = firmware_string(decoded, row)
            if version is not None:
                node.firmware = version
                _firmware_edge(node, decoded.message.name, version, float(decoded.timestamp[row]))

    # -- views ----------------------------------------------------------------------
    def view(self, now: float) -> list[NodeView]:
        """Status of every known node at time ``now`` (capture end, or wall clock live)."""
        return [self._view_one(node, now) for _, node in sorted(self.nodes.items())]

    def _view_one(self, node: NodeState, now: float) -> NodeView:
        timeout = self.timeout_for(node.family)
        policy = self._policies.get(node.family)
        expected = policy is not None and node.address in policy.expected
        silent = None if node.last_seen is None else max(0.0, now - node.last_seen)
        online = silent is not None and silent <= timeout
        ratio = _rate_ratio(node)
        node.rate_ratio = ratio
        if not online:
            status = "offline"
        elif node.duplicate_alarm or (ratio is not None and ratio >= DUPLICATE_RATE_FACTOR):
            status = "duplicate"
            node.duplicate_seen_at = now
        elif (
            node.last_dropout_end is not None
            and now - node.last_dropout_end <= INTERMITTENT_MEMORY_S
        ):
            status = "intermittent"
        else:
            status = "online"
        return NodeView(
            family=node.family,
            address=node.address,
            status=status,
            online=online,
            last_seen=node.last_seen,
            silent_s=silent,
            timeout_s=timeout,
            frames=node.frames,
            dropouts=node.dropouts,
            last_dropout_end=node.last_dropout_end,
            firmware=node.firmware,
            alarms=tuple(node.active_alarms()),
            rate_ratio=ratio,
            expected=expected,
            duplicate_recently=node.duplicate_seen_at is not None
            and now - node.duplicate_seen_at <= DUPLICATE_MEMORY_S,
        )

    def firmware_mismatches(self) -> list[FirmwareMismatch]:
        """Families whose nodes disagree on firmware, or run versions not allowed."""
        by_family: dict[str, dict[str, list[int]]] = {}
        for node in self.nodes.values():
            if node.firmware is not None:
                by_family.setdefault(node.family, {}).setdefault(node.firmware, []).append(
                    node.address
                )
        out = []
        for family, versions in sorted(by_family.items()):
            allowed = self._policies.get(family, FamilyPolicy(family)).allowed_firmware
            not_allowed = {
                a: v for v, addrs in versions.items() for a in addrs if allowed and v not in allowed
            }
            if len(versions) > 1 or not_allowed:
                out.append(FirmwareMismatch(family, _majority(versions), versions, not_allowed))
        return out


def _alarm_edge(node: NodeState, on: bool, ts: float) -> None:
    """The duplicate-address alarm bit read ``on`` at ``ts``: open or close its stretch."""
    if on and node.alarm_open is None:
        node.alarm_open = ts
    elif not on and node.alarm_open is not None:
        node.alarm_duplicates.append((node.alarm_open, ts))
        if len(node.alarm_duplicates) > MAX_DUPLICATES:
            del node.alarm_duplicates[: len(node.alarm_duplicates) - MAX_DUPLICATES]
        node.alarm_open = None


def _firmware_edge(node: NodeState, message: str, version: str, ts: float) -> None:
    """``version`` read in ``message`` at ``ts``: a change when it differs from the latest."""
    changes = node.firmware_changes.setdefault(message, [])
    if changes and changes[-1][1] == version:
        return
    changes.append((ts, version))
    if len(changes) > MAX_FIRMWARE_CHANGES:
        del changes[: len(changes) - MAX_FIRMWARE_CHANGES]


def _without_broadcasts(decoded: DecodedMessage) -> DecodedMessage:
    """The frames not sent to every module at once (a pack's ``CandiagBroadcastNode``):
    a request to all modules is not the presence of a node with that address."""
    broadcast = decoded.message.broadcast_node
    if broadcast < 0 or not decoded.message.node_mask:
        return decoded
    keep = decoded.node != broadcast
    if keep.all():
        return decoded
    return dataclasses.replace(
        decoded,
        index=decoded.index[keep],
        timestamp=decoded.timestamp[keep],
        node=decoded.node[keep],
        signals={k: np.asarray(v)[keep] for k, v in decoded.signals.items()},
        present={k: np.asarray(v)[keep] for k, v in decoded.present.items()},
        exchange=None,
    )


def _addresses(decoded: DecodedMessage) -> npt.NDArray[np.int64]:
    """Node address of each frame (0 for the single node of a non-addressed family)."""
    if decoded.message.node_mask:
        return decoded.node.astype(np.int64)
    return np.zeros(len(decoded.timestamp), np.int64)


def _majority(versions: Mapping[str, Sequence[int]]) -> str | None:
    if not versions:
        return None
    return max(sorted(versions), key=lambda v: len(versions[v]))


def _rate_ratio(node: NodeState) -> float | None:
    """Highest observed-rate / nominal-rate ratio over the node's periodic messages."""
    best: float | None = None
    for track in node.messages.values():
        if track.cycle_s is None or len(track.tail) < MIN_FRAMES_FOR_RATE:
            continue
        span = float(track.tail[-1] - track.tail[0])
        if span <= 0:
            continue
        ratio = (len(track.tail) - 1) / span * track.cycle_s
        best = ratio if best is None else max(best, ratio)
    return best


def _note_duplicate_rates(
    node: NodeState, tail: npt.NDArray[np.float64], new: npt.NDArray[np.float64], cycle_s: float
) -> None:
    """Duplicate stretches judged at every arrival of the node's rate message.

    At each arrival the rate over the last :data:`RATE_TAIL` arrivals is compared with the nominal one, as the status view does
    at one instant.  A stretch starts at the first arrival of that window that ends an
    interval shorter than ``cycle / DUPLICATE_RATE_FACTOR`` (the second sender's first
    frames: a single sender never sends that fast) and ends at the last such arrival
    before the rate fell back, so its bounds are within one cycle of the second sender's
    first and last frames although the window needs a dozen cycles to judge.
    """
    times = np.concatenate((tail, new))
    fast = cycle_s / DUPLICATE_RATE_FACTOR
    if node.duplicate_open is None and not (np.diff(times) <= fast).any():
        # A rate of 1.7x over any window needs an interval that short: the usual case.
        return
    first = tail.size
    i = np.arange(first, times.size)
    j = np.maximum(0, i - (RATE_TAIL - 1))
    span = times[i] - times[j]
    counted = i - j
    # A full window of arrivals: over fewer, a capture's coarse timestamps (a 0.5 s or 1 s
    # grid) shorten the span by up to a grid step and fake a doubled rate.
    valid = (counted + 1 >= RATE_TAIL) & (span > 0)
    ratio = np.where(valid, counted / np.where(span > 0, span, 1.0) * cycle_s, 0.0)
    short = np.zeros(times.size, np.bool_)
    short[1:] = np.diff(times) < fast
    dup = ratio >= DUPLICATE_RATE_FACTOR
    before = np.empty(dup.size, np.bool_)
    before[0] = node.duplicate_open is not None
    before[1:] = dup[:-1]
    short_rows = np.flatnonzero(short)
    for k in np.flatnonzero(dup != before).tolist():
        row = first + k
        if dup[k]:  # the rate doubled: back to the first fast arrival of the window
            lo = int(np.searchsorted(short_rows, j[k] + 1))
            fast = lo < short_rows.size and short_rows[lo] <= row
            start = float(times[short_rows[lo]] if fast else times[row])
            if node.duplicates:
                start = max(start, node.duplicates[-1][1])
            node.duplicate_open = (start, 0.0)
        elif node.duplicate_open is not None:
            opened, peak = node.duplicate_open
            peak = max(peak, _run_peak(ratio, dup, k))
            hi = int(np.searchsorted(short_rows, row, side="right"))
            last = float(times[short_rows[hi - 1]]) if hi else node.last_short
            end = max(opened, last if last is not None else opened)
            node.duplicates.append((opened, end, round(peak, 3)))
            if len(node.duplicates) > MAX_DUPLICATES:
                del node.duplicates[: len(node.duplicates) - MAX_DUPLICATES]
            node.duplicate_open = None
    if node.duplicate_open is not None:
        opened, peak = node.duplicate_open
        node.duplicate_open = (opened, max(peak, _run_peak(ratio, dup, dup.size)))
    if short_rows.size:
        node.last_short = float(times[short_rows[-1]])


def _run_peak(ratio: npt.NDArray[np.float64], dup: npt.NDArray[np.bool_], k: int) -> float:
    """Highest ratio of the duplicate run that ends just before arrival ``k`` of the batch."""
    clear = np.flatnonzero(~dup[:k])
    begin = int(clear[-1]) + 1 if clear.size else 0
    return float(ratio[begin:k].max(initial=0.0))


def _presence(
    ts: npt.NDArray[np.float64],
    starts: npt.NDArray[np.intp],
    ends: npt.NDArray[np.intp],
    previous: npt.NDArray[np.float64],
    timeouts: npt.NDArray[np.float64],
) -> tuple[list[int], list[int], list[float], list[bool], list[int], list[float]]:
    """Gaps of every node's arrivals, for ``ts`` sorted by node then time.

    ``starts``/``ends`` delimit each node's run, ``previous`` is its last arrival before
    this batch (``-inf`` if none) and frames older than that are ignored (they were
    judged already).  Returns per node: gaps longer than its timeout, the row ending
    the last such gap, the longest gap, and whether there was any gap at all; then, for
    every gap longer than its node's timeout, the row of the frame ending it and the
    time of the frame before it (the exact bounds of the silence).
    """
    n = ts.size
    group = np.repeat(np.arange(starts.size), ends - starts)
    before = previous[group]
    keep = ts >= before
    prior = np.empty(n, np.float64)
    prior[1:] = ts[:-1]
    # A node's first frame, or the first one after frames older than ``previous``,
    # follows ``previous``; every other frame follows the one before it.
    follows_previous = np.ones(n, np.bool_)
    follows_previous[1:] = ~keep[:-1]
    follows_previous[starts] = True
    prior = np.where(follows_previous, before, prior)
    valid = keep & np.isfinite(prior)
    gaps = np.where(valid, ts - prior, -np.inf)
    late = gaps > timeouts[group]
    late_rows = np.flatnonzero(late)
    return (
        np.add.reduceat(late, starts).tolist(),
        np.maximum.reduceat(np.where(late, np.arange(n), -1), starts).tolist(),
        np.maximum.reduceat(gaps, starts).tolist(),
        np.logical_or.reduceat(valid, starts).tolist(),
        late_rows.tolist(),
        prior[late_rows].tolist(),
    )


def _group_of(rows: list[int], starts: npt.NDArray[np.intp]) -> list[int]:
    """The node run each row belongs to (``starts`` sorted)."""
    if not rows:
        return []
    out: list[int] = (np.searchsorted(starts, np.asarray(rows), side="right") - 1).tolist()
    return out


# A pack that states no poll period (UNCERTAIN in its comment): the period the liveness
# rules assume then (``liveness_default_poll_period_s`` in data/diagnosis.toml).
ASSUMED_POLL_MS = 1000


def _cycle_or_poll_ms(message: MessageDef) -> int:
    """A message's declared cycle, else its protocol pack's poll period (0: neither)."""
    if message.cycle_time_ms:
        return int(message.cycle_time_ms)
    protocol = message.protocol
    if protocol is None:
        return 0
    return int(protocol.poll_period_ms) if protocol.poll_period_ms else ASSUMED_POLL_MS
