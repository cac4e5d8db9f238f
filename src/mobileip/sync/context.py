"""What every part of the sync engine shares: settings, counters, events, and one member's state.

:class:`SyncContext` is the state the parts (:mod:`~mobileip.sync.updates`,
:mod:`~mobileip.sync.download`, :mod:`~mobileip.sync.antientropy`, :mod:`~mobileip.sync.semisync`,
:mod:`~mobileip.sync.merge`) work on together: the table, the group key, the known members, the
sync state, the sequence and identification counters (docs/sync-protocol.md "Common header"), the
outgoing datagrams and the events. :class:`~mobileip.sync.engine.SyncEngine` owns one and hands it
to each part; a test can hand one to a single part. Sans-IO: nothing here reads a clock.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from mobileip.core.bindings import BindingTable
from mobileip.sync.members import Endpoint, Member
from mobileip.wire import sync as wire

_M = TypeVar("_M", bound=wire.SyncMessage)


class SyncState(enum.Enum):
    NOT_SYNCED = "NOT SYNCED"
    SYNCED = "SYNCED"


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncStateChanged:
    state: SyncState
    reason: str


@dataclass(frozen=True, slots=True)
class MemberChanged:
    endpoint: Endpoint
    node_id: int
    reachable: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RecordsApplied:
    """Home addresses of the records learned from a peer that changed our table (read them
    from the table; a table download applies up to millions, so no record objects here)."""

    homes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Protected:
    """semisync: a watched change was acked by a peer (or the wait timed out)."""

    home_address: int
    version: int
    acked: bool
    node_id: int = 0  # the member whose ack protected it (0 on timeout)


@dataclass(frozen=True, slots=True)
class SyncViolation:
    reason: str
    endpoint: Endpoint


Event = SyncStateChanged | MemberChanged | RecordsApplied | Protected | SyncViolation


class SyncExtension(Protocol):
    """A part outside the engine that owns message types of its own (RFC 3543 revocation state,
    :mod:`mobileip.sync.revocation`). The engine authenticates, replay-checks and learns the
    sender before :meth:`on_message`; the part sends through the shared :class:`SyncContext`."""

    def on_message(self, msg: wire.SyncMessage, member: Member, now: float) -> None: ...

    def on_timer(self, now: float) -> None: ...

    def deadline(self) -> float | None: ...


@dataclass(frozen=True)
class SyncSettings:
    node_id: int
    group: int = 1
    peers: tuple[Endpoint, ...] = ()
    multicast: Endpoint | None = None  # (group address, port)
    mode: str = "async"  # or "semisync"
    retransmit_interval: float = 0.2
    max_retransmits: int = 8
    boot_wait: float = 1.0
    cold_start_rounds: int = 3
    unreachable_after: float = 3.5
    digest_interval: float = 1.0
    semisync_timeout: float = 0.5
    max_queue: int = 100_000
    bulk_window: int = 16  # at least BULK_ACK_EVERY (the config enforces it)
    payload_budget: int = wire.MAX_PAYLOAD
    max_sent_log: int = 65_536
    # The last identifications of a mobile node are ordered (RFC 5944 timestamps, not nonces):
    # a peer's record that answered an older request than ours never replaces ours.
    ordered_identifications: bool = False


@dataclass
class SyncCounters:
    """Named after CISCO-MOBILE-IP-MIB's cmiHaRedun* objects where one exists."""

    sent_bu: int = 0  # cmiHaRedunSentBUs: updates sent the first time (messages)
    sent_bu_total: int = 0  # cmiHaRedunTotalSentBUs: including retransmissions
    failed_bu: int = 0  # cmiHaRedunFailedBUs: records given up on (member unreachable)
    received_bu_acks: int = 0  # cmiHaRedunReceivedBUAcks
    received_bus: int = 0  # cmiHaRedunReceivedBUs
    sent_bu_acks: int = 0  # cmiHaRedunSentBUAcks
    sent_bi_reqs: int = 0  # cmiHaRedunSentBIReqs: table requests (rounds)
    total_sent_bi_reqs: int = 0  # cmiHaRedunTotalSentBIReqs
    failed_bi_reqs: int = 0  # cmiHaRedunFailedBIReqs: rounds with no usable answer
    received_bi_reqs: int = 0  # cmiHaRedunReceivedBIReqs
    sent_bi_reps: int = 0  # cmiHaRedunSentBIReps: table sync messages, first sends
    total_sent_bi_reps: int = 0  # cmiHaRedunTotalSentBIReps
    failed_bi_reps: int = 0  # cmiHaRedunFailedBIReps: downloads abandoned
    received_bi_reps: int = 0  # cmiHaRedunReceivedBIReps
    dropped_bi_reps: int = 0  # cmiHaRedunDroppedBIReps: no request outstanding / out of order
    sent_bi_records: int = 0  # records sent in table downloads (first transmissions)
    sent_bi_acks: int = 0  # cmiHaRedunSentBIAcks
    received_bi_acks: int = 0  # cmiHaRedunReceivedBIAcks
    dropped_bi_acks: int = 0  # cmiHaRedunDroppedBIAcks
    sec_violations: int = 0  # cmiHaRedunSecViolations
    unprotected: int = 0  # semisync replies sent without a peer's ack
    repaired_records: int = 0  # records pushed by anti-entropy
    queue_dropped: int = 0  # pending updates dropped because a queue was full
    replay_senders_evicted: int = 0  # senders the replay window forgot (max_senders)
    dropped: Counter[str] = field(default_factory=Counter)  # datagrams dropped, by reason

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in vars(self).items() if k != "dropped"}
        out["dropped"] = dict(self.dropped)
        return out


class SyncContext:
    """One member's shared sync state. ``settings``, ``table``, ``counters``, ``members`` and
    ``fresh`` are never replaced (parts may keep them); ``auth``, ``state``, ``out``, ``events``
    and ``send_now`` may be, so parts read those through the context each time."""

    def __init__(
        self, settings: SyncSettings, table: BindingTable, auth: wire.GroupAuth, epoch: int
    ) -> None:
        self.settings = settings
        self.table = table
        self.auth = auth
        self.counters = SyncCounters()
        self.state = SyncState.NOT_SYNCED
        self.epoch = epoch & 0xFFFFFFFF
        self.seq = 0
        self.ident = 0
        self.members: dict[Endpoint, Member] = {}
        for ep in settings.peers:
            self.members[ep] = Member(ep, configured=True, reachable=False)
        self.out: list[tuple[bytes, Endpoint]] = []
        self.events: list[Event] = []
        self.fresh: dict[int, None] = {}  # homes changed locally (or re-issued), not yet sent
        # Optional: the transport's send, for a datagram that should leave before this call
        # returns. A table download's receiver acks through it *before* applying the chunk, so
        # the responder builds the next chunks while we apply these (without it, every datagram
        # waits for the engine's datagrams_to_send).
        self.send_now: Callable[[bytes, Endpoint], object] | None = None

    def next_sequence(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return (self.epoch << 32) | self.seq

    def next_ident(self) -> int:
        self.ident += 1
        return (self.epoch << 32) | (self.ident & 0xFFFFFFFF)

    def send(self, msg: wire.SyncMessage, dest: Endpoint) -> None:
        self.out.append((wire.encode(msg, self.auth), dest))

    def budget(self) -> int:
        """Bytes of records one datagram may carry (after the header and the auth trailer)."""
        return self.settings.payload_budget - wire.HEADER_LEN - wire.auth_trailer_len(self.auth)

    def set_state(self, state: SyncState, reason: str) -> None:
        if state is not self.state:
            self.state = state
            self.events.append(SyncStateChanged(state, reason))


def with_seq(msg: _M, seq: int) -> _M:
    return replace(msg, sequence=seq)


def dotted(n: int) -> str:
    return ".".join(str((n >> s) & 0xFF) for s in (24, 16, 8, 0))


def int_addr(dotted: str) -> int:
    a, b, c, d = (int(x) for x in dotted.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d
