"""The binding-table sync protocol of one redundancy group member, sans-IO.

Feed it datagrams (:meth:`SyncEngine.handle_datagram`), local changes from the registration rules
(:meth:`local_change`), and timer ticks (:meth:`handle_timer`); take back the datagrams to send
(:meth:`datagrams_to_send`) and the events (:meth:`events`). Time is the caller's monotonic
``now``; the boot epoch that starts the sequence numbers is passed in; nothing here reads a clock,
opens a socket or draws a random number.

What it does, by the patent's figures (see docs/sync-protocol.md for the choices we made):

* FIG 4: boot NOT SYNCED; with no other member, SYNCED at once; otherwise request the table from
  the group. If only NOT SYNCED members answer for ``cold_start_rounds`` rounds (a cold start),
  the member with the lowest node id among those heard declares itself SYNCED; the rest download
  from it.
* FIG 5: a SYNCED member answers a request with the peer list first, then acked chunks; a NOT
  SYNCED member answers with the NOT_SYNCED code. The requester takes the first member that
  answers ACCEPTED and declines the others, so one member (not every member) sends the table.
* FIG 6, 7: every accepted local change is sent to the group (multicast when configured, else
  unicast to every member); each member acks; whoever did not ack gets the *current* state of the
  record again by unicast, with exponential backoff; after ``max_retransmits`` silent rounds the
  member is marked unreachable and repaired by anti-entropy when it is heard again.
* FIG 8, 9: records are merged by version, so an older update never wins; a deregistration
  leaves a tombstone that travels like any record and is purged after the safe period.
* Anti-entropy: SYNCED members exchange per-bucket digests every ``digest_interval`` (also the
  heartbeat); a bucket that differs in two digests in a row, with neither side's value moving,
  is pushed record by record through the reliable update path; merges take the newer version.
* semisync: :meth:`watch` a change; a :class:`Protected` event says when a peer acked it (or the
  timeout passed, ``acked=False``).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from mobileip.core.bindings import BindingTable, MobilityRecord, make_version
from mobileip.sync import records as rec_codec
from mobileip.sync.bulk import BulkReceiver, BulkSender, Chunk
from mobileip.sync.members import Endpoint, Member
from mobileip.sync.replay import ReplayWindow
from mobileip.wire import sync as wire
from mobileip.wire.errors import DecodeError

_M = TypeVar("_M", bound=wire.SyncMessage)
BULK_ACK_EVERY = 4  # a table download's receiver acks every this many chunks
_MAX_LATENCY_SAMPLES = 100_000  # ack latency samples kept until the metrics drain them
_NO_LIMIT = 1 << 62  # a resent chunk carries every record of its range, as they are now


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


class SyncEngine:
    def __init__(
        self, settings: SyncSettings, table: BindingTable, auth: wire.GroupAuth, epoch: int
    ) -> None:
        self.settings = settings
        self.table = table
        self.auth = auth
        self.counters = SyncCounters()
        self.state = SyncState.NOT_SYNCED
        self._epoch = epoch & 0xFFFFFFFF
        self._seq = 0
        self._ident = 0
        self._now = 0.0
        self._members: dict[Endpoint, Member] = {}
        for ep in settings.peers:
            self._members[ep] = Member(ep, configured=True, reachable=False)
        self._replay = ReplayWindow()
        self._out: list[tuple[bytes, Endpoint]] = []
        self._events: list[Event] = []
        self._fresh: dict[int, None] = {}  # homes changed locally, not yet sent
        # identification of a Binding Update -> (its homes, their versions, when first sent)
        self._sent_log: dict[int, tuple[list[int], list[int], float]] = {}
        self._watches: dict[int, list[tuple[int, float]]] = {}
        self._senders: dict[Endpoint, BulkSender] = {}
        self._receiver: BulkReceiver | None = None
        self._next_digest: float | None = None
        self._started = False
        # (identification, responder) of the last completed download
        self.last_download: tuple[int, Endpoint] | None = None
        # Optional: the transport's send, for a datagram that should leave before this call
        # returns. A table download's receiver acks through it *before* applying the chunk, so
        # the responder builds the next chunks while we apply these (without it, every datagram
        # waits for datagrams_to_send).
        self.send_now: Callable[[bytes, Endpoint], object] | None = None
        # seconds from a Binding Update's first send (the local change's acceptance, or the
        # retransmission) to each member's ack; the metrics drain it (bounded)
        self.ack_latencies: list[float] = []

    # --- public API ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._now = now
        self._started = True
        self._next_digest = now + self.settings.digest_interval
        if not self._members and self.settings.multicast is None:
            self._set_state(SyncState.SYNCED, "no other member configured")
            return
        self._request_table(now, first=True)

    def local_change(self, rec: MobilityRecord, now: float) -> None:
        """A registration or deregistration was accepted here: tell the group (FIG 6, FIG 8)."""
        self._now = now
        self._fresh[rec.home_address] = None

    def watch(self, home: int, version: int, now: float) -> None:
        """semisync: emit :class:`Protected` once a peer acked ``version`` (or on timeout)."""
        self._now = now
        if not any(m.reachable for m in self._members.values()):
            self.counters.unprotected += 1
            self._events.append(Protected(home, version, False))
            return
        self._watches.setdefault(home, []).append((version, now + self.settings.semisync_timeout))

    def handle_datagram(self, data: bytes, src: Endpoint, now: float) -> None:
        self._now = now
        try:
            msg = wire.decode_chunked(data, self.auth)
        except DecodeError as exc:
            self.counters.dropped[exc.reason] += 1
            if exc.reason in ("bad-spi", "bad-authenticator", "missing-auth"):
                self.counters.sec_violations += 1
                self._events.append(SyncViolation(exc.reason, src))
            return
        if msg.sender == self.settings.node_id:
            self.counters.dropped["own-message"] += 1
            return
        if msg.group != self.settings.group:
            self.counters.dropped["wrong-group"] += 1
            return
        if not self._replay.check(msg.sender, msg.sequence):
            self.counters.dropped["replayed"] += 1
            self.counters.sec_violations += 1
            self._events.append(SyncViolation("replayed", src))
            return
        self._replay.accept(msg.sender, msg.sequence)
        self.counters.replay_senders_evicted = self._replay.evicted
        member = self._learn(src, msg.sender, msg.sequence >> 32, now)
        if isinstance(msg, wire.BindingUpdate | wire.BindingUpdateChunk):
            self._on_update(msg, member, now)
        elif isinstance(msg, wire.BindingUpdateAck):
            self._on_update_ack(msg, member, now)
        elif isinstance(msg, wire.TableRequest):
            self._on_table_request(msg, member, now)
        elif isinstance(msg, wire.TableSync | wire.TableSyncChunk):
            self._on_table_sync(msg, member, now)
        elif isinstance(msg, wire.TableSyncAck):
            self._on_table_sync_ack(msg, member, now)
        else:
            self._on_digest(msg, member, now)

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._flush(now)
        for m in list(self._members.values()):
            if m.next_retx is not None and now >= m.next_retx:
                self._retransmit(m, now)
            if (
                m.reachable
                and m.last_heard is not None
                and now >= m.last_heard + self.settings.unreachable_after
            ):
                self._mark_unreachable(m, "silent", now)
        for sender in list(self._senders.values()):
            if (sender.in_flight or not sender.peers_acked) and now >= sender.deadline:
                self._bulk_timeout(sender, now)
        self._receiver_timer(now)
        self._watch_timeouts(now)
        if self._next_digest is not None and now >= self._next_digest:
            self._next_digest = now + self.settings.digest_interval
            if self.state is SyncState.SYNCED:
                self._send_digest(now)

    def next_timer(self) -> float | None:
        times: list[float] = []
        if self._fresh:
            times.append(self._now)
        times.extend(m.next_retx for m in self._members.values() if m.next_retx is not None)
        times.extend(
            m.last_heard + self.settings.unreachable_after
            for m in self._members.values()
            if m.reachable and m.last_heard is not None
        )
        times.extend(s.deadline for s in self._senders.values() if s.in_flight or not s.peers_acked)
        if self._receiver is not None:
            times.append(self._receiver_deadline(self._receiver))
        for watches in self._watches.values():
            times.extend(deadline for _, deadline in watches)
        if self._next_digest is not None:
            times.append(self._next_digest)
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        self._flush(self._now)
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        ev, self._events = self._events, []
        return ev

    @property
    def members(self) -> list[Member]:
        return list(self._members.values())

    def queue_depth(self) -> int:
        return sum(len(m.pending) for m in self._members.values()) + len(self._fresh)

    def status(self, now: float) -> dict[str, object]:
        return {
            "state": self.state.value,
            "node_id": _dotted(self.settings.node_id),
            "mode": self.settings.mode,
            "members": [m.describe(now) for m in self._members.values()],
            "queues": {
                "fresh": len(self._fresh),
                "pending": {
                    f"{m.endpoint[0]}:{m.endpoint[1]}": len(m.pending)
                    for m in self._members.values()
                },
                "bulk_senders": len(self._senders),
                "semisync_waiting": sum(len(w) for w in self._watches.values()),
            },
            "counters": self.counters.as_dict(),
        }

    # --- sending ---------------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return (self._epoch << 32) | self._seq

    def _next_ident(self) -> int:
        self._ident += 1
        return (self._epoch << 32) | (self._ident & 0xFFFFFFFF)

    def _send(self, msg: wire.SyncMessage, dest: Endpoint) -> None:
        self._out.append((wire.encode(msg, self.auth), dest))

    def _fanout(self) -> list[Member]:
        return [m for m in self._members.values() if m.reachable]

    def _flush(self, now: float) -> None:
        """Send the fresh local changes to the group, batched into as few messages as fit."""
        if not self._fresh:
            return
        homes = list(self._fresh)
        self._fresh.clear()
        targets = self._fanout()
        if not targets and self.settings.multicast is None:
            return
        # straight from the packed table to the wire (no MobilityRecord, no RecordState)
        batches = rec_codec.update_bodies(self.table.packed_getter(), homes, self._budget(), now)
        group, node_id, auth, out = self.settings.group, self.settings.node_id, self.auth, self._out
        encode = wire.encode_binding_update_records
        multicast = self.settings.multicast
        unicast = targets if multicast is None else [m for m in targets if m.configured]
        for body, count, sent_homes, versions in batches:
            ident = self._log_sent(sent_homes, versions, now)
            self.counters.sent_bu += 1
            if multicast is not None:
                # LAN members hear the group; configured (WAN) peers get their own copy
                self.counters.sent_bu_total += 1
                seq = self._next_sequence()
                out.append((encode(group, node_id, seq, ident, count, body, auth), multicast))
            for m in unicast:
                self.counters.sent_bu_total += 1
                seq = self._next_sequence()
                out.append((encode(group, node_id, seq, ident, count, body, auth), m.endpoint))
        for m in targets:
            for _body, _count, sent_homes, versions in batches:
                self._add_pending_many(m, sent_homes, versions, now)

    def _budget(self) -> int:
        return self.settings.payload_budget - wire.HEADER_LEN - wire.auth_trailer_len(self.auth)

    def _log_sent(self, homes: list[int], versions: list[int], now: float) -> int:
        ident = self._next_ident()
        self._sent_log[ident] = (homes, versions, now)
        while len(self._sent_log) > self.settings.max_sent_log:
            self._sent_log.pop(next(iter(self._sent_log)))
        return ident

    def _add_pending(self, m: Member, home: int, version: int, now: float) -> None:
        if home not in m.pending and len(m.pending) >= self.settings.max_queue:
            self.counters.queue_dropped += 1
            return
        if m.pending.get(home, -1) < version:
            m.pending[home] = version
        if m.next_retx is None:
            m.next_retx = now + self.settings.retransmit_interval

    def _add_pending_many(
        self, m: Member, homes: list[int], versions: list[int], now: float
    ) -> None:
        """:meth:`_add_pending` of each (home, version), in order."""
        pending = m.pending
        if len(pending) + len(homes) > self.settings.max_queue:
            for home, version in zip(homes, versions, strict=True):
                self._add_pending(m, home, version, now)
            return
        get = pending.get
        for home, version in zip(homes, versions, strict=True):
            if get(home, -1) < version:
                pending[home] = version
        if homes and m.next_retx is None:
            m.next_retx = now + self.settings.retransmit_interval

    def _retransmit(self, m: Member, now: float) -> None:
        """Resend by unicast the current state of every record ``m`` has not acked (FIG 6 614)."""
        if not m.pending:
            m.next_retx = None
            m.retx_count = 0
            return
        m.retx_count += 1
        if m.retx_count > self.settings.max_retransmits:
            self._mark_unreachable(m, "no ack after retransmissions", now)
            return
        homes: list[int] = []
        pending = m.pending
        version_of = self.table.version_of
        for home in list(pending):
            version = version_of(home)
            if version is None:  # purged tombstone: nothing left to tell
                del pending[home]
                continue
            if pending[home] < version:
                pending[home] = version
            homes.append(home)
            if len(homes) >= 2048:
                break
        get = self.table.packed_getter()
        for body, count, sent_homes, versions in rec_codec.update_bodies(
            get, homes, self._budget(), now
        ):
            ident = self._log_sent(sent_homes, versions, now)
            self.counters.sent_bu_total += 1
            data = wire.encode_binding_update_records(
                self.settings.group,
                self.settings.node_id,
                self._next_sequence(),
                ident,
                count,
                body,
                self.auth,
            )
            self._out.append((data, m.endpoint))
        backoff = self.settings.retransmit_interval * (1 << min(m.retx_count, 5))
        m.next_retx = now + backoff if m.pending else None

    def _mark_unreachable(self, m: Member, reason: str, now: float) -> None:
        if m.pending:
            self.counters.failed_bu += len(m.pending)
            m.pending.clear()
        m.next_retx = None
        m.retx_count = 0
        if m.reachable:
            m.reachable = False
            self._events.append(MemberChanged(m.endpoint, m.node_id, False, reason))
        self._senders.pop(m.endpoint, None)
        if self._receiver is not None and self._receiver.responder == m.endpoint:
            self._abandon_download(now, "responder unreachable")

    # --- receiving ---------------------------------------------------------------------------

    def _learn(self, src: Endpoint, node_id: int, epoch: int, now: float) -> Member:
        """Every authenticated message tells us a member exists and is alive (FIG 5 504)."""
        m = self._members.get(src)
        if m is None:
            m = Member(src, node_id=node_id)
            self._members[src] = m
            self._events.append(MemberChanged(src, node_id, True, "learned"))
        m.node_id = node_id
        if epoch > m.epoch:
            if m.epoch:  # it restarted: it lost its table, so it is not synced any more
                m.synced = False
            m.epoch = epoch
        first = m.last_heard is None
        m.heard(now)
        if not m.reachable:
            m.reachable = True
            self._events.append(
                MemberChanged(src, node_id, True, "heard" if first else "heard again")
            )
            if self.state is SyncState.SYNCED:
                # it may have missed updates while away: start a digest exchange right away
                self._send_digest(now, only=m)
        return m

    def _on_update(
        self, msg: wire.BindingUpdate | wire.BindingUpdateChunk, m: Member, now: float
    ) -> None:
        self.counters.received_bus += 1
        homes: Sequence[int]
        if isinstance(msg, wire.BindingUpdateChunk):
            if self._packed_puts():
                homes, applied = rec_codec.apply_update(
                    self.table, msg.body, now, self._merge, self.settings.ordered_identifications
                )
                if applied:
                    self._events.append(RecordsApplied(tuple(applied)))
            else:
                records = msg.as_binding_update().records
                self._apply(records, now)
                homes = [st.home_address for st in records]
        else:
            self._apply(msg.records, now)
            homes = [st.home_address for st in msg.records]
        self.counters.sent_bu_acks += 1
        ack = wire.encode_binding_update_ack(
            self.settings.group,
            self.settings.node_id,
            self._next_sequence(),
            msg.identification,
            wire.SyncCode.ACCEPTED,
            homes,
            self.auth,
        )
        self._out.append((ack, m.endpoint))

    def _packed_puts(self) -> bool:
        """Whether records may go into the table packed (``put_packed``): not into a table
        that notes its changes in ``store`` (persistence) but does not override ``put_packed``."""
        cls = type(self.table)
        return cls.store is BindingTable.store or cls.put_packed is not BindingTable.put_packed

    def _apply(self, states: Iterable[wire.RecordState], now: float) -> None:
        """Merge a peer's records (updates or a download chunk); announce what changed."""
        applied = []
        for st in states:
            if self._merge(rec_codec.from_state(st, now), now):
                applied.append(st.home_address)
        if applied:
            self._events.append(RecordsApplied(tuple(applied)))

    def _apply_chunk(self, chunk: wire.TableSyncChunk, now: float) -> None:
        """A download chunk of one-binding records: new homes in bulk, the rest merged."""
        table = self.table
        cls = type(table)
        if cls.store is not BindingTable.store and cls.insert_new is BindingTable.insert_new:
            # a table that notes its changes in store (persistence) but not in bulk inserts
            self._apply(chunk.as_table_sync().records, now)
            return
        applied = rec_codec.apply_chunk(table, chunk, now, self._merge)
        if applied:
            self._events.append(RecordsApplied(tuple(applied)))

    def _merge(self, rec: MobilityRecord, now: float) -> bool:
        """Apply a peer's record if it is newer than ours (FIG 7, FIG 9); True if ours changed.

        With ordered identifications, a record newer by version that answered an *older*
        request than ours lost a race the versions cannot see: a member that was stalled or cut
        off accepted a request its mobile node had already superseded elsewhere within the same
        second of the timestamps (the versions' counters tie, the higher node id wins). Ours
        stands, re-issued with a version above both, so the whole group settles on it
        (found by tests/test_chaos_netns.py).
        """
        order = (
            self.table.order_of(rec.home_address) if self.settings.ordered_identifications else None
        )
        if order is not None and rec.version > order[0] and rec.last_id < order[1]:
            old = self.table.get(rec.home_address)
            assert old is not None
            self.counters.dropped["older-identification"] += 1
            version = make_version(max(old.counter, rec.counter) + 1, self.settings.node_id)
            self.table.put(replace(old, version=version), now)
            self._fresh[rec.home_address] = None
            return True
        return self.table.merge(rec, now)

    def _on_update_ack(self, msg: wire.BindingUpdateAck, m: Member, now: float) -> None:
        sent = self._sent_log.get(msg.identification)
        if sent is None or msg.code != wire.SyncCode.ACCEPTED:
            self.counters.dropped["unmatched-ack"] += 1
            return
        self.counters.received_bu_acks += 1
        homes, versions, sent_at = sent
        if len(self.ack_latencies) < _MAX_LATENCY_SAMPLES:
            self.ack_latencies.append(max(0.0, now - sent_at))
        progress = False
        pending = m.pending
        if pending:
            for home, version in zip(homes, versions, strict=True):
                waiting = pending.get(home)
                if waiting is not None and waiting <= version:
                    del pending[home]
                    progress = True
        all_watches = self._watches
        if all_watches:
            for home, version in zip(homes, versions, strict=True):
                watches = all_watches.get(home)
                if watches:
                    left = [(v, d) for v, d in watches if v > version]
                    for v, _ in watches:
                        if v <= version:
                            self._events.append(Protected(home, v, True, m.node_id))
                    if left:
                        all_watches[home] = left
                    else:
                        del all_watches[home]
        if progress:
            m.retx_count = 0
            # Progress resets the backoff but must not postpone the timer: under steady load an
            # ack for a newer update arrives every few ms, and a lost older one would never be
            # retransmitted (found by tests/test_chaos_netns.py).
            if not m.pending:
                m.next_retx = None
            else:
                soon = now + self.settings.retransmit_interval
                m.next_retx = soon if m.next_retx is None else min(m.next_retx, soon)

    # --- bulk sync: requester -------------------------------------------------------------

    def _request_table(self, now: float, first: bool = False) -> None:
        ident = self._next_ident()
        rounds = 1 if first or self._receiver is None else self._receiver.rounds + 1
        self._receiver = BulkReceiver(ident, now, last_progress=now, rounds=rounds)
        self.counters.sent_bi_reqs += 1
        msg = wire.TableRequest(self.settings.group, self.settings.node_id, 0, ident, None)
        dests = [m.endpoint for m in self._members.values()]
        if self.settings.multicast is not None:
            dests.append(self.settings.multicast)
        for dest in dests:
            self.counters.total_sent_bi_reqs += 1
            self._send(_with_seq(msg, self._next_sequence()), dest)

    def _receiver_deadline(self, r: BulkReceiver) -> float:
        if r.responder is None:
            return r.started + self.settings.boot_wait
        return r.last_progress + self.settings.unreachable_after

    def _receiver_timer(self, now: float) -> None:
        r = self._receiver
        if r is None or now < self._receiver_deadline(r):
            return
        if r.responder is not None:
            self._abandon_download(now, "download stalled")
            return
        self.counters.failed_bi_reqs += 1
        heard = [
            m
            for m in self._members.values()
            if m.last_heard is not None and m.last_heard >= r.started - self.settings.boot_wait
        ]
        synced_alive = [
            m
            for m in heard
            if m.synced
            and m.last_heard is not None
            and now - m.last_heard < self.settings.unreachable_after
        ]
        lowest = min([self.settings.node_id, *(m.node_id for m in heard)])
        if (
            not synced_alive
            and r.rounds >= self.settings.cold_start_rounds
            and lowest == self.settings.node_id
        ):
            self._receiver = None
            self._set_state(SyncState.SYNCED, f"cold start: lowest node id of {len(heard) + 1}")
            return
        if not heard and r.rounds >= self.settings.cold_start_rounds:
            self._receiver = None
            self._set_state(SyncState.SYNCED, "no member answered")
            return
        self._request_table(now)

    def _abandon_download(self, now: float, reason: str) -> None:
        self.counters.failed_bi_reps += 1
        self._events.append(SyncStateChanged(self.state, f"download restarted: {reason}"))
        self._request_table(now, first=True)

    def _on_table_sync(
        self, msg: wire.TableSync | wire.TableSyncChunk, m: Member, now: float
    ) -> None:
        self.counters.received_bi_reps += 1
        chunk = msg if isinstance(msg, wire.TableSyncChunk) else None
        code = msg.code
        r = self._receiver
        if r is None or msg.identification != r.identification:
            self.counters.dropped_bi_reps += 1
            if code == wire.SyncCode.ACCEPTED and r is None:
                # a download we no longer want (e.g. already SYNCED): tell it to stop
                self._ack_table_sync(msg, m, wire.SyncCode.UNSPECIFIED, msg.more_bind)
            return
        r.answers[m.endpoint] = code
        if code != wire.SyncCode.ACCEPTED:
            m.synced = False
            return
        m.synced = True
        if r.responder is None:
            r.responder = m.endpoint
            r.last_progress = now
        if r.responder != m.endpoint:
            self._ack_table_sync(msg, m, wire.SyncCode.UNSPECIFIED, msg.more_bind)
            return
        if chunk is None:
            assert isinstance(msg, wire.TableSync)
            for peer in msg.peers:
                self._learn_peer(peer)
            count = len(msg.records)
        else:
            count = chunk.count
        expected = r.received + count
        if msg.more_bind != expected:
            self.counters.dropped_bi_reps += 1
            self._ack_table_sync(msg, m, wire.SyncCode.ACCEPTED, r.received)
            return
        r.received = expected
        r.last_progress = now
        if count:
            r.chunks += 1
        # Cumulative acks for every BULK_ACK_EVERY-th chunk, the peer list and the last chunk:
        # a quarter of the datagrams, and the sender's window (>= BULK_ACK_EVERY) never stalls.
        ack = not count or msg.final or r.chunks % BULK_ACK_EVERY == 0
        early = ack and self.send_now is not None
        if early:
            # before applying: the responder builds the next chunks while we apply these
            self._ack_table_sync(msg, m, wire.SyncCode.ACCEPTED, r.received, at_once=True)
        try:
            if chunk is not None:
                self._apply_chunk(chunk, now)
            else:
                assert isinstance(msg, wire.TableSync)
                self._apply(msg.records, now)
        except Exception as exc:
            # Already counted as received (and maybe acked): never go on to SYNCED without
            # these records. Start the download over, then let the caller see the bug.
            self.counters.dropped["apply-failed"] += 1
            self._abandon_download(now, f"applying a chunk failed: {type(exc).__name__}")
            raise
        if ack and not early:
            self._ack_table_sync(msg, m, wire.SyncCode.ACCEPTED, r.received)
        if msg.final:
            self._receiver = None
            self.last_download = (r.identification, m.endpoint)
            self._set_state(SyncState.SYNCED, f"table downloaded: {r.received} records")

    def _ack_table_sync(
        self,
        msg: wire.TableSync | wire.TableSyncChunk,
        m: Member,
        code: int,
        more: int,
        at_once: bool = False,
    ) -> None:
        self.counters.sent_bi_acks += 1
        ack = wire.TableSyncAck(
            self.settings.group,
            self.settings.node_id,
            self._next_sequence(),
            msg.identification,
            code,
            more,
        )
        if at_once and self.send_now is not None:
            self.send_now(wire.encode(ack, self.auth), m.endpoint)
        else:
            self._send(ack, m.endpoint)

    def _learn_peer(self, peer: wire.PeerInfo) -> None:
        if peer.node_id == self.settings.node_id:
            return
        ep = (_dotted(peer.address), peer.port)
        if ep not in self._members:
            self._members[ep] = Member(ep, node_id=peer.node_id, synced=bool(peer.flags & 1))
            self._events.append(MemberChanged(ep, peer.node_id, True, "learned from peer list"))

    # --- bulk sync: responder -------------------------------------------------------------

    def _on_table_request(self, msg: wire.TableRequest, m: Member, now: float) -> None:
        self.counters.received_bi_reqs += 1
        m.synced = False  # a member that asks for the table does not have it
        if self.state is not SyncState.SYNCED:
            self.counters.sent_bi_reps += 1
            self.counters.total_sent_bi_reps += 1
            reply = wire.TableSync(
                self.settings.group,
                self.settings.node_id,
                self._next_sequence(),
                msg.identification,
                wire.SyncCode.NOT_SYNCED,
                0,
                True,
                (),
                (),
            )
            self._send(reply, m.endpoint)
            return
        # one-binding records first: their chunks are uniform, which the receiver applies fastest
        homes = self.table.homes_one_binding_first()
        sender = BulkSender(m.endpoint, msg.identification, homes)
        self._senders[m.endpoint] = sender
        self._send_peer_list(sender, now, first=True)

    def _peer_infos(self) -> tuple[wire.PeerInfo, ...]:
        infos = []
        for mem in self._members.values():
            if mem.node_id == 0:
                continue
            addr = _int_addr(mem.endpoint[0])
            infos.append(wire.PeerInfo(mem.node_id, addr, mem.endpoint[1], int(mem.synced)))
        return tuple(infos)

    def _send_peer_list(self, sender: BulkSender, now: float, first: bool) -> None:
        if first:
            self.counters.sent_bi_reps += 1
        self.counters.total_sent_bi_reps += 1
        # With nothing to send, the peer list is also the last message of the download.
        final = not sender.snapshot
        msg = wire.TableSync(
            self.settings.group,
            self.settings.node_id,
            self._next_sequence(),
            sender.identification,
            wire.SyncCode.ACCEPTED,
            0,
            final,
            self._peer_infos(),
            (),
        )
        self._send(msg, sender.requester)
        sender.deadline = now + self._bulk_rto(sender)

    def _bulk_rto(self, sender: BulkSender) -> float:
        return self.settings.retransmit_interval * (1 << min(sender.timeouts, 5))

    def _fill_window(self, sender: BulkSender, now: float) -> None:
        budget = self._budget() - 4  # more_bind
        get = self.table.packed_getter()
        snapshot = sender.snapshot
        while not sender.done_sending and len(sender.in_flight) < self.settings.bulk_window:
            start = sender.position
            body, count, pos = rec_codec.chunk_body(get, snapshot, start, budget, now)
            final = pos >= len(snapshot)
            sender.position = pos
            sender.sent_records += count
            self.counters.sent_bi_records += count
            chunk = Chunk(start, pos, sender.sent_records, final)
            sender.done_sending = final
            sender.in_flight.append(chunk)
            self.counters.sent_bi_reps += 1
            self._send_chunk(sender, chunk, body, count)
            if len(sender.in_flight) == 1:
                sender.deadline = now + self._bulk_rto(sender)

    def _send_chunk(self, sender: BulkSender, chunk: Chunk, body: bytes, count: int) -> None:
        self.counters.total_sent_bi_reps += 1
        data = wire.encode_table_sync_records(
            self.settings.group,
            self.settings.node_id,
            self._next_sequence(),
            sender.identification,
            chunk.more_bind,
            chunk.final,
            count,
            body,
            self.auth,
        )
        self._out.append((data, sender.requester))

    def _on_table_sync_ack(self, msg: wire.TableSyncAck, m: Member, now: float) -> None:
        sender = self._senders.get(m.endpoint)
        if sender is None or sender.identification != msg.identification:
            self.counters.dropped_bi_acks += 1
            return
        self.counters.received_bi_acks += 1
        if msg.code != wire.SyncCode.ACCEPTED:
            del self._senders[m.endpoint]  # declined: another member serves it
            return
        progress = False
        if not sender.peers_acked:
            sender.peers_acked = True
            progress = True
            if not sender.snapshot:
                del self._senders[m.endpoint]
                return
        while sender.in_flight and sender.in_flight[0].more_bind <= msg.more_bind:
            chunk = sender.in_flight.pop(0)
            progress = True
            if chunk.final and chunk.more_bind == msg.more_bind:
                del self._senders[m.endpoint]
                return
        if progress:
            sender.timeouts = 0
            sender.deadline = now + self._bulk_rto(sender)
        self._fill_window(sender, now)

    def _bulk_timeout(self, sender: BulkSender, now: float) -> None:
        sender.timeouts += 1
        if sender.timeouts > self.settings.max_retransmits:
            self.counters.failed_bi_reps += 1
            self._senders.pop(sender.requester, None)
            return
        if not sender.peers_acked:
            self._send_peer_list(sender, now, first=False)
            return
        get = self.table.packed_getter()
        for chunk in sender.in_flight:  # go back N, with the records as they are now
            homes = sender.snapshot[chunk.start : chunk.end]
            body, count, _ = rec_codec.chunk_body(get, homes, 0, _NO_LIMIT, now)
            self._send_chunk(sender, chunk, body, count)
        sender.deadline = now + self._bulk_rto(sender)

    # --- anti-entropy ------------------------------------------------------------------------

    def _send_digest(self, now: float, only: Member | None = None) -> None:
        digest = self.table.digest()
        msg = wire.Digest(
            self.settings.group,
            self.settings.node_id,
            0,
            self._next_ident(),
            self.state is SyncState.SYNCED,
            digest,
        )
        targets = [only] if only is not None else list(self._members.values())
        if only is None and self.settings.multicast is not None:
            self._send(_with_seq(msg, self._next_sequence()), self.settings.multicast)
            targets = [m for m in targets if m.configured]
        for m in targets:
            self._send(_with_seq(msg, self._next_sequence()), m.endpoint)

    def _on_digest(self, msg: wire.Digest, m: Member, now: float) -> None:
        m.synced = msg.synced
        if self.state is not SyncState.SYNCED or not msg.synced:
            return
        ours = self.table.digest()
        if len(msg.buckets) != len(ours):
            self.counters.dropped["digest-size"] += 1
            return
        stable = [
            i
            for i, (theirs, mine) in enumerate(zip(msg.buckets, ours, strict=True))
            if theirs != mine
            and m.last_digest
            and m.last_digest[i] == theirs
            and m.our_digest_then[i] == mine
        ]
        m.last_digest, m.our_digest_then = msg.buckets, ours
        if not stable:
            return
        for rec in self.table.bucket_records(stable):
            self._add_pending(m, rec.home_address, rec.version, now)
            self.counters.repaired_records += 1
        m.next_retx = now
        m.retx_count = 0

    # --- misc ----------------------------------------------------------------------------------

    def _watch_timeouts(self, now: float) -> None:
        for home in list(self._watches):
            left = []
            for version, deadline in self._watches[home]:
                if deadline <= now:
                    self.counters.unprotected += 1
                    self._events.append(Protected(home, version, False))
                else:
                    left.append((version, deadline))
            if left:
                self._watches[home] = left
            else:
                del self._watches[home]

    def _set_state(self, state: SyncState, reason: str) -> None:
        if state is not self.state:
            self.state = state
            self._events.append(SyncStateChanged(state, reason))


def _with_seq(msg: _M, seq: int) -> _M:
    return replace(msg, sequence=seq)


def _dotted(n: int) -> str:
    return ".".join(str((n >> s) & 0xFF) for s in (24, 16, 8, 0))


def _int_addr(dotted: str) -> int:
    a, b, c, d = (int(x) for x in dotted.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d
