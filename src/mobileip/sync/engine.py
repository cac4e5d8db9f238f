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

Each part lives in its own module and works on the shared
:class:`~mobileip.sync.context.SyncContext`; this module composes them, routes datagrams and
timers to them, and keeps membership (who is there, who went silent), which every part depends
on:

* :mod:`~mobileip.sync.context`: settings, counters, events, the shared state;
* :mod:`~mobileip.sync.updates`: reliable updates (Binding Updates, acks, retransmission);
* :mod:`~mobileip.sync.merge`: merging a peer's records by version (updates and downloads);
* :mod:`~mobileip.sync.download` (state in :mod:`~mobileip.sync.bulk`): bulk download, both
  sides; :mod:`~mobileip.sync.coldstart`: when nobody is SYNCED;
* :mod:`~mobileip.sync.antientropy`: digests and repairs;
* :mod:`~mobileip.sync.semisync`: watches for semisync replies;
* :mod:`~mobileip.sync.replay`, :mod:`~mobileip.sync.members`, :mod:`~mobileip.sync.records`:
  the replay window, what we know of a member, record encoding.
"""

from __future__ import annotations

from collections.abc import Callable

from mobileip.core.bindings import BindingTable, MobilityRecord
from mobileip.sync.antientropy import AntiEntropy
from mobileip.sync.context import (
    Event,
    MemberChanged,
    Protected,
    RecordsApplied,
    SyncContext,
    SyncCounters,
    SyncExtension,
    SyncSettings,
    SyncState,
    SyncStateChanged,
    SyncViolation,
    dotted,
)
from mobileip.sync.download import BULK_ACK_EVERY, DownloadRequester, DownloadResponder
from mobileip.sync.members import Endpoint, Member
from mobileip.sync.merge import Merger
from mobileip.sync.replay import ReplayWindow
from mobileip.sync.semisync import SemisyncWatches
from mobileip.sync.updates import ReliableUpdates
from mobileip.wire import sync as wire
from mobileip.wire.errors import DecodeError

__all__ = [
    "BULK_ACK_EVERY",
    "Event",
    "MemberChanged",
    "Protected",
    "RecordsApplied",
    "SyncCounters",
    "SyncEngine",
    "SyncSettings",
    "SyncState",
    "SyncStateChanged",
    "SyncViolation",
]


class SyncEngine:
    """One member's sync protocol: the parts over one shared context, behind one API."""

    def __init__(
        self, settings: SyncSettings, table: BindingTable, auth: wire.GroupAuth, epoch: int
    ) -> None:
        ctx = self._ctx = SyncContext(settings, table, auth, epoch)
        self._now = 0.0
        self._started = False
        self._replay = ReplayWindow()
        self._merger = Merger(ctx)
        self._updates = ReliableUpdates(ctx, self._merger)
        self._requester = DownloadRequester(ctx, self._merger)
        self._responder = DownloadResponder(ctx)
        self._antientropy = AntiEntropy(ctx, self._updates.add_pending)
        self._semisync = SemisyncWatches(ctx)
        # types 70-71 (revocation state) go to it; without one they are dropped "unsupported"
        self.extension: SyncExtension | None = None

    # --- shared state, as attributes ---------------------------------------------------------

    @property
    def context(self) -> SyncContext:
        """The shared state, for a :class:`SyncExtension` that sends through it."""
        return self._ctx

    @property
    def settings(self) -> SyncSettings:
        return self._ctx.settings

    @property
    def table(self) -> BindingTable:
        return self._ctx.table

    @property
    def counters(self) -> SyncCounters:
        return self._ctx.counters

    @property
    def auth(self) -> wire.GroupAuth:
        return self._ctx.auth

    @auth.setter
    def auth(self, auth: wire.GroupAuth) -> None:  # a key rollover replaces it
        self._ctx.auth = auth

    @property
    def state(self) -> SyncState:
        return self._ctx.state

    @state.setter
    def state(self, state: SyncState) -> None:
        self._ctx.state = state

    @property
    def send_now(self) -> Callable[[bytes, Endpoint], object] | None:
        """Optional: the transport's send, for a datagram that should leave before this call
        returns (a table download's receiver acks through it before applying the chunk)."""
        return self._ctx.send_now

    @send_now.setter
    def send_now(self, send: Callable[[bytes, Endpoint], object] | None) -> None:
        self._ctx.send_now = send

    @property
    def ack_latencies(self) -> list[float]:
        """Seconds from a Binding Update's first send to each member's ack; the metrics drain
        it (bounded)."""
        return self._updates.ack_latencies

    @ack_latencies.setter
    def ack_latencies(self, samples: list[float]) -> None:
        self._updates.ack_latencies = samples

    @property
    def last_download(self) -> tuple[int, Endpoint] | None:
        """(identification, responder) of the last completed download."""
        return self._requester.last_download

    # the parts' state under the names tests and fuzz targets read
    @property
    def _fresh(self) -> dict[int, None]:
        return self._ctx.fresh

    @property
    def _sent_log(self) -> dict[int, tuple[list[int], list[int], float]]:
        return self._updates.sent_log

    @property
    def _merge(self) -> Callable[[MobilityRecord, float], bool]:
        return self._merger.merge

    # --- public API ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._now = now
        self._started = True
        self._antientropy.start(now)
        if not self._ctx.members and self.settings.multicast is None:
            self._ctx.set_state(SyncState.SYNCED, "no other member configured")
            return
        self._requester.request_table(now, first=True)

    def local_change(self, rec: MobilityRecord, now: float) -> None:
        """A registration or deregistration was accepted here: tell the group (FIG 6, FIG 8)."""
        self._now = now
        self._ctx.fresh[rec.home_address] = None

    def watch(self, home: int, version: int, now: float) -> None:
        """semisync: emit :class:`Protected` once a peer acked ``version`` (or on timeout)."""
        self._now = now
        self._semisync.watch(home, version, now)

    def handle_datagram(self, data: bytes, src: Endpoint, now: float) -> None:
        self._now = now
        ctx = self._ctx
        counters = ctx.counters
        try:
            msg = wire.decode_chunked(data, ctx.auth)
        except DecodeError as exc:
            counters.dropped[exc.reason] += 1
            if exc.reason in ("bad-spi", "bad-authenticator", "missing-auth"):
                counters.sec_violations += 1
                ctx.events.append(SyncViolation(exc.reason, src))
            return
        if msg.sender == ctx.settings.node_id:
            counters.dropped["own-message"] += 1
            return
        if msg.group != ctx.settings.group:
            counters.dropped["wrong-group"] += 1
            return
        if not self._replay.check(msg.sender, msg.sequence):
            counters.dropped["replayed"] += 1
            counters.sec_violations += 1
            ctx.events.append(SyncViolation("replayed", src))
            return
        self._replay.accept(msg.sender, msg.sequence)
        counters.replay_senders_evicted = self._replay.evicted
        member = self._learn(src, msg.sender, msg.sequence >> 32, now)
        if isinstance(msg, wire.BindingUpdate | wire.BindingUpdateChunk):
            self._updates.on_update(msg, member, now)
        elif isinstance(msg, wire.BindingUpdateAck):
            sent = self._updates.on_ack(msg, member, now)
            if sent is not None and self._semisync.watches:
                self._semisync.acked(sent[0], sent[1], member.node_id)
        elif isinstance(msg, wire.TableRequest):
            self._responder.on_table_request(msg, member, now)
        elif isinstance(msg, wire.TableSync | wire.TableSyncChunk):
            self._requester.on_table_sync(msg, member, now)
        elif isinstance(msg, wire.TableSyncAck):
            self._responder.on_table_sync_ack(msg, member, now)
        elif isinstance(msg, wire.RevocationState | wire.RevocationStateAck):
            if self.extension is None:
                counters.dropped["unsupported"] += 1
            else:
                self.extension.on_message(msg, member, now)
        else:
            self._antientropy.on_digest(msg, member, now)

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._updates.flush(now)
        unreachable_after = self.settings.unreachable_after
        for m in list(self._ctx.members.values()):
            due = m.next_retx is not None and now >= m.next_retx
            if due and not self._updates.retransmit(m, now):  # silent for max_retransmits
                self._mark_unreachable(m, "no ack after retransmissions", now)
            if m.reachable and m.last_heard is not None and now >= m.last_heard + unreachable_after:
                self._mark_unreachable(m, "silent", now)
        self._responder.on_timer(now)
        self._requester.on_timer(now)
        self._semisync.timeouts(now)
        self._antientropy.on_timer(now)
        if self.extension is not None:
            self.extension.on_timer(now)

    def next_timer(self) -> float | None:
        members = self._ctx.members.values()
        times: list[float] = []
        if self._ctx.fresh:
            times.append(self._now)
        times.extend(m.next_retx for m in members if m.next_retx is not None)
        times.extend(
            m.last_heard + self.settings.unreachable_after
            for m in members
            if m.reachable and m.last_heard is not None
        )
        times.extend(self._responder.deadlines())
        download = self._requester.deadline()
        if download is not None:
            times.append(download)
        times.extend(self._semisync.deadlines())
        if self._antientropy.next_digest is not None:
            times.append(self._antientropy.next_digest)
        extension = self.extension.deadline() if self.extension is not None else None
        if extension is not None:
            times.append(extension)
        return min(times) if times else None

    def datagrams_to_send(self) -> list[tuple[bytes, Endpoint]]:
        self._updates.flush(self._now)
        out, self._ctx.out = self._ctx.out, []
        return out

    def events(self) -> list[Event]:
        ev, self._ctx.events = self._ctx.events, []
        return ev

    @property
    def members(self) -> list[Member]:
        return list(self._ctx.members.values())

    def queue_depth(self) -> int:
        return sum(len(m.pending) for m in self._ctx.members.values()) + len(self._ctx.fresh)

    def status(self, now: float) -> dict[str, object]:
        members = self._ctx.members.values()
        return {
            "state": self.state.value,
            "node_id": dotted(self.settings.node_id),
            "mode": self.settings.mode,
            "members": [m.describe(now) for m in members],
            "queues": {
                "fresh": len(self._ctx.fresh),
                "pending": {f"{m.endpoint[0]}:{m.endpoint[1]}": len(m.pending) for m in members},
                "bulk_senders": len(self._responder.senders),
                "semisync_waiting": self._semisync.waiting(),
            },
            "counters": self.counters.as_dict(),
        }

    # --- membership (FIG 5 block 504): every part depends on it ----------------------------

    def _learn(self, src: Endpoint, node_id: int, epoch: int, now: float) -> Member:
        """Every authenticated message tells us a member exists and is alive (FIG 5 504)."""
        ctx = self._ctx
        m = ctx.members.get(src)
        if m is None:
            m = Member(src, node_id=node_id)
            ctx.members[src] = m
            ctx.events.append(MemberChanged(src, node_id, True, "learned"))
        m.node_id = node_id
        if epoch > m.epoch:
            if m.epoch:  # it restarted: it lost its table, so it is not synced any more
                m.synced = False
            m.epoch = epoch
        first = m.last_heard is None
        m.heard(now)
        if not m.reachable:
            m.reachable = True
            ctx.events.append(
                MemberChanged(src, node_id, True, "heard" if first else "heard again")
            )
            if ctx.state is SyncState.SYNCED:
                # it may have missed updates while away: start a digest exchange right away
                self._antientropy.send_digest(now, only=m)
        return m

    def _mark_unreachable(self, m: Member, reason: str, now: float) -> None:
        """Silent too long, or no ack after ``max_retransmits``: drop its update queue (counted
        in ``failed_bu``), stop sending it the table, and restart a download it was serving."""
        self._updates.give_up(m)
        if m.reachable:
            m.reachable = False
            self._ctx.events.append(MemberChanged(m.endpoint, m.node_id, False, reason))
        self._responder.requester_lost(m.endpoint)
        self._requester.responder_lost(m.endpoint, now)
